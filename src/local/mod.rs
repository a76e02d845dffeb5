//! The whole pipeline on one machine: stark-sandbox as Stark Bank, the Pub/Sub emulator (or the
//! in-process bus), the three services on loopback ports, and the spammer played slot by slot
//! on a compressed clock. `cargo run --release` runs it; the end-to-end tests drive it too.

pub mod bus;
pub mod reconciler;
pub mod report;
pub mod services;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use invoice_spammer::SpammerConfig;
use pipeline_domain::receiver::Receiver;
use pipeline_domain::vocab::InvoiceTag;
use stark_client::{Client, NewInvoice};
use stark_sandbox::{FaultConfig, Sandbox, SandboxConfig, SandboxHandle, SandboxState};

use self::bus::{Bus, BusChoice, DeliverySettings};
use self::report::Report;
use self::services::Service;

/// How to run the stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Which bus.
    pub bus: BusChoice,
    /// Campaign length in hourly slots.
    pub hours: u32,
    /// Campaign seconds per real second (720: one hour in 5 s, 24 hours in 2 minutes).
    pub speed: f64,
    /// Campaign name (part of every request id; use a fresh one per run).
    pub campaign: String,
    /// Chance that the sandbox pays an invoice.
    pub pay_probability: f64,
    /// Stark's fee per credited invoice, cents.
    pub invoice_fee: i64,
    /// Stark's fee per transfer, cents (the sandbox charges it; money-sender takes it out of
    /// each payout so that the payout and its fee are what was credited).
    pub transfer_fee: i64,
    /// Chance that a credited invoice is later reversed (half fully, half partly), some before
    /// and some after its payout.
    pub reversal_rate: f64,
    /// Invoices another workspace issues (and gets paid) each slot, with its webhook pointing
    /// at our ingester and tags copied from ours: the attack a valid Stark signature does not
    /// stop.
    pub foreign_invoices_per_slot: u32,
    /// Whether the ingester refuses other workspaces' events (`STARK_WORKSPACE_ID` set). Off,
    /// they reach money-sender, which must refuse them from Stark's own record.
    pub ingester_checks_workspace: bool,
    /// Instances of invoice-sender and of money-sender, behind a round-robin proxy as Cloud Run
    /// spreads pushes; with more than one, the push subscriptions enable message ordering even
    /// on the emulator (which then cannot dead-letter: use only where nothing should).
    pub instances: u32,
    /// How long (sandbox time) a new object takes to show in Stark's lists; `None`: the
    /// sandbox's default.
    pub listing_lag: Option<Duration>,
    /// A scripted Stark outage, `(start, duration)` in campaign time from the campaign's start:
    /// every API request is answered 503 and webhooks wait until it ends.
    pub stark_outage: Option<(Duration, Duration)>,
    /// Faults the sandbox injects.
    pub faults: FaultConfig,
    /// Seed of the sandbox's behaviour.
    pub seed: u64,
    /// Push attempts before a message is dead-lettered.
    pub max_delivery_attempts: u32,
    /// Invoices per slot = the drawn 8 to 12 × this (1 to 1000; load and scale runs).
    pub rate_multiplier: u32,
    /// Waits (sandbox time) before Stark's webhook retries; `None`: Stark's schedule with a
    /// real-time floor (see [`webhook_retry_schedule`]).
    pub webhook_retries: Option<Vec<Duration>>,
    /// The scheduled reconciler's period in campaign time (`reconcile --repair` while the
    /// campaign plays and settles; see [`reconciler`]); `None`: no reconciler.
    pub reconcile_every: Option<Duration>,
    /// Reconcilers running at once, staggered (two prove they are safe together).
    pub reconcilers: u32,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            bus: BusChoice::Auto,
            hours: 24,
            speed: 720.0,
            campaign: "local".into(),
            pay_probability: 0.9,
            invoice_fee: 50,
            transfer_fee: 50,
            reversal_rate: 0.05,
            foreign_invoices_per_slot: 1,
            ingester_checks_workspace: true,
            instances: 1,
            listing_lag: None,
            stark_outage: None,
            faults: FaultConfig::default(),
            seed: 1,
            max_delivery_attempts: 100,
            rate_multiplier: 1,
            webhook_retries: None,
            reconcile_every: Some(reconciler::PERIOD),
            reconcilers: 1,
        }
    }
}

