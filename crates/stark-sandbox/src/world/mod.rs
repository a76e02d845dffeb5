//! The sandbox's state and everything that changes it, behind one mutex.
//!
//! Every change is synchronous and quick (no I/O under the lock): API handlers and the
//! scheduler lock the world, apply a change, and leave. Webhook POSTs happen outside, in
//! [`crate::engine`], which reports their outcome back here.
//!
//! The state is split by resource: [`invoices`] and [`transfers`] hold the objects and their
//! lifecycles, [`reversals`] what a payer claws back, [`events`] the webhooks, events, attempts
//! and deliveries, [`workspaces`] the workspaces with their balances and the projects acting in
//! them, [`ids`], [`keys`] and [`schedule`] the ids, signing keys and job queue. This file holds
//! what is shared (settings, the request counter, injected faults, the counters) and drives the
//! scheduled [`Job`]s. Fields are private to this module tree: the route modules
//! (`crate::invoices`, `crate::transfers`, `crate::api`) parse and check requests, then call the
//! methods here, which are the only way state changes. Every stored row belongs to a workspace,
//! and every lookup made for the API names the caller's workspace.

mod events;
mod ids;
mod invoices;
mod keys;
mod reversals;
mod schedule;
mod transfers;
mod workspaces;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use stark_client::{InvoiceLog, PrivateKey, PublicKey, PublicKeyEntry, TransferLog, Webhook};
use time::OffsetDateTime;

use crate::auth::Projects;
use crate::clock::timestamp;
use crate::config::{FaultConfig, SandboxConfig};
use crate::faults::{FaultDice, LostAnswer, RequestFaults, stream};
use crate::state::{Counters, Delivery, EventAttempt, InjectedFault, SandboxState};
use crate::table::{Scope, Table, Ws};

pub use events::{EventRec, Outgoing};
pub use invoices::{InvoiceRec, InvoiceUpdate};
pub use reversals::ReversalRefused;
pub use transfers::{CancelOutcome, Receiver, SameDayKey, TransferLogType, TransferRec};

use ids::Ids;
use keys::SigningKeys;
use schedule::{Job, Scheduler};
use workspaces::{DEFAULT, Workspaces};

/// The parts of [`SandboxConfig`] the world needs after start.
#[derive(Debug, Clone)]
struct Settings {
    pay_delay: Duration,
    credit_delay: Duration,
    pay_probability: f64,
    invoice_fee: i64,
    transfer_fee: i64,
    reversal_rate: f64,
    full_reversal_share: f64,
    reversal_delay: Duration,
    listing_lag: Duration,
    transfer_processing_delay: Duration,
    transfer_settle_delay: Duration,
    retry_schedule: Vec<Duration>,
    keep_delivery_bodies: bool,
    /// `http://127.0.0.1:PORT`, for the `pdf` and `link` URLs of invoices.
    root_url: String,
}

/// Everything the sandbox holds.
#[derive(Debug)]
pub struct World {
    settings: Settings,
    /// Who may call the API, with the key their requests must be signed with.
    projects: Projects,
    /// Every workspace with its balance, and which workspace each project acts in.
    workspaces: Workspaces,
    ids: Ids,
    jobs: Scheduler,
    keys: SigningKeys,
    invoices: Table<InvoiceRec>,
    invoice_logs: Table<Arc<InvoiceLog>>,
    /// Whether each invoice gets paid, and what "any amount" invoices are paid.
    pay_rng: ChaCha8Rng,
    /// Which credited invoices are reversed, fully or by how much, and when.
    reversal_rng: ChaCha8Rng,
    transfers: Table<TransferRec>,
    transfer_logs: Table<Arc<TransferLog>>,
    /// (workspace, externalId) → transfer id, for the uniqueness rule.
    external_ids: HashMap<(Ws, String), String>,
    webhooks: Table<Webhook>,
    events: Table<EventRec>,
    attempts: Table<EventAttempt>,
    deliveries: Vec<Arc<Delivery>>,
    dice: FaultDice,
    /// `/v2` requests received so far; numbers the injected faults.
    requests: u64,
    injected: Vec<InjectedFault>,
    /// Kept up to date by each lifecycle step, for progress queries that must not copy the
    /// world.
    /// Per workspace (by index).
    counters: std::collections::BTreeMap<usize, Counters>,
    /// Invoices reversed at least once, in the order of their first reversal, for
    /// [`World::reversed_snapshot`].
    reversed_invoices: Vec<String>,
}

