//! `invoice-spammer`: parses flags, reads the environment once, builds the publisher and runs
//! one slot. All logic lives in the library so that tests exercise it without a process.
//!
//! Exit codes (Cloud Run retries a task on any non-zero exit):
//! - `0`: every request confirmed, or outside the campaign window (nothing to do);
//! - `1`: a publish failed, or the Pub/Sub client could not be created — the retry republishes
//!   the same requests;
//! - `2`: bad flags or configuration — the message names the flag or variable.
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use gcp_pubsub::{GcpPublisher, PubSubTarget};
use invoice_spammer::{DryRun, RunReport, SpammerConfig, Window};
use pipeline_service::config::{ConfigError, Env};
use pipeline_service::logging::{self, LogFormat};
use pipeline_service::publisher::SharedPublisher;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Publishes one hour slot of invoice requests to `pending_invoices`.
///
/// Configuration comes from the environment (CAMPAIGN_ID, CAMPAIGN_START, ...; see the README).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Print the slot's batch as JSON on stdout instead of publishing it.
    #[arg(long)]
    dry_run: bool,
    /// Run this slot instead of the one the clock is in (backfills and reruns).
    #[arg(long, value_name = "N", conflicts_with = "now")]
    slot: Option<u32>,
    /// Take this RFC 3339 instant as the current time instead of the clock.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    now: Option<OffsetDateTime>,
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2025-01-01T05:00:00Z)"))
}

const EXIT_RUN_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

/// Loads `./.env` first, then runs on the async runtime.
fn main() -> ExitCode {
    pipeline_service::dotenv::main("invoice-spammer", run)
}

async fn run() -> ExitCode {
    // clap exits with 2 on bad flags, the same code as a bad configuration.
    let args = Args::parse();
    let env = Env::from_process();
    let config = match SpammerConfig::from_env(&env) {
        Ok(config) => config,
        Err(error) => return config_failure(&error),
    };
    let now = args.now.unwrap_or_else(OffsetDateTime::now_utc);
    let window = match args.slot {
        Some(slot) if slot >= config.hours => {
            eprintln!(
                "invoice-spammer: --slot {slot} is outside the campaign (slots 0 to {}, CAMPAIGN_HOURS={})",
                config.hours - 1,
                config.hours
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        Some(slot) => config.window_of_slot(slot),
        None => config.window_at(now),
    };

    if args.dry_run {
        // No logging in a dry run: stdout carries only the JSON, so it can be piped to jq.
        let output = DryRun::new(&config, window);
        match serde_json::to_string_pretty(&output) {
            Ok(json) => {
                println!("{json}");
                return ExitCode::SUCCESS;
            }
            Err(error) => {
                eprintln!("invoice-spammer: cannot serialize the batch: {error}");
                return ExitCode::from(EXIT_RUN_FAILED);
            }
        }
    }

    logging::init(LogFormat::from_env());
    let publisher = match build_publisher(&env).await {
        Ok(publisher) => publisher,
        Err(PublisherError::Config(message)) => {
            tracing::error!(event = "config_invalid", "{message}");
            eprintln!("invoice-spammer: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(PublisherError::Connect(message)) => {
            tracing::error!(event = "pubsub_unavailable", "{message}");
            eprintln!("invoice-spammer: cannot create the Pub/Sub publisher: {message}");
            return ExitCode::from(EXIT_RUN_FAILED);
        }
    };
    let slot = match window {
        Window::Slot(slot) => Some(slot),
        Window::NotStarted | Window::Ended => None,
    };
    tracing::info!(
        event = "spammer_started",
        campaign = %config.campaign,
        start = %config.start_rfc3339(),
        hours = config.hours,
        window = window.as_str(),
        slot,
        slot_from = match (args.slot, args.now) {
            (Some(_), _) => "--slot",
            (None, Some(_)) => "--now",
            (None, None) => "clock",
        },
        "invoice spammer starting"
    );
    let result = match args.slot {
        Some(slot) => invoice_spammer::run_slot(&config, publisher.as_ref(), slot).await,
        None => invoice_spammer::run(&config, publisher.as_ref(), now).await,
    };
    match result {
        Ok(RunReport::Published { .. } | RunReport::OutsideWindow(_)) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(event = "spammer_failed", error = %error, "run failed; exiting non-zero");
            eprintln!("invoice-spammer: {error}");
            ExitCode::from(EXIT_RUN_FAILED)
        }
    }
}

/// Reports a configuration error on stderr (logging may not be set up yet) and exits 2.
fn config_failure(error: &ConfigError) -> ExitCode {
    eprintln!("invoice-spammer: {error}");
    ExitCode::from(EXIT_CONFIG)
}

/// Why the publisher could not be built.
#[derive(Debug)]
enum PublisherError {
    /// A variable is missing or invalid (exit 2: retrying will not help).
    Config(String),
    /// The client could not be created, e.g. no Application Default Credentials (exit 1).
    Connect(String),
}

/// Builds the Pub/Sub publisher: Google Cloud Pub/Sub, or the emulator when
/// `PUBSUB_EMULATOR_HOST` is set (project from `PUBSUB_PROJECT_ID`, else `GOOGLE_CLOUD_PROJECT`).
/// The local stack drives the spammer through its library with its own bus; a deployed job
/// always publishes to Pub/Sub.
async fn build_publisher(env: &Env) -> Result<SharedPublisher, PublisherError> {
    // From the same snapshot as the rest of the configuration.
    let target = PubSubTarget::from_lookup(|name| env.optional(name).map(str::to_owned))
        .map_err(|e| PublisherError::Config(e.to_string()))?;
    tracing::info!(event = "pubsub_target", target = %target.describe(), "publishing to Pub/Sub");
    let publisher = GcpPublisher::connect(target)
        .await
        .map_err(|e| PublisherError::Connect(e.to_string()))?;
    Ok(Arc::new(publisher))
}
