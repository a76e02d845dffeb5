//! webhook-ingester: Stark's real signatures, sandbox-signed deliveries, and every refusal.

use std::sync::Arc;
use std::time::Duration;

use pipeline_domain::messages::{PAID_INVOICES, PaidInvoice, TopicMessage as _};
use pipeline_testkit::bus::MemoryBus;
use pipeline_testkit::{run, stark};
use serde_json::{Value, json};
use stark_client::{Client, NewInvoice, PrivateKey};
use stark_sandbox::{DeliveryOutcome, SandboxConfig};
use webhook_ingester::{Config, Deps, build};

const WORKSPACE: &str = "6010044957065216";

fn config(workspace: Option<&str>) -> Config {
    let mut config = Config::local(workspace.unwrap_or_default());
    config.workspace_id = workspace.map(str::to_owned);
    config.publish_timeout = Duration::from_secs(2);
    config
}

/// The ingester built as its binary builds it; its webhook URL.
async fn ingester(stark: Client, workspace: Option<&str>, bus: &MemoryBus) -> String {
    let deps = Deps {
        stark,
        publisher: Arc::new(bus.clone()),
    };
    let base = run(build(config(workspace), deps).await.unwrap());
    format!("{base}/webhook")
}

async fn post(url: &str, body: &[u8], signature: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header("Digital-Signature", signature);
    }
    request.send().await.unwrap().status().as_u16()
}

/// A client of a stand-in Stark that only serves `GET /v2/public-key` with `pem`.
async fn key_server(pem: String) -> Client {
    client_at(&pipeline_testkit::public_key_server(pem).await)
}

fn client_at(base: &str) -> Client {
    let mut config = pipeline_testkit::stand_in_config(base);
    config.retry_backoff = Duration::from_millis(5);
    config.public_key_min_refresh = Duration::ZERO;
    Client::new(config).unwrap()
}

fn credited_body(invoice_id: &str, workspace: &str) -> String {
    let invoice = json!({"id": invoice_id, "amount": 10_000, "nominalAmount": 10_000, "fee": 25, "status": "paid",
        "taxId": "012.345.678-90", "name": "Ana Souza", "created": "2026-11-27T10:00:00.000000+00:00",
        "tags": ["request:c-0-1"], "transactionIds": ["1"]});
    let event = json!({"event": {"created": "2026-11-27T10:09:00.000000+00:00", "id": "9000000000000001",
        "subscription": "invoice", "workspaceId": workspace,
        "log": {"created": "2026-11-27T10:08:59.000000+00:00", "errors": [], "id": "8000000000000001", "type": "credited", "invoice": invoice}}});
    stark_client::python_json::to_string_sorted(&event)
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("../../stark-client/tests/data/vectors.json")).unwrap()
}

#[tokio::test]
async fn real_stark_signatures_are_accepted_and_non_credited_events_acked_unpublished() {
    let v = vectors();
    let client = key_server(
        v["starkWebhookVector"]["starkPublicKeyPem"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
    .await;
    let bus = MemoryBus::new();
    let url = ingester(client, None, &bus).await;
    for (vector, signature) in [
        ("starkWebhookVector", "digitalSignature"),
        ("starkWebhookVector", "digitalSignatureLowS"),
        ("starkWebhookVector2", "digitalSignature"),
    ] {
        let content = v[vector]["content"].as_str().unwrap();
        assert_eq!(
            post(&url, content.as_bytes(), v[vector][signature].as_str()).await,
            200,
            "{vector} {signature}"
        );
    }
    // The invoice event is `created` and the other a transfer: nothing to pay.
    assert!(bus.published(PAID_INVOICES).is_empty());
    let w = &v["starkWebhookVector"];
    let content = w["content"].as_str().unwrap().as_bytes();
    assert_eq!(
        post(&url, content, w["invalidSignature"].as_str()).await,
        401
    );
    assert_eq!(
        post(&url, content, w["malformedSignature"].as_str()).await,
        401
    );
}

#[tokio::test]
async fn sandbox_webhooks_high_and_low_s_publish_every_credited_invoice() {
    let stark = stark(SandboxConfig {
        speed: 600.0,
        pay_probability: 1.0,
        invoice_fee: 25,
        pay_delay: Duration::from_secs(60),
        ..Default::default()
    })
    .await;
    let bus = MemoryBus::new();
    let url = ingester(stark.client.clone(), Some(WORKSPACE), &bus).await;
    stark
        .client
        .create_webhook(&url, &["invoice".to_owned()])
        .await
        .unwrap();
    let invoices: Vec<NewInvoice> = (0..12)
        .map(|i| NewInvoice {
            amount: 1_000 + i,
            tax_id: "012.345.678-90".into(),
            name: format!("Payer {i}"),
            ..Default::default()
        })
        .collect();
    let created = stark.client.create_invoices(&invoices).await.unwrap();
    let state = stark
        .sandbox
        .wait_for(Duration::from_secs(30), |s| {
            s.events.len() >= 36
                && s.deliveries
                    .iter()
                    .filter(|d| d.outcome == DeliveryOutcome::Delivered)
                    .count()
                    >= 36
        })
        .await
        .unwrap();
    assert!(
        state.deliveries.iter().any(|d| d.high_s),
        "some deliveries are high-S"
    );
    assert!(
        state.deliveries.iter().any(|d| !d.high_s),
        "some deliveries are low-S"
    );
    let published: Vec<PaidInvoice> = bus
        .published(PAID_INVOICES)
        .iter()
        .map(|m| PaidInvoice::from_payload(&m.data).unwrap())
        .collect();
    assert_eq!(published.len(), 12, "one message per credited invoice");
    for invoice in &created {
        let message = published
            .iter()
            .find(|p| p.invoice_id == invoice.id)
            .unwrap();
        assert_eq!((message.amount, message.fee), (invoice.amount, 25));
    }
}

struct Fixture {
    stark_key: PrivateKey,
    bus: MemoryBus,
    url: String,
}

async fn fixture(workspace: Option<&str>) -> Fixture {
    let stark_key = PrivateKey::generate();
    let client = key_server(stark_key.public_key().to_pem()).await;
    let bus = MemoryBus::new();
    let url = ingester(client, workspace, &bus).await;
    Fixture {
        stark_key,
        bus,
        url,
    }
}

#[tokio::test]
async fn credited_event_is_published_with_ids_as_attributes() {
    let f = fixture(Some(WORKSPACE)).await;
    let body = credited_body("5166945473134592", WORKSPACE);
    assert_eq!(
        post(
            &f.url,
            body.as_bytes(),
            Some(&f.stark_key.sign_base64(body.as_bytes()))
        )
        .await,
        200
    );
    let published = f.bus.published(PAID_INVOICES);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].attributes["invoiceId"], "5166945473134592");
    let paid = PaidInvoice::from_payload(&published[0].data).unwrap();
    assert_eq!(
        (paid.amount, paid.fee, paid.claimed_payout()),
        (10_000, 25, 9_975)
    );
    assert_eq!(paid.credited_at, "2026-11-27T10:08:59.000000+00:00");
}

