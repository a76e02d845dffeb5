//! `stark-sandbox`: run the local Stark Bank simulator by hand or from a local stack.
//!
//! This file only reads options and runs the library; see the crate docs for behaviour.
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use stark_client::{PrivateKey, PublicKey};
use stark_sandbox::{FaultConfig, Sandbox, SandboxConfig};

/// A local Stark Bank API v2 simulator: signed requests, invoices paid by themselves, transfers,
/// signed webhooks with retries, and injectable faults. Point a client at http://HOST:PORT/v2.
///
/// Durations are seconds of sandbox time (which runs --speed times faster than real time)
/// unless marked "real".
#[derive(Debug, Parser)]
#[command(name = "stark-sandbox", version, about, long_about)]
struct Args {
    /// Address to listen on (0.0.0.0 lets containers reach it).
    #[arg(long, env = "STARK_SANDBOX_HOST", default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "STARK_SANDBOX_PORT", default_value_t = 8765)]
    port: u16,

    /// Sandbox seconds per real second; 600 makes ten Stark minutes pass in one real second.
    #[arg(long, env = "STARK_SANDBOX_SPEED", default_value_t = 1.0)]
    speed: f64,

    /// Register a project: ID=PATH_TO_PUBLIC_KEY_PEM (the public key of `keygen`). Repeatable.
    #[arg(long = "project", value_name = "ID=PEM_PATH")]
    projects: Vec<String>,

    /// A file of projects, one `ID=PEM_PATH` per line (`#` starts a comment; relative paths are
    /// relative to the file).
    #[arg(long, env = "STARK_SANDBOX_PROJECTS_FILE", value_name = "PATH")]
    projects_file: Option<PathBuf>,

    /// Seed of every random choice (which invoices get paid, ids, high-S signatures) and, unless
    /// --fault-seed is given, of the faults; the same seed and requests repeat a run.
    #[arg(long, env = "STARK_SANDBOX_SEED", default_value_t = 0)]
    seed: u64,

    /// Seconds from invoice creation to payment (the real sandbox took 7 to 9 minutes).
    #[arg(long, env = "STARK_SANDBOX_PAY_DELAY", default_value_t = 480.0)]
    pay_delay: f64,

    /// Seconds from `paid` to `credited`.
    #[arg(long, env = "STARK_SANDBOX_CREDIT_DELAY", default_value_t = 2.0)]
    credit_delay: f64,

    /// Chance that an invoice is ever paid (0 to 1).
    #[arg(long, env = "STARK_SANDBOX_PAY_PROBABILITY", default_value_t = 0.9)]
    pay_probability: f64,

    /// Fee in cents kept from each credited invoice (the balance grows by amount - fee).
    #[arg(long, env = "STARK_SANDBOX_INVOICE_FEE", default_value_t = 50)]
    invoice_fee: i64,

    /// Fee in cents charged per transfer (amount + fee is debited; a transfer the balance does
    /// not cover fails).
    #[arg(long, env = "STARK_SANDBOX_TRANSFER_FEE", default_value_t = 50)]
    transfer_fee: i64,

    /// Chance (0 to 1) that a credited invoice is later reversed by its payer (amount lowered,
    /// balance debited, a `reversed` log and event).
    #[arg(long, env = "STARK_SANDBOX_REVERSAL_RATE", default_value_t = 0.0)]
    reversal_rate: f64,

    /// Share (0 to 1) of reversals that return the whole amount; the rest return a random part.
    #[arg(long, default_value_t = 0.5)]
    full_reversal_share: f64,

    /// Each reversal comes a random time between 0 and this many seconds after the credit.
    #[arg(long, default_value_t = 600.0)]
    reversal_delay: f64,

    /// Seconds after its creation before an invoice, transfer or log shows up in list queries
    /// (a GET by id finds it at once), as Stark's lists trail its writes.
    #[arg(long, env = "STARK_SANDBOX_LISTING_LAG", default_value_t = 2.0)]
    listing_lag: f64,

    /// Seconds a transfer stays `created` before `processing` (when the balance is debited).
    #[arg(long, default_value_t = 5.0)]
    transfer_processing_delay: f64,

