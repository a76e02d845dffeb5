//! `/v2/transfer`: create (with Stark's duplicate blocking), list, get, cancel, logs.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};
use stark_client::{Transfer, TransferStatus};
use time::OffsetDateTime;

use crate::clock::{DateOrTime, parse_date_or_time, timestamp};
use crate::error::{ApiError, codes};
use crate::query::{self, Query};
use crate::table::Ws;
use crate::validate::{Item, batch};
use crate::world::{CancelOutcome, Receiver, SameDayKey, TransferLogType, TransferRec, World};

/// Fields `POST /v2/transfer` accepts.
const FIELDS: &[&str] = &[
    "amount",
    "name",
    "taxId",
    "bankCode",
    "branchCode",
    "accountNumber",
    "accountType",
    "externalId",
    "scheduled",
    "description",
    "displayDescription",
    "tags",
    "rules",
    "metadata",
];

const ACCOUNT_TYPES: &[&str] = &["checking", "savings", "salary", "payment"];

/// Brasília time (no daylight saving since 2019): the day a transfer may be scheduled from is a
/// banking day there.
const BRASILIA: time::UtcOffset = time::macros::offset!(-3);

/// The earliest `scheduled` value accepted: the start of today in Brasília, "today" being taken
/// on the earlier of the sandbox clock and this host's clock.
///
/// Stark accepts a transfer scheduled for "now" by the client's clock: the official SDK's own
/// test sends `datetime.utcnow()` (which the SDK serializes without microseconds, so it is
/// already in the past when it arrives) and passes. Clients compute "now" and "today" with their
/// own clock, and a sandbox running faster than real time (or moved forward by a test) is ahead
/// of it, so a rule on the sandbox clock alone refuses them. Any instant or date from the start
/// of today on is accepted; a time already past is executed at once.
fn earliest_schedule(now: OffsetDateTime, wall: OffsetDateTime) -> OffsetDateTime {
    let today = now.min(wall).to_offset(BRASILIA).date();
    today.midnight().assume_offset(BRASILIA)
}

/// A transfer item that passed every check.
struct Checked {
    amount: i64,
    name: String,
    tax_id: String,
    tax_digits: Arc<str>,
    bank_code: Arc<str>,
    branch_code: Arc<str>,
    account_number: Arc<str>,
    account_type: String,
    external_id: Option<String>,
    scheduled: Option<DateOrTime>,
    description: Option<String>,
    display_description: Option<String>,
    tags: Vec<String>,
    rules: Vec<stark_client::Rule>,
    metadata: Option<Value>,
}

impl Checked {
    fn day(&self, now: OffsetDateTime) -> time::Date {
        self.scheduled.map_or(now.date(), DateOrTime::date)
    }

    fn receiver(&self) -> Receiver {
        Receiver {
            tax_digits: self.tax_digits.clone(),
            bank_code: self.bank_code.clone(),
            branch_code: self.branch_code.clone(),
            account_number: self.account_number.clone(),
        }
    }
}

/// Digits, optionally followed by `-` and one check character (`1357-9`, `876543-2`).
fn account_like(text: &str, max_digits: usize, check_x: bool) -> bool {
    let (main, check) = match text.split_once('-') {
        Some((m, c)) => (m, Some(c)),
        None => (text, None),
    };
    let main_ok =
        !main.is_empty() && main.len() <= max_digits && main.bytes().all(|b| b.is_ascii_digit());
    let check_ok = check.is_none_or(|c| {
        c.len() == 1
            && c.bytes()
                .all(|b| b.is_ascii_digit() || (check_x && (b == b'x' || b == b'X')))
    });
    main_ok && check_ok
}

