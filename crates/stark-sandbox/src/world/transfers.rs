//! Transfers and their logs: storage, the duplicate rules' indexes, and the lifecycle
//! `created` → `processing` → `success` or `failed` (or `canceled` while scheduled).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use stark_client::{EventLog, Transfer, TransferLog, TransferStatus};
use time::OffsetDateTime;

use super::{Job, World};
use crate::clock::timestamp;
use crate::table::{ListParams, Ws};

/// The kinds of transfer log. Stark's wire format is a string (`TransferLog::log_type`); this
/// enum keeps the sandbox from writing or accepting a type Stark does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferLogType {
    /// Accepted by Stark.
    Created,
    /// The balance was checked (and debited when it covered the transfer).
    Processing,
    /// Handed to the receiving bank. Seen in a real sandbox event; the sandbox never writes
    /// it, but accepts it as a filter.
    Sending,
    /// The money arrived.
    Success,
    /// Refused (here: the balance did not cover amount + fee).
    Failed,
    /// Canceled while scheduled for later.
    Canceled,
}

impl TransferLogType {
    /// Every type, for validating `types` filters.
    pub const ALL: [TransferLogType; 6] = [
        Self::Created,
        Self::Processing,
        Self::Sending,
        Self::Success,
        Self::Failed,
        Self::Canceled,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Processing => "processing",
            Self::Sending => "sending",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Parses a wire name; `None` for a type Stark does not have.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// Who a transfer pays, as the same-day duplicate rule compares it: the tax id's digits and the
/// bank account. Shared with the stored transfer (`Arc`), not copied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receiver {
    /// CPF or CNPJ digits, without formatting.
    pub tax_digits: Arc<str>,
    /// ISPB or bank code.
    pub bank_code: Arc<str>,
    /// Branch, as sent.
    pub branch_code: Arc<str>,
    /// Account, as sent.
    pub account_number: Arc<str>,
}

/// What makes two transfers without `externalId` duplicates: same receiver, same amount, same
/// scheduled day.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SameDayKey {
    /// The receiver.
    pub receiver: Receiver,
    /// Cents.
    pub amount: i64,
    /// The scheduled day (UTC).
    pub day: time::Date,
}

/// A transfer and what the lifecycle needs beyond the API object.
#[derive(Debug, Clone)]
pub struct TransferRec {
    /// The transfer as the API shows it, shared with the snapshots taken since it last changed
    /// (a change copies it first: `Arc::make_mut`).
    pub transfer: Arc<Transfer>,
    /// When processing may start.
    pub scheduled_at: OffsetDateTime,
    /// The scheduled day, for the same-day duplicate rule.
    pub scheduled_day: time::Date,
    /// The receiver, for the same-day duplicate rule and the `taxId` filter.
    pub receiver: Receiver,
    /// Whether the balance was debited at `processing`; if not, the transfer fails.
    pub debited: bool,
}

impl TransferRec {
    fn same_day_key(&self) -> SameDayKey {
        SameDayKey {
            receiver: self.receiver.clone(),
            amount: self.transfer.amount,
            day: self.scheduled_day,
        }
    }
}

/// How `DELETE /v2/transfer/{id}` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Canceled (it was scheduled for later and not started).
    Canceled,
    /// No such transfer.
    NotFound,
    /// It exists but is not waiting for a later schedule.
    NotScheduled,
}

impl World {
    /// Stores a new transfer of workspace `ws`, logs `created`, and schedules processing for
    /// its scheduled time (or now) plus the processing delay.
    pub fn add_transfer(&mut self, ws: Ws, rec: TransferRec, now: OffsetDateTime) -> Transfer {
        let id = rec.transfer.id.clone();
        if let Some(external_id) = &rec.transfer.external_id {
            self.external_ids
                .insert((ws, external_id.clone()), id.clone());
        }
        let start = rec.scheduled_at.max(now);
        let transfer = Transfer::clone(&rec.transfer);
        let tags = Arc::clone(&rec.transfer.tags);
        self.transfers.insert_keyed(&id, now, ws, rec, tags.iter());
        self.counters.entry(ws.0).or_default().transfers_created += 1;
        self.write_transfer_log(&id, TransferLogType::Created, Vec::new(), now);
        self.schedule(
            start + self.settings.transfer_processing_delay,
            Job::ProcessTransfer(id),
        );
        transfer
    }

    /// The transfer of workspace `ws` that already used `external_id`, if any (the id is unique
    /// among a workspace's transfers, not across workspaces).
    pub fn transfer_with_external_id(&self, ws: Ws, external_id: &str) -> Option<&str> {
        self.external_ids
            .get(&(ws, external_id.to_owned()))
            .map(String::as_str)
    }

    /// The same-day keys of every transfer of workspace `ws` that still blocks a duplicate (all
    /// but failed and canceled ones). Scans every transfer: build it once per request, and only
    /// when needed.
    pub fn blocking_same_day_keys(&self, ws: Ws) -> HashSet<SameDayKey> {
        self.transfers
            .live()
            .filter(|r| {
                r.ws == ws
                    && !matches!(
                        r.item.transfer.status,
                        TransferStatus::Failed | TransferStatus::Canceled
                    )
            })
            .map(|r| r.item.same_day_key())
            .collect()
    }

    /// Workspace `ws`'s transfer by id (another workspace's is not found).
    pub fn transfer(&self, ws: Ws, id: &str) -> Option<&TransferRec> {
        self.transfers.get_in(id, ws).map(|r| &r.item)
    }

