//! What a repair does with dead letters: the messages Pub/Sub gave up on after every delivery
//! attempt failed (100 in production, over hours of backoff).
//!
//! A letter is there either because its cause lasted longer than the retries (Stark down for
//! a day, credentials revoked and restored) or because it can never succeed (malformed, an
//! invalid request, a payout money-sender refuses as not ours). Once Stark answers again, the
//! first kind only needs another delivery; the second must stay where an operator (and the
//! dead-letter alert) sees it. Each letter is judged against Stark's own records:
//!
//! - a payout whose invoice is already paid out, in flight or has nothing due: resolved, acked;
//! - a payout of an invoice credited to us and still unpaid: republished to `paid_invoices`;
//! - a payout of an invoice not credited to us in the audited window: kept;
//! - an invoice request Stark already lists an invoice for: resolved, acked;
//! - a valid request without an invoice: republished to `pending_invoices`;
//! - anything unreadable or invalid: kept.
//!
//! Republish first, ack second: a crash in between leaves the letter in place, and the next
//! run finds it resolved. Both consumers are idempotent (request tag, payout key), so a
//! republished message never issues or pays twice, even when two reconcilers drain at once:
//! each leases different letters, and what both republish is deduplicated downstream.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::BoxFuture;
use pipeline_domain::messages::{
    OutgoingMessage, PAID_INVOICES, PENDING_INVOICES, PaidInvoice, PendingInvoice, TopicMessage,
};
use pipeline_service::publisher::Publisher;
use serde::Serialize;
use stark_client::Client;

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id on the dead-letter subscription.
    pub message_id: String,
    /// The original payload.
    pub data: Vec<u8>,
}

/// Callback that acks the given message ids of a lease and gives the rest back.
type SettleFn = Box<dyn FnOnce(BTreeSet<String>) -> BoxFuture<'static, anyhow::Result<()>> + Send>;

/// Dead letters held for this run: nobody else sees them until [`DeadLetterLease::settle`].
pub struct DeadLetterLease {
    /// What was read.
    pub letters: Vec<DeadLetter>,
    settle: SettleFn,
}

impl std::fmt::Debug for DeadLetterLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterLease")
            .field("letters", &self.letters.len())
            .finish_non_exhaustive()
    }
}

impl DeadLetterLease {
    /// A lease over `letters`; `settle` acks the ids it is given and gives the rest back.
    pub fn new(letters: Vec<DeadLetter>, settle: SettleFn) -> Self {
        Self { letters, settle }
    }

    /// Acks `acked`, gives every other letter back.
    pub async fn settle(self, acked: BTreeSet<String>) -> anyhow::Result<()> {
        (self.settle)(acked).await
    }
}

/// Where a repair finds the dead letters of a topic.
pub trait DeadLetterSource: Send + Sync + std::fmt::Debug {
    /// Leases the dead letters of `topic` (`paid_invoices` or `pending_invoices`).
    fn lease<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, anyhow::Result<DeadLetterLease>>;
}

/// The dead-letter subscriptions of a Pub/Sub project (or emulator).
#[derive(Debug, Clone)]
pub struct PubSubDeadLetters {
    /// The project.
    pub target: gcp_pubsub::PubSubTarget,
    /// Most letters taken per topic and run (the rest wait for the next run).
    pub max: usize,
    /// How long without a new letter ends a read (see `gcp_pubsub::ops`).
    pub idle: Duration,
}

impl PubSubDeadLetters {
    /// Reads up to 100 letters per topic and run, with the reading defaults of `gcp_pubsub`.
    pub fn new(target: gcp_pubsub::PubSubTarget) -> Self {
        Self {
            target,
            max: 100,
            idle: gcp_pubsub::ops::PullOptions::default().idle,
        }
    }
}

impl DeadLetterSource for PubSubDeadLetters {
    fn lease<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, anyhow::Result<DeadLetterLease>> {
        Box::pin(async move {
            let subscription = gcp_pubsub::topology::dead_letter_name(topic);
            let lease =
                gcp_pubsub::ops::lease(&self.target, &subscription, self.max, self.idle).await?;
            let letters = lease
                .messages
                .iter()
                .map(|m| DeadLetter {
                    message_id: m.message_id.clone(),
                    data: m.data.clone(),
                })
                .collect();
            let settle: SettleFn = Box::new(move |acked| {
                Box::pin(async move {
                    lease.settle(|id| acked.contains(id)).await?;
                    Ok(())
                })
            });
            Ok(DeadLetterLease::new(letters, settle))
        })
    }
}

