//! The sandbox's state and everything that changes it, behind one mutex.
//!
//! Every change is synchronous and quick (no I/O under the lock): API handlers and the
//! scheduler lock the world, apply a change, and leave. Webhook POSTs happen outside, in
//! [`crate::engine`], which reports their outcome back here.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::Duration;

use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use stark_client::keys::{high_s_twin, signature_to_base64};
use stark_client::python_json::to_string_sorted;
use stark_client::{
    Event, EventLog, Invoice, InvoiceLog, InvoiceLogType, InvoicePayment, InvoiceStatus,
    PrivateKey, PublicKey, PublicKeyEntry, Transfer, TransferLog, TransferStatus, Webhook,
};
use time::OffsetDateTime;

use crate::auth::Projects;
use crate::clock::timestamp;
use crate::config::{FaultConfig, SandboxConfig};
use crate::faults::{FaultDice, stream};
use crate::money::{interest_for_days, percent_of};
use crate::state::{Delivery, DeliveryOutcome, EventAttempt, InjectedFault, SandboxState};
use crate::table::Table;

/// The parts of [`SandboxConfig`] the world needs after start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub pay_delay: Duration,
    pub credit_delay: Duration,
    pub pay_probability: f64,
    pub invoice_fee: i64,
    pub transfer_fee: i64,
    pub transfer_processing_delay: Duration,
    pub transfer_settle_delay: Duration,
    pub workspace_id: String,
    pub retry_schedule: Vec<Duration>,
    /// `http://127.0.0.1:PORT`, for the `pdf` and `link` URLs of invoices.
    pub root_url: String,
}

/// An invoice and what the lifecycle needs beyond the API object.
#[derive(Debug, Clone)]
pub struct InvoiceRec {
    pub invoice: Invoice,
    /// The instant `due` stands for (a date due ends at the end of that day).
    pub due_at: OffsetDateTime,
    /// Discounts as (percentage, last instant it applies), by date.
    pub discounts: Vec<(f64, OffsetDateTime)>,
    /// Filled when paid.
    pub payment: Option<InvoicePayment>,
    /// Set once the `credited` log is written, so that it happens once.
    pub credited: bool,
}

/// A transfer and what the lifecycle needs beyond the API object.
#[derive(Debug, Clone)]
pub struct TransferRec {
    pub transfer: Transfer,
    /// When processing may start.
    pub scheduled_at: OffsetDateTime,
    /// The scheduled day, for the same-day duplicate rule.
    pub scheduled_day: time::Date,
    /// (tax id digits, bank, branch, account): the receiver, for the same-day duplicate rule.
    pub receiver: (String, String, String, String),
    /// Whether the balance was debited at `processing`; if not, the transfer fails.
    pub debited: bool,
}

/// An event and its delivery bookkeeping.
#[derive(Debug, Clone)]
pub struct EventRec {
    pub event: Event,
    /// The webhook this event is for (one event per log per subscribed webhook).
    pub webhook_id: String,
    /// Failed deliveries so far; indexes the retry schedule.
    pub failures: u32,
}

/// Work the scheduler does at a sandbox instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    PayInvoice(String),
    CreditInvoice(String),
    InvoiceOverdue(String),
    InvoiceExpire(String),
    ProcessTransfer(String),
    SettleTransfer(String),
    Deliver(String),
}

/// A job with its due time; ordered so that the heap pops the earliest (ties: first scheduled).
#[derive(Debug)]
pub struct Scheduled {
    pub at: OffsetDateTime,
    seq: u64,
    pub job: Job,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A webhook POST to make, prepared under the lock and sent outside it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub event_id: String,
    pub webhook_id: String,
    pub url: String,
    pub body: String,
    pub signature: String,
    pub high_s: bool,
    pub try_number: u32,
    /// This is the extra copy of the duplicate-delivery fault (it changes no state).
    pub duplicate: bool,
    /// After a successful delivery, send a duplicate (rolled when prepared).
    pub send_duplicate: bool,
}

