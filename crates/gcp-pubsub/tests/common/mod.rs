//! Shared helpers for the emulator tests: starting (or skipping) the emulator, a push
//! endpoint that records what Pub/Sub POSTs, and polling with deadlines.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine as _;
use gcp_pubsub::emulator::Emulator;
use gcp_pubsub::{Delivery, Topology};
use tokio::sync::Notify;

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
        max_delivery_attempts: 5,
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

/// What a [`ScriptedSink`] does with the pushes of one message (matched by its data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Keep the request open until [`ScriptedSink::release`], then answer 200.
    Hold,
    /// Answer 500, every time.
    Fail,
}

/// One push a [`ScriptedSink`] received.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// The subscription's short name (from the envelope).
    pub subscription: String,
    /// The message's data, decoded.
    pub data: String,
    /// `message.orderingKey` from the envelope, if any.
    pub ordering_key: Option<String>,
    /// When the request arrived.
    pub at: Instant,
    /// When it was answered (`None` while held).
    pub answered: Option<Instant>,
    /// The status it was answered with.
    pub status: Option<StatusCode>,
}

#[derive(Debug, Default)]
struct ScriptState {
    arrivals: Mutex<Vec<Arrival>>,
    scripts: Mutex<HashMap<String, Script>>,
    released: Notify,
    first_envelope: Mutex<Option<serde_json::Value>>,
}

/// A push endpoint whose answer depends on the message: 200 by default, or as scripted per
/// message data (hold the request open, or fail). Records when each push arrived and when
/// it was answered, so tests can tell which pushes overlapped.
#[derive(Debug, Clone)]
pub struct ScriptedSink {
    url: String,
    state: Arc<ScriptState>,
}

impl ScriptedSink {
    pub async fn start() -> Self {
        let state = Arc::new(ScriptState::default());
        let app = Router::new()
            .route("/push", post(scripted))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/push", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, state }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Scripts the pushes of the message whose data is `data`.
    pub fn script(&self, data: &str, script: Script) {
        self.state
            .scripts
            .lock()
            .unwrap()
            .insert(data.to_owned(), script);
    }

    /// Answers the held pushes of `data` (200), and answers later ones at once.
    pub fn release(&self, data: &str) {
        self.state.scripts.lock().unwrap().remove(data);
        self.state.released.notify_waiters();
    }

    /// Pushes of `data` to `subscription`, in arrival order.
    pub fn arrivals(&self, subscription: &str, data: &str) -> Vec<Arrival> {
        self.state
            .arrivals
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.subscription == subscription && a.data == data)
            .cloned()
            .collect()
    }

    /// The first envelope received, for the record.
    pub fn first_envelope(&self) -> Option<serde_json::Value> {
        self.state.first_envelope.lock().unwrap().clone()
    }
}

async fn scripted(State(state): State<Arc<ScriptState>>, body: Bytes) -> StatusCode {
    let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    state
        .first_envelope
        .lock()
        .unwrap()
        .get_or_insert_with(|| envelope.clone());
    let message = &envelope["message"];
    let data = base64::engine::general_purpose::STANDARD
        .decode(message["data"].as_str().unwrap_or_default())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    let subscription = envelope["subscription"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let index = {
        let mut arrivals = state.arrivals.lock().unwrap();
        arrivals.push(Arrival {
            subscription,
            data: data.clone(),
            ordering_key: message["orderingKey"].as_str().map(str::to_owned),
            at: Instant::now(),
            answered: None,
            status: None,
        });
        arrivals.len() - 1
    };
    let status = loop {
        // Created before the check, so a release in between is not missed.
        let released = state.released.notified();
        let script = state.scripts.lock().unwrap().get(&data).copied();
        match script {
            Some(Script::Hold) => released.await,
            Some(Script::Fail) => break StatusCode::INTERNAL_SERVER_ERROR,
            None => break StatusCode::OK,
        }
    };
    let mut arrivals = state.arrivals.lock().unwrap();
    arrivals[index].answered = Some(Instant::now());
    arrivals[index].status = Some(status);
    status
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
