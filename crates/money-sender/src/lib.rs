//! money-sender: pays out each credited invoice exactly once, and only what Stark credited.
//!
//! Pub/Sub pushes one [`PaidInvoice`] per delivery to `POST /push`. The message is a hint: the
//! invoice is read back from Stark with our credentials first (module `verify`), and only an
//! invoice of ours that Stark shows credited is paid, for Stark's `amount − fee` at that moment
//! less the transfer's own fee ([`payout_due`](pipeline_domain::receiver::payout_due); never
//! the message's numbers), to the receiver from configuration (never the payer).
//!
//! Exactly-once rests on Stark's `externalId` uniqueness: the transfer's `externalId` and a tag
//! are the payout key `payout-<invoice id>`, derived from the invoice (not the event, so
//! `paid`/`credited` and duplicate events collapse). When Stark refuses a repeated `externalId`,
//! or the outcome of a create is unknown, the transfer is looked up: found means done. A payout
//! whose transfers all failed terminally (insufficient balance, the receiver's bank) is made
//! again under the next generation of the key (`payout-<invoice id>-2`, at most
//! [`MAX_PAYOUT_GENERATIONS`](pipeline_domain::vocab::MAX_PAYOUT_GENERATIONS)), never while an
//! earlier one is live; and no transfer is made while the balance (`GET /v2/balance`), less
//! what this instance has committed to transfers Stark has not debited yet (module
//! `commitments`), does not cover the amount plus the transfer fee.
//!
//! A payout is acked only once Stark shows its transfer `success`. Stark usually completes a
//! transfer within moments, so the delivery that made it (or found it `created`/`processing`)
//! looks the transfer up by id for a short while (`PAYOUT_SETTLE_WAIT`, default 2 s) before
//! answering 503: each redelivery would read the invoice, its logs and the transfers again, and
//! Pub/Sub lowers a push subscription's rate while its endpoint answers failures.
//! The wait only reads; what it may conclude (ack on `success`) is what the redelivery would.
//!
//! | outcome | answer | Pub/Sub does |
//! |---|---|---|
//! | the payout transfer reached `success` | 200 | ack |
//! | the payout transfer was created, or is `created`/`processing`, and did not succeed within `PAYOUT_SETTLE_WAIT` | 503 | retry: acked once it succeeds, re-made under the next key generation if it fails |
//! | nothing due (fee ≥ amount, fully reversed) | 200 (warning logged) | ack |
//! | malformed envelope or payload | 400 | retry, then dead-letter |
//! | not ours, or never credited, per Stark (`payout_refused_not_ours`) | 422 | retry, then dead-letter; never pays |
//! | Stark refused the transfer (400); every generation failed; a transfer of another receiver or amount exists | 422 | retry, then dead-letter |
//! | Stark 5xx, 408, 425, 429, network error, unknown outcome and not found, credit not visible yet, balance too low | 503 | retry |
//! | Stark refused our credentials (401, 403: `stark_unauthorized`) | 503 | retry until fixed |
//!
//! # Layout
//! - [`Config`]: where to listen and the payout account ([`receiver_from_env`]); [`Deps`]: the
//!   Stark client.
//! - [`build`]: binds and returns the server that `main.rs`, the local stack and the tests run;
//!   [`router`]: `POST /push`.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pipeline_domain::audit::{TransferRecord, TransferState};
use pipeline_domain::messages::PaidInvoice;
use pipeline_domain::receiver::Receiver;
use pipeline_domain::taxid::TaxId;
use pipeline_domain::vocab::{InvoiceTag, PayoutKey};
use pipeline_service::config::{ConfigError, Env};
use pipeline_service::envelope::{NackEvents, PushEnvelope, nack};
use pipeline_service::locks::KeyedLocks;
use pipeline_service::records::transfer_record;
use pipeline_service::serve::{Server, all_interfaces, loopback};
use stark_client::{Client, NewTransfer, TransferQuery};

mod commitments;
mod verify;
use commitments::Commitments;
use verify::{NotOwed, Owed};

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