/// Everything the sandbox holds.
#[derive(Debug)]
pub struct World {
    pub settings: Settings,
    pub projects: Projects,
    pub invoices: Table<InvoiceRec>,
    pub invoice_logs: Table<InvoiceLog>,
    pub transfers: Table<TransferRec>,
    pub transfer_logs: Table<TransferLog>,
    /// externalId → transfer id, for the uniqueness rule.
    pub external_ids: HashMap<String, String>,
    pub webhooks: Table<Webhook>,
    pub events: Table<EventRec>,
    pub attempts: Table<EventAttempt>,
    pub deliveries: Vec<Delivery>,
    pub balance: i64,
    /// Webhook signing keys with their creation time, oldest first; the last one signs.
    keys: Vec<(PrivateKey, String)>,
    jobs: BinaryHeap<Scheduled>,
    job_seq: u64,
    /// Ids, hex tokens, payer details.
    ids_rng: ChaCha8Rng,
    used_ids: HashSet<String>,
    /// Whether each invoice gets paid, and what "any amount" invoices are paid.
    pay_rng: ChaCha8Rng,
    /// Which signatures go out high-S.
    signature_rng: ChaCha8Rng,
    pub dice: FaultDice,
    pub requests: u64,
    pub injected: Vec<InjectedFault>,
}

impl World {
    pub fn new(config: &SandboxConfig, root_url: String, now: OffsetDateTime) -> Self {
        let settings = Settings {
            pay_delay: config.pay_delay,
            credit_delay: config.credit_delay,
            pay_probability: config.pay_probability,
            invoice_fee: config.invoice_fee,
            transfer_fee: config.transfer_fee,
            transfer_processing_delay: config.transfer_processing_delay,
            transfer_settle_delay: config.transfer_settle_delay,
            workspace_id: config.workspace_id.clone(),
            retry_schedule: config.retry_schedule.clone(),
            root_url,
        };
        let key = config
            .signing_key
            .clone()
            .unwrap_or_else(PrivateKey::generate);
        Self {
            settings,
            projects: config.projects.iter().cloned().collect(),
            invoices: Table::default(),
            invoice_logs: Table::default(),
            transfers: Table::default(),
            transfer_logs: Table::default(),
            external_ids: HashMap::new(),
            webhooks: Table::default(),
            events: Table::default(),
            attempts: Table::default(),
            deliveries: Vec::new(),
            balance: config.initial_balance,
            keys: vec![(key, timestamp(now))],
            jobs: BinaryHeap::new(),
            job_seq: 0,
            ids_rng: stream(config.seed, 1),
            used_ids: HashSet::new(),
            pay_rng: stream(config.seed, 2),
            signature_rng: stream(config.seed, 3),
            dice: FaultDice::new(config.faults.clone()),
            requests: 0,
            injected: Vec::new(),
        }
    }

    /// A fresh 16-digit id, unique in this sandbox.
    pub fn next_id(&mut self) -> String {
        loop {
            let id = self
                .ids_rng
                .random_range(1_000_000_000_000_000u64..10_000_000_000_000_000)
                .to_string();
            if self.used_ids.insert(id.clone()) {
                return id;
            }
        }
    }

    /// 32 hex digits, as in Stark's invoice pdf/link/brcode URLs.
    pub fn hex32(&mut self) -> String {
        format!("{:032x}", self.ids_rng.random::<u128>())
    }