/// How long after creation an invoice is paid, and then credited, in sandbox time. Close to the
/// real sandbox (about 8 minutes), so a campaign hour holds several lifecycles.
const PAY_DELAY: Duration = Duration::from_secs(8 * 60);
const CREDIT_DELAY: Duration = Duration::from_secs(30);

/// Stark's webhook retries (5, 30 and 120 minutes after a failed delivery), but never shorter
/// than 5, 30 and 120 seconds of real time. Compressed like every other delay, they would give
/// an event about 5 real seconds at speed 1800 before Stark gives up, so a service restart or a
/// slow publish would lose payouts that the real schedule (2.5 hours) keeps safe.
pub fn webhook_retry_schedule(speed: f64) -> Vec<Duration> {
    stark_sandbox::stark_retry_schedule()
        .into_iter()
        .map(|wait| wait.mul_f64((speed / 60.0).max(1.0)))
        .collect()
}

/// The running stack.
#[derive(Debug)]
pub struct Stack {
    /// The local Stark Bank.
    pub sandbox: SandboxHandle,
    /// A client of the pipeline's project at the sandbox.
    pub stark: Client,
    /// That project's id and key, for the operator commands of a drill ([`Stack::write_env`]).
    project: (String, stark_client::PrivateKey),
    /// A client of another workspace's project, whose webhook also points at our ingester.
    pub foreign: Client,
    /// The bus.
    pub bus: Bus,
    /// Its publisher (the one the spammer and the reconciler use).
    pub publisher: pipeline_service::publisher::SharedPublisher,
    /// invoice-sender (the proxy in front of its instances when there are several).
    pub sender: Service,
    /// webhook-ingester.
    pub ingester: Service,
    /// money-sender (the proxy in front of its instances when there are several).
    pub money: Service,
    /// The instances behind `sender` and `money` when [`StackOptions::instances`] > 1.
    pub replicas: Vec<Service>,
    /// The spammer's configuration (campaign start = sandbox time at start-up).
    pub spammer: SpammerConfig,
    /// The options it was started with.
    pub options: StackOptions,
    /// Cents deposited to cover what reversals took ([`report::clawbacks`]).
    treasury: std::sync::atomic::AtomicI64,
    /// What the scheduled reconcilers did.
    reconciler: reconciler::Tally,
    /// When the clawbacks were last looked at, and the counters then.
    clawback_look: std::sync::Mutex<Option<(Instant, stark_sandbox::Counters)>>,
}

/// How often, at most, the clawbacks are looked at while the campaign plays.
const CLAWBACK_LOOK: Duration = Duration::from_secs(2);

impl Stack {
    /// Starts everything and wires it together.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(options.hours > 0, "--hours must be at least 1");
        anyhow::ensure!(
            options.speed > 0.0 && options.speed.is_finite(),
            "--speed must be positive"
        );
        let sandbox = Sandbox::start(SandboxConfig {
            speed: options.speed,
            seed: options.seed,
            pay_delay: PAY_DELAY,
            credit_delay: CREDIT_DELAY,
            pay_probability: options.pay_probability,
            invoice_fee: options.invoice_fee,
            transfer_fee: options.transfer_fee,
            reversal_rate: options.reversal_rate,
            full_reversal_share: 0.5,
            // Up to an hour after the credit: the payout comes within minutes, so some
            // reversals land before it and most after.
            reversal_delay: Duration::from_secs(3600),
            listing_lag: options
                .listing_lag
                .unwrap_or(SandboxConfig::default().listing_lag),
            retry_schedule: options
                .webhook_retries
                .clone()
                .unwrap_or_else(|| webhook_retry_schedule(options.speed)),
            // The report reads how deliveries ended, never their bytes.
            keep_delivery_bodies: false,
            // Faults start once the stack is wired: setting up is not what is being tested.
            ..Default::default()
        })
        .await
        .context("starting stark-sandbox")?;
        let (project, key) = sandbox.new_project();
        let mut client_config = sandbox.client_config(&project, key.clone());
        client_config.timeout = Duration::from_secs(5);
        client_config.retry_backoff = Duration::from_millis(50);
        let stark = Client::new(client_config).context("building the Stark client")?;
        let foreign = {
            let workspace = sandbox.new_workspace();
            let (project, key) = sandbox.new_project_in(&workspace);
            let mut config = sandbox.client_config(&project, key);
            config.timeout = Duration::from_secs(5);
            Client::new(config).context("building the foreign workspace's client")?
        };

