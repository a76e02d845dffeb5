//! The local side of the pipeline: what the local stack, the benchmarks and the tests use, and
//! no deployable links (`cargo tree -e normal` of each service shows it absent).
//!
//! - [`bus`]: an in-process bus with Pub/Sub's push, retry and dead-letter contract.
//! - [`free_port`]: a free loopback port.
//! - [`stark`]: a local Stark sandbox plus a client registered with it.
//! - [`run`]: runs a server a service's `build` returned; [`spawn`]: serves any router on
//!   `127.0.0.1:0` through the production [`Server`].
//! - [`public_key_server`]: a stand-in Stark serving only `GET /v2/public-key`;
//!   [`stand_in_config`]: the settings of a client of such a stand-in.
//! - [`push`]: delivers a message the way Pub/Sub push does, returning the HTTP status.
//! - [`webhooks`]: credited-invoice webhooks signed as Stark signs them (the benchmarks' load).
//! - [`NullPublisher`]: confirms every publish and keeps nothing (the benchmarks' publisher).
#![forbid(unsafe_code)]

pub mod bus;
pub mod webhooks;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use pipeline_domain::messages::TopicMessage;
use pipeline_service::envelope::WireEnvelope;
use pipeline_service::publisher::{OutgoingMessage, PublishError, Publisher};
use pipeline_service::serve::{Server, loopback};
use stark_client::Client;
use stark_sandbox::{Sandbox, SandboxConfig, SandboxHandle};

/// A running sandbox and a client of one of its projects.
#[derive(Debug)]
pub struct Stark {
    /// The sandbox.
    pub sandbox: SandboxHandle,
    /// A client signed as the registered project.
    pub client: Client,
}

/// Starts a sandbox with `config` and registers a fresh project.
pub async fn stark(config: SandboxConfig) -> Stark {
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let (project, key) = sandbox.new_project();
    let mut client_config = sandbox.client_config(&project, key);
    client_config.retry_backoff = Duration::from_millis(5);
    client_config.timeout = Duration::from_secs(3);
    let client = Client::new(client_config).expect("client builds");
    Stark { sandbox, client }
}

/// Serves `router` on an ephemeral loopback port and returns its base URL.
pub async fn spawn(router: axum::Router) -> String {
    let server = Server::bind(loopback(0), router)
        .await
        .expect("bind loopback");
    run(server)
}

/// Runs a server a service's `build` returned (the same path as its binary) until the test
/// ends, and returns its base URL.
pub fn run(server: Server) -> String {
    let port = server.port();
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    format!("http://127.0.0.1:{port}")
}

pub use pipeline_service::serve::free_port;

/// A publisher that confirms every message at once and keeps none, counting them: what a
/// benchmark of a publishing service uses to measure the service and not a bus.
#[derive(Debug, Default)]
pub struct NullPublisher {
    published: AtomicU64,
}

impl NullPublisher {
    /// Messages confirmed so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

impl Publisher for NullPublisher {
    fn publish<'a>(
        &'a self,
        _topic: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        drop(message);
        let id = self.published.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(async move { Ok(id.to_string()) })
    }
}

/// A stand-in Stark that serves only `GET /v2/public-key`, listing `pem` (what a webhook
/// verifier fetches once, then caches). Returns the Stark base URL, `http://127.0.0.1:PORT/v2`.
pub async fn public_key_server(pem: String) -> String {
    let app = axum::Router::new().route(
        "/v2/public-key",
        axum::routing::get(move || {
            let pem = pem.clone();
            async move {
                axum::Json(serde_json::json!({"cursor": null, "publicKeys": [
                    {"content": pem, "created": "2026-01-01T00:00:00+00:00"}]}))
            }
        }),
    );
    format!("{}/v2", spawn(app).await)
}

/// A client of a stand-in Stark (or of something in front of it) that answers every request
/// with `status` and a Stark-shaped error list: how a service reacts to 401/403 and the like.
pub async fn refusing_stark(status: u16) -> Client {
    let app = axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::from_u16(status).expect("a valid HTTP status"),
            axum::Json(serde_json::json!({"errors": [{"code": "refused", "message": "no"}]})),
        )
    });
    let base = spawn(app).await;
    let mut config = stand_in_config(&format!("{base}/v2"));
    config.retry_backoff = Duration::from_millis(1);
    Client::new(config).expect("client builds")
}

/// The settings of a client of a stand-in Stark at `base` (`http://127.0.0.1:PORT/v2`), as
/// project 1 with a throwaway key: stand-ins check no request signature.
pub fn stand_in_config(base: &str) -> stark_client::ClientConfig {
    stark_client::ClientConfig::new(
        stark_client::AccessId::parse("project/1").expect("a valid access id"),
        stark_client::PrivateKey::generate(),
        stark_client::Environment::parse(base).expect("a loopback base URL"),
    )
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// POSTs `message` to `url` as a Pub/Sub push delivery and returns the status code.
pub async fn push(url: &str, message: &impl TopicMessage) -> u16 {
    push_raw(url, &message.to_message()).await
}

/// POSTs an already serialized message as a push delivery.
pub async fn push_raw(url: &str, message: &OutgoingMessage) -> u16 {
    let id = NEXT_ID.fetch_add(1, Ordering::SeqCst).to_string();
    let envelope = WireEnvelope::for_message(
        "projects/test/subscriptions/test",
        &id,
        "2026-11-27T00:00:00Z",
        message,
        Some(1),
    );
    post_json(
        url,
        serde_json::to_vec(&envelope).expect("envelope serializes"),
    )
    .await
}

/// POSTs raw bytes as JSON and returns the status code.
pub async fn post_json(url: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the service answers")
        .status()
        .as_u16()
}

/// The log lines (JSON, one object per line) written on this thread while the guard lives:
/// a test asserts the stable event names a service logs. Tests on tokio's default
/// current-thread runtime see their spawned servers' lines too.
///
/// One global subscriber, installed once, routes each line to the capture of the thread that
/// wrote it. (Per-thread default subscribers, `tracing::subscriber::set_default`, share the
/// callsites' cached interest across threads, and parallel tests then lose lines now and then.)
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::fmt::Debug for LogCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogCapture").finish_non_exhaustive()
    }
}

thread_local! {
    /// The capture of this thread's test, if it started one.
    static CURRENT: std::cell::RefCell<Option<LogCapture>> = const { std::cell::RefCell::new(None) };
}

/// Writes a log line into the current thread's capture (or nowhere).
struct ToCurrentCapture;

impl std::io::Write for ToCurrentCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CURRENT.with(|current| {
            if let Some(capture) = &*current.borrow() {
                capture.0.lock().expect("log lock").extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ends the capture of its thread when dropped.
#[derive(Debug)]
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().take());
    }
}

impl LogCapture {
    /// Starts capturing on this thread.
    pub fn start() -> (Self, CaptureGuard) {
        static INSTALL: std::sync::Once = std::sync::Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .json()
                .with_max_level(tracing::Level::INFO)
                .with_writer(|| ToCurrentCapture)
                .finish();
            // Fails only if the test binary installed its own: then nothing is captured and
            // the test's assertions say so.
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        let capture = LogCapture::default();
        CURRENT.with(|current| *current.borrow_mut() = Some(capture.clone()));
        (capture, CaptureGuard(()))
    }

    /// Every captured line, parsed.
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().expect("log lock").clone()).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The captured lines whose `event` field is `event`.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["fields"]["event"] == event)
            .collect()
    }
}
