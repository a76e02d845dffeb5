//! Operator helpers: replay (seek), and reading dead letters.
//!
//! Pub/Sub has no "count the backlog" RPC (production reads the
//! `subscription/num_undelivered_messages` metric from Cloud Monitoring, which the emulator
//! lacks), and the official crate exposes only *streaming* pull. So reading a subscription
//! here means: open a stream, take messages until `max` or until none arrives for `idle`,
//! then settle them. "Nothing arrived within `idle`" is the only available evidence of an
//! empty subscription; choose `idle` comfortably above the stream's start-up time.
//!
//! Against the emulator the same contract is kept with unary REST pulls instead, because the
//! emulator mishandles cancelled streams (`rest_pull.rs` says how).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use google_cloud_pubsub::subscriber::ShutdownBehavior;
use google_cloud_pubsub::subscriber::handler::Handler;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::target::PubSubTarget;

/// Attribute Pub/Sub adds to a dead-lettered message: how many deliveries were attempted.
pub const DEAD_LETTER_DELIVERY_COUNT: &str = "CloudPubSubDeadLetterSourceDeliveryCount";
/// Attribute Pub/Sub adds to a dead-lettered message: the subscription it failed on.
pub const DEAD_LETTER_SOURCE_SUBSCRIPTION: &str = "CloudPubSubDeadLetterSourceSubscription";

/// Rewinds `subscription` (short name) to `time`: messages published after it are
/// delivered again, acked ones included (the topology retains acked messages for 7 days on
/// the push subscriptions; [`subscription_retention`] reads what a subscription really has).
/// Consumers are idempotent, so a replay never pays twice.
pub async fn seek_to_time(
    target: &PubSubTarget,
    subscription: &str,
    time: OffsetDateTime,
) -> Result<()> {
    let name = target.subscription_path(subscription);
    let timestamp =
        google_cloud_wkt::Timestamp::try_from(time).map_err(|e| Error::InvalidSeekTime {
            subscription: name.clone(),
            time: time.to_string(),
            reason: e.to_string(),
        })?;
    target
        .subscription_admin()
        .await?
        .seek()
        .set_subscription(&name)
        .set_time(timestamp)
        .send()
        .await
        .map_err(Error::rpc("seek subscription", name))?;
    Ok(())
}

/// Captures `subscription`'s acknowledgement state as snapshot `snapshot` (short names),
/// e.g. before a risky deploy, to [`seek_to_snapshot`] back to it afterwards.
pub async fn create_snapshot(
    target: &PubSubTarget,
    subscription: &str,
    snapshot: &str,
) -> Result<()> {
    let name = target.snapshot_path(snapshot);
    target
        .subscription_admin()
        .await?
        .create_snapshot()
        .set_name(&name)
        .set_subscription(target.subscription_path(subscription))
        .send()
        .await
        .map_err(Error::rpc("create snapshot", name))?;
    Ok(())
}

/// Restores `subscription` to the acknowledgement state captured in `snapshot`.
pub async fn seek_to_snapshot(
    target: &PubSubTarget,
    subscription: &str,
    snapshot: &str,
) -> Result<()> {
    let name = target.subscription_path(subscription);
    target
        .subscription_admin()
        .await?
        .seek()
        .set_subscription(&name)
        .set_snapshot(target.snapshot_path(snapshot))
        .send()
        .await
        .map_err(Error::rpc("seek subscription", name))?;
    Ok(())
}

/// Deletes `snapshot`; a missing one is not an error.
pub async fn delete_snapshot(target: &PubSubTarget, snapshot: &str) -> Result<()> {
    let name = target.snapshot_path(snapshot);
    match target
        .subscription_admin()
        .await?
        .delete_snapshot()
        .set_snapshot(&name)
        .send()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if crate::error::is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::rpc("delete snapshot", name)(e)),
    }
}

/// How far back a subscription can be replayed, as the server reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `message_retention_duration`: how long messages are kept after publishing.
    pub message_retention: Duration,
    /// Whether acked messages are kept too; without it a seek back redelivers only what
    /// was never acked.
    pub retain_acked_messages: bool,
}

impl Retention {
    /// The longest window a seek back can replay in full (acked messages included): the
    /// retention when acked messages are retained, otherwise zero.
    pub fn replay_window(&self) -> Duration {
        if self.retain_acked_messages {
            self.message_retention
        } else {
            Duration::ZERO
        }
    }
}