/// What Stark's records say, as far as a payout letter needs.
#[derive(Debug, Clone, Copy)]
pub struct Credits<'a> {
    /// Invoices credited to our workspace in the audited window.
    pub credited: &'a BTreeSet<String>,
    /// Of those, the ones with nothing paid and nothing in flight.
    pub unpaid: &'a BTreeSet<String>,
}

/// What to do with one letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing left to do: ack it.
    Resolved(String),
    /// Deliver it again: publish `message`, then ack it. `key` is the invoice or request id.
    Republish {
        /// What to publish.
        message: OutgoingMessage,
        /// The invoice id (payouts) or request id (requests) it carries.
        key: String,
        /// Why.
        reason: String,
    },
    /// Leave it for an operator.
    Keep(String),
}

/// Judges a `paid_invoices` letter against Stark's credits.
pub fn judge_payout(data: &[u8], credits: Credits<'_>) -> Verdict {
    let paid = match PaidInvoice::from_payload(data) {
        Ok(paid) => paid,
        Err(e) => return Verdict::Keep(e),
    };
    let id = &paid.invoice_id;
    if credits.unpaid.contains(id) {
        Verdict::Republish {
            message: paid.to_message(),
            key: id.clone(),
            reason: format!("invoice {id} is credited and unpaid"),
        }
    } else if credits.credited.contains(id) {
        Verdict::Resolved(format!("invoice {id} is paid out or has nothing due"))
    } else {
        Verdict::Keep(format!(
            "invoice {id} is not credited to this workspace in the audited window (money-sender refuses it)"
        ))
    }
}

/// A `pending_invoices` letter read: the request, or why it is kept.
pub fn read_request(data: &[u8]) -> Result<PendingInvoice, String> {
    let request = PendingInvoice::from_payload(data)?;
    invoice_sender::check_request(&request)?;
    Ok(request)
}

/// What one drain did to one letter.
#[derive(Debug, Clone, Serialize)]
pub struct Drained {
    /// The topic whose dead letters it was.
    pub topic: &'static str,
    /// Its id on the dead-letter subscription.
    pub message_id: String,
    /// `resolved`, `republished` or `kept`.
    pub action: &'static str,
    /// Why.
    pub reason: String,
    /// The new message's id, when republished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub republished_as: Option<String>,
}

/// The ids a drain republished, so that the rest of the repair does not publish them again.
#[derive(Debug, Clone, Default)]
pub struct Republished {
    /// Invoice ids republished to `paid_invoices`.
    pub invoices: BTreeSet<String>,
    /// Request ids republished to `pending_invoices`.
    pub requests: BTreeSet<String>,
}

/// Drains both topics' dead letters (see the module docs).
pub async fn drain(
    source: &dyn DeadLetterSource,
    publisher: &dyn Publisher,
    stark: &Client,
    credits: Credits<'_>,
) -> anyhow::Result<(Vec<Drained>, Republished)> {
    let mut report = Vec::new();
    let mut republished = Republished::default();

    let lease = source.lease(PAID_INVOICES).await?;
    let verdicts: Vec<(String, Verdict)> = lease
        .letters
        .iter()
        .map(|letter| {
            (
                letter.message_id.clone(),
                judge_payout(&letter.data, credits),
            )
        })
        .collect();
    let acked = act(
        PAID_INVOICES,
        verdicts,
        publisher,
        &mut report,
        &mut republished.invoices,
    )
    .await;
    lease.settle(acked?).await?;

    let lease = source.lease(PENDING_INVOICES).await?;
    let mut verdicts = Vec::new();
    for letter in &lease.letters {
        let verdict = match read_request(&letter.data) {
            Err(reason) => Verdict::Keep(reason),
            Ok(request) => {
                let tag = request.request_tag();
                match invoice_sender::find_issued(stark, &tag.to_string()).await {
                    // Stark did not answer: give the letter back for the next run.
                    Err(e) => Verdict::Keep(format!("could not look {tag} up: {e}")),
                    Ok(Some(invoice)) => Verdict::Resolved(format!(
                        "request {} has invoice {invoice}",
                        request.request_id
                    )),
                    Ok(None) => Verdict::Republish {
                        message: request.to_message(),
                        reason: format!("request {} has no invoice", request.request_id),
                        key: request.request_id,
                    },
                }
            }
        };
        verdicts.push((letter.message_id.clone(), verdict));
    }
    let acked = act(
        PENDING_INVOICES,
        verdicts,
        publisher,
        &mut report,
        &mut republished.requests,
    )
    .await;
    lease.settle(acked?).await?;
    Ok((report, republished))
}

