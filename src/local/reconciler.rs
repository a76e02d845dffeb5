//! The scheduled reconciler of the local stack: `reconcile --repair`, the code operators run
//! and the reconciler job runs every 15 minutes in production, started on the campaign's
//! compressed clock from the campaign's start until 48 campaign hours after its end.
//!
//! Compressed like everything else, its period and grace would shrink below what the local
//! pipeline needs in real time to finish a payout (a grace of 10 campaign minutes is under a
//! second at the default speed), and every payout still in flight would be republished. So both
//! have a real-time floor ([`REAL_PERIOD_FLOOR`], [`REAL_GRACE_FLOOR`]): at high speeds the
//! reconciler runs less often, on an older horizon, exactly as a slow Stark would make it. The
//! period's floor also grows with the invoice rate, since each run reads the whole campaign.

use std::sync::Mutex;
use std::time::Duration;

use pipeline_domain::messages::{PAID_INVOICES, PENDING_INVOICES};
use pipeline_domain::receiver::Receiver;
use time::format_description::well_known::Rfc3339;

use super::Stack;
use crate::ops::output::{Format, FormatArg};
use crate::ops::reconcile::{self, ReconcileArgs, RepairBus};

/// The production schedule: every 15 minutes.
pub const PERIOD: Duration = Duration::from_secs(15 * 60);
/// The production grace: invoices credited (or slots begun) less than this ago are left alone.
pub const GRACE: Duration = Duration::from_secs(10 * 60);
/// How long after the campaign's end the job keeps running.
pub const AFTER_END: Duration = Duration::from_secs(48 * 3600);
/// Never more often than this, in real time (times the rate multiplier).
pub const REAL_PERIOD_FLOOR: Duration = Duration::from_secs(2);
/// Never a shorter grace than this, in real time.
pub const REAL_GRACE_FLOOR: Duration = Duration::from_secs(5);

/// What the scheduled reconcilers did so far, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcilerStats {
    /// Runs that finished.
    pub runs: u32,
    /// Runs that failed (Stark or the bus unreachable): the next one tries again.
    pub failed: u32,
    /// Payouts republished (dead letters included).
    pub payouts_republished: usize,
    /// Invoice requests republished (dead letters included).
    pub requests_republished: usize,
    /// Later duplicate invoices canceled.
    pub canceled: usize,
    /// `paid_invoices`' dead letters drained (a payout republished, or found already made).
    pub payout_letters_drained: usize,
    /// `pending_invoices`' dead letters drained (a request republished, or found issued).
    pub request_letters_drained: usize,
    /// Dead letters left for an operator by the last run.
    pub dead_letters_kept: usize,
}

impl ReconcilerStats {
    /// Dead letters drained (resolved or republished), of both topics: the reconciler drains
    /// only `paid_invoices` and `pending_invoices`.
    pub fn dead_letters_drained(&self) -> usize {
        self.payout_letters_drained + self.request_letters_drained
    }
}

/// The reconcilers' shared tally.
#[derive(Debug, Default)]
pub struct Tally(Mutex<ReconcilerStats>);

impl Tally {
    /// A copy of the counts.
    pub fn get(&self) -> ReconcilerStats {
        *self.0.lock().expect("reconciler tally")
    }

    fn add(&self, outcome: Option<&reconcile::Outcome>) {
        let mut stats = self.0.lock().expect("reconciler tally");
        match outcome {
            None => stats.failed += 1,
            Some(outcome) => {
                stats.runs += 1;
                stats.payouts_republished += outcome.payouts_republished();
                stats.requests_republished += outcome.requests_republished();
                stats.canceled += outcome.canceled.len();
                stats.payout_letters_drained += outcome.letters_drained(Some(PAID_INVOICES));
                stats.request_letters_drained += outcome.letters_drained(Some(PENDING_INVOICES));
                stats.dead_letters_kept = outcome.kept();
            }
        }
    }
}

impl Stack {
    /// Where a repair against this stack publishes and finds dead letters.
    pub fn repair_bus(&self) -> RepairBus<'_> {
        RepairBus {
            publisher: self.publisher.as_ref(),
            dead_letters: &self.bus,
        }
    }

    /// The real time between two runs of one reconciler (see the module docs). A run reads
    /// every invoice and transfer of the campaign, so at `rate_multiplier` times the invoices
    /// the floor is that many times longer: the reconciler's share of the machine stays what
    /// it is at 1×.
    fn reconcile_period(&self, every: Duration) -> Duration {
        every
            .div_f64(self.options.speed)
            .max(REAL_PERIOD_FLOOR * self.options.rate_multiplier.max(1))
    }

    /// Runs the configured reconcilers, each on its own schedule, staggered so that they
    /// overlap; never returns (the caller drops it when the campaign is over). Does nothing
    /// when the reconciler is off.
    pub(super) async fn reconcile_forever(&self) {
        let Some(every) = self.options.reconcile_every else {
            return std::future::pending().await;
        };
        let count = self.options.reconcilers.max(1);
        let period = self.reconcile_period(every);
        let loops = (0..count).map(|index| {
            let offset = period.mul_f64(f64::from(index) / f64::from(count));
            self.reconcile_loop(period, offset)
        });
        futures::future::join_all(loops).await;
        std::future::pending().await
    }

    async fn reconcile_loop(&self, period: Duration, offset: Duration) {
        let end =
            self.spammer.start + time::Duration::hours(i64::from(self.spammer.hours)) + AFTER_END;
        tokio::time::sleep(offset).await;
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.sandbox.now() > end {
                return;
            }
            self.reconcile_once().await;
        }
    }

    /// One scheduled run, as the reconciler job makes it.
    async fn reconcile_once(&self) {
        let grace = GRACE.max(REAL_GRACE_FLOOR.mul_f64(self.options.speed));
        let since = (self.spammer.start - time::Duration::minutes(1))
            .format(&Rfc3339)
            .expect("a campaign start formats");
        let args = ReconcileArgs {
            since,
            repair: true,
            grace,
            campaign: Some(self.spammer.clone()),
            output: FormatArg {
                format: Format::Json,
            },
        };
        let outcome = reconcile::reconcile(
            &args,
            &self.stark,
            Some(self.repair_bus()),
            &Receiver::default(),
            self.options.transfer_fee,
            self.sandbox.now(),
        )
        .await;
        match &outcome {
            Ok(_) => {}
            Err(err) => tracing::warn!(
                event = "reconcile_failed",
                error = %format!("{err:#}"),
                "scheduled reconcile failed; the next run tries again"
            ),
        }
        self.reconciler.add(outcome.as_ref().ok());
    }
}