    /// Seconds a transfer stays `processing` before `success` (or `failed` if the balance did
    /// not cover it).
    #[arg(long, default_value_t = 10.0)]
    transfer_settle_delay: f64,

    /// Starting balance in cents of the default workspace (the real sandbox starts at 0).
    #[arg(long, env = "STARK_SANDBOX_INITIAL_BALANCE", default_value_t = 0)]
    initial_balance: i64,

    /// Allowed difference in real seconds between Access-Time and this host's clock.
    #[arg(long, env = "STARK_SANDBOX_SKEW", default_value_t = 300)]
    access_time_skew: u64,

    /// Id of the default workspace (where --project projects act; `workspaceId` on its events).
    /// More workspaces: POST /_sandbox/workspaces, then POST /_sandbox/projects with
    /// "workspaceId".
    #[arg(
        long,
        env = "STARK_SANDBOX_WORKSPACE_ID",
        default_value = "6010044957065216"
    )]
    workspace_id: String,

    /// PEM of the sandbox's own webhook signing key (secp256k1); a fresh one by default.
    #[arg(long, env = "STARK_SANDBOX_SIGNING_KEY", value_name = "PATH")]
    signing_key: Option<PathBuf>,

    /// Real seconds a webhook receiver has to answer before the attempt counts as `timeout`.
    #[arg(long, default_value_t = 10.0)]
    delivery_timeout: f64,

    /// Comma-separated waits in seconds after each failed delivery (Stark: 5, 30, 120 minutes).
    #[arg(long, default_value = "300,1800,7200", value_name = "SECS,...")]
    retry_schedule: String,

    /// Seed of the fault RNGs (default: --seed).
    #[arg(long)]
    fault_seed: Option<u64>,

    /// Rate of 500 answers (nothing done).
    #[arg(long, default_value_t = 0.0)]
    fault_server_error: f64,

    /// Rate of 408 answers (nothing done).
    #[arg(long, default_value_t = 0.0)]
    fault_timeout: f64,

    /// Rate of 429 answers with a Retry-After header (nothing done).
    #[arg(long, default_value_t = 0.0)]
    fault_rate_limit: f64,

    /// Real seconds a 429 tells the client to wait (the Retry-After header).
    #[arg(long, default_value_t = 1)]
    retry_after: u64,

    /// Rate of slow answers.
    #[arg(long, default_value_t = 0.0)]
    fault_slow: f64,

    /// Real milliseconds a slow answer takes.
    #[arg(long, default_value_t = 2000)]
    slow_delay_ms: u64,

    /// Rate of connections closed without an answer (nothing done).
    #[arg(long, default_value_t = 0.0)]
    fault_drop: f64,

    /// Rate of invoice/transfer creates that are applied but whose answer is lost (a 500 or a
    /// cut connection, half each).
    #[arg(long, default_value_t = 0.0)]
    fault_lost_answer: f64,

    /// Rate of webhook deliveries sent twice.
    #[arg(long, default_value_t = 0.0)]
    fault_duplicate_delivery: f64,

    /// Rate of events whose webhook is lost: every attempt fails and Stark gives up.
    #[arg(long, default_value_t = 0.0)]
    fault_lost_webhook: f64,

    /// Rate of events held back so that later ones overtake them.
    #[arg(long, default_value_t = 0.0)]
    fault_out_of_order: f64,

    /// Seconds an out-of-order event is held back.
    #[arg(long, default_value_t = 60)]
    out_of_order_delay: u64,

    /// Rate, per webhook delivery, of rotating the signing key first.
    #[arg(long, default_value_t = 0.0)]
    fault_key_rotation: f64,

    /// Log lines as JSON instead of text.
    #[arg(long)]
    log_json: bool,
}

fn seconds(name: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("--{name} must be a non-negative number of seconds"))
}