fn check(item: &mut Item<'_>, earliest: OffsetDateTime) -> Option<Checked> {
    item.only(FIELDS);
    let amount = item.amount(1);
    let name = item.name();
    let tax_id = item.tax_id();
    let bank_code = item.required_str("bankCode");
    if let Some(b) = &bank_code
        && !(b.bytes().all(|c| c.is_ascii_digit()) && matches!(b.len(), 1..=3 | 8))
    {
        item.err(
            "invalidBankCode",
            format!("bankCode {b:?} must be an 8-digit ISPB (Pix) or a 1-3 digit bank code (TED)."),
        );
    }
    let branch_code = item.required_str("branchCode");
    if let Some(b) = &branch_code
        && !account_like(b, 5, false)
    {
        item.err(
            "invalidBranchCode",
            format!("branchCode {b:?} must be digits, with an optional -digit."),
        );
    }
    let account_number = item.required_str("accountNumber");
    if let Some(a) = &account_number
        && !account_like(a, 20, true)
    {
        item.err(
            "invalidAccountNumber",
            format!("accountNumber {a:?} must be digits, with an optional -digit."),
        );
    }
    let account_type = item
        .opt_str("accountType", "invalidAccountType")
        .unwrap_or_else(|| "checking".into());
    if !ACCOUNT_TYPES.contains(&account_type.as_str()) {
        item.err(
            "invalidAccountType",
            format!("accountType must be one of {ACCOUNT_TYPES:?}."),
        );
    }
    let external_id = item.opt_str("externalId", codes::INVALID_EXTERNAL_ID);
    if let Some(e) = &external_id
        && !((1..=100).contains(&e.len())
            && e.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)))
    {
        item.err(
            codes::INVALID_EXTERNAL_ID,
            format!("externalId {e:?} must be 1 to 100 URL-safe characters."),
        );
    }
    let scheduled = match item.get("scheduled") {
        None => None,
        Some(Value::String(s)) => match parse_date_or_time(s) {
            Some(DateOrTime::Date(d)) if d < earliest.date() => {
                item.err("invalidDate", format!("scheduled {s:?} is in the past."));
                None
            }
            Some(DateOrTime::Time(t)) if t < earliest => {
                item.err(
                    "invalidDateTime",
                    format!("scheduled {s:?} is in the past."),
                );
                None
            }
            Some(d) => Some(d),
            None => {
                item.err(
                    "invalidDate",
                    format!("scheduled {s:?} is not a date or datetime."),
                );
                None
            }
        },
        Some(other) => {
            item.err(
                "invalidDate",
                format!("scheduled must be a string; got {other}."),
            );
            None
        }
    };
    let description = item.opt_str("description", "invalidDescription");
    let display_description = item.opt_str("displayDescription", "invalidDescription");
    let tags = item.tags();
    let rules = item.rules();
    let metadata = match item.get("metadata") {
        None => None,
        Some(v @ Value::Object(_)) => Some(v.clone()),
        Some(_) => {
            item.err("invalidMetadata", "metadata must be an object.");
            None
        }
    };
    let tax_id = tax_id?;
    Some(Checked {
        amount: amount?,
        name: name?,
        tax_id: tax_id.to_string(),
        tax_digits: tax_id.digits().into(),
        bank_code: bank_code?.into(),
        branch_code: branch_code?.into(),
        account_number: account_number?.into(),
        account_type,
        external_id,
        scheduled,
        description,
        display_description,
        tags,
        rules,
        metadata,
    })
}

/// Stark's answer for a transfer id it does not know (400, not 404).
fn transfer_not_found(id: &str) -> ApiError {
    ApiError::bad("invalidTransfer", format!("Transfer {id} not found."))
}

fn parse_status(text: &str) -> Result<TransferStatus, ApiError> {
    serde_json::from_value::<TransferStatus>(Value::String(text.to_owned()))
        .ok()
        .filter(|s| s.as_str() == text)
        .ok_or_else(|| {
            ApiError::bad(
                "invalidStatus",
                format!("Unknown transfer status {text:?}."),
            )
        })
}

