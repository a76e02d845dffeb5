//! The invoice spammer: the Cloud Run job that Cloud Scheduler triggers every hour of a
//! campaign. Each run publishes the slot's 8 to 12 invoice requests to `pending_invoices`,
//! waits until Pub/Sub confirmed every one, and exits.
//!
//! A run is a pure function of (campaign, hour slot) and the amount/due configuration, so that
//! any retry — Cloud Run retrying a failed task, a duplicate scheduler fire, an operator rerun —
//! republishes exactly the same requests with the same request ids, and the invoice sender's
//! tag lookup turns the duplicates into no-ops.
//!
//! # Layout
//! - [`config`]: [`SpammerConfig`], read once from the environment, errors naming the variable.
//! - [`batch`](mod@batch): the deterministic batch of a slot ([`batch()`], [`slot_seed`],
//!   [`request_id`]).
//! - [`run`](mod@run): slot arithmetic ([`Window`]), publishing with bounded concurrency
//!   ([`run()`], [`run_slot`]), [`RunReport`] and [`SpammerError`].
//! - [`DryRun`]: what `--dry-run` prints.
//!
//! `main.rs` only parses flags, reads the environment, builds the publisher and calls into
//! this crate, so that tests drive the same code with an in-memory bus.
#![forbid(unsafe_code)]

pub mod batch;
pub mod config;
pub mod run;

pub use batch::{MAX_BATCH, MIN_BATCH, batch, request_id, slot_seed};
pub use config::SpammerConfig;
pub use run::{Published, RunReport, SpammerError, Window, run, run_slot};

use pipeline_domain::messages::PendingInvoice;
use serde::Serialize;

/// The batch a run would publish, as `--dry-run` prints it: enough context (window, slot,
/// totals) for an operator to check a backfill before running it for real.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Campaign name.
    pub campaign: String,
    /// `in_window`, `not_started` or `ended` (see [`Window::as_str`]).
    pub window: &'static str,
    /// The slot, when in the window.
    pub slot: Option<u32>,
    /// Number of requests.
    pub count: usize,
    /// Sum of the amounts, cents.
    pub total_cents: i64,
    /// The requests exactly as they would be published.
    pub invoices: Vec<PendingInvoice>,
}

impl DryRun {
    /// The dry run of `window`: its batch when it is a slot, nothing otherwise.
    pub fn new(config: &SpammerConfig, window: Window) -> Self {
        let (slot, invoices) = match window {
            Window::Slot(slot) => (Some(slot), batch(config, slot)),
            Window::NotStarted | Window::Ended => (None, Vec::new()),
        };
        Self {
            campaign: config.campaign.clone(),
            window: window.as_str(),
            slot,
            count: invoices.len(),
            total_cents: invoices
                .iter()
                .fold(0i64, |sum, i| sum.saturating_add(i.amount)),
            invoices,
        }
    }
}