/// Parses `ID=PATH` and reads the public key (relative paths against `base`).
fn project(spec: &str, base: Option<&Path>) -> anyhow::Result<(String, PublicKey)> {
    let (id, path) = spec
        .split_once('=')
        .with_context(|| format!("project {spec:?} must be ID=PATH_TO_PUBLIC_PEM"))?;
    let path = match base {
        Some(dir) if Path::new(path.trim()).is_relative() => dir.join(path.trim()),
        _ => PathBuf::from(path.trim()),
    };
    let pem = std::fs::read_to_string(&path)
        .with_context(|| format!("project {id}: cannot read {}", path.display()))?;
    let key = PublicKey::from_pem(&pem).with_context(|| {
        format!(
            "project {id}: {} is not a secp256k1 public key PEM",
            path.display()
        )
    })?;
    Ok((id.trim().to_owned(), key))
}

fn config(args: &Args) -> anyhow::Result<SandboxConfig> {
    let mut projects = Vec::new();
    for spec in &args.projects {
        projects.push(project(spec, None)?);
    }
    if let Some(file) = &args.projects_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read projects file {}", file.display()))?;
        for line in text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            projects.push(project(line, file.parent())?);
        }
    }
    if projects.is_empty() {
        tracing::warn!(
            "no project registered: every /v2 call will get invalidProject until one is (POST /_sandbox/projects)"
        );
    }
    let signing_key = match &args.signing_key {
        Some(path) => Some(PrivateKey::from_file(path).context("--signing-key")?),
        None => None,
    };
    let mut retry_schedule = Vec::new();
    for part in args
        .retry_schedule
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let secs: f64 = part
            .parse()
            .with_context(|| format!("--retry-schedule: {part:?} is not a number"))?;
        retry_schedule.push(seconds("retry-schedule", secs)?);
    }
    if args.workspace_id.is_empty() {
        bail!("--workspace-id must not be empty");
    }
    Ok(SandboxConfig {
        port: args.port,
        speed: args.speed,
        projects,
        seed: args.seed,
        pay_delay: seconds("pay-delay", args.pay_delay)?,
        credit_delay: seconds("credit-delay", args.credit_delay)?,
        pay_probability: args.pay_probability,
        invoice_fee: args.invoice_fee,
        transfer_fee: args.transfer_fee,
        reversal_rate: args.reversal_rate,
        full_reversal_share: args.full_reversal_share,
        reversal_delay: seconds("reversal-delay", args.reversal_delay)?,
        listing_lag: seconds("listing-lag", args.listing_lag)?,
        transfer_processing_delay: seconds(
            "transfer-processing-delay",
            args.transfer_processing_delay,
        )?,
        transfer_settle_delay: seconds("transfer-settle-delay", args.transfer_settle_delay)?,
        initial_balance: args.initial_balance,
        access_time_skew: Duration::from_secs(args.access_time_skew),
        workspace_id: args.workspace_id.clone(),
        signing_key,
        delivery_timeout: seconds("delivery-timeout", args.delivery_timeout)?,
        retry_schedule,
        // `GET /_sandbox/state` shows them: what the Python SDK test replays.
        keep_delivery_bodies: true,
        faults: FaultConfig {
            seed: args.fault_seed.unwrap_or(args.seed),
            server_error_rate: args.fault_server_error,
            timeout_rate: args.fault_timeout,
            rate_limit_rate: args.fault_rate_limit,
            retry_after_secs: args.retry_after,
            slow_rate: args.fault_slow,
            slow_delay_ms: args.slow_delay_ms,
            drop_rate: args.fault_drop,
            lost_answer_rate: args.fault_lost_answer,
            duplicate_delivery_rate: args.fault_duplicate_delivery,
            lost_webhook_rate: args.fault_lost_webhook,
            out_of_order_rate: args.fault_out_of_order,
            out_of_order_delay_secs: args.out_of_order_delay,
            key_rotation_rate: args.fault_key_rotation,
        },
    })
}

/// Loads `./.env` first, then runs on the async runtime.
fn main() -> anyhow::Result<()> {
    pipeline_service::dotenv::main("stark-sandbox", run)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init();
    }
    let config = config(&args)?;
    let sandbox = Sandbox::start_on(args.host, config).await?;
    println!("stark-sandbox listening on {}", sandbox.base_url());
    let stopper = sandbox.stopper();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("stopping");
            stopper.stop();
        }
    });
    sandbox.run_until_stopped().await;
    Ok(())
}
