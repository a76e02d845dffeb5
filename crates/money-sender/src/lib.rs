//! money-sender: pays out each credited invoice exactly once.
//!
//! Pub/Sub pushes one [`PaidInvoice`] per delivery to `POST /push`. The payout is
//! `amount - fee` cents to the receiver from configuration (never the payer). Exactly-once rests
//! on Stark's `externalId` uniqueness: the transfer's `externalId` and a tag are both
//! `payout-{invoiceId}`, derived from the invoice (not the event, so `paid`/`credited` and
//! duplicate events collapse). When Stark refuses a repeated `externalId`, or the outcome of a
//! create is unknown, the transfer is looked up by tag: found means done.
//!
//! | outcome | answer | Pub/Sub does |
//! |---|---|---|
//! | transfer created, or found already made | 200 | ack |
//! | payout ≤ 0 | 200 (warning logged) | ack |
//! | malformed envelope or payload | 400 | retry, then dead-letter |
//! | Stark refused the transfer (400) and none exists; or the existing one failed | 422 | retry, then dead-letter |
//! | Stark 5xx, network error, unknown outcome and not found | 503 | retry |
//!
//! # Layout
//! - [`Config`]: where to listen and the payout account ([`receiver_from_env`]); [`Deps`]: the
//!   Stark client.
//! - [`build`]: binds and returns the server that `main.rs`, the local stack and the tests run;
//!   [`router`]: `POST /push`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pipeline_domain::messages::PaidInvoice;
use pipeline_domain::receiver::Receiver;
use pipeline_domain::taxid::TaxId;
use pipeline_domain::vocab::{InvoiceTag, PayoutKey};
use pipeline_service::config::{ConfigError, Env};
use pipeline_service::envelope::{NackEvents, PushEnvelope, nack};
use pipeline_service::locks::KeyedLocks;
use pipeline_service::records::transfer_record;
use pipeline_service::serve::{Server, all_interfaces, loopback};
use stark_client::{Client, NewTransfer, Transfer, TransferQuery, TransferStatus};

/// Reads the payout account from `PAYOUT_*`, each variable defaulting to the project's fixed
/// account ([`Receiver::default`]).
pub fn receiver_from_env(env: &Env) -> Result<Receiver, ConfigError> {
    let default = Receiver::default();
    let text = |name: &str, default: &str| env.optional(name).unwrap_or(default).trim().to_owned();
    let tax_id = match env.optional("PAYOUT_TAX_ID") {
        Some(raw) => TaxId::parse(raw.trim())
            .map_err(|e| ConfigError::new("PAYOUT_TAX_ID", e.to_string()))?,
        None => default.tax_id.clone(),
    };
    let receiver = Receiver {
        bank_code: text("PAYOUT_BANK_CODE", &default.bank_code),
        branch_code: text("PAYOUT_BRANCH_CODE", &default.branch_code),
        account_number: text("PAYOUT_ACCOUNT_NUMBER", &default.account_number),
        name: text("PAYOUT_NAME", &default.name),
        tax_id,
        account_type: text("PAYOUT_ACCOUNT_TYPE", &default.account_type),
    };
    receiver.validate().map_err(|e| {
        let variable = match e.field {
            "bank_code" => "PAYOUT_BANK_CODE",
            "branch_code" => "PAYOUT_BRANCH_CODE",
            "account_number" => "PAYOUT_ACCOUNT_NUMBER",
            _ => "PAYOUT_ACCOUNT_TYPE",
        };
        ConfigError::new(variable, e.reason)
    })?;
    Ok(receiver)
}

/// The transfer that pays `amount` to `receiver` under `key`.
fn payout_transfer(receiver: &Receiver, amount: i64, key: &PayoutKey) -> NewTransfer {
    NewTransfer {
        amount,
        name: receiver.name.clone(),
        tax_id: receiver.tax_id.to_string(),
        bank_code: receiver.bank_code.clone(),
        branch_code: receiver.branch_code.clone(),
        account_number: receiver.account_number.clone(),
        account_type: Some(receiver.account_type.clone()),
        external_id: Some(key.to_string()),
        tags: vec![
            key.to_string(),
            InvoiceTag::for_invoice(key.invoice_id()).to_string(),
        ],
        ..Default::default()
    }
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen: `0.0.0.0:$PORT` in production, loopback in local runs and tests.
    pub listen: SocketAddr,
    /// Payout account (`PAYOUT_*`).
    pub receiver: Receiver,
}

impl Config {
    /// Reads every variable once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            listen: all_interfaces(env.port()?),
            receiver: receiver_from_env(env)?,
        })
    }

    /// Loopback on any free port and the default receiver, for the local stack and the tests.
    pub fn local() -> Self {
        Self {
            listen: loopback(0),
            receiver: Receiver::default(),
        }
    }
}

/// What the service talks to.
#[derive(Debug, Clone)]
pub struct Deps {
    /// Stark Bank, with the pipeline's credentials.
    pub stark: Client,
}

impl Deps {
    /// The Stark client from `STARK_*`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            stark: pipeline_service::config::stark_client(env)?,
        })
    }
}

#[derive(Debug)]
struct AppState {
    stark: Client,
    receiver: Receiver,
    locks: KeyedLocks,
}

/// `POST /push`.
pub fn router(config: &Config, deps: Deps) -> Router {
    let state = Arc::new(AppState {
        stark: deps.stark,
        receiver: config.receiver.clone(),
        locks: KeyedLocks::default(),
    });
    Router::new().route("/push", post(handle)).with_state(state)
}