impl World {
    /// `POST /v2/transfer`. Besides field checks, two duplicate rules, each failing only the
    /// offending item (and with it the batch): an `externalId` already used, and, for items
    /// without one, the same amount to the same receiver on the same scheduled day as a transfer
    /// that has not failed or been canceled.
    pub fn create_transfers(
        &mut self,
        ws: Ws,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let items = batch(body, "transfers")?;
        let earliest = earliest_schedule(now, OffsetDateTime::now_utc());
        let mut errors = Vec::new();
        let mut checked = Vec::new();
        let mut batch_external_ids = HashSet::new();
        let mut batch_keys: HashSet<SameDayKey> = HashSet::new();
        // Built on first need: it scans every transfer, and only items without an externalId
        // are checked against it.
        let mut existing_keys: Option<HashSet<SameDayKey>> = None;
        for (i, value) in items.iter().enumerate() {
            let before = errors.len();
            let Some(mut item) = Item::new(i, value, &mut errors) else {
                continue;
            };
            let Some(c) = check(&mut item, earliest) else {
                continue;
            };
            if let Some(e) = &c.external_id {
                if let Some(existing) = self.transfer_with_external_id(ws, e) {
                    item.err(
                        codes::INVALID_EXTERNAL_ID,
                        format!("externalId {e:?} was already used by transfer {existing}."),
                    );
                } else if !batch_external_ids.insert(e.clone()) {
                    item.err(
                        codes::INVALID_EXTERNAL_ID,
                        format!("externalId {e:?} is repeated in this request."),
                    );
                }
            } else {
                let key = SameDayKey {
                    receiver: c.receiver(),
                    amount: c.amount,
                    day: c.day(now),
                };
                let existing = existing_keys.get_or_insert_with(|| self.blocking_same_day_keys(ws));
                if existing.contains(&key) || !batch_keys.insert(key) {
                    item.err(
                        codes::DUPLICATE_TRANSFER,
                        "a transfer of the same amount to the same receiver is already scheduled for that day; send an externalId to make a deliberate repeat.",
                    );
                }
            }
            if errors.len() == before {
                checked.push(c);
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::many(errors));
        }
        let mut created = Vec::new();
        for c in checked {
            let scheduled_at = c.scheduled.map_or(now, DateOrTime::start);
            let scheduled_day = c.day(now);
            let receiver = c.receiver();
            let transfer = Transfer {
                id: self.next_id(),
                amount: c.amount,
                description: c
                    .description
                    .unwrap_or_else(|| format!("{} ({})", c.name, c.tax_id))
                    .into(),
                name: c.name.into(),
                tax_id: c.tax_id.into(),
                bank_code: c.bank_code,
                branch_code: c.branch_code,
                account_number: c.account_number,
                account_type: c.account_type.into(),
                external_id: c.external_id,
                scheduled: timestamp(scheduled_at.max(now)).into(),
                display_description: c.display_description,
                tags: c.tags.into(),
                rules: c.rules,
                metadata: c.metadata,
                fee: 0,
                status: TransferStatus::Created,
                transaction_ids: Vec::new(),
                created: timestamp(now).into(),
                updated: timestamp(now),
            };
            let rec = TransferRec {
                transfer: transfer.into(),
                scheduled_at,
                scheduled_day,
                receiver,
                debited: false,
            };
            created.push(self.add_transfer(ws, rec, now));
        }
        Ok(json!({ "transfers": created, "message": "Transfer(s) successfully created" }))
    }

