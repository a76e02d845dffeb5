//! Invoices and their logs: storage, and the lifecycle `created` → `paid` → `credited` (or
//! `overdue`, `expired`, `canceled`, `updated`) run by scheduled jobs.

use std::sync::Arc;

use rand::RngExt as _;
use stark_client::{EventLog, Invoice, InvoiceLog, InvoiceLogType, InvoicePayment, InvoiceStatus};
use time::OffsetDateTime;

use super::{Job, World};
use crate::clock::timestamp;
use crate::money::{interest_for_days, percent_of};
use crate::table::{ListParams, Row, Ws};

/// Banks (ISPB) the sandbox's made-up payers pay from.
const PAYER_BANKS: &[&str] = &["00000000", "60701190", "60746948", "00360305", "18236120"];

/// An invoice and what the lifecycle needs beyond the API object.
#[derive(Debug, Clone)]
pub struct InvoiceRec {
    /// The invoice as the API shows it, shared with the snapshots taken since it last changed
    /// (a change copies it first: `Arc::make_mut`).
    pub invoice: Arc<Invoice>,
    /// The instant `due` stands for (a date due ends at the end of that day).
    pub due_at: OffsetDateTime,
    /// Discounts as (percentage, last instant it applies), by date.
    pub discounts: Vec<(f64, OffsetDateTime)>,
    /// Filled when paid. Boxed: inline it made every invoice's row about 200 bytes larger,
    /// paid or not.
    pub payment: Option<Box<InvoicePayment>>,
    /// Set once the `credited` log is written, so that it happens once.
    pub credited: bool,
    /// Set by the first reversal.
    pub reversed: bool,
}

impl InvoiceRec {
    /// The instant after which the invoice can no longer be paid.
    fn expires_at(&self) -> OffsetDateTime {
        self.due_at + time::Duration::seconds(self.invoice.expiration)
    }
}

/// What `PATCH /v2/invoice/{id}` may change on an unpaid invoice (`None`: leave as is).
#[derive(Debug, Clone, Copy, Default)]
pub struct InvoiceUpdate {
    /// New amount in cents (also the new nominal amount).
    pub amount: Option<i64>,
    /// New due instant.
    pub due: Option<OffsetDateTime>,
    /// New expiration in seconds after due.
    pub expiration: Option<i64>,
}

impl World {
    /// Stores a new invoice of workspace `ws`, logs `created`, and schedules its lifecycle:
    /// payment (if the pay dice say so), going overdue at `due`, expiring after `expiration`.
    pub fn add_invoice(&mut self, ws: Ws, rec: InvoiceRec, now: OffsetDateTime) -> Invoice {
        let id = rec.invoice.id.clone();
        let due_at = rec.due_at;
        let expire_at = rec.expires_at();
        let invoice = Invoice::clone(&rec.invoice);
        let tags = Arc::clone(&rec.invoice.tags);
        self.invoices.insert_keyed(&id, now, ws, rec, tags.iter());
        self.counters.entry(ws.0).or_default().invoices_issued += 1;
        self.write_invoice_log(&id, InvoiceLogType::Created, now);
        if self.pay_rng.random_bool(self.settings.pay_probability) {
            self.schedule(now + self.settings.pay_delay, Job::PayInvoice(id.clone()));
        }
        self.schedule(due_at, Job::InvoiceOverdue(id.clone()));
        self.schedule(expire_at, Job::InvoiceExpire(id));
        invoice
    }

    /// Workspace `ws`'s invoice by id (another workspace's is not found).
    pub fn invoice(&self, ws: Ws, id: &str) -> Option<&InvoiceRec> {
        self.invoices.get_in(id, ws).map(|r| &r.item)
    }

    /// One page of workspace `ws`'s invoices listed at `now` (older than the listing lag)
    /// passing `keep`, in the order and window `params` ask for.
    /// Only invoices carrying one of `tags` are looked at, when there are any.
    pub fn invoices_page(
        &self,
        ws: Ws,
        now: OffsetDateTime,
        params: &ListParams,
        tags: &[String],
        keep: impl Fn(&InvoiceRec) -> bool,
    ) -> (Vec<&InvoiceRec>, Option<String>) {
        self.invoices
            .page_keyed(tags, params, self.listed(ws, now), keep)
    }

    /// Workspace `ws`'s invoice log by id.
    pub fn find_invoice_log(&self, ws: Ws, id: &str) -> Option<&InvoiceLog> {
        self.invoice_logs.get_in(id, ws).map(|r| &*r.item)
    }

