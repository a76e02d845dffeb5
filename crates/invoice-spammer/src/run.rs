//! One run of the job: find the slot, publish its batch, wait for every confirmation.

use futures::StreamExt as _;
use pipeline_domain::messages::{PENDING_INVOICES, PendingInvoice, TopicMessage as _};
use pipeline_service::publisher::{PublishError, Publisher};
use time::OffsetDateTime;

use crate::batch::batch;
use crate::config::SpammerConfig;

/// Nanoseconds in an hour, for slot arithmetic without rounding.
const HOUR_NANOS: i128 = 3_600_000_000_000;

/// Where an instant falls relative to the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Before slot 0 starts.
    NotStarted,
    /// Inside the campaign, in this slot.
    Slot(u32),
    /// At or after `start + hours`.
    Ended,
}

impl Window {
    /// A stable lowercase name for logs and the dry-run output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Window::NotStarted => "not_started",
            Window::Slot(_) => "in_window",
            Window::Ended => "ended",
        }
    }
}

impl SpammerConfig {
    /// The slot `now` falls in: `floor((now − start) / 1 h)`, valid when in `[0, hours)`.
    ///
    /// Computed in nanoseconds with a flooring division, so that half a second before the
    /// start is "not started" rather than slot 0 (a truncating division would round it up).
    pub fn window_at(&self, now: OffsetDateTime) -> Window {
        let elapsed = (now - self.start).whole_nanoseconds();
        let slot = elapsed.div_euclid(HOUR_NANOS);
        if slot < 0 {
            Window::NotStarted
        } else if slot >= i128::from(self.hours) {
            Window::Ended
        } else {
            // `slot < hours <= u32::MAX`, so the conversion cannot fail.
            Window::Slot(u32::try_from(slot).unwrap_or(u32::MAX))
        }
    }

    /// The campaign start as RFC 3339, for logs (the `Display` of `OffsetDateTime` is not).
    pub fn start_rfc3339(&self) -> String {
        self.start
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| self.start.to_string())
    }

    /// The window of an explicit slot number (an operator's `--slot`).
    pub fn window_of_slot(&self, slot: u32) -> Window {
        if slot < self.hours {
            Window::Slot(slot)
        } else {
            Window::Ended
        }
    }
}

/// One confirmed publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The request's deterministic id.
    pub request_id: String,
    /// The id the backend gave the message (differs between retries; the request id does not).
    pub message_id: String,
    /// Cents.
    pub amount: i64,
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunReport {
    /// The instant was outside the campaign; nothing was published. Still a success: the
    /// scheduler keeps firing after the campaign ends and those runs must not be retried.
    OutsideWindow(Window),
    /// Every request of the slot was published and confirmed.
    Published {
        /// The slot.
        slot: u32,
        /// One entry per request, in batch order.
        invoices: Vec<Published>,
        /// Sum of the amounts, cents.
        total_cents: i64,
    },
}

/// Why a run failed. Any failure fails the whole run, so that the process exits non-zero and
/// Cloud Run retries the task; the retry republishes the same requests, and the ones that did
/// get through the first time are deduplicated downstream.
#[derive(Debug, thiserror::Error)]
pub enum SpammerError {
    /// At least one publish was not confirmed.
    #[error(
        "{failed} of {total} publishes for campaign {campaign} slot {slot} failed (first: {first})"
    )]
    Publish {
        /// Campaign name.
        campaign: String,
        /// The slot.
        slot: u32,
        /// How many publishes failed.
        failed: usize,
        /// Batch size.
        total: usize,
        /// The first failure, in batch order.
        #[source]
        first: PublishError,
    },
}

/// Runs the job for the slot `now` falls in (the normal, scheduled path).
pub async fn run(
    config: &SpammerConfig,
    publisher: &dyn Publisher,
    now: OffsetDateTime,
) -> Result<RunReport, SpammerError> {
    run_window(config, publisher, config.window_at(now)).await
}

/// Runs the job for an explicit slot (operator backfills and reruns).
pub async fn run_slot(
    config: &SpammerConfig,
    publisher: &dyn Publisher,
    slot: u32,
) -> Result<RunReport, SpammerError> {
    run_window(config, publisher, config.window_of_slot(slot)).await
}

#[tracing::instrument(name = "spammer_run", skip_all, fields(campaign = %config.campaign))]
async fn run_window(
    config: &SpammerConfig,
    publisher: &dyn Publisher,
    window: Window,
) -> Result<RunReport, SpammerError> {
    let Window::Slot(slot) = window else {
        tracing::info!(
            event = "outside_campaign_window",
            window = window.as_str(),
            start = %config.start_rfc3339(),
            hours = config.hours,
            "outside the campaign window; publishing nothing"
        );
        return Ok(RunReport::OutsideWindow(window));
    };
    publish_batch(config, publisher, slot, batch(config, slot)).await
}

/// Publishes every request with bounded concurrency and waits for all of them, failures
/// included: stopping at the first error would leave the rest unlogged, and publishing them
/// anyway costs nothing since the retry republishes the same requests.
async fn publish_batch(
    config: &SpammerConfig,
    publisher: &dyn Publisher,
    slot: u32,
    invoices: Vec<PendingInvoice>,
) -> Result<RunReport, SpammerError> {
    let total = invoices.len();
    let results: Vec<(usize, &PendingInvoice, Result<String, PublishError>)> =
        futures::stream::iter(invoices.iter().enumerate())
            .map(|(index, invoice)| async move {
                let result = publisher
                    .publish(PENDING_INVOICES, invoice.to_message())
                    .await;
                match &result {
                    Ok(message_id) => tracing::info!(
                        event = "invoice_request_published",
                        slot,
                        request_id = %invoice.request_id,
                        message_id = %message_id,
                        amount = invoice.amount,
                        "published invoice request"
                    ),
                    Err(error) => tracing::error!(
                        event = "invoice_request_publish_failed",
                        slot,
                        request_id = %invoice.request_id,
                        error = %error,
                        "failed to publish invoice request"
                    ),
                }
                (index, invoice, result)
            })
            .buffer_unordered(config.publish_concurrency.max(1))
            .collect()
            .await;

    let mut ordered = results;
    ordered.sort_by_key(|(index, _, _)| *index);
    let mut published = Vec::with_capacity(total);
    let mut failures = Vec::new();
    for (_, invoice, result) in ordered {
        match result {
            Ok(message_id) => published.push(Published {
                request_id: invoice.request_id.clone(),
                message_id,
                amount: invoice.amount,
            }),
            Err(error) => failures.push(error),
        }
    }

    let total_cents = published
        .iter()
        .fold(0i64, |sum, p| sum.saturating_add(p.amount));
    let failed = failures.len();
    if let Some(first) = failures.into_iter().next() {
        tracing::error!(
            event = "batch_publish_failed",
            slot,
            total,
            published = published.len(),
            failed,
            "batch incomplete; exiting non-zero so that Cloud Run retries the task"
        );
        return Err(SpammerError::Publish {
            campaign: config.campaign.clone(),
            slot,
            failed,
            total,
            first,
        });
    }
    tracing::info!(
        event = "batch_published",
        slot,
        count = total,
        total_cents,
        total_brl = %pipeline_domain::format_brl(total_cents),
        "published every invoice request of the slot"
    );
    Ok(RunReport::Published {
        slot,
        invoices: published,
        total_cents,
    })
}