    /// `n` random decimal digits.
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.ids_rng.random_range(0..10u8)))
            .collect()
    }

    /// A 32-digit ledger transaction id (the 2024 sandbox shape).
    fn transaction_id(&mut self) -> String {
        let mut id = self.digits(32);
        id.replace_range(0..1, "4");
        id
    }

    /// Queues `job` for sandbox time `at`.
    pub fn schedule(&mut self, at: OffsetDateTime, job: Job) {
        self.job_seq += 1;
        self.jobs.push(Scheduled {
            at,
            seq: self.job_seq,
            job,
        });
    }

    /// When the next job is due.
    pub fn next_job_at(&self) -> Option<OffsetDateTime> {
        self.jobs.peek().map(|s| s.at)
    }

    /// Runs every job due at `now`, returning the webhook POSTs to make.
    pub fn run_due(&mut self, now: OffsetDateTime) -> Vec<Outgoing> {
        let mut outgoing = Vec::new();
        while self.jobs.peek().is_some_and(|s| s.at <= now) {
            let Some(Scheduled { job, .. }) = self.jobs.pop() else {
                break;
            };
            match job {
                Job::PayInvoice(id) => self.pay_invoice(&id, now),
                Job::CreditInvoice(id) => self.credit_invoice(&id, now),
                Job::InvoiceOverdue(id) => self.invoice_overdue(&id, now),
                Job::InvoiceExpire(id) => self.invoice_expire(&id, now),
                Job::ProcessTransfer(id) => self.process_transfer(&id, now),
                Job::SettleTransfer(id) => self.settle_transfer(&id, now),
                Job::Deliver(id) => outgoing.extend(self.prepare_delivery(&id, now)),
            }
        }
        outgoing
    }

    fn record_fault(&mut self, request: u64, kind: &str, detail: String) {
        tracing::info!(fault = kind, request, detail = %detail, "injected fault");
        self.injected.push(InjectedFault {
            request,
            kind: kind.to_owned(),
            detail,
        });
    }

    /// Records a fault injected into the current request.
    pub fn record_request_fault(&mut self, kind: &str, detail: String) {
        self.record_fault(self.requests, kind, detail);
    }

    /// Replaces the fault settings and reseeds their dice.
    pub fn set_faults(&mut self, faults: FaultConfig) {
        self.dice = FaultDice::new(faults);
    }

    // ----- invoices ---------------------------------------------------------------------

    /// Stores a new invoice, logs `created`, and schedules its lifecycle.
    pub fn add_invoice(&mut self, rec: InvoiceRec, now: OffsetDateTime) -> Invoice {
        let id = rec.invoice.id.clone();
        let due_at = rec.due_at;
        let expire_at = due_at + time::Duration::seconds(rec.invoice.expiration);
        let invoice = rec.invoice.clone();
        self.invoices.insert(id.clone(), now, rec);
        self.invoice_log(&id, InvoiceLogType::Created, now);
        if self.pay_rng.random_bool(self.settings.pay_probability) {
            self.schedule(now + self.settings.pay_delay, Job::PayInvoice(id.clone()));
        }
        self.schedule(due_at, Job::InvoiceOverdue(id.clone()));
        self.schedule(expire_at, Job::InvoiceExpire(id));
        invoice
    }

    /// Writes a log with the invoice's current snapshot and emits its events.
    pub fn invoice_log(&mut self, invoice_id: &str, log_type: InvoiceLogType, now: OffsetDateTime) {
        let Some(invoice) = self
            .invoices
            .get(invoice_id)
            .map(|r| r.item.invoice.clone())
        else {
            return;
        };
        let log = InvoiceLog {
            id: self.next_id(),
            created: timestamp(now),
            log_type,
            errors: Vec::new(),
            invoice,
        };
        self.invoice_logs.insert(log.id.clone(), now, log.clone());
        self.emit_event("invoice", EventLog::Invoice(log), now);
    }

    fn pay_invoice(&mut self, id: &str, now: OffsetDateTime) {
        let any_amount_paid = self.pay_rng.random_range(100..=100_000i64);
        let bank = ["00000000", "60701190", "60746948", "00360305", "18236120"]
            [self.ids_rng.random_range(0..5usize)];
        let branch = self.digits(4);
        let account = format!("{}-{}", self.digits(6), self.digits(1));
        let e2e_tail: String = (0..11)
            .map(|_| {
                char::from(
                    b"abcdefghijklmnopqrstuvwxyz0123456789"[self.ids_rng.random_range(0..36usize)],
                )
            })
            .collect();
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
        let inv = &mut rec.invoice;
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
        rec.payment = Some(InvoicePayment {
            amount: inv.amount,
            name: inv.name.clone(),
            tax_id: inv.tax_id.clone(),
            bank_code: bank.to_owned(),
            branch_code: branch,
            account_number: account,
            account_type: "checking".to_owned(),
            end_to_end_id,
            method: "pix".to_owned(),
        });
        self.invoice_log(id, InvoiceLogType::Paid, now);
        self.schedule(
            now + self.settings.credit_delay,
            Job::CreditInvoice(id.to_owned()),
        );
    }

    fn credit_invoice(&mut self, id: &str, now: OffsetDateTime) {
        let transaction_id = self.transaction_id();
        let fee = self.settings.invoice_fee;
        let Some(row) = self.invoices.get_mut(id) else {
            return;
        };
        let rec = &mut row.item;
        if rec.invoice.status != InvoiceStatus::Paid || rec.credited {
            return;
        }
        rec.credited = true;
        rec.invoice.fee = fee;
        rec.invoice.transaction_ids = vec![transaction_id];
        rec.invoice.updated = timestamp(now);
        self.balance += rec.invoice.amount - fee;
        self.invoice_log(id, InvoiceLogType::Credited, now);
    }

    fn invoice_overdue(&mut self, id: &str, now: OffsetDateTime) {
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

    fn invoice_expire(&mut self, id: &str, now: OffsetDateTime) {
        let expires = |r: &crate::table::Row<InvoiceRec>| {
            r.item.due_at + time::Duration::seconds(r.item.invoice.expiration)
        };
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
    pub fn invoice_status_change(
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
        row.item.invoice.status = to;
        row.item.invoice.updated = timestamp(now);
        self.invoice_log(id, log_type, now);
        true
    }

    // ----- transfers --------------------------------------------------------------------

    /// Stores a new transfer, logs `created`, and schedules processing.
    pub fn add_transfer(&mut self, rec: TransferRec, now: OffsetDateTime) -> Transfer {
        let id = rec.transfer.id.clone();
        if let Some(external_id) = &rec.transfer.external_id {
            self.external_ids.insert(external_id.clone(), id.clone());
        }
        let start = rec.scheduled_at.max(now);
        let transfer = rec.transfer.clone();
        self.transfers.insert(id.clone(), now, rec);
        self.transfer_log(&id, "created", Vec::new(), now);
        self.schedule(
            start + self.settings.transfer_processing_delay,
            Job::ProcessTransfer(id),
        );
        transfer
    }

    /// Writes a transfer log and emits its events.
    pub fn transfer_log(
        &mut self,
        transfer_id: &str,
        log_type: &str,
        errors: Vec<Value>,
        now: OffsetDateTime,
    ) {
        let Some(transfer) = self
            .transfers
            .get(transfer_id)
            .map(|r| r.item.transfer.clone())
        else {
            return;
        };
        let log = TransferLog {
            id: self.next_id(),
            created: timestamp(now),
            log_type: log_type.to_owned(),
            errors,
            transfer,
        };
        self.transfer_logs.insert(log.id.clone(), now, log.clone());
        self.emit_event("transfer", EventLog::Transfer(log), now);
    }

    /// `created` → `processing`: the balance is checked and debited here. A transfer the
    /// balance cannot cover is not debited and ends `failed` at settlement, as Stark's does.
    fn process_transfer(&mut self, id: &str, now: OffsetDateTime) {
        let fee = self.settings.transfer_fee;
        let balance = self.balance;
        let Some(row) = self.transfers.get_mut(id) else {
            return;
        };
        let rec = &mut row.item;
        if rec.transfer.status != TransferStatus::Created {
            return;
        }
        let cost = rec.transfer.amount + fee;
        rec.transfer.status = TransferStatus::Processing;
        rec.transfer.fee = fee;
        rec.transfer.updated = timestamp(now);
        if cost <= balance {
            rec.debited = true;
            self.balance -= cost;
        }
        self.transfer_log(id, "processing", Vec::new(), now);
        self.schedule(
            now + self.settings.transfer_settle_delay,
            Job::SettleTransfer(id.to_owned()),
        );
    }

    fn settle_transfer(&mut self, id: &str, now: OffsetDateTime) {
        let transaction_id = self.transaction_id();
        let balance = self.balance;
        let Some(row) = self.transfers.get_mut(id) else {
            return;
        };
        let rec = &mut row.item;
        if rec.transfer.status != TransferStatus::Processing {
            return;
        }
        rec.transfer.updated = timestamp(now);
        if rec.debited {
            rec.transfer.status = TransferStatus::Success;
            rec.transfer.transaction_ids = vec![transaction_id];
            self.transfer_log(id, "success", Vec::new(), now);
        } else {
            rec.transfer.status = TransferStatus::Failed;
            let needed = rec.transfer.amount + rec.transfer.fee;
            let errors = vec![json!(format!(
                "Insufficient balance: the transfer needs {needed} cents and the balance was {balance} cents."
            ))];
            self.transfer_log(id, "failed", errors, now);
        }
    }

    // ----- events and webhooks ------------------------------------------------------------

    /// One event per subscribed webhook, each scheduled for delivery now (or later, when the
    /// out-of-order fault holds it back).
    fn emit_event(&mut self, subscription: &str, log: EventLog, now: OffsetDateTime) {
        let hooks: Vec<String> = self
            .webhooks
            .live()
            .filter(|r| r.item.subscriptions.iter().any(|s| s == subscription))
            .map(|r| r.item.id.clone())
            .collect();
        for webhook_id in hooks {
            let event = Event {
                id: self.next_id(),
                created: timestamp(now),
                is_delivered: Some(false),
                subscription: subscription.to_owned(),
                workspace_id: Some(self.settings.workspace_id.clone()),
                log: log.clone(),
            };
            let event_id = event.id.clone();
            self.events.insert(
                event_id.clone(),
                now,
                EventRec {
                    event,
                    webhook_id,
                    failures: 0,
                },
            );
            let mut at = now;
            if self.dice.roll_out_of_order() {
                at += Duration::from_secs(self.dice.config.out_of_order_delay_secs);
                self.record_fault(0, "outOfOrder", event_id.clone());
            }
            self.schedule(at, Job::Deliver(event_id));
        }
    }

    /// Builds the signed POST for an event, unless it was deleted, delivered, or its webhook is
    /// gone.
    fn prepare_delivery(&mut self, event_id: &str, now: OffsetDateTime) -> Option<Outgoing> {
        let rec = self.events.get(event_id)?;
        if rec.item.event.is_delivered == Some(true) {
            return None;
        }
        let webhook = self.webhooks.get(&rec.item.webhook_id)?.item.clone();
        let mut event = rec.item.event.clone();
        let try_number = rec.item.failures + 1;
        // Webhook bodies carry no isDelivered (only GET /v2/event shows it).
        event.is_delivered = None;
        if self.dice.roll_key_rotation() {
            self.rotate_key(now);
            self.record_fault(0, "keyRotation", event_id.to_owned());
        }
        let send_duplicate = self.dice.roll_duplicate();
        let body = to_string_sorted(&json!({ "event": event }));
        let (signature, high_s) = self.sign(body.as_bytes());
        Some(Outgoing {
            event_id: event_id.to_owned(),
            webhook_id: webhook.id,
            url: webhook.url,
            body,
            signature,
            high_s,
            try_number,
            duplicate: false,
            send_duplicate,
        })
    }

    /// Signs with the newest key; about half the signatures go out in their high-S form, as
    /// Stark's do, so that receivers that forget `normalize_s()` fail in tests, not in
    /// production.
    fn sign(&mut self, message: &[u8]) -> (String, bool) {
        let low = self
            .keys
            .last()
            .map(|(k, _)| k.sign(message))
            .expect("the sandbox always has a key");
        let low = low.normalize_s().unwrap_or(low);
        if self.signature_rng.random_bool(0.5) {
            (signature_to_base64(&high_s_twin(&low)), true)
        } else {
            (signature_to_base64(&low), false)
        }
    }

    /// Records how a POST ended; on failure records an attempt and schedules the next try. On
    /// success returns the duplicate to send, if the fault rolled one.
    pub fn record_delivery(
        &mut self,
        out: &Outgoing,
        outcome: DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Option<Outgoing> {
        self.deliveries.push(Delivery {
            event_id: out.event_id.clone(),
            webhook_id: out.webhook_id.clone(),
            url: out.url.clone(),
            body: out.body.clone(),
            signature: out.signature.clone(),
            high_s: out.high_s,
            duplicate: out.duplicate,
            try_number: out.try_number,
            at: timestamp(now),
            outcome: outcome.clone(),
        });
        if out.duplicate {
            return None;
        }
        let (code, message) = match outcome {
            DeliveryOutcome::Delivered => {
                if let Some(row) = self.events.get_mut(&out.event_id) {
                    row.item.event.is_delivered = Some(true);
                }
                if out.send_duplicate {
                    self.record_fault(0, "duplicateDelivery", out.event_id.clone());
                    return Some(Outgoing {
                        duplicate: true,
                        ..out.clone()
                    });
                }
                return None;
            }
            DeliveryOutcome::BadHttpStatus { status } => (
                "badHttpStatus",
                format!("HTTP POST request returned status {status}"),
            ),
            DeliveryOutcome::BadConnection { detail } => (
                "badConnection",
                format!("HTTP POST request failed: {detail}"),
            ),
            DeliveryOutcome::Timeout => ("timeout", "HTTP POST request timed out".to_owned()),
        };
        let attempt = EventAttempt {
            id: self.next_id(),
            code: code.to_owned(),
            message,
            event_id: out.event_id.clone(),
            webhook_id: out.webhook_id.clone(),
            created: timestamp(now),
        };
        self.attempts.insert(attempt.id.clone(), now, attempt);
        let row = self.events.get_mut(&out.event_id)?;
        row.item.failures += 1;
        let failures = row.item.failures as usize;
        if let Some(wait) = self.settings.retry_schedule.get(failures - 1).copied() {
            self.schedule(now + wait, Job::Deliver(out.event_id.clone()));
        }
        None
    }

    // ----- keys ---------------------------------------------------------------------------

    /// Adds a new signing key; older keys stay listed so that old signatures still verify.
    pub fn rotate_key(&mut self, now: OffsetDateTime) -> PublicKey {
        let key = PrivateKey::generate();
        let public = key.public_key();
        self.keys.push((key, timestamp(now)));
        public
    }

    /// The key that signs webhooks now.
    pub fn public_key(&self) -> PublicKey {
        self.keys
            .last()
            .map(|(k, _)| k.public_key())
            .expect("the sandbox always has a key")
    }

    /// `GET /v2/public-key` entries, newest first.
    pub fn public_keys(&self) -> Vec<PublicKeyEntry> {
        self.keys
            .iter()
            .rev()
            .map(|(k, created)| PublicKeyEntry {
                content: k.public_key().to_pem(),
                created: created.clone(),
            })
            .collect()
    }

    /// A copy of everything, for assertions and `GET /_sandbox/state`.
    pub fn snapshot(&self, now: OffsetDateTime) -> SandboxState {
        SandboxState {
            now: timestamp(now),
            balance: self.balance,
            requests: self.requests,
            invoices: self
                .invoices
                .live()
                .map(|r| r.item.invoice.clone())
                .collect(),
            invoice_logs: self.invoice_logs.live().map(|r| r.item.clone()).collect(),
            transfers: self
                .transfers
                .live()
                .map(|r| r.item.transfer.clone())
                .collect(),
            transfer_logs: self.transfer_logs.live().map(|r| r.item.clone()).collect(),
            webhooks: self.webhooks.live().map(|r| r.item.clone()).collect(),
            events: self.events.live().map(|r| r.item.event.clone()).collect(),
            attempts: self.attempts.live().map(|r| r.item.clone()).collect(),
            deliveries: self.deliveries.clone(),
            public_keys: self.public_keys(),
            faults: self.injected.clone(),
        }
    }
}