    /// One page of workspace `ws`'s invoice logs listed at `now` passing `keep`.
    /// Only the logs of `invoice_ids` are looked at, when there are any.
    pub fn invoice_logs_page(
        &self,
        ws: Ws,
        now: OffsetDateTime,
        params: &ListParams,
        invoice_ids: &[String],
        keep: impl Fn(&InvoiceLog) -> bool,
    ) -> (Vec<&InvoiceLog>, Option<String>) {
        let (logs, cursor) =
            self.invoice_logs
                .page_keyed(invoice_ids, params, self.listed(ws, now), |l| keep(l));
        (logs.into_iter().map(|l| &**l).collect(), cursor)
    }

    /// Cancels a `created` or `overdue` invoice; false (and nothing done) from any other status.
    /// The caller has checked that the invoice is in its workspace.
    pub fn cancel_invoice(&mut self, id: &str, now: OffsetDateTime) -> bool {
        self.invoice_status_change(
            id,
            &[InvoiceStatus::Created, InvoiceStatus::Overdue],
            InvoiceStatus::Canceled,
            InvoiceLogType::Canceled,
            now,
        )
    }

    /// Applies a PATCH to an unpaid invoice and logs `updated`. A new `due` in the future takes
    /// an overdue invoice back to `created`; the deadlines are rescheduled (the jobs queued for
    /// the old ones find the stored times moved and do nothing). False if there is no such
    /// invoice. The caller has checked that the invoice is in its workspace.
    pub fn update_invoice(&mut self, id: &str, update: InvoiceUpdate, now: OffsetDateTime) -> bool {
        let Some(row) = self.invoices.get_mut(id) else {
            return false;
        };
        let rec = &mut row.item;
        let invoice = Arc::make_mut(&mut rec.invoice);
        if let Some(a) = update.amount {
            invoice.amount = a;
            invoice.nominal_amount = a;
        }
        if let Some(d) = update.due {
            rec.due_at = d;
            invoice.due = timestamp(d);
            if invoice.status == InvoiceStatus::Overdue && d > now {
                invoice.status = InvoiceStatus::Created;
            }
        }
        if let Some(e) = update.expiration {
            invoice.expiration = e;
        }
        invoice.updated = timestamp(now);
        let (due_at, expire_at) = (rec.due_at, rec.expires_at());
        self.schedule(due_at, Job::InvoiceOverdue(id.to_owned()));
        self.schedule(expire_at, Job::InvoiceExpire(id.to_owned()));
        self.write_invoice_log(id, InvoiceLogType::Updated, now);
        true
    }

    /// Writes a log with the invoice as it is now (the table and the log share it until the
    /// invoice next changes) and emits its events.
    pub(super) fn write_invoice_log(
        &mut self,
        invoice_id: &str,
        log_type: InvoiceLogType,
        now: OffsetDateTime,
    ) {
        let Some((ws, invoice)) = self
            .invoices
            .get(invoice_id)
            .map(|r| (r.ws, Arc::clone(&r.item.invoice)))
        else {
            return;
        };
        let log = Arc::new(InvoiceLog {
            id: self.ids.next_id(),
            created: timestamp(now),
            log_type,
            errors: Vec::new(),
            invoice,
        });
        self.invoice_logs
            .insert_keyed(&log.id, now, ws, Arc::clone(&log), [&log.invoice.id]);
        self.emit_event(ws, "invoice", EventLog::Invoice(log), now);
    }

