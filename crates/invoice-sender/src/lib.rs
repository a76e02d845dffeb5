//! invoice-sender: creates each requested invoice exactly once.
//!
//! Pub/Sub pushes one [`PendingInvoice`] per delivery to `POST /push`. Stark invoices have no
//! `externalId`, so idempotency rests on a tag derived from the request id: look the tag up
//! first, create only when absent. A redelivery, a replay, or a retry after an unknown outcome
//! therefore finds the invoice and acks. Concurrent duplicate deliveries to one instance are
//! serialized per request id.
//!
//! | outcome | answer | Pub/Sub does |
//! |---|---|---|
//! | created, or already exists | 200 | ack |
//! | malformed envelope or payload | 400 | retry, then dead-letter |
//! | invalid request (tax id, amount) or Stark 400 | 422 (Stark's errors logged) | retry, then dead-letter |
//! | Stark 5xx, network error, unknown outcome | 503 | retry (the next attempt looks the tag up first) |
//!
//! # Layout
//! - [`Config`]: port and Stark client; [`router`]: `POST /push`; [`serve`]: run until shutdown.
#![forbid(unsafe_code)]

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pipeline_common::config::{ConfigError, Env};
use pipeline_common::envelope::{NackEvents, PushEnvelope, nack};
use pipeline_common::locks::KeyedLocks;
use pipeline_common::messages::PendingInvoice;
use pipeline_common::serve::{Server, all_interfaces};
use pipeline_common::taxid::TaxId;
use stark_client::{Client, InvoiceQuery, NewInvoice};

/// The service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening port (`PORT`).
    pub port: u16,
    /// Stark client (`STARK_*`).
    pub stark: Client,
}

impl Config {
    /// Reads every variable once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            port: env.port()?,
            stark: pipeline_common::config::stark_client(env)?,
        })
    }
}

#[derive(Debug)]
struct AppState {
    stark: Client,
    locks: KeyedLocks,
}

/// `POST /push`.
pub fn router(stark: Client) -> Router {
    let state = Arc::new(AppState {
        stark,
        locks: KeyedLocks::default(),
    });
    Router::new().route("/push", post(handle)).with_state(state)
}

/// Binds `0.0.0.0:PORT` and serves until `shutdown`.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = Server::bind(all_interfaces(config.port), router(config.stark)).await?;
    tracing::info!(
        event = "service_started",
        port = server.port(),
        "invoice-sender listening"
    );
    server.run_until_stopped(shutdown).await
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Malformed(String),
    #[error("invalid invoice request: {0}")]
    Invalid(String),
    #[error("Stark refused the invoice: {0}")]
    Refused(stark_client::Error),
    #[error("Stark is unavailable or the outcome is unknown: {0}")]
    Transient(stark_client::Error),
}

impl IntoResponse for SendError {
    fn into_response(self) -> Response {
        let status = match &self {
            SendError::Malformed(_) => StatusCode::BAD_REQUEST,
            SendError::Invalid(_) | SendError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SendError::Transient(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let stark = match &self {
            SendError::Refused(e) => Some(e),
            _ => None,
        };
        let events = NackEvents {
            retry: "invoice_retry",
            rejected: "invoice_rejected",
        };
        nack(events, status, self.to_string(), stark)
    }
}

#[tracing::instrument(name = "invoice", skip_all, fields(delivery_attempt = envelope.delivery_attempt, request_id))]
async fn handle(
    State(state): State<Arc<AppState>>,
    envelope: PushEnvelope,
) -> Result<StatusCode, SendError> {
    let request: PendingInvoice = envelope.payload().map_err(|e| SendError::Malformed(e.0))?;
    tracing::Span::current().record("request_id", request.request_id.as_str());
    let invoice = to_new_invoice(&request)?;
    let tag = request.request_tag();
    let _guard = state.locks.lock(&tag).await;
    if let Some(existing) = find(&state.stark, &tag).await? {
        tracing::info!(event = "invoice_already_exists", invoice_id = %existing, "invoice was already created; acking");
        return Ok(StatusCode::OK);
    }
    match state
        .stark
        .create_invoices(std::slice::from_ref(&invoice))
        .await
    {
        Ok(created) => {
            let id = created.first().map(|i| i.id.as_str()).unwrap_or("?");
            tracing::info!(
                event = "invoice_created",
                invoice_id = id,
                amount = invoice.amount,
                "invoice created"
            );
            Ok(StatusCode::OK)
        }
        Err(err) if err.kind() == stark_client::ErrorKind::Rejected => Err(SendError::Refused(err)),
        Err(err) => Err(SendError::Transient(err)),
    }
}

/// Validates the request and builds Stark's payload. A bad request can never succeed, so it is
/// refused before calling Stark.
fn to_new_invoice(request: &PendingInvoice) -> Result<NewInvoice, SendError> {
    let tax_id = TaxId::parse(&request.tax_id).map_err(|e| SendError::Invalid(e.to_string()))?;
    if request.amount <= 0 {
        return Err(SendError::Invalid(format!(
            "amount must be positive cents, got {}",
            request.amount
        )));
    }
    if request.name.trim().is_empty() {
        return Err(SendError::Invalid("payer name is empty".into()));
    }
    let tag = request.request_tag();
    let mut tags: Vec<String> = request.tags.iter().map(|t| t.to_lowercase()).collect();
    if !tags.contains(&tag) {
        tags.push(tag);
    }
    Ok(NewInvoice {
        amount: request.amount,
        tax_id: tax_id.to_string(),
        name: request.name.clone(),
        due: request.due.clone(),
        expiration: request.expiration,
        tags,
        ..Default::default()
    })
}

/// The id of the invoice carrying `tag`, if any.
async fn find(stark: &Client, tag: &str) -> Result<Option<String>, SendError> {
    let query = InvoiceQuery {
        tags: vec![tag.to_owned()],
        limit: Some(10),
        ..Default::default()
    };
    let found = stark
        .query_invoices(&query)
        .await
        .map_err(SendError::Transient)?;
    Ok(found
        .into_iter()
        .find(|i| i.tags.iter().any(|t| t == tag))
        .map(|i| i.id))
}