/// Carries out the verdicts on `topic`'s letters, appending to `report` and adding the keys
/// republished to `republished`; returns the ids to ack. A failed publish keeps its letter
/// (and the rest of the run goes on).
async fn act(
    topic: &'static str,
    verdicts: Vec<(String, Verdict)>,
    publisher: &dyn Publisher,
    report: &mut Vec<Drained>,
    republished: &mut BTreeSet<String>,
) -> anyhow::Result<BTreeSet<String>> {
    let mut acked = BTreeSet::new();
    for (message_id, verdict) in verdicts {
        let (action, reason, republished_as) = match verdict {
            Verdict::Resolved(reason) => {
                acked.insert(message_id.clone());
                ("resolved", reason, None)
            }
            Verdict::Keep(reason) => ("kept", reason, None),
            Verdict::Republish {
                message,
                key,
                reason,
            } => match publisher.publish(topic, message).await {
                Ok(id) => {
                    acked.insert(message_id.clone());
                    republished.insert(key);
                    ("republished", reason, Some(id))
                }
                Err(e) => (
                    "kept",
                    format!("{reason}, but republishing failed: {e}"),
                    None,
                ),
            },
        };
        match action {
            "kept" => tracing::warn!(
                event = "dead_letter_kept",
                topic,
                message_id = %message_id,
                reason = %reason,
                "dead letter left for an operator"
            ),
            _ => tracing::info!(
                event = "dead_letter_drained",
                topic,
                message_id = %message_id,
                action,
                reason = %reason,
                "dead letter drained"
            ),
        }
        report.push(Drained {
            topic,
            message_id,
            action,
            reason,
            republished_as,
        });
    }
    Ok(acked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(invoice: &str) -> Vec<u8> {
        let message = PaidInvoice {
            schema_version: 1,
            event_id: "e1".into(),
            invoice_id: invoice.into(),
            amount: 10_000,
            fee: 50,
            payer_name: "Ana".into(),
            payer_tax_id: "012.345.678-90".into(),
            credited_at: "2026-12-01T10:00:00+00:00".into(),
            tags: vec![],
        };
        message.to_message().data
    }

    #[test]
    fn payout_letters_are_judged_by_starks_credits() {
        let credited: BTreeSet<String> = ["1", "2"].map(String::from).into();
        let unpaid: BTreeSet<String> = ["2"].map(String::from).into();
        let credits = Credits {
            credited: &credited,
            unpaid: &unpaid,
        };
        assert!(matches!(
            judge_payout(&paid("1"), credits),
            Verdict::Resolved(_)
        ));
        match judge_payout(&paid("2"), credits) {
            Verdict::Republish { message, key, .. } => {
                assert_eq!(key, "2");
                let again = PaidInvoice::from_payload(&message.data).unwrap();
                assert_eq!(again.invoice_id, "2");
                assert_eq!(message.ordering_key.as_deref(), Some("2"));
            }
            other => panic!("expected a republish, got {other:?}"),
        }
        // Not ours (or not in the window): never republished, never acked.
        assert!(
            matches!(judge_payout(&paid("3"), credits), Verdict::Keep(r) if r.contains("not credited"))
        );
        assert!(
            matches!(judge_payout(b"{not json", credits), Verdict::Keep(r) if r.contains("invalid"))
        );
    }

    #[test]
    fn invalid_requests_are_kept() {
        let config =
            invoice_spammer::SpammerConfig::new("c", time::macros::datetime!(2026-12-01 00:00 UTC));
        let mut request = invoice_spammer::batch(&config, 0).remove(0);
        let good = request.to_message().data;
        assert_eq!(read_request(&good).unwrap(), request);
        request.amount = 0;
        assert!(read_request(&request.to_message().data).is_err());
        request.amount = 100;
        request.tags.clear();
        let err = read_request(&request.to_message().data).unwrap_err();
        assert!(err.contains("request tag"), "{err}");
        assert!(read_request(b"[]").is_err());
    }
}