#[tokio::test]
async fn bad_requests_get_the_right_status_and_publish_nothing() {
    let f = fixture(Some(WORKSPACE)).await;
    let body = credited_body("5166945473134592", WORKSPACE);
    let good = f.stark_key.sign_base64(body.as_bytes());
    let tampered = body.replace("10000", "99999");
    assert_eq!(
        post(&f.url, tampered.as_bytes(), Some(&good)).await,
        401,
        "tampered body"
    );
    let wrong_key = PrivateKey::generate().sign_base64(body.as_bytes());
    assert_eq!(
        post(&f.url, body.as_bytes(), Some(&wrong_key)).await,
        401,
        "wrong key"
    );
    assert_eq!(
        post(&f.url, body.as_bytes(), None).await,
        401,
        "missing header"
    );
    let huge = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(
        post(&f.url, &huge, Some(&good)).await,
        413,
        "oversized body"
    );
    let not_json = b"definitely not json";
    assert_eq!(
        post(&f.url, not_json, Some(&f.stark_key.sign_base64(not_json))).await,
        400,
        "non-JSON"
    );
    let other = credited_body("5166945473134592", "1111111111111111");
    assert_eq!(
        post(
            &f.url,
            other.as_bytes(),
            Some(&f.stark_key.sign_base64(other.as_bytes()))
        )
        .await,
        403,
        "wrong workspace"
    );
    assert!(f.bus.published(PAID_INVOICES).is_empty());
    // The process keeps serving.
    assert_eq!(post(&f.url, body.as_bytes(), Some(&good)).await, 200);
}

#[tokio::test]
async fn key_fetch_failure_is_503() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let bus = MemoryBus::new();
    let url = ingester(client_at(&format!("http://{closed}/v2")), None, &bus).await;
    let body = credited_body("5166945473134592", WORKSPACE);
    let signature = PrivateKey::generate().sign_base64(body.as_bytes());
    assert_eq!(post(&url, body.as_bytes(), Some(&signature)).await, 503);
    assert!(bus.published(PAID_INVOICES).is_empty());
}

#[tokio::test]
async fn publish_failure_is_503() {
    let f = fixture(None).await;
    f.bus.set_fail_publishes(true);
    let body = credited_body("5166945473134592", WORKSPACE);
    let signature = f.stark_key.sign_base64(body.as_bytes());
    assert_eq!(post(&f.url, body.as_bytes(), Some(&signature)).await, 503);
    f.bus.set_fail_publishes(false);
    assert_eq!(post(&f.url, body.as_bytes(), Some(&signature)).await, 200);
    assert_eq!(f.bus.published(PAID_INVOICES).len(), 1);
}

#[test]
fn binary_refuses_to_start_naming_the_invalid_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_webhook-ingester"))
        .env_clear()
        .env("STARK_WORKSPACE_ID", "abc")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STARK_WORKSPACE_ID"));
}
