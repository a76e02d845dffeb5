//! `replay`: seek a subscription back in time so Pub/Sub redelivers what was published since.
//! Every consumer is idempotent, so a replay never creates a second invoice or transfer.

use std::io::Write;
use std::time::Duration;

use gcp_pubsub::PubSubTarget;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::parse_since;

/// The replay window the topology declares: acked messages are kept for 7 days on the push
/// subscriptions. `replay` reads what the subscription really keeps instead of trusting this:
/// a seek further back than that silently replays less than asked, so it is refused.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// `stark-pipeline replay` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Subscription to rewind, e.g. `paid_invoices-money-sender`.
    #[arg(long)]
    pub subscription: String,
    /// Redeliver what was published since then: RFC 3339 or a duration back (`6h`, `2d`).
    #[arg(long)]
    pub since: String,
    /// Say what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A retention for people: `7 days`, `36 hours`, `0 minutes` (a subscription that keeps no
/// acked messages cannot replay anything).
fn retained(window: Duration) -> String {
    let seconds = window.as_secs();
    match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} days", s / 86_400),
        s if s >= 3_600 => format!("{} hours", s / 3_600),
        s => format!("{} minutes", s / 60),
    }
}

/// Runs `replay`.
pub async fn run(
    args: &ReplayArgs,
    target: &PubSubTarget,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let since = parse_since(&args.since, now)?;
    anyhow::ensure!(since <= now, "--since {} is in the future", args.since);
    let window = gcp_pubsub::ops::subscription_retention(target, &args.subscription)
        .await?
        .replay_window();
    anyhow::ensure!(
        now - since <= window,
        "--since {} is further back than {} retains ({}): older messages cannot be replayed (reconcile can still repair missing payouts from Stark's own records)",
        args.since,
        args.subscription,
        retained(window)
    );
    let when = since.format(&Rfc3339)?;
    if args.dry_run {
        writeln!(
            out,
            "dry run: would seek {} in {} back to {when}; every message published since then would be delivered again (consumers are idempotent: nothing is created twice)",
            args.subscription,
            target.describe()
        )?;
        return Ok(true);
    }
    gcp_pubsub::ops::seek_to_time(target, &args.subscription, since).await?;
    writeln!(
        out,
        "sought {} back to {when}; Pub/Sub is redelivering every message published since",
        args.subscription
    )?;
    Ok(true)
}
