//! webhook-ingester: the public endpoint Stark Bank posts events to.
//!
//! It does as little as possible before answering, because Cloud Run throttles the CPU once the
//! answer is sent: verify the `Digital-Signature` over the raw bytes, pick out credited invoices,
//! publish them to `paid_invoices`, and answer 200 only once Pub/Sub confirmed the publish.
//! Anything else is answered non-2xx so that Stark keeps the event and retries it.
//!
//! | request | answer |
//! |---|---|
//! | body over the cap (1 MiB by default) | 413 |
//! | missing, malformed or non-matching signature | 401 |
//! | Stark's public key cannot be fetched | 503 (Stark retries) |
//! | signed body that is not an event | 400 |
//! | event of another workspace (when `STARK_WORKSPACE_ID` is set) | 403, logged as an error: the event stays undelivered at Stark, recoverable after the configuration is fixed |
//! | event that is not `invoice`/`credited` | 200, logged |
//! | credited invoice, publish confirmed | 200 |
//! | credited invoice, publish failed or timed out | 503 |
//!
//! # Layout
//! - [`Config`]: where to listen, workspace, body cap, publish timeout; [`Deps`]: the Stark
//!   client (for Stark's public key) and the publisher.
//! - [`build`]: binds and returns the server that `main.rs`, the local stack and the tests run;
//!   [`router`]: `POST /webhook`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pipeline_domain::messages::{PAID_INVOICES, TopicMessage as _};
use pipeline_service::config::{ConfigError, Env};
use pipeline_service::publisher::SharedPublisher;
use pipeline_service::records::paid_invoice;
use pipeline_service::serve::{Server, all_interfaces, loopback};
use stark_client::{Client, EventLog, InvoiceLogType, VerifyError};

/// Largest accepted webhook body by default: Stark's events are a few kB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a webhook waits for its publish confirmation by default.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen: `0.0.0.0:$PORT` in production, loopback in local runs and tests.
    pub listen: SocketAddr,
    /// When set, events of other workspaces are refused (`STARK_WORKSPACE_ID`). Stark signs
    /// every workspace's events with one key, so only this tells our events from anyone
    /// else's: deployments require it, and the service warns at start when it is unset.
    pub workspace_id: Option<String>,
    /// Largest accepted body (`WEBHOOK_MAX_BODY_BYTES`, default 1 MiB).
    pub max_body_bytes: usize,
    /// How long to wait for a publish confirmation (`PUBLISH_TIMEOUT_SECONDS`, default 10).
    pub publish_timeout: Duration,
}

impl Config {
    /// Reads every variable once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let workspace_id = env
            .optional("STARK_WORKSPACE_ID")
            .map(str::trim)
            .map(str::to_owned);
        if let Some(ws) = &workspace_id
            && !ws.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ConfigError::new(
                "STARK_WORKSPACE_ID",
                format!("invalid value {ws:?}: must be digits"),
            ));
        }
        let max_body_bytes: usize =
            env.parse_or("WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?;
        if max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "WEBHOOK_MAX_BODY_BYTES",
                "must be at least 1024",
            ));
        }
        let publish_timeout: u64 =
            env.parse_or("PUBLISH_TIMEOUT_SECONDS", DEFAULT_PUBLISH_TIMEOUT.as_secs())?;
        if publish_timeout == 0 {
            return Err(ConfigError::new(
                "PUBLISH_TIMEOUT_SECONDS",
                "must be at least 1",
            ));
        }
        Ok(Self {
            listen: all_interfaces(env.port()?),
            workspace_id,
            max_body_bytes,
            publish_timeout: Duration::from_secs(publish_timeout),
        })
    }

    /// Loopback on any free port, accepting only `workspace_id`'s events, with the default
    /// limits: for the local stack and the tests.
    pub fn local(workspace_id: &str) -> Self {
        Self {
            listen: loopback(0),
            workspace_id: Some(workspace_id.to_owned()),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
        }
    }
}

/// What the service talks to.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Stark Bank, with the pipeline's credentials: fetches Stark's public key.
    pub stark: Client,
    /// Where credited invoices go (`paid_invoices`).
    pub publisher: SharedPublisher,
}

#[derive(Debug)]
struct AppState {
    stark: Client,
    publisher: SharedPublisher,
    workspace_id: Option<String>,
    publish_timeout: Duration,
}

