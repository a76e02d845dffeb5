//! `replay`: seek a subscription back in time so Pub/Sub redelivers what was published since.
//! Every consumer is idempotent, so a replay never creates a second invoice or transfer.

use std::io::Write;
use std::time::Duration;

use gcp_pubsub::PubSubTarget;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::parse_since;

/// Pub/Sub keeps messages (acked ones too, with our topology) for 7 days; a seek further back
/// silently replays less than asked, so it is refused instead.
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

/// Runs `replay`.
pub async fn run(
    args: &ReplayArgs,
    target: &PubSubTarget,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let since = parse_since(&args.since, now)?;
    anyhow::ensure!(since <= now, "--since {} is in the future", args.since);
    anyhow::ensure!(
        now - since <= RETENTION,
        "--since {} is more than 7 days ago: Pub/Sub retains messages for 7 days, so older ones cannot be replayed (reconcile can still repair missing payouts from Stark's own records)",
        args.since
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
