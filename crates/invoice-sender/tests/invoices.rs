//! invoice-sender against the local Stark sandbox: one invoice per request, whatever happens.

use invoice_sender::{Config, Deps, build};
use pipeline_domain::messages::{PendingInvoice, SCHEMA_VERSION};
use pipeline_domain::vocab::invoice_tags;
use pipeline_testkit::{Stark, push, run, stark};
use stark_sandbox::{FaultConfig, SandboxConfig};

async fn setup() -> (Stark, String) {
    let stark = stark(SandboxConfig::default()).await;
    let deps = Deps {
        stark: stark.client.clone(),
    };
    let base = run(build(Config::local(), deps).await.unwrap());
    (stark, format!("{base}/push"))
}

fn request(id: &str) -> PendingInvoice {
    PendingInvoice {
        schema_version: SCHEMA_VERSION,
        request_id: id.to_owned(),
        campaign: "test".into(),
        slot: 3,
        amount: 12_345,
        name: "João da Silva".into(),
        tax_id: "012.345.678-90".into(),
        due: None,
        expiration: None,
        tags: invoice_tags(id, "test", 3),
    }
}

#[tokio::test]
async fn creates_the_invoice_with_its_request_tag() {
    let (stark, url) = setup().await;
    assert_eq!(push(&url, &request("test-3-0")).await, 200);
    let invoices = stark.sandbox.state().invoices;
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].amount, 12_345);
    assert_eq!(&*invoices[0].name, "João da Silva");
    assert!(
        invoices[0].tags.contains(&"request:test-3-0".to_owned()),
        "{:?}",
        invoices[0].tags
    );
}

#[tokio::test]
async fn redelivery_creates_no_second_invoice() {
    let (stark, url) = setup().await;
    for _ in 0..3 {
        assert_eq!(push(&url, &request("test-3-1")).await, 200);
    }
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { push(&url, &request("test-3-2")).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(stark.sandbox.state().invoices.len(), 2);
}

#[tokio::test]
async fn lost_answer_is_retried_and_found_by_tag() {
    let (stark, url) = setup().await;
    stark
        .sandbox
        .set_faults(FaultConfig {
            seed: 3,
            lost_answer_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    // The create is applied and its answer lost: the sender looks for it once more; Stark's
    // lists may not show it yet, and then the message is handed back for a retry.
    let first = push(&url, &request("test-3-3")).await;
    assert!(first == 200 || first == 503, "{first}");
    assert!(
        stark
            .sandbox
            .state()
            .faults
            .iter()
            .any(|f| f.kind.contains("lost")),
        "the fault happened"
    );
    stark.sandbox.set_faults(FaultConfig::default()).unwrap();
    // Pub/Sub's backoff (10 s and up) passes before the redelivery, which finds the invoice.
    stark.sandbox.advance(std::time::Duration::from_secs(10));
    assert_eq!(push(&url, &request("test-3-3")).await, 200);
    assert_eq!(stark.sandbox.state().invoices.len(), 1);
}

#[tokio::test]
async fn stark_5xx_and_dropped_connections_are_503() {
    let (stark, url) = setup().await;
    for faults in [
        FaultConfig {
            seed: 1,
            server_error_rate: 1.0,
            ..Default::default()
        },
        FaultConfig {
            seed: 1,
            drop_rate: 1.0,
            ..Default::default()
        },
    ] {
        stark.sandbox.set_faults(faults).unwrap();
        assert_eq!(push(&url, &request("test-3-4")).await, 503);
    }
    assert!(stark.sandbox.state().invoices.is_empty());
}

#[tokio::test]
async fn invalid_requests_are_422_without_calling_stark_and_stark_400_is_422() {
    let (stark, url) = setup().await;
    let before = stark.sandbox.state().requests;
    let mut bad_cpf = request("test-3-5");
    bad_cpf.tax_id = "012.345.678-91".into();
    assert_eq!(push(&url, &bad_cpf).await, 422);
    let mut zero = request("test-3-6");
    zero.amount = 0;
    assert_eq!(push(&url, &zero).await, 422);
    assert_eq!(
        stark.sandbox.state().requests,
        before,
        "nothing was sent to Stark"
    );
    // Stark itself refuses 1e15 cents.
    let mut huge = request("test-3-7");
    huge.amount = 1_000_000_000_000_000;
    assert_eq!(push(&url, &huge).await, 422);
    assert!(stark.sandbox.state().invoices.is_empty());
}

#[tokio::test]
async fn malformed_push_is_400() {
    let (_stark, url) = setup().await;
    assert_eq!(pipeline_testkit::post_json(&url, b"[]".to_vec()).await, 400);
    let mut message = pipeline_domain::messages::TopicMessage::to_message(&request("x"));
    message.data = b"{\"schemaVersion\": 1}".to_vec();
    assert_eq!(pipeline_testkit::push_raw(&url, &message).await, 400);
}

#[test]
fn binary_refuses_to_start_naming_the_missing_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_invoice-sender"))
        .env_clear()
        .env("STARK_ACCESS_ID", "project/123")
        .env("STARK_ENVIRONMENT", "sandbox")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STARK_PRIVATE_KEY_FILE"));
}

#[tokio::test]
async fn refused_credentials_are_a_configuration_error_retried_until_fixed() {
    for status in [401u16, 403] {
        let deps = Deps {
            stark: pipeline_testkit::refusing_stark(status).await,
        };
        let url = format!("{}/push", run(build(Config::local(), deps).await.unwrap()));
        let (logs, _guard) = pipeline_testkit::LogCapture::start();
        assert_eq!(push(&url, &request("test-9-9")).await, 503, "HTTP {status}");
        assert_eq!(logs.events("stark_unauthorized").len(), 1, "HTTP {status}");
    }
}
