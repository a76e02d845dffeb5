//! The command line.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use stark_sandbox::FaultConfig;

use crate::env_file;
use crate::local::bus::BusChoice;
use crate::local::report::Progress;
use crate::local::{Stack, StackOptions};
use crate::ops::exit::Exit;
use crate::ops::{self, Context};
use crate::provision::{self, ProvisionArgs};
use pipeline_service::publisher::Publisher;

/// Stark Bank invoice → payout pipeline: local stack and operator tools.
///
/// With no subcommand, runs the whole pipeline on this machine: a local Stark Bank sandbox,
/// the Pub/Sub emulator (or an in-process bus), the services, and a 24-hour campaign on a
/// compressed clock; then prints a table per hour and the exactly-once checks. The exit code is
/// 0 only when every check holds.
#[derive(Debug, Parser)]
#[command(
    name = "stark-pipeline",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline locally (the default).
    Run(RunArgs),
    /// Apply the Pub/Sub topology to a Google Cloud project (or the emulator), idempotently.
    #[command(
        after_help = "Example: stark-pipeline provision --invoice-sender-url https://invoice-sender-abc-rj.a.run.app/push --money-sender-url https://money-sender-abc-rj.a.run.app/push --dry-run"
    )]
    Provision(ProvisionArgs),
    /// Write a new Stark Bank key pair (private-key.pem, public-key.pem).
    #[command(after_help = "Example: stark-pipeline keygen --dir keys")]
    Keygen(ops::keygen::KeygenArgs),
    /// Manage the Stark Bank webhook that points at the ingester (uses STARK_*).
    #[command(subcommand)]
    Webhook(ops::webhook::WebhookCommand),
    /// Seek a subscription back in time so its messages are delivered again (within 7 days).
    #[command(
        after_help = "Example: stark-pipeline replay --subscription paid_invoices-money-sender --since 6h --dry-run"
    )]
    Replay(ops::replay::ReplayArgs),
    /// Compare Stark's credited invoices with our payouts; --repair republishes missing ones.
    #[command(
        after_help = "Example: stark-pipeline reconcile --since 24h --repair\n         stark-pipeline reconcile --since 24h --format json | jq '.findings[] | select(.problem)'"
    )]
    Reconcile(ops::reconcile::ReconcileArgs),
    /// Events Stark could not deliver; --republish feeds credited ones to paid_invoices.
    #[command(subcommand)]
    Events(ops::events::EventsCommand),
    /// A campaign at a glance: slots, invoices, transfers, dead letters.
    #[command(
        after_help = "Example: stark-pipeline status --campaign black-friday --format json | jq .transfers"
    )]
    Status(ops::status::StatusArgs),
    /// Show the resolved configuration and check it: Stark credentials, Pub/Sub topology,
    /// the webhook, the workspace check.
    #[command(
        after_help = "Example: stark-pipeline doctor --ingester-url https://webhook-ingester-abc-rj.a.run.app/webhook"
    )]
    Doctor(ops::doctor::DoctorArgs),
    /// One invoice's way through the pipeline (by invoice or request id), with a verdict and
    /// the next command to run.
    #[command(
        after_help = "Example: stark-pipeline trace black-friday-3-7\n         stark-pipeline trace 5155165527080960 --format json | jq -r .verdict"
    )]
    Trace(ops::trace::TraceArgs),
}