/// `PAYOUT_TRANSFER_FEE_CENTS`: not negative, default 0.
pub fn transfer_fee_from_env(env: &Env) -> Result<i64, ConfigError> {
    let fee: i64 = env.parse_or("PAYOUT_TRANSFER_FEE_CENTS", 0)?;
    if fee < 0 {
        return Err(ConfigError::new(
            "PAYOUT_TRANSFER_FEE_CENTS",
            "must not be negative",
        ));
    }
    Ok(fee)
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
    /// What Stark charges per transfer, cents (`PAYOUT_TRANSFER_FEE_CENTS`, default 0): a payout
    /// waits until the balance covers its amount plus this, instead of making a transfer that
    /// fails for insufficient balance.
    pub transfer_fee: i64,
    /// How long a delivery waits for its payout transfer to succeed before answering 503
    /// (`PAYOUT_SETTLE_WAIT`, default [`DEFAULT_SETTLE_WAIT`], `0s` to answer at once).
    pub settle_wait: Duration,
}

/// How long a delivery looks its payout transfer up before leaving it to a redelivery, by
/// default: about the time Stark takes to complete a transfer, short against the ack deadline.
pub const DEFAULT_SETTLE_WAIT: Duration = Duration::from_secs(2);

/// The first pause of that wait; each next pause doubles, up to [`LONGEST_SETTLE_POLL`].
const FIRST_SETTLE_POLL: Duration = Duration::from_millis(50);
/// The longest pause between two looks.
const LONGEST_SETTLE_POLL: Duration = Duration::from_secs(1);

impl Config {
    /// Reads every variable once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            listen: all_interfaces(env.port()?),
            receiver: receiver_from_env(env)?,
            transfer_fee: transfer_fee_from_env(env)?,
            settle_wait: env.push_wait("PAYOUT_SETTLE_WAIT", DEFAULT_SETTLE_WAIT)?,
        })
    }

    /// Loopback on any free port and the default receiver, for the local stack and the tests;
    /// no settle wait, so that a test sees each delivery's answer as the sandbox's clock has it.
    pub fn local() -> Self {
        Self {
            listen: loopback(0),
            receiver: Receiver::default(),
            transfer_fee: 0,
            settle_wait: Duration::ZERO,
        }
    }
}

/// What the service talks to: Stark, with the pipeline's credentials.
pub type Deps = pipeline_service::config::StarkDeps;

#[derive(Debug)]
struct AppState {
    stark: Client,
    receiver: Receiver,
    transfer_fee: i64,
    settle_wait: Duration,
    locks: KeyedLocks,
    commitments: Commitments,
    /// When the last recheck of the commitments finished.
    last_recheck: tokio::sync::Mutex<Option<Instant>>,
}

/// `POST /push`.
pub fn router(config: &Config, deps: Deps) -> Router {
    let stark = deps.stark.clone();
    let state = Arc::new(AppState {
        stark: deps.stark,
        receiver: config.receiver.clone(),
        transfer_fee: config.transfer_fee,
        settle_wait: config.settle_wait,
        locks: KeyedLocks::default(),
        commitments: Commitments::default(),
        last_recheck: tokio::sync::Mutex::new(None),
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

/// Why a delivery was not acked.
#[derive(Debug, thiserror::Error)]
enum PayoutError {
    #[error("{0}")]
    Malformed(String),
    #[error("refused, nothing will ever be paid for it: {0}")]
    NotOurs(verify::Refusal),
    #[error("Stark refused the transfer: {0}")]
    Refused(stark_client::Error),
    #[error("Stark refused our credentials or permissions: {0}")]
    Unauthorized(stark_client::Error),
    #[error(
        "every payout generation of invoice {invoice} failed ({transfers}); an operator must resolve it"
    )]
    GenerationsExhausted { invoice: String, transfers: String },
    #[error(
        "transfer {id} for this invoice has another receiver or amount; an operator must resolve it"
    )]
    Mismatch { id: String },
    #[error("not known yet: {0}")]
    Unsure(verify::Unsure),
    #[error("Stark is unavailable or the outcome is unknown: {0}")]
    Transient(stark_client::Error),
    #[error("the transfer may have been created but is not visible yet")]
    NotVisibleYet,
    #[error("payout transfer {id} is {status}; waiting for Stark to complete it")]
    InFlight { id: String, status: &'static str },
    #[error("payout transfer {id} failed; the next delivery makes it again under the next key")]
    FailedWhileWaiting { id: String },
    #[error(
        "the balance ({balance} cents, {committed} of them committed to payouts Stark has not debited yet) does not cover {needed} cents yet"
    )]
    WaitingForBalance {
        balance: i64,
        committed: i64,
        needed: i64,
    },
}