impl World {
    /// An empty world at sandbox time `now`, with the configured projects and signing key.
    pub fn new(config: &SandboxConfig, root_url: String, now: OffsetDateTime) -> Self {
        let settings = Settings {
            pay_delay: config.pay_delay,
            credit_delay: config.credit_delay,
            pay_probability: config.pay_probability,
            invoice_fee: config.invoice_fee,
            transfer_fee: config.transfer_fee,
            reversal_rate: config.reversal_rate,
            full_reversal_share: config.full_reversal_share,
            reversal_delay: config.reversal_delay,
            listing_lag: config.listing_lag,
            transfer_processing_delay: config.transfer_processing_delay,
            transfer_settle_delay: config.transfer_settle_delay,
            retry_schedule: config.retry_schedule.clone(),
            keep_delivery_bodies: config.keep_delivery_bodies,
            root_url,
        };
        let key = config
            .signing_key
            .clone()
            .unwrap_or_else(PrivateKey::generate);
        let mut world = Self {
            settings,
            projects: Projects::new(),
            workspaces: Workspaces::default(),
            ids: Ids::new(config.seed),
            jobs: Scheduler::default(),
            keys: SigningKeys::new(key, now, config.seed),
            invoices: Table::default(),
            invoice_logs: Table::default(),
            pay_rng: stream(config.seed, 2),
            reversal_rng: stream(config.seed, 4),
            transfers: Table::default(),
            transfer_logs: Table::default(),
            external_ids: HashMap::new(),
            webhooks: Table::default(),
            events: Table::default(),
            attempts: Table::default(),
            deliveries: Vec::new(),
            dice: FaultDice::new(config.faults.clone()),
            requests: 0,
            injected: Vec::new(),
            counters: Default::default(),
            reversed_invoices: Vec::new(),
        };
        let default = world.add_workspace(config.workspace_id.clone(), config.initial_balance, now);
        debug_assert_eq!(default, DEFAULT);
        for (id, key) in &config.projects {
            world.register_project_in(id.clone(), *key, DEFAULT);
        }
        world
    }

    // ----- ids and settings ---------------------------------------------------------------

    /// A fresh 16-digit id, unique in this sandbox.
    pub fn next_id(&mut self) -> String {
        self.ids.next_id()
    }

    /// 32 hex digits, as in Stark's invoice pdf/link/brcode URLs.
    pub fn hex32(&mut self) -> String {
        self.ids.hex32()
    }

    /// `http://127.0.0.1:PORT`, the root that invoice `pdf` and `link` URLs point at.
    pub fn root_url(&self) -> &str {
        &self.settings.root_url
    }

    // ----- projects -----------------------------------------------------------------------

    /// The registered projects, for authenticating a request.
    pub fn projects(&self) -> &Projects {
        &self.projects
    }

    // ----- requests and faults ------------------------------------------------------------

    /// Counts an incoming `/v2` request and rolls the faults it meets, recording under the
    /// request's number the ones that take effect: the one that replaces the answer (if any),
    /// and `slow`.
    pub fn receive_request(&mut self, line: &str) -> RequestFaults {
        self.requests += 1;
        let faults = self.dice.roll_request();
        if let Some(answer) = faults.answer() {
            self.record_request_fault(answer.kind(), line.to_owned());
        }
        if faults.slow {
            self.record_request_fault("slow", line.to_owned());
        }
        faults
    }