/// Options of the local run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Message bus: the Pub/Sub emulator if installed (auto), or force one.
    #[arg(long, value_enum, default_value_t = BusChoice::Auto)]
    pub bus: BusChoice,
    /// Campaign length in hourly slots.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Campaign seconds per real second: 720 plays an hour in 5 s and 24 hours in 2 minutes.
    #[arg(long, default_value_t = 720.0)]
    pub speed: f64,
    /// Campaign name (becomes part of every request id and tag).
    #[arg(long, default_value = "local")]
    pub campaign: String,
    /// Chance that the sandbox's payer pays an invoice.
    #[arg(long, default_value_t = 0.9)]
    pub pay_probability: f64,
    /// Stark's fee per credited invoice, in cents.
    #[arg(long, default_value_t = 50)]
    pub invoice_fee: i64,
    /// Stark's fee per transfer, in cents (taken out of each payout).
    #[arg(long, default_value_t = 50)]
    pub transfer_fee: i64,
    /// Chance that a credited invoice is later reversed (half fully, half partly).
    #[arg(long, default_value_t = 0.05)]
    pub reversal_rate: f64,
    /// Invoices another workspace, whose webhook points at our ingester, gets paid each hour.
    #[arg(long, default_value_t = 1)]
    pub foreign_invoices_per_slot: u32,
    /// Seed of the sandbox's behaviour.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Push attempts before a message goes to the dead-letter subscription (100, Pub/Sub's
    /// maximum and production's setting).
    #[arg(long, default_value_t = 100)]
    pub max_delivery_attempts: u32,
    /// A Stark outage in campaign time, START:DURATION (e.g. `5h:2h`): every API request is
    /// answered 503 and webhooks wait until it ends.
    #[arg(long, value_name = "START:DURATION", value_parser = parse_outage)]
    pub stark_outage: Option<(std::time::Duration, std::time::Duration)>,
    /// Sandbox fault: rate of 500 answers.
    #[arg(long, default_value_t = 0.0)]
    pub server_error_rate: f64,
    /// Sandbox fault: rate of 408 answers.
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// Sandbox fault: rate of 429 answers (with Retry-After).
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit_rate: f64,
    /// Sandbox fault: rate of invoice/transfer creations applied but answered with a 500 or a
    /// cut connection.
    #[arg(long, default_value_t = 0.0)]
    pub lost_answer_rate: f64,
    /// Sandbox fault: rate of connections closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Sandbox fault: rate of slow answers.
    #[arg(long, default_value_t = 0.0)]
    pub slow_rate: f64,
    /// Sandbox fault: rate of webhooks delivered twice.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_webhook_rate: f64,
    /// Sandbox fault: rate of webhooks lost (every attempt fails, Stark gives up); the
    /// scheduled reconciler must find and pay them.
    #[arg(long, default_value_t = 0.0)]
    pub lost_webhook_rate: f64,
    /// Sandbox fault: rate of webhooks held back so later ones overtake them.
    #[arg(long, default_value_t = 0.0)]
    pub out_of_order_rate: f64,
    /// Sandbox fault: rate of signing-key rotations before a delivery.
    #[arg(long, default_value_t = 0.0)]
    pub key_rotation_rate: f64,
    /// Seed of the sandbox's faults.
    #[arg(long, default_value_t = 7)]
    pub fault_seed: u64,
    /// After the report, keep everything running and write `target/local.env` for drills with
    /// the operator commands; SIGINT or SIGTERM stops it all, the emulator included.
    #[arg(long)]
    pub keep_running: bool,
    /// Invoices per hourly slot = the drawn 8 to 12 × this (scale runs; see BENCHMARKS.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate_multiplier: u32,
    /// The scheduled reconciler's period in campaign time (`reconcile --repair`, as the
    /// reconciler job runs it in production), or `off`.
    #[arg(long, default_value = "15m", value_parser = parse_every)]
    pub reconcile_every: Every,
    /// Reconcilers running at once, staggered.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub reconcilers: u32,
}

/// A period, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Every(pub Option<std::time::Duration>);

fn parse_every(text: &str) -> Result<Every, String> {
    if text == "off" {
        return Ok(Every(None));
    }
    let every = pipeline_service::config::parse_duration(text)?;
    if every.is_zero() {
        return Err("the period must be positive (or `off`)".into());
    }
    Ok(Every(Some(every)))
}

/// `START:DURATION`, both durations (`5h:2h`).
fn parse_outage(text: &str) -> Result<(std::time::Duration, std::time::Duration), String> {
    let (start, duration) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid outage {text:?}: expected START:DURATION, e.g. 5h:2h"))?;
    let parse = pipeline_service::config::parse_duration;
    Ok((parse(start)?, parse(duration)?))
}

