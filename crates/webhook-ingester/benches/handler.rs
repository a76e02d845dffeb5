//! What the ingester itself spends on one webhook, next to the verification it cannot avoid.
//!
//! - `ingest/credited_webhook`: one `POST /webhook` of a signed credited-invoice event through
//!   the service's whole router (`pipeline_service::serve::service_router`: request tracing,
//!   `/healthz`, the body limit, the handler), in process, with Cloud Logging JSON lines at
//!   `info` written to a sink and a publisher that confirms at once. Everything a request costs
//!   except the socket: hyper's parsing and the kernel's loopback TCP are what `ingest-load`
//!   adds on top (`BENCHMARKS.md` §2).
//! - `ingest/credited_webhook_without_logs`: the same with no tracing subscriber: what the
//!   request's spans and its two log lines cost is the difference.
//! - `ingest/raw_verify`: ECDSA verification of the same body and signature alone, the floor.
//!
//! Their ratio is the share of the ingester's own CPU that is verification; unlike
//! `ingest-load`'s ratio it needs no second process and no socket, so it moves by a few percent
//! between runs where `ingest-load` moves by ten on a shared machine.
//!
//! `cargo bench -p webhook-ingester --bench handler`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::BoxFuture;
use pipeline_service::logging::CloudJsonLayer;
use pipeline_service::publisher::{OutgoingMessage, PublishError, Publisher};
use pipeline_service::serve::service_router;
use stark_client::keys::{high_s_twin, parse_signature, signature_to_base64};
use stark_client::{AccessId, Client, ClientConfig, Environment, PrivateKey};
use tower::ServiceExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// The workspace the benchmark's ingester accepts, and its events carry.
const WORKSPACE_ID: &str = "6010044957065216";

/// Confirms every publish at once and keeps nothing: the benchmark measures the ingester.
#[derive(Debug)]
struct NullPublisher;

impl Publisher for NullPublisher {
    fn publish<'a>(
        &'a self,
        _topic: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        drop(message);
        Box::pin(async { Ok("1".to_owned()) })
    }
}

/// A credited-invoice event with every field a real delivery has, as the sandbox writes it.
fn credited_body() -> String {
    let event = serde_json::json!({"event": {
        "created": "2026-11-27T10:09:00.866857+00:00", "id": "5415223380934656",
        "subscription": "invoice", "workspaceId": WORKSPACE_ID,
        "log": {"created": "2026-11-27T10:08:59.927706+00:00", "errors": [], "id": "4687457496858624", "type": "credited",
            "invoice": {"amount": 24_990, "brcode": "00020101021226890014br.gov.bcb.pix2567invoice-h.sandbox.starkbank.com/v2/afdf94b770b0458a8440a335daf77c4c5204000053039865802BR5915Stark Bank S.A.6009Sao Paulo62070503***6304CC32",
                "created": "2026-11-27T10:00:50.886319+00:00", "descriptions": [], "discountAmount": 0, "discounts": [],
                "due": "2026-11-29T10:00:50.886319+00:00", "expiration": 5_097_600, "fee": 50, "fine": 2.0, "fineAmount": 0,
                "id": "5941925571985408", "interest": 1.0, "interestAmount": 0,
                "link": "https://local.sandbox.starkbank.com/invoicelink/afdf94b770b0458a8440a335daf77c4c",
                "name": "Vitória Fidalgo", "nominalAmount": 24_990,
                "pdf": "https://invoice-h.sandbox.starkbank.com/pdf/afdf94b770b0458a8440a335daf77c4c",
                "status": "paid", "tags": ["request:bench-0-0", "campaign:bench", "slot:0"], "taxId": "837.656.654-79",
                "transactionIds": ["6547649079541760"], "updated": "2026-11-27T10:08:59.927706+00:00"}}}});
    stark_client::python_json::to_string_sorted(&event)
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Production's log lines, written nowhere: formatting them is part of the cost.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(CloudJsonLayer::new(None, std::io::sink));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let key = PrivateKey::generate();
    let public = key.public_key();
    let body = credited_body();
    let low = key.sign(body.as_bytes());
    let high = high_s_twin(&low.normalize_s().unwrap_or(low));
    let signature = signature_to_base64(&high);

    let stark_url = runtime.block_on(pipeline_testkit::public_key_server(public.to_pem()));
    let stark = Client::new(ClientConfig::new(
        AccessId::parse("project/1").expect("access id"),
        PrivateKey::generate(),
        Environment::parse(&stark_url).expect("base URL"),
    ))
    .expect("client");
    let config = webhook_ingester::Config::local(WORKSPACE_ID);
    let deps = webhook_ingester::Deps {
        stark,
        publisher: Arc::new(NullPublisher),
    };
    let router = service_router(webhook_ingester::router(&config, deps));
    let request = || {
        Request::post("/webhook")
            .header("content-type", "application/json")
            .header("digital-signature", signature.as_str())
            .body(Body::from(body.clone()))
            .expect("request")
    };
    // The first request fetches Stark's key; every timed one finds it cached.
    let first = runtime
        .block_on(router.clone().oneshot(request()))
        .expect("infallible");
    assert_eq!(first.status(), 200, "the benchmark's webhook is accepted");

    let parsed = parse_signature(&signature).expect("a valid signature");
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("credited_webhook", |b| {
        b.to_async(&runtime).iter_batched(
            || (router.clone(), request()),
            |(router, request)| async move {
                let answer = router.oneshot(request).await.expect("infallible");
                assert_eq!(answer.status(), 200);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // The same with no subscriber on this thread (the runtime is current-thread): what the
    // spans and log lines cost.
    {
        let _no_logs = tracing::dispatcher::set_default(&tracing::Dispatch::none());
        group.bench_function("credited_webhook_without_logs", |b| {
            b.to_async(&runtime).iter_batched(
                || (router.clone(), request()),
                |(router, request)| async move {
                    let answer = router.oneshot(request).await.expect("infallible");
                    assert_eq!(answer.status(), 200);
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.bench_function("raw_verify", |b| {
        b.iter(|| public.verify(black_box(body.as_bytes()), black_box(&parsed)))
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