/// Reads `subscription`'s (short name) actual retention from Pub/Sub, so that a replay can
/// refuse a window longer than what is kept instead of silently replaying less: the
/// declared topology may not be what a project has (a subscription changed by hand, or on
/// the emulator, which caps retention at 7 days). A missing subscription is an error naming
/// it. A subscription without an explicit retention has Pub/Sub's default, 7 days.
pub async fn subscription_retention(
    target: &PubSubTarget,
    subscription: &str,
) -> Result<Retention> {
    let name = target.subscription_path(subscription);
    let actual = target
        .subscription_admin()
        .await?
        .get_subscription()
        .set_subscription(&name)
        .send()
        .await
        .map_err(Error::rpc("get subscription", name))?;
    let message_retention = actual
        .message_retention_duration
        .and_then(|d| {
            let seconds = u64::try_from(d.seconds()).ok()?;
            let nanos = u32::try_from(d.nanos()).ok()?;
            Some(Duration::new(seconds, nanos))
        })
        .unwrap_or(PUBSUB_DEFAULT_RETENTION);
    Ok(Retention {
        message_retention,
        retain_acked_messages: actual.retain_acked_messages,
    })
}

/// Pub/Sub's retention for a subscription that does not set one.
const PUBSUB_DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What to do with pulled messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Acknowledge: the messages leave the subscription (still seekable while retained).
    Ack,
    /// Negative-acknowledge: the messages stay and are redelivered; for looking only.
    Nack,
}

/// How to read a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullOptions {
    /// Stop after this many distinct messages.
    pub max_messages: usize,
    /// Stop when no message arrived for this long (see the module docs).
    pub idle: Duration,
    /// Ack or nack what was read.
    pub settle: Settle,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            max_messages: 100,
            // Long enough for a new streaming pull to start delivering on a loaded machine
            // (3 s proved too short in CI with the emulator and compilers sharing 2 cores).
            idle: Duration::from_secs(10),
            settle: Settle::Nack,
        }
    }
}

/// A message read from a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The server-assigned id (on a dead-letter subscription: the id of the *re-published*
    /// copy, not of the original message).
    pub message_id: String,
    /// The payload.
    pub data: Vec<u8>,
    /// The attributes, including the `CloudPubSubDeadLetter*` ones on dead letters.
    pub attributes: BTreeMap<String, String>,
    /// When it was published (on a dead-letter topic: when it was dead-lettered).
    pub publish_time: Option<OffsetDateTime>,
    /// Delivery attempt number, when the server reports it (real Pub/Sub does for
    /// subscriptions with a dead-letter policy; the emulator never does).
    pub delivery_attempt: Option<i32>,
}

impl ReceivedMessage {
    /// How many deliveries failed before this message was dead-lettered.
    pub fn dead_letter_delivery_count(&self) -> Option<u32> {
        self.attributes
            .get(DEAD_LETTER_DELIVERY_COUNT)?
            .parse()
            .ok()
    }
}

/// Reads up to `options.max_messages` from `subscription` (short name) and settles them all
/// as `options.settle` says.
pub async fn pull(
    target: &PubSubTarget,
    subscription: &str,
    options: PullOptions,
) -> Result<Vec<ReceivedMessage>> {
    let lease = lease(target, subscription, options.max_messages, options.idle).await?;
    let messages = lease.messages.clone();
    lease.settle(|_| options.settle == Settle::Ack).await?;
    Ok(messages)
}

/// Messages read from a subscription and held (not offered to anyone else) until
/// [`Lease::settle`] acks or nacks each one. For a reader that must decide per message, and
/// act on it, before the message leaves the subscription: the dead-letter drain republishes
/// a message first and acks it only then, so a crash in between leaves it where it was.
///
/// Hold it briefly: the server takes a message back when its ack deadline passes (the
/// streaming client extends it while the lease lives; the emulator's unary pull does not).
#[derive(Debug)]
pub struct Lease {
    /// What was read, each message once.
    pub messages: Vec<ReceivedMessage>,
    held: Held,
}

#[derive(Debug)]
enum Held {
    /// Unary pulls at the emulator: the ack ids, with the message id each belongs to (a
    /// message redelivered during the read has several).
    Rest {
        subscription: crate::rest_pull::Owned,
        ack_ids: Vec<(String, String)>,
    },
    /// A streaming pull at real Pub/Sub, kept open until settled.
    Stream {
        stream: Box<google_cloud_pubsub::subscriber::MessageStream>,
        handlers: Vec<(String, Handler)>,
    },
}

