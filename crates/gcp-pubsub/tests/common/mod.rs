//! Shared helpers for the emulator tests: starting (or skipping) the emulator, a push
//! endpoint that records what Pub/Sub POSTs, and polling with deadlines.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use gcp_pubsub::emulator::Emulator;
use gcp_pubsub::{Delivery, Topology};

/// Starts an emulator, or returns `None` (printing why) when it is not installed and
/// `CI` is not `true`. On CI a missing emulator fails the test: a suite that silently
/// skips its Pub/Sub tests would report green while testing nothing.
pub async fn emulator() -> Option<Emulator> {
    if let Err(missing) = Emulator::check_installed() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and the Pub/Sub emulator is unavailable: {missing}");
        }
        eprintln!("SKIPPED (set CI=true to make this a failure): {missing}");
        return None;
    }
    Some(
        Emulator::start()
            .await
            .expect("the Pub/Sub emulator starts"),
    )
}

/// A delivery policy fast enough for tests: dead-lettering after 5 attempts takes seconds.
pub fn fast_delivery() -> Delivery {
    Delivery {
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        ack_deadline: Duration::from_secs(10),
        ..Delivery::default()
    }
}

/// The pipeline topology with both push subscriptions pointed at `url`.
pub fn topology_to(url: &str) -> Topology {
    Topology {
        delivery: fast_delivery(),
        ..Topology::pipeline(url, url)
    }
}

/// One POST received by a [`PushSink`].
#[derive(Debug, Clone)]
pub struct Push {
    /// When it arrived.
    pub at: Instant,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its JSON body.
    pub body: serde_json::Value,
}

impl Push {
    pub fn message_id(&self) -> &str {
        self.body["message"]["messageId"]
            .as_str()
            .unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct SinkState {
    pushes: Mutex<Vec<Push>>,
    status: AtomicU16,
}

/// A tiny push endpoint on `127.0.0.1:0` that records every POST and answers with a
/// configurable status.
#[derive(Debug, Clone)]
pub struct PushSink {
    url: String,
    state: Arc<SinkState>,
}

impl PushSink {
    pub async fn start(status: StatusCode) -> Self {
        let state = Arc::new(SinkState {
            pushes: Mutex::new(Vec::new()),
            status: AtomicU16::new(status.as_u16()),
        });
        let app = Router::new()
            .route("/push", post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/push", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pushes(&self) -> Vec<Push> {
        self.state.pushes.lock().unwrap().clone()
    }

    /// Pushes of message `id`, in arrival order.
    pub fn pushes_of(&self, id: &str) -> Vec<Push> {
        self.pushes()
            .into_iter()
            .filter(|p| p.message_id() == id)
            .collect()
    }
}

async fn receive(
    State(state): State<Arc<SinkState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    state.pushes.lock().unwrap().push(Push {
        at: Instant::now(),
        headers,
        body,
    });
    StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap()
}

/// Polls `check` every 50 ms until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Upper bound for one emulator test. A hung test must fail (dropping, and so stopping,
/// its emulator) rather than stall CI for its whole time budget.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `test` with [`TEST_TIMEOUT`].
pub async fn bounded(test: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_TIMEOUT, test).await.is_err() {
        panic!("test did not finish within {TEST_TIMEOUT:?}");
    }
}