/// Binds `config.listen` and returns the server, ready to run until a shutdown signal.
pub async fn build(config: Config, deps: Deps) -> std::io::Result<Server> {
    Server::bind(config.listen, router(&config, deps)).await
}

/// Why a delivery was not acked.
#[derive(Debug, thiserror::Error)]
enum PayoutError {
    #[error("{0}")]
    Malformed(String),
    #[error("Stark refused the transfer: {0}")]
    Refused(stark_client::Error),
    #[error("transfer {id} for this invoice exists but is {status}; an operator must resolve it")]
    FailedAtStark { id: String, status: &'static str },
    #[error(
        "transfer {id} for this invoice has another receiver or amount; an operator must resolve it"
    )]
    Mismatch { id: String },
    #[error("Stark is unavailable or the outcome is unknown: {0}")]
    Transient(stark_client::Error),
    #[error("the transfer may have been created but is not visible yet")]
    NotVisibleYet,
}

impl IntoResponse for PayoutError {
    fn into_response(self) -> Response {
        let status = match &self {
            PayoutError::Malformed(_) => StatusCode::BAD_REQUEST,
            PayoutError::Refused(_)
            | PayoutError::FailedAtStark { .. }
            | PayoutError::Mismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PayoutError::Transient(_) | PayoutError::NotVisibleYet => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let stark = match &self {
            PayoutError::Refused(e) => Some(e),
            _ => None,
        };
        let events = NackEvents {
            retry: "payout_retry",
            rejected: "payout_rejected",
        };
        nack(events, status, self.to_string(), stark)
    }
}

#[tracing::instrument(name = "payout", skip_all, fields(delivery_attempt = envelope.delivery_attempt, invoice_id))]
async fn handle(
    State(state): State<Arc<AppState>>,
    envelope: PushEnvelope,
) -> Result<StatusCode, PayoutError> {
    let paid: PaidInvoice = envelope
        .payload()
        .map_err(|e| PayoutError::Malformed(e.0))?;
    tracing::Span::current().record("invoice_id", paid.invoice_id.as_str());
    if paid.invoice_id.is_empty() || !paid.invoice_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayoutError::Malformed(format!(
            "invalid invoice id {:?}",
            paid.invoice_id
        )));
    }
    let amount = paid.claimed_payout();
    if amount <= 0 {
        tracing::warn!(
            event = "payout_skipped_nonpositive",
            amount = paid.amount,
            fee = paid.fee,
            "amount minus fee is not positive; nothing to transfer"
        );
        return Ok(StatusCode::OK);
    }
    let key = paid.payout_key();
    let _guard = state.locks.lock(&key.to_string()).await;
    let transfer = payout_transfer(&state.receiver, amount, &key);
    match state
        .stark
        .create_transfers(std::slice::from_ref(&transfer))
        .await
    {
        Ok(created) => {
            let id = created.first().map(|t| t.id.as_str()).unwrap_or("?");
            tracing::info!(
                event = "transfer_created",
                transfer_id = id,
                amount,
                fee = paid.fee,
                "payout transfer created"
            );
            Ok(StatusCode::OK)
        }
        Err(err) if err.kind() == stark_client::ErrorKind::Rejected => {
            match find(&state, &key, amount).await? {
                Some(existing) => {
                    tracing::info!(event = "transfer_already_exists", transfer_id = %existing.id, "payout was already made; acking");
                    Ok(StatusCode::OK)
                }
                None => Err(PayoutError::Refused(err)),
            }
        }
        Err(err) if err.may_have_happened() => match find(&state, &key, amount).await? {
            Some(existing) => {
                tracing::info!(event = "transfer_found_after_unknown_outcome", transfer_id = %existing.id, error = %err, "the create was applied although its answer was lost");
                Ok(StatusCode::OK)
            }
            None => {
                tracing::warn!(event = "transfer_not_found_after_unknown_outcome", error = %err, "no transfer after an unknown outcome; retrying");
                Err(PayoutError::NotVisibleYet)
            }
        },
        Err(err) => Err(PayoutError::Transient(err)),
    }
}

/// Looks the payout up by its tag. A found transfer counts as done only if it is ours (same
/// receiver and amount) and not failed or canceled; anything else needs an operator.
async fn find(
    state: &AppState,
    key: &PayoutKey,
    amount: i64,
) -> Result<Option<Transfer>, PayoutError> {
    let key = key.to_string();
    let query = TransferQuery {
        tags: vec![key.clone()],
        ..Default::default()
    };
    let found = state
        .stark
        .query_transfers(&query)
        .await
        .map_err(PayoutError::Transient)?;
    let Some(transfer) = found
        .iter()
        .find(|t| t.external_id.as_deref() == Some(&key) || t.tags.contains(&key))
        .cloned()
    else {
        return Ok(None);
    };
    let record = transfer_record(&transfer);
    if !state.receiver.matches(&record.account) || transfer.amount != amount {
        return Err(PayoutError::Mismatch { id: transfer.id });
    }
    match transfer.status {
        TransferStatus::Failed | TransferStatus::Canceled => Err(PayoutError::FailedAtStark {
            id: transfer.id,
            status: transfer.status.as_str(),
        }),
        _ => Ok(Some(transfer)),
    }
}