    /// `GET /v2/transfer`: `status`, `tags`, `ids`, `transactionIds`, `taxId`, `sort`, and the
    /// common list parameters.
    pub fn list_transfers(
        &self,
        ws: Ws,
        q: &Query,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let params = query::list_params(q)?;
        let status = q.get("status").map(|s| parse_status(s)).transpose()?;
        let tags = query::tags(q);
        let ids = query::list(q, "ids");
        let transaction_ids = query::list(q, "transactionIds");
        let tax_id = q
            .get("taxId")
            .map(|t| t.chars().filter(char::is_ascii_digit).collect::<String>());
        let (items, cursor) = self.transfers_page(ws, now, &params, &tags, |r| {
            let t = &r.transfer;
            status.is_none_or(|s| t.status == s)
                && query::any_tag(&t.tags, &tags)
                && (ids.is_empty() || ids.contains(&t.id))
                && (transaction_ids.is_empty()
                    || t.transaction_ids
                        .iter()
                        .any(|x| transaction_ids.contains(x)))
                && tax_id
                    .as_ref()
                    .is_none_or(|d| **d == *r.receiver.tax_digits)
        });
        let transfers: Vec<&Transfer> = items.into_iter().map(|r| &*r.transfer).collect();
        Ok(json!({ "cursor": cursor, "transfers": transfers }))
    }

    /// `GET /v2/transfer/{id}`.
    pub fn get_transfer(&self, ws: Ws, id: &str) -> Result<Value, ApiError> {
        let rec = self
            .transfer(ws, id)
            .ok_or_else(|| transfer_not_found(id))?;
        Ok(json!({ "transfer": rec.transfer }))
    }

    /// `DELETE /v2/transfer/{id}`: cancels a transfer scheduled for later; anything else is
    /// `invalidAction`.
    pub fn cancel_transfer(
        &mut self,
        ws: Ws,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        match self.cancel_scheduled_transfer(ws, id, now) {
            CancelOutcome::Canceled => self.get_transfer(ws, id),
            CancelOutcome::NotFound => Err(transfer_not_found(id)),
            CancelOutcome::NotScheduled => Err(ApiError::bad(
                "invalidAction",
                format!("Transfer {id} is not scheduled for later, so it cannot be canceled."),
            )),
        }
    }

    /// `GET /v2/transfer/log`: `types`, `transferIds`, and the common list parameters.
    pub fn list_transfer_logs(
        &self,
        ws: Ws,
        q: &Query,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let params = query::list_params(q)?;
        let mut types = Vec::new();
        for t in query::list(q, "types") {
            types.push(TransferLogType::parse(&t).ok_or_else(|| {
                ApiError::bad(
                    "invalidTransferLog",
                    format!("Unknown transfer log type {t:?}."),
                )
            })?);
        }
        let ids = query::list(q, "transferIds");
        let (logs, cursor) = self.transfer_logs_page(ws, now, &params, |l| {
            (types.is_empty() || types.iter().any(|t| t.as_str() == l.log_type))
                && (ids.is_empty() || ids.contains(&l.transfer.id))
        });
        Ok(json!({ "cursor": cursor, "logs": logs }))
    }

    /// `GET /v2/transfer/log/{id}`.
    pub fn get_transfer_log(&self, ws: Ws, id: &str) -> Result<Value, ApiError> {
        let log = self.find_transfer_log(ws, id).ok_or_else(|| {
            ApiError::bad(
                "invalidTransferLog",
                format!("Transfer log {id} not found."),
            )
        })?;
        Ok(json!({ "log": log }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_transfer_may_be_scheduled_from_the_start_of_today_in_brasilia_on_the_earlier_clock() {
        // 02:00 UTC is still the day before in Brasília (23:00).
        let wall = datetime!(2030-05-10 02:00 UTC);
        let sandbox_ahead = datetime!(2030-05-12 09:00 UTC);
        let earliest = earliest_schedule(sandbox_ahead, wall);
        assert_eq!(earliest, datetime!(2030-05-09 00:00 -3));
        assert_eq!(earliest.date(), time::macros::date!(2030 - 05 - 09));
        // Whichever clock is behind decides.
        assert_eq!(earliest_schedule(wall, sandbox_ahead), earliest);
        let later = datetime!(2030-05-10 15:00 UTC);
        assert_eq!(
            earliest_schedule(later, later),
            datetime!(2030-05-10 00:00 -3)
        );
    }
}