    /// One page of workspace `ws`'s transfers listed at `now` (older than the listing lag)
    /// passing `keep`.
    /// Only transfers carrying one of `tags` are looked at, when there are any.
    pub fn transfers_page(
        &self,
        ws: Ws,
        now: OffsetDateTime,
        params: &ListParams,
        tags: &[String],
        keep: impl Fn(&TransferRec) -> bool,
    ) -> (Vec<&TransferRec>, Option<String>) {
        self.transfers
            .page_keyed(tags, params, self.listed(ws, now), keep)
    }

    /// Workspace `ws`'s transfer log by id.
    pub fn find_transfer_log(&self, ws: Ws, id: &str) -> Option<&TransferLog> {
        self.transfer_logs.get_in(id, ws).map(|r| &*r.item)
    }

    /// One page of workspace `ws`'s transfer logs listed at `now` passing `keep`.
    pub fn transfer_logs_page(
        &self,
        ws: Ws,
        now: OffsetDateTime,
        params: &ListParams,
        keep: impl Fn(&TransferLog) -> bool,
    ) -> (Vec<&TransferLog>, Option<String>) {
        let (logs, cursor) = self
            .transfer_logs
            .page(params, self.listed(ws, now), |l| keep(l));
        (logs.into_iter().map(|l| &**l).collect(), cursor)
    }

    /// Cancels workspace `ws`'s transfer if it is still `created` and scheduled for later, and
    /// logs `canceled`.
    pub fn cancel_scheduled_transfer(
        &mut self,
        ws: Ws,
        id: &str,
        now: OffsetDateTime,
    ) -> CancelOutcome {
        let Some(row) = self.transfers.get_mut_in(id, ws) else {
            return CancelOutcome::NotFound;
        };
        let rec = &mut row.item;
        if rec.transfer.status != TransferStatus::Created || rec.scheduled_at <= now {
            return CancelOutcome::NotScheduled;
        }
        let transfer = Arc::make_mut(&mut rec.transfer);
        transfer.status = TransferStatus::Canceled;
        transfer.updated = timestamp(now);
        self.write_transfer_log(id, TransferLogType::Canceled, Vec::new(), now);
        CancelOutcome::Canceled
    }

    /// Writes a transfer log with the transfer as it is now (shared with the table until it next
    /// changes) and emits its events.
    fn write_transfer_log(
        &mut self,
        transfer_id: &str,
        log_type: TransferLogType,
        errors: Vec<Value>,
        now: OffsetDateTime,
    ) {
        let Some((ws, transfer)) = self
            .transfers
            .get(transfer_id)
            .map(|r| (r.ws, Arc::clone(&r.item.transfer)))
        else {
            return;
        };
        let log = Arc::new(TransferLog {
            id: self.ids.next_id(),
            created: timestamp(now),
            log_type: log_type.as_str().to_owned(),
            errors,
            transfer,
        });
        self.transfer_logs
            .insert(&log.id, now, ws, Arc::clone(&log));
        self.emit_event(ws, "transfer", EventLog::Transfer(log), now);
    }

    /// `created` → `processing`: the balance is checked and debited here. A transfer the
    /// balance cannot cover is not debited and ends `failed` at settlement, as Stark's does.
    pub(super) fn process_transfer(&mut self, id: &str, now: OffsetDateTime) {
        let fee = self.settings.transfer_fee;
        let Some(ws) = self.transfers.get(id).map(|r| r.ws) else {
            return;
        };
        let balance = self.balance_in(ws);
        let Some(row) = self.transfers.get_mut(id) else {
            return;
        };
        let rec = &mut row.item;
        if rec.transfer.status != TransferStatus::Created {
            return;
        }
        let cost = rec.transfer.amount + fee;
        let transfer = Arc::make_mut(&mut rec.transfer);
        transfer.status = TransferStatus::Processing;
        transfer.fee = fee;
        transfer.updated = timestamp(now);
        if cost <= balance {
            rec.debited = true;
            self.move_balance(ws, -cost, now);
        }
        self.write_transfer_log(id, TransferLogType::Processing, Vec::new(), now);
        self.schedule(
            now + self.settings.transfer_settle_delay,
            Job::SettleTransfer(id.to_owned()),
        );
    }

    /// `processing` → `success` (with a ledger transaction id) if it was debited, else
    /// `failed` with the shortfall in the log's errors.
    pub(super) fn settle_transfer(&mut self, id: &str, now: OffsetDateTime) {
        let transaction_id = self.ids.transaction_id();
        let Some(ws) = self.transfers.get(id).map(|r| r.ws) else {
            return;
        };
        let balance = self.balance_in(ws);
        let Some(row) = self.transfers.get_mut(id) else {
            return;
        };
        let rec = &mut row.item;
        if rec.transfer.status != TransferStatus::Processing {
            return;
        }
        let transfer = Arc::make_mut(&mut rec.transfer);
        transfer.updated = timestamp(now);
        if rec.debited {
            transfer.status = TransferStatus::Success;
            transfer.transaction_ids = vec![transaction_id];
            self.counters.entry(ws.0).or_default().transfers_settled += 1;
            self.write_transfer_log(id, TransferLogType::Success, Vec::new(), now);
        } else {
            transfer.status = TransferStatus::Failed;
            self.counters.entry(ws.0).or_default().transfers_failed += 1;
            let needed = rec.transfer.amount + rec.transfer.fee;
            let errors = vec![json!(format!(
                "Insufficient balance: the transfer needs {needed} cents and the balance was {balance} cents."
            ))];
            self.write_transfer_log(id, TransferLogType::Failed, errors, now);
        }
    }
}