impl Lease {
    /// Acks the messages for which `ack` says so (by message id) and nacks the others, and
    /// waits until the server has them.
    pub async fn settle(self, ack: impl Fn(&str) -> bool) -> Result<()> {
        match self.held {
            Held::Rest {
                subscription,
                ack_ids,
            } => {
                let (acked, nacked): (Vec<_>, Vec<_>) =
                    ack_ids.into_iter().partition(|(id, _)| ack(id));
                let ids = |v: Vec<(String, String)>| v.into_iter().map(|(_, a)| a).collect();
                subscription.settle(Settle::Ack, ids(acked)).await?;
                subscription.settle(Settle::Nack, ids(nacked)).await
            }
            Held::Stream { stream, handlers } => {
                for (id, handler) in handlers {
                    if ack(&id) {
                        handler.ack();
                    } else {
                        handler.nack();
                    }
                }
                // Waits until the acks/nacks above reached the server, so that a following
                // peek sees the subscription's new state.
                stream.shutdown_token().shutdown().await;
                Ok(())
            }
        }
    }
}

/// Reads up to `max` messages from `subscription` (short name), stopping early when no new
/// one came for `idle`, and holds them (see [`Lease`]). On a read error everything read is
/// given back and the error returned.
pub async fn lease(
    target: &PubSubTarget,
    subscription: &str,
    max: usize,
    idle: Duration,
) -> Result<Lease> {
    let name = target.subscription_path(subscription);
    if let Some(endpoint) = target.endpoint() {
        // The emulator leaves cancelled streaming pulls behind (see `rest_pull.rs`).
        let (messages, subscription, ack_ids) =
            crate::rest_pull::lease(&endpoint, &name, max, idle).await?;
        return Ok(Lease {
            messages,
            held: Held::Rest {
                subscription,
                ack_ids,
            },
        });
    }
    let client = target.subscriber().await?;
    let mut stream = client
        .subscribe(&name)
        .set_max_outstanding_messages(i64::try_from(max.max(1)).unwrap_or(i64::MAX))
        // Whatever was delivered but not handed to us goes straight back.
        .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
        .build();
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    // Nothing is nacked while reading: a message nacked at once would come straight back
    // (after the retry policy's minimum backoff) and keep the stream busy forever.
    let mut handlers = Vec::new();
    let mut failure = None;
    // Measured from the last *new* message, so that redeliveries cannot extend it.
    let mut idle_deadline = tokio::time::Instant::now() + idle;
    while messages.len() < max {
        let next = match tokio::time::timeout_at(idle_deadline, stream.next()).await {
            Err(_) | Ok(None) => break,
            Ok(Some(next)) => next,
        };
        let (message, handler) = match next {
            Ok(received) => received,
            Err(source) => {
                failure = Some(source);
                break;
            }
        };
        let delivery_attempt = handler.delivery_attempt();
        handlers.push((message.message_id.clone(), handler));
        if !seen.insert(message.message_id.clone()) {
            continue;
        }
        idle_deadline = tokio::time::Instant::now() + idle;
        messages.push(ReceivedMessage {
            message_id: message.message_id,
            data: message.data.to_vec(),
            attributes: message.attributes.into_iter().collect(),
            publish_time: message
                .publish_time
                .and_then(|t| OffsetDateTime::try_from(t).ok()),
            delivery_attempt,
        });
    }
    let lease = Lease {
        messages,
        held: Held::Stream {
            stream: Box::new(stream),
            handlers,
        },
    };
    match failure {
        Some(source) => {
            lease.settle(|_| false).await?;
            Err(Error::Pull {
                subscription: name,
                source,
            })
        }
        None => Ok(lease),
    }
}

/// Reads and acknowledges up to `max` dead letters, for an operator to inspect and
/// (after fixing the cause) republish. Acked dead letters stay seekable for the dead-letter
/// subscription's retention (31 days in production, 7 on the emulator).
pub async fn pull_dead_letters(
    target: &PubSubTarget,
    subscription: &str,
    max: usize,
) -> Result<Vec<ReceivedMessage>> {
    pull(
        target,
        subscription,
        PullOptions {
            max_messages: max,
            settle: Settle::Ack,
            ..PullOptions::default()
        },
    )
    .await
}

/// Reads up to `max` messages without consuming them (they are nacked back).
pub async fn peek(
    target: &PubSubTarget,
    subscription: &str,
    max: usize,
) -> Result<Vec<ReceivedMessage>> {
    pull(
        target,
        subscription,
        PullOptions {
            max_messages: max,
            ..PullOptions::default()
        },
    )
    .await
}

/// How many messages wait in `subscription`, counting at most `cap`. It is a peek, so it costs
/// one delivery attempt per message and waits [`PullOptions::idle`] when empty. Best effort:
/// messages an earlier peek gave back return only after the subscription's retry backoff, so
/// a zero right after a peek is not proof of emptiness. The local stack therefore drains dead
/// letters with [`pull_dead_letters`] instead; in production the
/// `subscription/num_undelivered_messages` metric is the authoritative count.
pub async fn count_undelivered(
    target: &PubSubTarget,
    subscription: &str,
    cap: usize,
) -> Result<usize> {
    Ok(peek(target, subscription, cap).await?.len())
}
