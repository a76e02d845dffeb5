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
//! `ingest-load`'s ratio it needs no second process and no socket, so it is steadier between
//! runs on a shared machine (± 6 % against ± 14 % on 2026-12-07).
//!
//! `cargo bench -p webhook-ingester --bench handler`
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use pipeline_service::logging::CloudJsonLayer;
use pipeline_service::serve::service_router;
use pipeline_testkit::NullPublisher;
use pipeline_testkit::webhooks::{WORKSPACE_ID, signed_webhooks};
use stark_client::keys::parse_signature;
use stark_client::{Client, PrivateKey};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Times `request()` through `router` on `runtime`, each answer required to be 200.
fn bench_webhook(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    runtime: &Runtime,
    router: &Router,
    request: impl Fn() -> Request<Body>,
) {
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            || (router.clone(), request()),
            |(router, request)| async move {
                let answer = router.oneshot(request).await.expect("infallible");
                assert_eq!(answer.status(), 200);
            },
            criterion::BatchSize::SmallInput,
        )
    });
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
    // The second webhook carries a high-S signature, as about half of Stark's do.
    let webhook = signed_webhooks(&key, 2).pop().expect("two webhooks");

    let stark_url = runtime.block_on(pipeline_testkit::public_key_server(public.to_pem()));
    let stark = Client::new(pipeline_testkit::stand_in_config(&stark_url)).expect("client");
    let config = webhook_ingester::Config::local(WORKSPACE_ID);
    let deps = webhook_ingester::Deps {
        stark,
        publisher: Arc::new(NullPublisher::default()),
    };
    let router = service_router(webhook_ingester::router(&config, deps));
    let request = || {
        Request::post("/webhook")
            .header("content-type", "application/json")
            .header("digital-signature", webhook.signature.as_str())
            .body(Body::from(webhook.body.clone()))
            .expect("request")
    };
    // The first request fetches Stark's key; every timed one finds it cached.
    let first = runtime
        .block_on(router.clone().oneshot(request()))
        .expect("infallible");
    assert_eq!(first.status(), 200, "the benchmark's webhook is accepted");

    let parsed = parse_signature(&webhook.signature).expect("a valid signature");
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    bench_webhook(&mut group, "credited_webhook", &runtime, &router, request);
    // The same with no subscriber on this thread (the runtime is current-thread): what the
    // spans and log lines cost.
    {
        let _no_logs = tracing::dispatcher::set_default(&tracing::Dispatch::none());
        bench_webhook(
            &mut group,
            "credited_webhook_without_logs",
            &runtime,
            &router,
            request,
        );
    }
    group.bench_function("raw_verify", |b| {
        b.iter(|| public.verify(black_box(&webhook.body), black_box(&parsed)))
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