impl RunArgs {
    /// The stack options these flags describe.
    pub fn options(&self) -> StackOptions {
        StackOptions {
            bus: self.bus,
            hours: self.hours,
            speed: self.speed,
            campaign: self.campaign.clone(),
            pay_probability: self.pay_probability,
            invoice_fee: self.invoice_fee,
            transfer_fee: self.transfer_fee,
            reversal_rate: self.reversal_rate,
            foreign_invoices_per_slot: self.foreign_invoices_per_slot,
            ingester_checks_workspace: true,
            instances: 1,
            listing_lag: None,
            stark_outage: self.stark_outage,
            faults: FaultConfig {
                seed: self.fault_seed,
                server_error_rate: self.server_error_rate,
                timeout_rate: self.timeout_rate,
                rate_limit_rate: self.rate_limit_rate,
                lost_answer_rate: self.lost_answer_rate,
                drop_rate: self.drop_rate,
                slow_rate: self.slow_rate,
                duplicate_delivery_rate: self.duplicate_webhook_rate,
                lost_webhook_rate: self.lost_webhook_rate,
                out_of_order_rate: self.out_of_order_rate,
                key_rotation_rate: self.key_rotation_rate,
                ..FaultConfig::default()
            },
            seed: self.seed,
            max_delivery_attempts: self.max_delivery_attempts,
            rate_multiplier: self.rate_multiplier,
            webhook_retries: None,
            reconcile_every: self.reconcile_every.0,
            reconcilers: self.reconcilers,
        }
    }
}

/// Loads `.env`, parses the command line and runs it; the exit code follows
/// [`ops::exit`]'s contract (0 good, 1 problems, 2 usage or configuration, 3 unreachable).
pub fn main() -> ExitCode {
    // Before anything else, and before any thread exists: dotenvy sets process variables, and
    // clap reads some flags' defaults (`CAMPAIGN_ID`, `INGESTER_URL`) from them.
    let dotenv = match env_file::load_dotenv(std::path::Path::new(".")) {
        Ok(path) => path,
        Err(err) => {
            eprintln!("error: {err}");
            return Exit::Usage.into();
        }
    };
    let cli = Cli::parse();
    let (env, warnings) = env_file::operator_env();
    for warning in warnings {
        eprintln!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return Exit::Problems.into();
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => run_local(&cli.run).await.map(Exit::healthy),
            Some(Command::Run(args)) => run_local(&args).await.map(Exit::healthy),
            Some(Command::Provision(args)) => {
                init_logs("warn");
                provision::run(&args).await.map(|()| Exit::Ok)
            }
            Some(command) => {
                init_logs("warn");
                run_operator(command, Context::from_env(env), dotenv).await
            }
        }
    });
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            eprintln!("error: {err:#}");
            ops::exit::classify(&err).into()
        }
    }
}

/// Logs go to stderr (stdout carries the command's output); the services are chatty, so the
/// local run shows warnings only unless `RUST_LOG` says otherwise.
fn init_logs(default_filter: &str) {
    use pipeline_service::logging::{LogFormat, init_with};
    let format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    init_with(format, default_filter, true);
}

/// The payout account and transfer fee from `PAYOUT_*`, as money-sender reads them: the audit
/// checks payouts against the same terms the service pays by.
fn payout_terms(
    env: &pipeline_service::config::Env,
) -> anyhow::Result<(pipeline_domain::receiver::Receiver, i64)> {
    Ok((
        money_sender::receiver_from_env(env)?,
        money_sender::transfer_fee_from_env(env)?,
    ))
}