    /// Rolls whether a create that succeeded loses its answer, recording it if so.
    pub fn roll_lost_answer(&mut self, line: &str) -> Option<LostAnswer> {
        let lost = self.dice.roll_lost_answer();
        match lost {
            Some(LostAnswer::ServerError) => {
                self.record_request_fault("lostAnswer500", line.into())
            }
            Some(LostAnswer::Drop) => self.record_request_fault("lostAnswerDrop", line.into()),
            None => {}
        }
        lost
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

    /// The fault settings in force.
    pub fn faults(&self) -> &FaultConfig {
        &self.dice.config
    }

    /// Replaces the fault settings and reseeds their dice.
    pub fn set_faults(&mut self, faults: FaultConfig) {
        self.dice = FaultDice::new(faults);
    }

    // ----- scheduling ---------------------------------------------------------------------

    /// What a list query of workspace `ws` at `now` may show: rows created at least the listing
    /// lag ago.
    fn listed(&self, ws: Ws, now: OffsetDateTime) -> Scope {
        Scope {
            ws,
            created_by: Some(now - self.settings.listing_lag),
        }
    }

    /// Queues `job` for sandbox time `at`.
    fn schedule(&mut self, at: OffsetDateTime, job: Job) {
        self.jobs.push(at, job);
    }

    /// When the next job is due.
    pub fn next_job_at(&self) -> Option<OffsetDateTime> {
        self.jobs.next_at()
    }

    /// Runs every job due at `now`, returning the webhook POSTs to make.
    pub fn run_due(&mut self, now: OffsetDateTime) -> Vec<Outgoing> {
        let mut outgoing = Vec::new();
        while let Some(job) = self.jobs.pop_due(now) {
            match job {
                Job::PayInvoice(id) => self.pay_invoice(&id, now),
                Job::CreditInvoice(id) => self.credit_invoice(&id, now),
                Job::ReverseInvoice(id, cents) => self.scheduled_reversal(&id, cents, now),
                Job::InvoiceOverdue(id) => self.invoice_overdue(&id, now),
                Job::InvoiceExpire(id) => self.invoice_expire(&id, now),
                Job::ProcessTransfer(id) => self.process_transfer(&id, now),
                Job::SettleTransfer(id) => self.settle_transfer(&id, now),
                Job::Deliver(id) => outgoing.extend(self.prepare_delivery(&id, now)),
            }
        }
        outgoing
    }

    // ----- keys ---------------------------------------------------------------------------

    /// Adds a new signing key; older keys stay listed so that old signatures still verify.
    pub fn rotate_key(&mut self, now: OffsetDateTime) -> PublicKey {
        self.keys.rotate(now)
    }

    /// The key that signs webhooks now.
    pub fn public_key(&self) -> PublicKey {
        self.keys.current()
    }

    /// `GET /v2/public-key` entries, newest first.
    pub fn public_keys(&self) -> Vec<PublicKeyEntry> {
        self.keys.entries()
    }

    // ----- inspection ---------------------------------------------------------------------

    /// How far the lifecycles have got (a copy of a few numbers).
    pub fn counters(&self) -> Counters {
        self.counters
            .values()
            .fold(Counters::default(), |all, c| all.plus(c))
    }

    /// Counts an authenticated `/v2` request of workspace `ws`.
    pub fn count_request(&mut self, ws: Ws) {
        self.counters.entry(ws.0).or_default().requests += 1;
    }

    /// How far workspace `ws`'s lifecycles have got.
    pub fn counters_in(&self, ws: Ws) -> Counters {
        self.counters.get(&ws.0).copied().unwrap_or_default()
    }

    /// A copy of everything, for assertions and `GET /_sandbox/state`.
    pub fn snapshot(&self, now: OffsetDateTime) -> SandboxState {
        SandboxState {
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
            invoice_workspaces: self.owners(&self.invoices, |r| &r.invoice.id),
            transfer_workspaces: self.owners(&self.transfers, |r| &r.transfer.id),
            ..self.bare_snapshot(now)
        }
    }

    /// The part of [`World::snapshot`] that reversals touched: every invoice reversed at least
    /// once with its logs, and the transfers found under `transfer_key(invoice id)` (a tag);
    /// the lists of everything else are empty, the balances and counters whole. Costs the
    /// reversed invoices, not the world: for a look that runs often while the campaign grows.
    pub fn reversed_snapshot(
        &self,
        now: OffsetDateTime,
        transfer_key: &dyn Fn(&str) -> String,
    ) -> SandboxState {
        let mut state = self.bare_snapshot(now);
        for id in &self.reversed_invoices {
            let Some(row) = self.invoices.get(id) else {
                continue;
            };
            let owner = self.workspace_id(row.ws).to_owned();
            state.invoices.push(row.item.invoice.clone());
            state.invoice_workspaces.insert(id.clone(), owner);
            state
                .invoice_logs
                .extend(self.invoice_logs.keyed(id).map(|r| r.item.clone()));
            for transfer in self.transfers.keyed(&transfer_key(id)) {
                let transfer_id = &transfer.item.transfer.id;
                if !state.transfer_workspaces.contains_key(transfer_id) {
                    let owner = self.workspace_id(transfer.ws).to_owned();
                    state.transfer_workspaces.insert(transfer_id.clone(), owner);
                    state.transfers.push(transfer.item.transfer.clone());
                }
            }
        }
        state
    }

    /// A snapshot's clock, balances and counters, with every list empty.
    fn bare_snapshot(&self, now: OffsetDateTime) -> SandboxState {
        SandboxState {
            now: timestamp(now),
            balance: self.balance(),
            requests: self.requests,
            invoices: Vec::new(),
            invoice_logs: Vec::new(),
            transfers: Vec::new(),
            transfer_logs: Vec::new(),
            webhooks: Vec::new(),
            events: Vec::new(),
            attempts: Vec::new(),
            deliveries: Vec::new(),
            public_keys: Vec::new(),
            faults: Vec::new(),
            workspace_id: self.default_workspace_id().to_owned(),
            balances: self
                .balances()
                .map(|(id, cents)| (id.to_owned(), cents))
                .collect(),
            invoice_workspaces: BTreeMap::new(),
            transfer_workspaces: BTreeMap::new(),
            counters: self.counters(),
        }
    }

    /// Object id → workspace id, for every live row of `table`.
    fn owners<T>(&self, table: &Table<T>, id: impl Fn(&T) -> &String) -> BTreeMap<String, String> {
        table
            .live()
            .map(|r| (id(&r.item).clone(), self.workspace_id(r.ws).to_owned()))
            .collect()
    }
}