        let mut bus = Bus::start(options.bus).await?;
        let publisher = bus.publisher();

        let instances = options.instances.max(1);
        let (sender, sender_replicas) = {
            let deps = invoice_sender::Deps {
                stark: stark.clone(),
            };
            replicated("invoice-sender", instances, move || {
                let deps = deps.clone();
                Box::new(move |port| {
                    let mut config = invoice_sender::Config::local();
                    config.listen.set_port(port);
                    Box::pin(invoice_sender::build(config, deps.clone()))
                })
            })
            .await?
        };
        let (money, money_replicas) = {
            let deps = money_sender::Deps {
                stark: stark.clone(),
            };
            let transfer_fee = options.transfer_fee;
            replicated("money-sender", instances, move || {
                let deps = deps.clone();
                Box::new(move |port| {
                    let mut config = money_sender::Config::local();
                    config.listen.set_port(port);
                    config.transfer_fee = transfer_fee;
                    // As deployed: the delivery that makes a payout waits for Stark to complete it.
                    config.settle_wait = money_sender::DEFAULT_SETTLE_WAIT;
                    Box::pin(money_sender::build(config, deps.clone()))
                })
            })
            .await?
        };
        let ingester = {
            let deps = webhook_ingester::Deps {
                stark: stark.clone(),
                publisher: publisher.clone(),
            };
            let workspace = sandbox.workspace_id();
            let checks_workspace = options.ingester_checks_workspace;
            Service::start(
                "webhook-ingester",
                Box::new(move |port| {
                    let mut config = webhook_ingester::Config::local(&workspace);
                    config.listen.set_port(port);
                    if !checks_workspace {
                        config.workspace_id = None;
                    }
                    Box::pin(webhook_ingester::build(config, deps.clone()))
                }),
            )
            .await?
        };
        // Backoffs in real time: short enough that a retried message lands within a slot.
        let settings = DeliverySettings {
            max_delivery_attempts: options.max_delivery_attempts,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            ordering: instances > 1,
        };
        bus.wire(&sender.url("/push"), &money.url("/push"), &settings)
            .await?;
        stark
            .create_webhook(&ingester.url("/webhook"), &["invoice".to_owned()])
            .await
            .context("registering the ingester as the sandbox's webhook")?;
        foreign
            .create_webhook(&ingester.url("/webhook"), &["invoice".to_owned()])
            .await
            .context("registering the ingester as the foreign workspace's webhook")?;