impl From<stark_client::Error> for PayoutError {
    /// A failed Stark call: configuration errors apart, everything is retried.
    fn from(err: stark_client::Error) -> Self {
        if err.kind() == stark_client::ErrorKind::Configuration {
            PayoutError::Unauthorized(err)
        } else {
            PayoutError::Transient(err)
        }
    }
}

impl IntoResponse for PayoutError {
    fn into_response(self) -> Response {
        if let PayoutError::InFlight { id, status } = &self {
            // The normal path of every payout, not a failure: logged at info, so that warnings
            // stay for what needs a look.
            tracing::info!(event = "payout_in_flight", transfer_id = %id, status, "waiting for Stark to complete the payout; the delivery comes back");
            return (StatusCode::SERVICE_UNAVAILABLE, self.to_string()).into_response();
        }
        let status = match &self {
            PayoutError::Malformed(_) => StatusCode::BAD_REQUEST,
            PayoutError::NotOurs(_)
            | PayoutError::Refused(_)
            | PayoutError::GenerationsExhausted { .. }
            | PayoutError::Mismatch { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PayoutError::Unauthorized(_)
            | PayoutError::Unsure(_)
            | PayoutError::Transient(_)
            | PayoutError::NotVisibleYet
            | PayoutError::InFlight { .. }
            | PayoutError::FailedWhileWaiting { .. }
            | PayoutError::WaitingForBalance { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        match &self {
            PayoutError::NotOurs(refusal) => tracing::error!(
                event = "payout_refused_not_ours",
                reason = %refusal,
                "refused to pay: Stark's own record does not show a credited invoice of ours"
            ),
            PayoutError::Unauthorized(err) => tracing::error!(
                event = "stark_unauthorized",
                error = %err,
                "Stark refused our credentials: fix STARK_ACCESS_ID, the key or the project's permissions; deliveries are retried meanwhile"
            ),
            _ => {}
        }
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
    let message: PaidInvoice = envelope
        .payload()
        .map_err(|e| PayoutError::Malformed(e.0))?;
    tracing::Span::current().record("invoice_id", message.invoice_id.as_str());
    if message.invoice_id.is_empty() || !message.invoice_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayoutError::Malformed(format!(
            "invalid invoice id {:?}",
            message.invoice_id
        )));
    }
    // One payout decision per invoice at a time in this process; across instances the
    // subscription's ordering key (the invoice id) does the same.
    let _guard = state.locks.lock(&message.invoice_id).await;
    let (due, invoice) = match verify::owed(&state.stark, &message, state.transfer_fee).await {
        Ok(Owed::Pay { due, invoice }) => (due, invoice),
        Ok(Owed::Reversed { credited }) => {
            tracing::warn!(
                event = "payout_skipped_reversed",
                credited,
                "the invoice was reversed after its credit; nothing left to pay"
            );
            return Ok(StatusCode::OK);
        }
        Ok(Owed::NothingDue { amount, fee }) => {
            tracing::warn!(
                event = "payout_skipped_nonpositive",
                amount,
                fee,
                "amount minus fee is not positive; nothing to transfer"
            );
            return Ok(StatusCode::OK);
        }
        Err(NotOwed::Refused(refusal)) => return Err(PayoutError::NotOurs(refusal)),
        Err(NotOwed::Unsure(verify::Unsure::Stark(err))) => return Err(err.into()),
        Err(NotOwed::Unsure(unsure)) => return Err(PayoutError::Unsure(unsure)),
    };
    if message.amount != invoice.amount || message.fee != invoice.fee {
        tracing::warn!(
            event = "payout_message_stale",
            message_amount = message.amount,
            message_fee = message.fee,
            stark_amount = invoice.amount,
            stark_fee = invoice.fee,
            "the message's numbers differ from Stark's record; paying Stark's"
        );
    }
    pay(&state, &message.invoice_id, due).await
}

/// Pays `due` for `invoice_id` unless a live payout exists: under the first payout key whose
/// predecessors all failed terminally, once the balance covers it.
async fn pay(state: &AppState, invoice_id: &str, due: i64) -> Result<StatusCode, PayoutError> {
    let existing = payouts_of(state, invoice_id).await?;
    if let Some(live) = existing.iter().find(|t| t.state.is_live()) {
        return settled(live, state, due).await;
    }
    let key = match existing.iter().filter_map(|t| t.key.as_ref()).max() {
        None => PayoutKey::for_invoice(invoice_id),
        Some(last) => last
            .next()
            .ok_or_else(|| PayoutError::GenerationsExhausted {
                invoice: invoice_id.to_owned(),
                transfers: existing
                    .iter()
                    .map(|t| format!("{} {}", t.id, t.state.as_str()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?,
    };
    // What Stark will debit: the payout and the transfer's own fee.
    let needed = due.saturating_add(state.transfer_fee);
    let mut read = Instant::now();
    let mut balance = state.stark.get_balance().await?.amount;
    let mut commit = state.commitments.try_commit(&key, needed, balance, read);
    if commit.is_err() && balance >= needed {
        // Only commitments stand in the way, and some may be stale: Stark may have debited
        // their transfers, or failed them, with nobody here looking since. What the look
        // releases counts only against a balance read after it.
        recheck_commitments(state, read).await?;
        read = Instant::now();
        balance = state.stark.get_balance().await?.amount;
        commit = state.commitments.try_commit(&key, needed, balance, read);
    }
    if let Err(committed) = commit {
        tracing::info!(
            event = "payout_waiting_for_balance",
            balance,
            committed,
            needed,
            "the balance, less what other payouts will take, does not cover the payout and its fee yet; waiting"
        );
        return Err(PayoutError::WaitingForBalance {
            balance,
            committed,
            needed,
        });
    }
    let transfer = payout_transfer(&state.receiver, due, &key);
    match state
        .stark
        .create_transfers(std::slice::from_ref(&transfer))
        .await
    {
        Ok(created) => {
            let Some(made) = created.first().map(transfer_record) else {
                // Stark answered a create without the transfer: look it up next time (it stays
                // committed meanwhile).
                return Err(PayoutError::NotVisibleYet);
            };
            state.commitments.observe(&made, state.transfer_fee);
            tracing::info!(
                event = "transfer_created",
                transfer_id = %made.id,
                amount = due,
                payout_key = %key,
                generation = key.generation(),
                "payout transfer created"
            );
            // Acked once Stark completes it.
            settled(&made, state, due).await
        }
        // A refusal or an unknown outcome: if the key was used (Stark refuses a repeated
        // `externalId`; the answer of an applied create may be lost), the transfer exists.
        Err(err) if err.kind() == stark_client::ErrorKind::Rejected || err.may_have_happened() => {
            match find(state, &key).await? {
                Some(found) if found.state.is_live() => {
                    tracing::info!(event = "transfer_already_exists", transfer_id = %found.id, error = %err, "the payout was already made; acking");
                    settled(&found, state, due).await
                }
                // Made and already failed: the next attempt moves to the next generation.
                Some(_) => Err(PayoutError::NotVisibleYet),
                None if err.kind() == stark_client::ErrorKind::Rejected
                    && !err.has_code(DUPLICATE_EXTERNAL_ID) =>
                {
                    state.commitments.release(&key);
                    Err(PayoutError::Refused(err))
                }
                None => {
                    tracing::warn!(event = "transfer_not_found_after_unknown_outcome", error = %err, "no transfer visible under the key; retrying");
                    Err(PayoutError::NotVisibleYet)
                }
            }
        }
        // Certainly not applied: nothing will take the money.
        Err(err) => {
            state.commitments.release(&key);
            Err(err.into())
        }
    }
}

/// The code Stark answers a repeated `externalId` with, as far as it is known (Stark documents
/// the refusal, not the code; see docs/stark-api.md, "Transfers"): then the transfer exists even
/// when Stark's lists do not show it yet.
const DUPLICATE_EXTERNAL_ID: &str = "invalidExternalId";

/// A live payout of ours (the configured receiver, and the amount due or, reversed since, at
/// most what was due when it was made) is done once Stark says `success`, which the delivery
/// waits for a while ([`await_completion`]); until then it is answered 503, so that Pub/Sub
/// brings it back: a transfer Stark fails after accepting it (insufficient balance, the
/// receiver's bank) is then made again under the next generation of the key instead of being
/// left behind with its message acked.
async fn settled(
    live: &TransferRecord,
    state: &AppState,
    due: i64,
) -> Result<StatusCode, PayoutError> {
    let mismatch = |transfer: &TransferRecord| {
        !state.receiver.matches(&transfer.account) || transfer.amount < due
    };
    if mismatch(live) {
        return Err(PayoutError::Mismatch {
            id: live.id.clone(),
        });
    }
    let latest = await_completion(state, live).await;
    let latest = latest.as_ref().unwrap_or(live);
    // Checked again: the wait read the transfer anew.
    if latest.id != live.id || mismatch(latest) {
        return Err(PayoutError::Mismatch {
            id: live.id.clone(),
        });
    }
    match latest.state {
        TransferState::Success => {
            tracing::info!(event = "payout_settled", transfer_id = %latest.id, amount = latest.amount, "the payout was made and Stark completed it; acking");
            Ok(StatusCode::OK)
        }
        other if !other.is_live() => Err(PayoutError::FailedWhileWaiting {
            id: latest.id.clone(),
        }),
        other => Err(PayoutError::InFlight {
            id: latest.id.clone(),
            status: other.as_str(),
        }),
    }
}

/// Looks `live` up by id (`GET /v2/transfer/{id}`: no listing lag) until it is no longer
/// `created`/`processing` or the settle wait is over, pausing 50 ms, then twice as long each
/// time up to 1 s; the last record read, or `None` when it never looked. A failed look ends
/// the wait: the redelivery looks again.
async fn await_completion(state: &AppState, live: &TransferRecord) -> Option<TransferRecord> {
    let pending = |t: &TransferRecord| t.state.is_live() && t.state != TransferState::Success;
    if !pending(live) || state.settle_wait.is_zero() {
        return None;
    }
    let deadline = tokio::time::Instant::now() + state.settle_wait;
    let mut pause = FIRST_SETTLE_POLL;
    let mut latest: Option<TransferRecord> = None;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return latest;
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(LONGEST_SETTLE_POLL);
        match state.stark.get_transfer(&live.id).await {
            Ok(transfer) => {
                let record = transfer_record(&transfer);
                state.commitments.observe(&record, state.transfer_fee);
                let done = !pending(&record);
                latest = Some(record);
                if done {
                    return latest;
                }
            }
            Err(err) => {
                tracing::info!(event = "payout_settle_look_failed", transfer_id = %live.id, error = %err, "could not look the payout transfer up; the redelivery will");
                return latest;
            }
        }
    }
}

/// Every payout transfer of `invoice_id`, all generations (they share its invoice tag).
async fn payouts_of(
    state: &AppState,
    invoice_id: &str,
) -> Result<Vec<TransferRecord>, PayoutError> {
    let query = TransferQuery {
        tags: vec![InvoiceTag::for_invoice(invoice_id).to_string()],
        ..Default::default()
    };
    let payouts: Vec<TransferRecord> = state
        .stark
        .query_transfers(&query)
        .await?
        .iter()
        .map(transfer_record)
        .filter(|t| t.key.as_ref().is_some_and(|k| k.invoice_id() == invoice_id))
        .collect();
    for payout in &payouts {
        state.commitments.observe(payout, state.transfer_fee);
    }
    Ok(payouts)
}

/// Looks the committed transfers up and updates their commitments from what Stark shows: by id
/// (`GET /v2/transfer/{id}`, which does not trail writes as lists do), and those whose id is
/// unknown by their payout key's tag. Payouts blocked at once share one recheck: one that
/// finished after `asked` (when the caller read the balance) is as good as a new one.
async fn recheck_commitments(state: &AppState, asked: Instant) -> Result<(), PayoutError> {
    let mut last = state.last_recheck.lock().await;
    if last.is_some_and(|done| done > asked) {
        return Ok(());
    }
    let (ids, keys) = state.commitments.to_recheck();
    for id in &ids {
        let transfer = state.stark.get_transfer(id).await?;
        state
            .commitments
            .observe(&transfer_record(&transfer), state.transfer_fee);
    }
    for page in keys.chunks(COMMITMENT_RECHECK_PAGE) {
        let query = TransferQuery {
            tags: page.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        for transfer in state.stark.query_transfers(&query).await? {
            let record = transfer_record(&transfer);
            if record.key.as_ref().is_some_and(|k| page.contains(k)) {
                state.commitments.observe(&record, state.transfer_fee);
            }
        }
    }
    *last = Some(Instant::now());
    Ok(())
}

/// Payout keys per tag lookup of committed transfers: Stark's page size.
const COMMITMENT_RECHECK_PAGE: usize = 100;

/// The transfer made under `key`, if Stark lists it.
async fn find(state: &AppState, key: &PayoutKey) -> Result<Option<TransferRecord>, PayoutError> {
    Ok(payouts_of(state, key.invoice_id())
        .await?
        .into_iter()
        .find(|t| t.key.as_ref() == Some(key)))
}
