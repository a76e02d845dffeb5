//! What tests and operators can inspect: a snapshot of everything the sandbox holds.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stark_client::{Event, Invoice, InvoiceLog, PublicKeyEntry, Transfer, TransferLog, Webhook};

/// One failed webhook delivery, as `GET /v2/event/attempt` shows it. Stark records only
/// failures; a successful delivery sets the event's `isDelivered` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventAttempt {
    /// 16-digit id.
    pub id: String,
    /// `badHttpStatus`, `badConnection` or `timeout`.
    pub code: String,
    /// e.g. `HTTP POST request returned status 500`.
    pub message: String,
    /// The event that was being delivered.
    pub event_id: String,
    /// The webhook it was delivered to.
    pub webhook_id: String,
    /// When the attempt ended.
    pub created: String,
}

/// How one POST to a webhook URL ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum DeliveryOutcome {
    /// HTTP 200: the only answer that counts as delivered.
    Delivered,
    /// Any other HTTP status.
    BadHttpStatus {
        /// The status received.
        status: u16,
    },
    /// The connection failed or broke.
    BadConnection {
        /// What the HTTP client said.
        detail: String,
    },
    /// No answer within the delivery timeout.
    Timeout,
}

/// A webhook POST the sandbox made, with the exact bytes and signature, so that tests can check
/// what a receiver got (and replay it into a verifier, as the Python SDK test does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The event delivered.
    pub event_id: String,
    /// The webhook it went to.
    pub webhook_id: String,
    /// The URL posted to.
    pub url: String,
    /// The body, `{"event": {...}}` as Python's `json.dumps(sort_keys=True)` writes it; empty
    /// when the sandbox runs with `keep_delivery_bodies` off.
    pub body: String,
    /// The `Digital-Signature` header.
    pub signature: String,
    /// Whether that signature was sent in its high-S form.
    pub high_s: bool,
    /// True for the extra copy sent by the duplicate-delivery fault.
    pub duplicate: bool,
    /// 1 for the first try, 2 to 4 for the retries.
    pub try_number: u32,
    /// Sandbox time the POST ended.
    pub at: String,
    /// How it ended.
    pub outcome: DeliveryOutcome,
}

/// A fault the sandbox injected, in the order injected. Two runs with the same seed and the same
/// requests produce the same list (minus the ids in `detail`, which name fresh objects).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectedFault {
    /// Which `/v2` request it hit (counting from 1), or 0 for webhook faults.
    pub request: u64,
    /// `serverError`, `slow`, `drop`, `lostAnswer500`, `lostAnswerDrop`, `duplicateDelivery`,
    /// `outOfOrder` or `keyRotation`.
    pub kind: String,
    /// The request line or the event id.
    pub detail: String,
}

/// How far the sandbox's lifecycles have got, across every workspace: a few numbers kept up to
/// date as things happen, so that a progress display can ask many times a second without the
/// deep copy of [`SandboxState`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Invoices created.
    pub invoices_issued: u64,
    /// Invoices paid by their payer.
    pub invoices_paid: u64,
    /// Invoices whose money reached the balance.
    pub invoices_credited: u64,
    /// Invoices reversed at least once (partly or fully).
    pub invoices_reversed: u64,
    /// Reversals (an invoice may be reversed more than once).
    #[serde(default)]
    pub reversals: u64,
    /// Transfers created.
    pub transfers_created: u64,
    /// Transfers settled: status `success`.
    pub transfers_settled: u64,
    /// Transfers that ended `failed` (the balance did not cover amount + fee).
    pub transfers_failed: u64,
    /// Authenticated `/v2` requests (what a client paid a signature and a round trip for).
    #[serde(default)]
    pub requests: u64,
    /// Webhook POSTs made for the workspace's events: first tries, retries and duplicates.
    #[serde(default)]
    pub webhook_posts: u64,
}

impl Counters {
    /// The sum of two sets of counters.
    pub fn plus(self, other: &Counters) -> Counters {
        Counters {
            invoices_issued: self.invoices_issued + other.invoices_issued,
            invoices_paid: self.invoices_paid + other.invoices_paid,
            invoices_credited: self.invoices_credited + other.invoices_credited,
            invoices_reversed: self.invoices_reversed + other.invoices_reversed,
            reversals: self.reversals + other.reversals,
            transfers_created: self.transfers_created + other.transfers_created,
            transfers_settled: self.transfers_settled + other.transfers_settled,
            transfers_failed: self.transfers_failed + other.transfers_failed,
            requests: self.requests + other.requests,
            webhook_posts: self.webhook_posts + other.webhook_posts,
        }
    }
}