        sandbox
            .set_faults(options.faults.clone())
            .map_err(|e| anyhow::anyhow!("invalid fault settings: {e}"))?;
        let mut spammer = SpammerConfig::new(options.campaign.clone(), sandbox.now());
        if let Some((start, duration)) = options.stark_outage {
            sandbox.schedule_outage(spammer.start + start, duration);
        }
        spammer.hours = options.hours;
        spammer.rate_multiplier = options.rate_multiplier;
        Ok(Stack {
            sandbox,
            stark,
            project: (project, key),
            foreign,
            bus,
            publisher,
            sender,
            ingester,
            money,
            replicas: sender_replicas.into_iter().chain(money_replicas).collect(),
            spammer,
            options,
            treasury: std::sync::atomic::AtomicI64::new(0),
            reconciler: reconciler::Tally::default(),
            clawback_look: std::sync::Mutex::new(None),
        })
    }

    /// Writes `dir/local.env` (and the project's key, mode 0600, beside it) so that, after
    /// `set -a; . target/local.env; set +a` (or with the file as `.env`), every operator
    /// command works against this stack: the Stark settings with the sandbox's base URL, the
    /// Pub/Sub emulator, the campaign and the workspace. Returns the env file's path.
    pub fn write_env(&self, dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let key_path = dir.join("local-key.pem");
        write_private(&key_path, &self.project.1.to_pem())?;
        let start = self
            .spammer
            .start
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the campaign start")?;
        let mut vars = vec![
            ("STARK_ACCESS_ID", format!("project/{}", self.project.0)),
            ("STARK_ENVIRONMENT", self.sandbox.base_url()),
            ("STARK_PRIVATE_KEY_FILE", key_path.display().to_string()),
            ("STARK_WORKSPACE_ID", self.sandbox.workspace_id()),
            ("CAMPAIGN_ID", self.spammer.campaign.clone()),
            ("CAMPAIGN_START", start),
            ("CAMPAIGN_HOURS", self.spammer.hours.to_string()),
            (
                "PAYOUT_TRANSFER_FEE_CENTS",
                self.options.transfer_fee.to_string(),
            ),
            ("INGESTER_URL", self.ingester.url("/webhook")),
        ];
        if let Some(target) = self.bus.target() {
            vars.push(("PUBSUB_PROJECT_ID", target.project.clone()));
            if let Some(host) = &target.emulator_host {
                vars.push(("PUBSUB_EMULATOR_HOST", host.clone()));
            }
        }
        let mut text = String::from(
            "# Written by `stark-pipeline run --keep-running` for drills against the local stack.\n",
        );
        for (name, value) in vars {
            // Double quotes: read alike by bash (`set -a; . file`) and dotenvy.
            text.push_str(&format!("{name}=\"{value}\"\n"));
        }
        let path = dir.join("local.env");
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Our workspace's progress, from the sandbox's counters (no snapshot).
    fn progress_now(&self) -> (report::Progress, stark_sandbox::Counters) {
        let counters = self.sandbox.workspace_counters();
        (counters.into(), counters)
    }

    /// [`Stack::cover_clawbacks`] when a reversal or a payout happened since the last look, and
    /// at most every [`CLAWBACK_LOOK`] (times the rate multiplier, up to 15). Each look copies
    /// only the reversed invoices and their payouts (`SandboxHandle::reversed_state`): copying
    /// the whole sandbox was a third of the stack's CPU at 100× the invoice rate when made every
    /// 2 s, and its memory twice over at 1 000×. A payout short of balance meanwhile waits and
    /// is retried.
    fn cover_clawbacks_lazily(&self, counters: &stark_sandbox::Counters) {
        let mut last = self.clawback_look.lock().expect("clawback look");
        let changed = last.is_none_or(|(at, seen): (Instant, stark_sandbox::Counters)| {
            (seen.reversals, seen.transfers_created)
                != (counters.reversals, counters.transfers_created)
                && at.elapsed() >= CLAWBACK_LOOK * self.options.rate_multiplier.clamp(1, 15)
        });
        if changed {
            *last = Some((Instant::now(), *counters));
            drop(last);
            let payouts_of = |invoice_id: &str| InvoiceTag::for_invoice(invoice_id).to_string();
            self.cover_clawbacks(&self.sandbox.reversed_state(&payouts_of));
        }
    }

    /// Deposits what reversals took (see [`report::clawbacks`]) and was not covered yet.
    fn cover_clawbacks(&self, state: &SandboxState) {
        use std::sync::atomic::Ordering;
        let owed = report::clawbacks(state, self.options.transfer_fee);
        let covered = self.treasury.load(Ordering::SeqCst);
        if owed > covered {
            match self.sandbox.deposit(&state.workspace_id, owed - covered) {
                Ok(balance) => {
                    self.treasury.store(owed, Ordering::SeqCst);
                    tracing::info!(
                        event = "treasury_deposit",
                        cents = owed - covered,
                        balance,
                        "covered what reversals took from the balance"
                    );
                }
                Err(err) => {
                    tracing::warn!(event = "treasury_deposit_failed", %err, "could not cover reversals")
                }
            }
        }
    }

    /// Cents deposited so far to cover what reversals took.
    pub fn clawbacks_covered(&self) -> i64 {
        self.treasury.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Real time one campaign hour takes.
    pub fn hour(&self) -> Duration {
        Duration::from_secs_f64(3600.0 / self.options.speed)
    }

    /// Runs the spammer for `slot` as Cloud Scheduler would at the top of that hour: waits
    /// until the sandbox clock reaches the slot, then runs the job at that instant.
    pub async fn run_slot(&self, slot: u32) -> anyhow::Result<()> {
        let at = self.spammer.start
            + time::Duration::hours(i64::from(slot))
            + time::Duration::seconds(1);
        while self.sandbox.now() < at {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        invoice_spammer::run(&self.spammer, self.publisher.as_ref(), at)
            .await
            .with_context(|| format!("spammer run for slot {slot}"))?;
        self.issue_foreign_invoices(slot).await
    }

    /// The foreign workspace issues its invoices of `slot`, tagged exactly like ours: tags are
    /// no proof of ownership either.
    async fn issue_foreign_invoices(&self, slot: u32) -> anyhow::Result<()> {
        let batch = invoice_spammer::batch(&self.spammer, slot);
        let invoices: Vec<NewInvoice> = batch
            .iter()
            .take(self.options.foreign_invoices_per_slot as usize)
            .map(|request| NewInvoice {
                amount: 50_000,
                tax_id: request.tax_id.clone(),
                name: request.name.clone(),
                tags: request.tags.clone(),
                ..Default::default()
            })
            .collect();
        if invoices.is_empty() {
            return Ok(());
        }
        // The foreign workspace is not under test: its calls see faults (and outages) too, so
        // retry a few times, then let that slot go without its foreign invoices.
        for _ in 0..10 {
            match self.foreign.create_invoices(&invoices).await {
                Ok(_) => return Ok(()),
                Err(err) if err.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(err).context("the foreign workspace's invoices"),
            }
        }
        tracing::warn!(
            event = "foreign_invoices_skipped",
            slot,
            "Stark kept failing the foreign workspace's invoices"
        );
        Ok(())
    }

    /// How many invoices the campaign requests in total (deterministic).
    pub fn expected_invoices(&self) -> usize {
        (0..self.spammer.hours)
            .map(|slot| invoice_spammer::batch(&self.spammer, slot).len())
            .sum()
    }

    /// What the scheduled reconcilers did so far.
    pub fn reconciler_stats(&self) -> reconciler::ReconcilerStats {
        self.reconciler.get()
    }

    /// Plays every slot, calling `progress` about every 250 ms, with the scheduled
    /// reconcilers running.
    pub async fn play(
        &self,
        progress: impl FnMut(Option<u32>, &report::Progress),
    ) -> anyhow::Result<()> {
        tokio::select! {
            result = self.play_slots(progress) => result,
            () = self.reconcile_forever() => unreachable!("the reconcilers never finish"),
        }
    }

    async fn play_slots(
        &self,
        mut progress: impl FnMut(Option<u32>, &report::Progress),
    ) -> anyhow::Result<()> {
        for slot in 0..self.spammer.hours {
            let run = self.run_slot(slot);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    result = &mut run => { result?; break; }
                    () = tokio::time::sleep(Duration::from_millis(250)) => {
                        let (current, counters) = self.progress_now();
                        self.cover_clawbacks_lazily(&counters);
                        progress(Some(slot), &current);
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until every requested invoice exists, every invoice had time to be paid and
    /// credited, and every credited invoice's payout settled; then the state is stable for two
    /// campaign minutes. Fails once `within` of real time passes without progress (no counter
    /// moved): a stack that falls behind, as at 1 000× the invoice rate on two cores, is given
    /// the time to drain its backlog while payouts keep coming, and a stuck one still fails.
    /// The scheduled reconcilers run meanwhile.
    pub async fn settle(
        &self,
        within: Duration,
        progress: impl FnMut(Option<u32>, &report::Progress),
    ) -> anyhow::Result<SandboxState> {
        tokio::select! {
            result = self.settle_quietly(within, progress) => result,
            () = self.reconcile_forever() => unreachable!("the reconcilers never finish"),
        }
    }

    async fn settle_quietly(
        &self,
        within: Duration,
        mut progress: impl FnMut(Option<u32>, &report::Progress),
    ) -> anyhow::Result<SandboxState> {
        let expected = self.expected_invoices();
        let mut deadline = Instant::now() + within;
        let quiet = Duration::from_secs_f64((120.0 / self.options.speed).max(0.5));
        let mut last: Option<(report::Progress, Instant)> = None;
        // The full check copies the sandbox: only once the counters are quiet, and not on
        // every tick.
        let mut last_look: Option<Instant> = None;
        loop {
            let (current, counters) = self.progress_now();
            progress(None, &current);
            let now = Instant::now();
            match &last {
                Some((previous, since)) if *previous == current => {
                    let due = last_look.is_none_or(|at| now.duration_since(at) >= quiet);
                    if now.duration_since(*since) >= quiet && due {
                        last_look = Some(now);
                        let state = self.sandbox.state();
                        self.cover_clawbacks(&state);
                        let settled = report::settled(
                            &state,
                            expected,
                            PAY_DELAY + CREDIT_DELAY + Duration::from_secs(120),
                            self.options.transfer_fee,
                        );
                        if settled {
                            return Ok(state);
                        }
                    }
                }
                _ => {
                    last = Some((current, now));
                    deadline = now + within;
                    self.cover_clawbacks_lazily(&counters);
                }
            }
            if now >= deadline {
                let state = self.sandbox.state();
                let listed = |items: Vec<String>| {
                    if items.is_empty() {
                        "none".to_owned()
                    } else {
                        items.join(" | ")
                    }
                };
                let dead_letters = match self.bus.dead_letters().await {
                    Ok(counts) => format!("{counts:?}"),
                    Err(e) => format!("unknown ({e:#})"),
                };
                anyhow::bail!(
                    "the pipeline did not settle: no progress for {within:?}; {} of {expected} invoices issued, {} credited, {} transfers; sandbox time {}; dead letters {dead_letters}; requested but not issued: {}; without a payout: {}",
                    current.issued,
                    current.credited,
                    current.transfers,
                    state.now,
                    listed(self.unissued_requests(&state)),
                    listed(report::missing_payouts(&state, self.options.transfer_fee)),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The request ids of every slot of the campaign (the spammer's batches are deterministic).
    pub fn requested(&self) -> Vec<String> {
        (0..self.spammer.hours)
            .flat_map(|slot| invoice_spammer::batch(&self.spammer, slot))
            .map(|request| request.request_id)
            .collect()
    }

    /// The campaign's invoice requests that have no invoice at the sandbox yet, as
    /// `slot <n> <request id>`.
    pub fn unissued_requests(&self, state: &SandboxState) -> Vec<String> {
        let slots: std::collections::HashMap<String, u32> = (0..self.spammer.hours)
            .flat_map(|slot| invoice_spammer::batch(&self.spammer, slot))
            .map(|request| (request.request_tag().request_id().to_owned(), request.slot))
            .collect();
        let requested: Vec<String> = slots.keys().cloned().collect();
        let mut unissued: Vec<(u32, String)> = report::audit_state(
            state,
            Some(&requested),
            &Receiver::default(),
            self.options.transfer_fee,
        )
        .unissued_requests()
        .map(|id| (slots.get(id).copied().unwrap_or(u32::MAX), id.to_owned()))
        .collect();
        unissued.sort();
        unissued
            .into_iter()
            .map(|(slot, id)| format!("slot {slot} {id}"))
            .collect()
    }

    /// Builds the final report (table and checks) from the sandbox and the bus.
    pub async fn report(&self, state: &SandboxState) -> anyhow::Result<Report> {
        let dead_letters = self.bus.dead_letters().await?;
        Ok(Report::build(report::ReportInput {
            state,
            requested: &self.requested(),
            receiver: &Receiver::default(),
            transfer_fee: self.options.transfer_fee,
            clawbacks_covered: self.clawbacks_covered(),
            dead_letters: &dead_letters,
            reconciler: self
                .options
                .reconcile_every
                .map(|_| self.reconciler_stats()),
            speed: self.options.speed,
            load: self.sandbox.workspace_counters(),
        }))
    }

    /// Stops services, the sandbox and the emulator.
    pub async fn shutdown(self) {
        self.sender.shutdown().await;
        self.ingester.shutdown().await;
        self.money.shutdown().await;
        for replica in &self.replicas {
            replica.shutdown().await;
        }
        self.sandbox.shutdown().await;
        self.bus.stop();
    }
}

/// Writes a file only its owner may read (a private key).
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Starts `instances` of a service, each through `factory()`; with more than one, a round-robin
/// proxy in front of them is the service the subscription pushes to. Returns the front and the
/// instances behind it (none when there is one).
async fn replicated(
    name: &'static str,
    instances: u32,
    factory: impl Fn() -> services::ServerFactory,
) -> anyhow::Result<(Service, Vec<Service>)> {
    if instances <= 1 {
        return Ok((Service::start(name, factory()).await?, Vec::new()));
    }
    let mut replicas = Vec::new();
    for _ in 0..instances {
        replicas.push(Service::start(name, factory()).await?);
    }
    let backends: Vec<String> = replicas.iter().map(|r| r.url("")).collect();
    let front = Service::start(
        name,
        Box::new(move |port| {
            let router = services::round_robin(backends.clone());
            Box::pin(pipeline_service::serve::Server::bind(
                pipeline_service::serve::loopback(port),
                router,
            ))
        }),
    )
    .await?;
    Ok((front, replicas))
}

/// Shared handle type used by the CLI's Ctrl-C handling.
pub type SharedStack = Arc<tokio::sync::Mutex<Option<Stack>>>;