    /// A made-up payer pays: the amount is settled with discount, fine and interest as of `now`
    /// (an amount-0 invoice is paid a random amount), the payment is recorded, and the credit
    /// is scheduled.
    pub(super) fn pay_invoice(&mut self, id: &str, now: OffsetDateTime) {
        let any_amount_paid = self.pay_rng.random_range(100..=100_000i64);
        let bank = self.ids.pick(PAYER_BANKS);
        let branch = self.ids.digits(4);
        let account = format!("{}-{}", self.ids.digits(6), self.ids.digits(1));
        let e2e_tail = self.ids.alphanumeric(11);
        let Some(row) = self.invoices.get_mut(id) else {
            return;
        };
        let rec = &mut row.item;
        if !matches!(
            rec.invoice.status,
            InvoiceStatus::Created | InvoiceStatus::Overdue
        ) {
            return;
        }
        let inv = Arc::make_mut(&mut rec.invoice);
        if inv.nominal_amount == 0 {
            // An invoice of amount 0 accepts any amount; the payer picks one.
            inv.nominal_amount = any_amount_paid;
        }
        let nominal = inv.nominal_amount;
        let discount = rec
            .discounts
            .iter()
            .find(|(_, until)| now <= *until)
            .map_or(0, |(pct, _)| percent_of(nominal, *pct));
        let (fine, interest) = if now > rec.due_at {
            let days_late = (now - rec.due_at).whole_days();
            (
                percent_of(nominal, inv.fine),
                interest_for_days(nominal, inv.interest, days_late),
            )
        } else {
            (0, 0)
        };
        inv.discount_amount = discount;
        inv.fine_amount = fine;
        inv.interest_amount = interest;
        inv.amount = nominal - discount + fine + interest;
        inv.status = InvoiceStatus::Paid;
        inv.updated = timestamp(now);
        let end_to_end_id = format!(
            "E{bank}{}{e2e_tail}",
            now.format(time::macros::format_description!(
                "[year][month][day][hour][minute]"
            ))
            .unwrap_or_default()
        );
        rec.payment = Some(Box::new(InvoicePayment {
            amount: inv.amount,
            name: inv.name.clone(),
            tax_id: inv.tax_id.clone(),
            bank_code: bank.to_owned(),
            branch_code: branch,
            account_number: account,
            account_type: "checking".to_owned(),
            end_to_end_id,
            method: "pix".to_owned(),
        }));
        if let Some(ws) = self.invoices.owner(id) {
            self.counters.entry(ws.0).or_default().invoices_paid += 1;
        }
        self.write_invoice_log(id, InvoiceLogType::Paid, now);
        self.schedule(
            now + self.settings.credit_delay,
            Job::CreditInvoice(id.to_owned()),
        );
    }

    /// The paid amount, net of the invoice fee, reaches the balance; once per invoice.
    pub(super) fn credit_invoice(&mut self, id: &str, now: OffsetDateTime) {
        let transaction_id = self.ids.transaction_id();
        let fee = self.settings.invoice_fee;
        let Some(row) = self.invoices.get_mut(id) else {
            return;
        };
        let ws = row.ws;
        let rec = &mut row.item;
        if rec.invoice.status != InvoiceStatus::Paid || rec.credited {
            return;
        }
        rec.credited = true;
        let invoice = Arc::make_mut(&mut rec.invoice);
        invoice.fee = fee;
        invoice.transaction_ids = vec![transaction_id];
        invoice.updated = timestamp(now);
        let amount = rec.invoice.amount;
        self.move_balance(ws, amount - fee, now);
        self.counters.entry(ws.0).or_default().invoices_credited += 1;
        self.write_invoice_log(id, InvoiceLogType::Credited, now);
        self.maybe_schedule_reversal(id, amount, now);
    }

    /// `due` passed unpaid: `created` → `overdue`.
    pub(super) fn invoice_overdue(&mut self, id: &str, now: OffsetDateTime) {
        // A PATCH may have moved `due`; the job scheduled for the old one then does nothing.
        if self.invoices.get(id).is_none_or(|r| now < r.item.due_at) {
            return;
        }
        self.invoice_status_change(
            id,
            &[InvoiceStatus::Created],
            InvoiceStatus::Overdue,
            InvoiceLogType::Overdue,
            now,
        );
    }

    /// The expiration passed unpaid: `created`/`overdue` → `expired`.
    pub(super) fn invoice_expire(&mut self, id: &str, now: OffsetDateTime) {
        let expires = |r: &Row<InvoiceRec>| r.item.expires_at();
        if self.invoices.get(id).is_none_or(|r| now < expires(r)) {
            return;
        }
        self.invoice_status_change(
            id,
            &[InvoiceStatus::Created, InvoiceStatus::Overdue],
            InvoiceStatus::Expired,
            InvoiceLogType::Expired,
            now,
        );
    }

    /// Moves an invoice from one of `from` to `to` and logs it; a no-op from any other status.
    fn invoice_status_change(
        &mut self,
        id: &str,
        from: &[InvoiceStatus],
        to: InvoiceStatus,
        log_type: InvoiceLogType,
        now: OffsetDateTime,
    ) -> bool {
        let Some(row) = self.invoices.get_mut(id) else {
            return false;
        };
        if !from.contains(&row.item.invoice.status) {
            return false;
        }
        let invoice = Arc::make_mut(&mut row.item.invoice);
        invoice.status = to;
        invoice.updated = timestamp(now);
        self.write_invoice_log(id, log_type, now);
        true
    }
}
