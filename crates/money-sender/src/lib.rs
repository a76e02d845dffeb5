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
//! - [`Receiver`] and [`Config`]: the fixed payout account, from the environment.
//! - [`router`]: the axum router; [`serve`]: binds and runs it until the shutdown signal.
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
use pipeline_common::messages::PaidInvoice;
use pipeline_common::serve::{Server, all_interfaces};
use pipeline_common::taxid::TaxId;
use stark_client::{Client, NewTransfer, Transfer, TransferQuery, TransferStatus};

/// The account every payout goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// Bank ISPB (Pix) or code.
    pub bank_code: String,
    /// Branch.
    pub branch_code: String,
    /// Account number.
    pub account_number: String,
    /// Holder name.
    pub name: String,
    /// Holder CPF/CNPJ, validated.
    pub tax_id: TaxId,
    /// `checking`, `savings`, `salary` or `payment`.
    pub account_type: String,
}

impl Default for Receiver {
    /// The account named in ARCHITECTURE.md: Stark Bank S.A.'s own payment account.
    fn default() -> Self {
        Self {
            bank_code: "20018183".into(),
            branch_code: "0001".into(),
            account_number: "6341320293482496".into(),
            name: "Stark Bank S.A.".into(),
            tax_id: TaxId::parse("20.018.183/0001-80")
                .expect("the default receiver's CNPJ is valid"),
            account_type: "payment".into(),
        }
    }
}

impl Receiver {
    /// Reads `PAYOUT_*` variables, each defaulting to the ARCHITECTURE.md account.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = Receiver::default();
        let text =
            |name: &str, default: &str| env.optional(name).unwrap_or(default).trim().to_owned();
        let tax_id = match env.optional("PAYOUT_TAX_ID") {
            Some(raw) => {
                TaxId::parse(raw).map_err(|e| ConfigError::new("PAYOUT_TAX_ID", e.to_string()))?
            }
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
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '-');
        if !digits(&receiver.bank_code) {
            return Err(ConfigError::new("PAYOUT_BANK_CODE", "must be digits"));
        }
        if !digits(&receiver.branch_code) {
            return Err(ConfigError::new(
                "PAYOUT_BRANCH_CODE",
                "must be digits, optionally with a -check digit",
            ));
        }
        if !digits(&receiver.account_number) {
            return Err(ConfigError::new(
                "PAYOUT_ACCOUNT_NUMBER",
                "must be digits, optionally with a -check digit",
            ));
        }
        if !["checking", "savings", "salary", "payment"].contains(&receiver.account_type.as_str()) {
            return Err(ConfigError::new(
                "PAYOUT_ACCOUNT_TYPE",
                "must be checking, savings, salary or payment",
            ));
        }
        Ok(receiver)
    }

    fn transfer(&self, amount: i64, key: &str, invoice_id: &str) -> NewTransfer {
        NewTransfer {
            amount,
            name: self.name.clone(),
            tax_id: self.tax_id.to_string(),
            bank_code: self.bank_code.clone(),
            branch_code: self.branch_code.clone(),
            account_number: self.account_number.clone(),
            account_type: Some(self.account_type.clone()),
            external_id: Some(key.to_owned()),
            tags: vec![key.to_owned(), format!("invoice:{invoice_id}")],
            ..Default::default()
        }
    }

    /// Whether `transfer` goes to this account (tax ids compared as ids, not as text).
    pub fn matches(&self, transfer: &Transfer) -> bool {
        transfer.bank_code == self.bank_code
            && transfer.branch_code == self.branch_code
            && transfer.account_number == self.account_number
            && TaxId::parse(&transfer.tax_id).is_ok_and(|t| t == self.tax_id)
    }
}

/// The service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening port (`PORT`).
    pub port: u16,
    /// Stark Bank client (`STARK_*`).
    pub stark: Client,
    /// Payout account (`PAYOUT_*`).
    pub receiver: Receiver,
}

impl Config {
    /// Reads every variable once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            port: env.port()?,
            stark: pipeline_common::config::stark_client(env)?,
            receiver: Receiver::from_env(env)?,
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
pub fn router(stark: Client, receiver: Receiver) -> Router {
    let state = Arc::new(AppState {
        stark,
        receiver,
        locks: KeyedLocks::default(),
    });
    Router::new().route("/push", post(handle)).with_state(state)
}

/// Binds `0.0.0.0:PORT` (or the given address in tests) and serves until `shutdown`.
pub async fn serve(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let server = Server::bind(
        all_interfaces(config.port),
        router(config.stark, config.receiver),
    )
    .await?;
    tracing::info!(
        event = "service_started",
        port = server.port(),
        "money-sender listening"
    );
    server.run_until_stopped(shutdown).await
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
    let amount = paid.payout();
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
    let _guard = state.locks.lock(&key).await;
    let transfer = state.receiver.transfer(amount, &key, &paid.invoice_id);
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
async fn find(state: &AppState, key: &str, amount: i64) -> Result<Option<Transfer>, PayoutError> {
    let query = TransferQuery {
        tags: vec![key.to_owned()],
        ..Default::default()
    };
    let found = state
        .stark
        .query_transfers(&query)
        .await
        .map_err(PayoutError::Transient)?;
    let Some(transfer) = found
        .iter()
        .find(|t| t.external_id.as_deref() == Some(key) || t.tags.iter().any(|tag| tag == key))
        .cloned()
    else {
        return Ok(None);
    };
    if !state.receiver.matches(&transfer) || transfer.amount != amount {
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