/// Runs one operator command against the configured Stark project and Pub/Sub.
async fn run_operator(
    command: Command,
    context: Context,
    dotenv: Option<std::path::PathBuf>,
) -> anyhow::Result<Exit> {
    let mut out = std::io::stdout();
    let now = time::OffsetDateTime::now_utc();
    // Connects to Pub/Sub only for the commands that publish (`--repair`, `--republish`).
    let publisher = |needed: bool| {
        let target = needed.then(|| context.pubsub().cloned());
        async move {
            match target {
                None => anyhow::Ok(None),
                Some(target) => Ok(Some(gcp_pubsub::GcpPublisher::connect(target?).await?)),
            }
        }
    };
    if let Command::Doctor(args) = &command {
        return ops::doctor::run(args, &context, dotenv.as_deref(), &mut out).await;
    }
    let healthy = match command {
        Command::Keygen(args) => ops::keygen::run(&args, &mut out),
        Command::Webhook(command) => ops::webhook::run(&command, context.stark()?, &mut out).await,
        Command::Replay(args) => ops::replay::run(&args, context.pubsub()?, now, &mut out).await,
        Command::Reconcile(mut args) => {
            let (receiver, transfer_fee) = payout_terms(&context.env)?;
            // With the campaign configured, its invoice requests are reconciled too.
            if context.env.optional("CAMPAIGN_ID").is_some() {
                args.campaign = Some(invoice_spammer::SpammerConfig::from_env(&context.env)?);
            }
            let publisher = publisher(args.repair).await?;
            let dead_letters = publisher
                .as_ref()
                .map(|p| ops::dead_letters::PubSubDeadLetters::new(p.target().clone()));
            let bus = publisher.as_ref().zip(dead_letters.as_ref()).map(|(p, d)| {
                ops::reconcile::RepairBus {
                    publisher: p,
                    dead_letters: d,
                }
            });
            ops::reconcile::run(
                &args,
                context.stark()?,
                bus,
                &receiver,
                transfer_fee,
                now,
                &mut out,
            )
            .await
        }
        Command::Events(command) => {
            let needs_pubsub = match &command {
                ops::events::EventsCommand::Undelivered { republish, .. } => *republish,
                ops::events::EventsCommand::Resend { .. } => true,
            };
            let publisher = publisher(needs_pubsub).await?;
            let publisher = publisher.as_ref().map(|p| p as &dyn Publisher);
            ops::events::run(&command, context.stark()?, publisher, now, &mut out).await
        }
        Command::Status(args) => {
            let (receiver, transfer_fee) = payout_terms(&context.env)?;
            ops::status::run(
                &args,
                context.stark()?,
                context.pubsub.as_ref(),
                &receiver,
                transfer_fee,
                &mut out,
            )
            .await
        }
        Command::Trace(args) => {
            let (_, transfer_fee) = payout_terms(&context.env)?;
            ops::trace::run(&args, context.stark()?, transfer_fee, &mut out).await
        }
        Command::Run(_) | Command::Provision(_) | Command::Doctor(_) => {
            unreachable!("handled above")
        }
    }?;
    Ok(Exit::healthy(healthy))
}

/// Runs the local stack; `Ok(true)` when every check holds.
async fn run_local(args: &RunArgs) -> anyhow::Result<bool> {
    init_logs("warn");
    let options = args.options();
    options
        .faults
        .validate()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let interactive = std::io::stderr().is_terminal();
    eprintln!(
        "starting the local stack ({} campaign hours at speed {})…",
        options.hours, options.speed
    );
    let stack = tokio::select! {
        stack = Stack::start(options) => stack?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    };
    eprintln!(
        "stark-sandbox at {}; {}; invoice-sender :{}, webhook-ingester :{}, money-sender :{}",
        stack.sandbox.base_url(),
        stack.bus.describe(),
        stack.sender.port,
        stack.ingester.port,
        stack.money.port
    );
    let hours = stack.spammer.hours;
    let mut last_line = String::new();
    let mut show = |slot: Option<u32>, progress: &Progress| {
        let phase = match slot {
            Some(slot) => format!("hour {:>2}/{hours}", slot + 1),
            None => "settling  ".to_owned(),
        };
        let line = format!("{phase} · {progress}");
        if line != last_line {
            if interactive {
                eprint!("\r{line}   ");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
            last_line = line;
        }
    };
    let campaign = async {
        stack.play(&mut show).await?;
        // Long enough for a Stark outage's backlog or a high error rate to drain through the
        // retries.
        let budget = stack.hour() * 4 + Duration::from_secs(240);
        let state = stack.settle(budget, &mut show).await?;
        stack.report(&state).await
    };
    let outcome = tokio::select! {
        outcome = campaign => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if interactive {
        eprintln!();
    }
    let report = match outcome {
        Ok(report) => report,
        Err(err) => {
            stack.shutdown().await;
            return Err(err);
        }
    };
    println!("{report}");
    if args.keep_running {
        let path = stack.write_env(std::path::Path::new("target"))?;
        eprintln!(
            "kept running for drills: `set -a; . {}; set +a`, then e.g. `stark-pipeline status --format json`, `stark-pipeline trace <invoice-id>`, `stark-pipeline reconcile --since 2d --repair`; Ctrl-C (or SIGTERM) stops everything",
            path.display()
        );
        pipeline_service::serve::shutdown_signal().await;
        eprintln!("stopping the local stack…");
    }
    stack.shutdown().await;
    Ok(report.ok())
}