/// Everything the sandbox holds, oldest first, for assertions (`SandboxHandle::state`) and for
/// `GET /_sandbox/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxState {
    /// Current sandbox time.
    pub now: String,
    /// Cents available in the default workspace: initial balance + credited invoices (net of
    /// fee) − transfers debited (with their fee) − reversals. Other workspaces: `balances`.
    pub balance: i64,
    /// `/v2` requests received so far (faulted ones included).
    pub requests: u64,
    /// All invoices, of every workspace (`invoice_workspaces` says whose).
    pub invoices: Vec<Arc<Invoice>>,
    /// All invoice logs.
    pub invoice_logs: Vec<Arc<InvoiceLog>>,
    /// All transfers, of every workspace (`transfer_workspaces` says whose).
    pub transfers: Vec<Arc<Transfer>>,
    /// All transfer logs.
    pub transfer_logs: Vec<Arc<TransferLog>>,
    /// Webhooks not deleted.
    pub webhooks: Vec<Webhook>,
    /// Events not deleted, with `isDelivered`.
    pub events: Vec<Arc<Event>>,
    /// Failed delivery attempts.
    pub attempts: Vec<EventAttempt>,
    /// Every webhook POST made.
    pub deliveries: Vec<Arc<Delivery>>,
    /// The webhook signing keys, newest first, as `GET /v2/public-key` lists them.
    pub public_keys: Vec<PublicKeyEntry>,
    /// Faults injected so far.
    pub faults: Vec<InjectedFault>,
    /// The default workspace's id (where `new_project()` projects act).
    #[serde(default)]
    pub workspace_id: String,
    /// Balance in cents of every workspace, by workspace id.
    #[serde(default)]
    pub balances: BTreeMap<String, i64>,
    /// Invoice id → id of the workspace it belongs to.
    #[serde(default)]
    pub invoice_workspaces: BTreeMap<String, String>,
    /// Transfer id → id of the workspace it belongs to.
    #[serde(default)]
    pub transfer_workspaces: BTreeMap<String, String>,
    /// The lifecycle counters, as [`crate::SandboxHandle::counters`] gives them.
    #[serde(default)]
    pub counters: Counters,
}

impl SandboxState {
    /// An invoice by id.
    pub fn invoice(&self, id: &str) -> Option<&Invoice> {
        self.invoices.iter().map(|i| &**i).find(|i| i.id == id)
    }

    /// A transfer by id.
    pub fn transfer(&self, id: &str) -> Option<&Transfer> {
        self.transfers.iter().map(|t| &**t).find(|t| t.id == id)
    }

    /// The id of the workspace an invoice belongs to.
    pub fn invoice_workspace(&self, invoice_id: &str) -> Option<&str> {
        self.invoice_workspaces.get(invoice_id).map(String::as_str)
    }

    /// The id of the workspace a transfer belongs to.
    pub fn transfer_workspace(&self, transfer_id: &str) -> Option<&str> {
        self.transfer_workspaces
            .get(transfer_id)
            .map(String::as_str)
    }

    /// The invoices of one workspace, oldest first.
    pub fn invoices_in<'a>(&'a self, workspace_id: &'a str) -> impl Iterator<Item = &'a Invoice> {
        self.invoices
            .iter()
            .map(|i| &**i)
            .filter(move |i| self.invoice_workspace(&i.id) == Some(workspace_id))
    }

    /// The transfers of one workspace, oldest first.
    pub fn transfers_in<'a>(&'a self, workspace_id: &'a str) -> impl Iterator<Item = &'a Transfer> {
        self.transfers
            .iter()
            .map(|t| &**t)
            .filter(move |t| self.transfer_workspace(&t.id) == Some(workspace_id))
    }

    /// An event by id.
    pub fn event(&self, id: &str) -> Option<&Event> {
        self.events.iter().map(|e| &**e).find(|e| e.id == id)
    }

    /// The invoice log types of one invoice, in order (`["created", "paid", "credited"]`).
    pub fn invoice_log_types(&self, invoice_id: &str) -> Vec<&'static str> {
        self.invoice_logs
            .iter()
            .filter(|l| l.invoice.id == invoice_id)
            .map(|l| l.log_type.as_str())
            .collect()
    }

    /// The transfer log types of one transfer, in order.
    pub fn transfer_log_types(&self, transfer_id: &str) -> Vec<&str> {
        self.transfer_logs
            .iter()
            .filter(|l| l.transfer.id == transfer_id)
            .map(|l| l.log_type.as_str())
            .collect()
    }

    /// Attempts recorded for one event.
    pub fn attempts_for(&self, event_id: &str) -> Vec<&EventAttempt> {
        self.attempts
            .iter()
            .filter(|a| a.event_id == event_id)
            .collect()
    }
}
