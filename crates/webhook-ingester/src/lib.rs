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
//! - [`Config`]: port, Stark client, workspace, body cap, publish timeout.
//! - [`router`]: `POST /webhook`; [`serve`]: bind and run until shutdown.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pipeline_common::config::{ConfigError, Env};
use pipeline_common::messages::{PAID_INVOICES, PaidInvoice, TopicMessage as _};
use pipeline_common::publisher::SharedPublisher;
use pipeline_common::serve::{Server, all_interfaces};
use stark_client::{Client, EventLog, InvoiceLogType, VerifyError};

/// The service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening port (`PORT`).
    pub port: u16,
    /// Stark client, used to fetch Stark's public key (`STARK_*`).
    pub stark: Client,
    /// When set, events of other workspaces are refused (`STARK_WORKSPACE_ID`).
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
        let max_body_bytes: usize = env.parse_or("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)?;
        if max_body_bytes < 1024 {
            return Err(ConfigError::new(
                "WEBHOOK_MAX_BODY_BYTES",
                "must be at least 1024",
            ));
        }
        let publish_timeout: u64 = env.parse_or("PUBLISH_TIMEOUT_SECONDS", 10)?;
        if publish_timeout == 0 {
            return Err(ConfigError::new(
                "PUBLISH_TIMEOUT_SECONDS",
                "must be at least 1",
            ));
        }
        Ok(Self {
            port: env.port()?,
            stark: pipeline_common::config::stark_client(env)?,
            workspace_id,
            max_body_bytes,
            publish_timeout: Duration::from_secs(publish_timeout),
        })
    }
}

#[derive(Debug)]
struct AppState {
    stark: Client,
    publisher: SharedPublisher,
    workspace_id: Option<String>,
    publish_timeout: Duration,
}

/// `POST /webhook`.
pub fn router(config: &Config, publisher: SharedPublisher) -> Router {
    let state = Arc::new(AppState {
        stark: config.stark.clone(),
        publisher,
        workspace_id: config.workspace_id.clone(),
        publish_timeout: config.publish_timeout,
    });
    Router::new()
        .route("/webhook", post(handle))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state)
}

/// Binds `0.0.0.0:PORT` and serves until `shutdown`.
pub async fn serve(
    config: Config,
    publisher: SharedPublisher,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = Server::bind(all_interfaces(config.port), router(&config, publisher)).await?;
    tracing::info!(
        event = "service_started",
        port = server.port(),
        "webhook-ingester listening"
    );
    server.run_until_stopped(shutdown).await
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
    let paid = PaidInvoice::from_credited_log(log, &event.id);
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