/// `POST /webhook`.
pub fn router(config: &Config, deps: Deps) -> Router {
    let stark = deps.stark.clone();
    let state = Arc::new(AppState {
        stark: deps.stark,
        publisher: deps.publisher,
        workspace_id: config.workspace_id.clone(),
        publish_timeout: config.publish_timeout,
    });
    Router::new()
        .route("/webhook", post(handle))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
        .merge(pipeline_service::ready::routes(stark))
}

/// Binds `config.listen` and returns the server, ready to run until a shutdown signal. Warns
/// when no workspace is configured: then a foreign workspace's events are published too (and
/// only money-sender's check against Stark's record keeps them from moving money).
pub async fn build(config: Config, deps: Deps) -> std::io::Result<Server> {
    if config.workspace_id.is_none() {
        tracing::warn!(
            event = "workspace_check_disabled",
            "STARK_WORKSPACE_ID is not set: events of every workspace are accepted; set it to the workspaceId of any of your events"
        );
    }
    Server::bind(config.listen, router(&config, deps)).await
}

/// Why a webhook was not accepted. HTTP bodies stay generic: the caller is the internet.
#[derive(Debug, thiserror::Error)]
enum IngestError {
    #[error("signature rejected: {0}")]
    Signature(VerifyError),
    #[error("Stark's public key is unavailable: {0}")]
    KeyUnavailable(VerifyError),
    #[error("not a valid event: {0}")]
    InvalidEvent(VerifyError),
    #[error("event of workspace {got:?}, expected {expected}")]
    WrongWorkspace {
        got: Option<String>,
        expected: String,
    },
    #[error("publish failed: {0}")]
    Publish(String),
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            IngestError::Signature(_) => (StatusCode::UNAUTHORIZED, "invalid signature"),
            IngestError::KeyUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable")
            }
            IngestError::InvalidEvent(_) => (StatusCode::BAD_REQUEST, "invalid event"),
            IngestError::WrongWorkspace { .. } => (StatusCode::FORBIDDEN, "wrong workspace"),
            IngestError::Publish(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable"),
        };
        match &self {
            IngestError::Signature(_) | IngestError::InvalidEvent(_) => {
                tracing::warn!(event = "webhook_rejected", status = status.as_u16(), reason = %self, "webhook refused");
            }
            _ => {
                tracing::error!(event = "webhook_failed", status = status.as_u16(), reason = %self, "webhook not accepted; Stark will retry")
            }
        }
        (status, body).into_response()
    }
}

#[tracing::instrument(name = "webhook", skip_all, fields(event_id, invoice_id))]
async fn handle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, IngestError> {
    let signature = headers
        .get("digital-signature")
        .and_then(|v| v.to_str().ok());
    let event = state
        .stark
        .verify_webhook(&body, signature)
        .await
        .map_err(|e| match e {
            VerifyError::PublicKeyUnavailable(_) => IngestError::KeyUnavailable(e),
            VerifyError::InvalidEvent(_) => IngestError::InvalidEvent(e),
            VerifyError::MalformedSignature(_) | VerifyError::SignatureMismatch => {
                IngestError::Signature(e)
            }
        })?;
    let span = tracing::Span::current();
    span.record("event_id", event.id.as_str());
    if let Some(expected) = &state.workspace_id
        && event.workspace_id.as_ref() != Some(expected)
    {
        return Err(IngestError::WrongWorkspace {
            got: event.workspace_id.clone(),
            expected: expected.clone(),
        });
    }
    let log = match &event.log {
        EventLog::Invoice(log) if log.log_type == InvoiceLogType::Credited => log,
        EventLog::Invoice(log) => {
            tracing::info!(event = "event_ignored", subscription = %event.subscription, log_type = log.log_type.as_str(), "not a credited invoice; acknowledged");
            return Ok(StatusCode::OK);
        }
        _ => {
            tracing::info!(event = "event_ignored", subscription = %event.subscription, "not an invoice event; acknowledged");
            return Ok(StatusCode::OK);
        }
    };
    span.record("invoice_id", log.invoice.id.as_str());
    let paid = paid_invoice(log, &event.id);
    let publish = state.publisher.publish(PAID_INVOICES, paid.to_message());
    match tokio::time::timeout(state.publish_timeout, publish).await {
        Ok(Ok(message_id)) => {
            tracing::info!(event = "credited_invoice_published", %message_id, amount = paid.amount, fee = paid.fee, "credited invoice queued for payout");
            Ok(StatusCode::OK)
        }
        Ok(Err(err)) => Err(IngestError::Publish(err.to_string())),
        Err(_) => Err(IngestError::Publish(format!(
            "no confirmation within {} s",
            state.publish_timeout.as_secs()
        ))),
    }
}
