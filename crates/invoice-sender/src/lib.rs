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
//! | invalid request (tax id, amount, no request tag) or Stark 400 | 422 (Stark's errors logged) | retry, then dead-letter |
//! | Stark 5xx, 408, 425, 429, 401/403 (`stark_unauthorized`), network error, unknown outcome not found | 503 | retry (the next attempt looks the tag up first) |
//!
//! Stark's lists trail its writes, so a check-then-create is only as good as the list it reads:
//! after a create the invoice is looked for until Stark lists it ([`Config::visibility_wait`])
//! before the delivery is answered, and after an unknown outcome it is looked for once more.
//! With the subscription's ordering key (the request id), the next delivery of a request comes
//! only after that answer.
//!
//! # Layout
//! - [`Config`]: where to listen; [`Deps`]: the Stark client.
//! - [`build`]: binds and returns the server that `main.rs`, the local stack and the tests run;
//!   [`router`]: `POST /push`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pipeline_domain::messages::PendingInvoice;
use pipeline_domain::taxid::TaxId;
use pipeline_domain::vocab::RequestTag;
use pipeline_service::config::{ConfigError, Env};
use pipeline_service::envelope::{NackEvents, PushEnvelope, nack};
use pipeline_service::locks::KeyedLocks;
use pipeline_service::serve::{Server, all_interfaces, loopback};
use stark_client::{Client, InvoiceQuery, NewInvoice};

/// How long a created invoice is looked for in Stark's lists before the delivery is acked, by
/// default. Stark's lists trail its writes (how much is not documented); a redelivery or a
/// second instance that looked before the invoice showed up would create a second one.
pub const DEFAULT_VISIBILITY_WAIT: Duration = Duration::from_secs(10);

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen: `0.0.0.0:$PORT` in production, loopback in local runs and tests.
    pub listen: SocketAddr,
    /// How long to wait for a created invoice to show up in Stark's lists
    /// (`INVOICE_VISIBILITY_WAIT`, e.g. `10s`), so that whatever comes after the ack (a
    /// redelivery, a replay, another instance) finds it by its request tag.
    pub visibility_wait: Duration,
}

impl Config {
    /// Reads every variable once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let visibility_wait = env.push_wait("INVOICE_VISIBILITY_WAIT", DEFAULT_VISIBILITY_WAIT)?;
        Ok(Self {
            listen: all_interfaces(env.port()?),
            visibility_wait,
        })
    }

    /// Loopback on any free port, for the local stack and the tests.
    pub fn local() -> Self {
        Self {
            listen: loopback(0),
            visibility_wait: DEFAULT_VISIBILITY_WAIT,
        }
    }
}

/// What the service talks to: Stark, with the pipeline's credentials.
pub type Deps = pipeline_service::config::StarkDeps;

#[derive(Debug)]
struct AppState {
    stark: Client,
    visibility_wait: Duration,
    locks: KeyedLocks,
}

/// `POST /push`.
pub fn router(config: &Config, deps: Deps) -> Router {
    let stark = deps.stark.clone();
    let state = Arc::new(AppState {
        stark: deps.stark,
        visibility_wait: config.visibility_wait,
        locks: KeyedLocks::default(),
    });
    Router::new()
        .route("/push", post(handle))
        .with_state(state)
        .merge(pipeline_service::ready::routes(stark))
}

/// Binds `config.listen` and returns the server, ready to run until a shutdown signal.
pub async fn build(config: Config, deps: Deps) -> std::io::Result<Server> {
    Server::bind(config.listen, router(&config, deps)).await
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
        if let SendError::Transient(err) = &self
            && err.kind() == stark_client::ErrorKind::Configuration
        {
            tracing::error!(event = "stark_unauthorized", error = %err, "Stark refused our credentials: fix STARK_ACCESS_ID, the key or the project's permissions; deliveries are retried meanwhile");
        }
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
    let tag = request.request_tag().to_string();
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
            if visible(&state, &tag).await?.is_none() {
                tracing::warn!(
                    event = "invoice_not_visible_yet",
                    invoice_id = id,
                    wait = ?state.visibility_wait,
                    "the invoice is not listed yet; a redelivery now could create a second one (the reconciler cancels duplicates)"
                );
            }
            Ok(StatusCode::OK)
        }
        Err(err) if err.kind() == stark_client::ErrorKind::Rejected => Err(SendError::Refused(err)),
        // The create may have been applied: look once more before giving the message back.
        // Not found may still mean "not listed yet"; the redelivery comes after Pub/Sub's
        // backoff (10 s and up), by which time it is, and looks again before creating.
        Err(err) if err.may_have_happened() => match find(&state.stark, &tag).await? {
            Some(existing) => {
                tracing::info!(event = "invoice_found_after_unknown_outcome", invoice_id = %existing, error = %err, "the create was applied although its answer was lost");
                Ok(StatusCode::OK)
            }
            None => Err(SendError::Transient(err)),
        },
        Err(err) => Err(SendError::Transient(err)),
    }
}

/// Looks the invoice carrying `tag` up until Stark lists it or the visibility wait is over.
async fn visible(state: &AppState, tag: &str) -> Result<Option<String>, SendError> {
    let deadline = tokio::time::Instant::now() + state.visibility_wait;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(found) = find(&state.stark, tag).await? {
            return Ok(Some(found));
        }
        if tokio::time::Instant::now() + pause > deadline {
            return Ok(None);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
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
    // The spammer is the one component that puts the request tag on; without it this
    // invoice could not be found again, so a retry would create a second one.
    let tags: Vec<String> = request.tags.iter().map(|t| t.to_lowercase()).collect();
    if RequestTag::find(&tags).as_ref() != Some(&request.request_tag()) {
        return Err(SendError::Invalid(format!(
            "tags {:?} lack the request tag {}",
            request.tags,
            request.request_tag()
        )));
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
    find_issued(stark, tag).await.map_err(SendError::Transient)
}

/// The id of the invoice Stark lists with the request tag `tag`, if any: how this service,
/// and the reconciler before it republishes a request, tell that a request was issued.
pub async fn find_issued(stark: &Client, tag: &str) -> Result<Option<String>, stark_client::Error> {
    let query = InvoiceQuery {
        tags: vec![tag.to_owned()],
        limit: Some(10),
        ..Default::default()
    };
    let found = stark.query_invoices(&query).await?;
    Ok(found
        .into_iter()
        .find(|i| i.tags.iter().any(|t| t == tag))
        .map(|i| i.id))
}

/// Why this service would refuse `request` whatever Stark says (bad tax id, amount, name or
/// tags), or `Ok` when it can be issued: the reconciler leaves such a dead letter in place
/// instead of republishing it.
pub fn check_request(request: &PendingInvoice) -> Result<(), String> {
    to_new_invoice(request)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
