//! An in-process message bus with Pub/Sub's push contract, for local runs and tests where the
//! emulator is not installed.
//!
//! Same contract as a Pub/Sub push subscription with a dead-letter policy: every message
//! published to a topic is POSTed, as a push envelope, to each subscription's endpoint; a 2xx
//! answer acks it; anything else (or no answer within the ack deadline) is retried with
//! exponential backoff, and after `max_delivery_attempts` the message is parked in the
//! subscription's dead-letter list. Acked messages are retained so that [`MemoryBus::seek`] can
//! replay them, as `retain_acked_messages` allows on Pub/Sub. Like Pub/Sub's push flow control,
//! a subscription has at most [`MAX_OUTSTANDING_PUSHES`] POSTs in flight; the rest wait their
//! turn (a burst of thousands would otherwise open thousands of connections at once).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use pipeline_service::envelope::WireEnvelope;
use pipeline_service::publisher::{OutgoingMessage, PublishError, Publisher};

/// Most POSTs one subscription has in flight at once. Waiting for a slot does not count
/// against the ack deadline. Pub/Sub's own window grows with successful answers (it adjusts
/// the push rate to the rate of successes), so this is a stand-in. 128, measured: it lets a
/// 1 000× campaign pay about 190 payouts a second instead of 115 with 32 (money-sender waits
/// about 0.1 s for each payout to settle at `--speed 180`). Before money-sender counted what it
/// had committed to transfers Stark had not debited yet, 128 payouts checking one balance
/// over-committed it, and 3 of 4 runs at 100× lost a few payouts whose three generations all
/// failed (373 and 379 failed transfers in the runs that passed); since, 1 failed in a run.
pub const MAX_OUTSTANDING_PUSHES: usize = 128;

/// How a subscription retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff.
    pub min_backoff: Duration,
    /// Backoff cap.
    pub max_backoff: Duration,
    /// Attempts before dead-lettering (Pub/Sub allows 5 to 100).
    pub max_delivery_attempts: u32,
    /// How long one delivery may take before it counts as a failure.
    pub ack_deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            max_delivery_attempts: 5,
            ack_deadline: Duration::from_secs(30),
        }
    }
}

/// A message as stored by the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Bus-assigned id.
    pub message_id: String,
    /// Topic it was published to.
    pub topic: String,
    /// Payload.
    pub data: Vec<u8>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
    /// Ordering key, if published with one.
    pub ordering_key: Option<String>,
    /// Publish time.
    pub publish_time: SystemTime,
}

/// A message as the bus keeps it: one copy, shared (`Arc`) by the topic's retention and every
/// delivery in flight, in the smallest form that gives [`StoredMessage`] back. Every message is
/// kept for [`MemoryBus::seek`], so its size counts once per message of a campaign: the
/// attributes as a `BTreeMap` cost about 540 bytes for the map's first node alone, and the id
/// and topic as text another 60; as a slice and a number, a message costs its data and little
/// more.
#[derive(Debug)]
struct Kept {
    id: u64,
    data: Box<[u8]>,
    /// Sorted by name, as the map they came from.
    attributes: Box<[(Box<str>, Box<str>)]>,
    ordering_key: Option<Box<str>>,
    publish_time: SystemTime,
}

impl Kept {
    fn new(id: u64, message: OutgoingMessage) -> Self {
        Self {
            id,
            data: message.data.into(),
            attributes: message
                .attributes
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ordering_key: message.ordering_key.map(Into::into),
            publish_time: SystemTime::now(),
        }
    }

    /// The message as an [`OutgoingMessage`] again, for an envelope.
    fn outgoing(&self) -> OutgoingMessage {
        OutgoingMessage {
            data: self.data.to_vec(),
            attributes: self
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ordering_key: self.ordering_key.as_deref().map(Into::into),
        }
    }

    /// The message as the bus's API shows it.
    fn stored(&self, topic: &str) -> StoredMessage {
        let OutgoingMessage {
            data,
            attributes,
            ordering_key,
        } = self.outgoing();
        StoredMessage {
            message_id: self.id.to_string(),
            topic: topic.to_owned(),
            data,
            attributes,
            ordering_key,
            publish_time: self.publish_time,
        }
    }
}

/// What happened to one message on one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Being delivered or waiting for a retry.
    Pending,
    /// Answered 2xx.
    Acked,
    /// Ran out of attempts.
    DeadLettered,
}

/// Counts for one subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// Messages not yet acked or dead-lettered.
    pub pending: usize,
    /// Acked messages.
    pub acked: usize,
    /// Dead-lettered messages.
    pub dead_lettered: usize,
    /// POSTs made, retries included.
    pub attempts: u64,
}

#[derive(Debug)]
struct Subscription {
    name: String,
    endpoint: String,
    policy: RetryPolicy,
    /// The topic it reads, for the dead letters it keeps.
    topic: String,
    /// State of every message this subscription received, by message id.
    states: Mutex<HashMap<u64, DeliveryState>>,
    dead_letters: Mutex<Vec<StoredMessage>>,
    attempts: AtomicU64,
    /// Bumped by `seek`, so that deliveries started before a seek do not overwrite newer state.
    generation: AtomicU64,
    /// Push flow control: one permit per POST in flight.
    in_flight: tokio::sync::Semaphore,
}

#[derive(Debug, Default)]
struct Topic {
    subscriptions: Vec<Arc<Subscription>>,
    messages: Vec<Arc<Kept>>,
}

/// The in-process bus. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    project: String,
    topics: Mutex<HashMap<String, Topic>>,
    http: reqwest::Client,
    next_id: AtomicU64,
    fail_publishes: AtomicBool,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// An empty bus; topics spring into existence on first use.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                project: "local".into(),
                topics: Mutex::new(HashMap::new()),
                http: reqwest::Client::new(),
                next_id: AtomicU64::new(1),
                fail_publishes: AtomicBool::new(false),
            }),
        }
    }

    /// Adds a push subscription to `topic`. Only messages published afterwards reach it.
    pub fn subscribe(&self, topic: &str, name: &str, endpoint: &str, policy: RetryPolicy) {
        let subscription = Arc::new(Subscription {
            name: name.to_owned(),
            topic: topic.to_owned(),
            endpoint: endpoint.to_owned(),
            policy,
            states: Mutex::new(HashMap::new()),
            dead_letters: Mutex::new(Vec::new()),
            attempts: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            in_flight: tokio::sync::Semaphore::new(MAX_OUTSTANDING_PUSHES),
        });
        let mut topics = self.inner.topics.lock().expect("bus lock");
        topics
            .entry(topic.to_owned())
            .or_default()
            .subscriptions
            .push(subscription);
    }

    /// Makes every publish fail (to test that callers answer 5xx), or succeed again.
    pub fn set_fail_publishes(&self, fail: bool) {
        self.inner.fail_publishes.store(fail, Ordering::SeqCst);
    }

    /// Every message published to `topic`, in order.
    pub fn published(&self, topic: &str) -> Vec<StoredMessage> {
        let topics = self.inner.topics.lock().expect("bus lock");
        topics
            .get(topic)
            .map(|t| t.messages.iter().map(|m| m.stored(topic)).collect())
            .unwrap_or_default()
    }

    /// Counts for subscription `name`.
    pub fn stats(&self, name: &str) -> Option<SubscriptionStats> {
        let subscription = self.find(name)?;
        let states = subscription.states.lock().expect("bus lock");
        let mut stats = SubscriptionStats {
            attempts: subscription.attempts.load(Ordering::SeqCst),
            ..Default::default()
        };
        for state in states.values() {
            match state {
                DeliveryState::Pending => stats.pending += 1,
                DeliveryState::Acked => stats.acked += 1,
                DeliveryState::DeadLettered => stats.dead_lettered += 1,
            }
        }
        Some(stats)
    }

    /// The messages parked in `name`'s dead-letter list.
    pub fn dead_letters(&self, name: &str) -> Vec<StoredMessage> {
        self.find(name)
            .map(|s| s.dead_letters.lock().expect("bus lock").clone())
            .unwrap_or_default()
    }

    /// Removes the dead letters of `name` whose message id `remove` accepts (acking them on a
    /// dead-letter subscription); returns how many went.
    pub fn remove_dead_letters(&self, name: &str, remove: impl Fn(&str) -> bool) -> usize {
        let Some(subscription) = self.find(name) else {
            return 0;
        };
        let mut letters = subscription.dead_letters.lock().expect("bus lock");
        let before = letters.len();
        letters.retain(|m| !remove(&m.message_id));
        before - letters.len()
    }

    /// Redelivers every message of the subscription's topic published at or after `since`,
    /// acked ones included, as seeking a Pub/Sub subscription back in time does.
    pub fn seek(&self, name: &str, since: SystemTime) -> usize {
        let Some(subscription) = self.find(name) else {
            return 0;
        };
        let messages: Vec<Arc<Kept>> = {
            let topics = self.inner.topics.lock().expect("bus lock");
            topics
                .values()
                .filter(|t| {
                    t.subscriptions
                        .iter()
                        .any(|s| Arc::ptr_eq(s, &subscription))
                })
                .flat_map(|t| {
                    t.messages
                        .iter()
                        .filter(|m| m.publish_time >= since)
                        .map(Arc::clone)
                })
                .collect()
        };
        subscription.generation.fetch_add(1, Ordering::SeqCst);
        for message in &messages {
            self.spawn_delivery(subscription.clone(), message.clone());
        }
        messages.len()
    }

    fn find(&self, name: &str) -> Option<Arc<Subscription>> {
        let topics = self.inner.topics.lock().expect("bus lock");
        topics
            .values()
            .flat_map(|t| t.subscriptions.iter())
            .find(|s| s.name == name)
            .cloned()
    }

    fn spawn_delivery(&self, subscription: Arc<Subscription>, message: Arc<Kept>) {
        let generation = subscription.generation.load(Ordering::SeqCst);
        subscription
            .states
            .lock()
            .expect("bus lock")
            .insert(message.id, DeliveryState::Pending);
        let http = self.inner.http.clone();
        let project = self.inner.project.clone();
        tokio::spawn(async move {
            let outcome = deliver(&http, &project, &subscription, &message).await;
            if subscription.generation.load(Ordering::SeqCst) != generation {
                return; // a seek restarted this message; the newer delivery owns its state
            }
            if outcome == DeliveryState::DeadLettered {
                subscription
                    .dead_letters
                    .lock()
                    .expect("bus lock")
                    .push(message.stored(&subscription.topic));
            }
            subscription
                .states
                .lock()
                .expect("bus lock")
                .insert(message.id, outcome);
        });
    }
}

/// Delivers one message until acked or out of attempts.
async fn deliver(
    http: &reqwest::Client,
    project: &str,
    subscription: &Subscription,
    message: &Kept,
) -> DeliveryState {
    let publish_time = time::OffsetDateTime::from(message.publish_time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let policy = &subscription.policy;
    let mut backoff = policy.min_backoff;
    let message_id = message.id.to_string();
    for attempt in 1..=policy.max_delivery_attempts {
        // The envelope is made only once a push slot is free: while payouts trail a campaign,
        // tens of thousands of deliveries wait here, and each then holds its shared message,
        // not an envelope of its own besides.
        let permit = subscription.in_flight.acquire().await;
        let envelope = WireEnvelope::for_message(
            &format!("projects/{project}/subscriptions/{}", subscription.name),
            &message_id,
            &publish_time,
            &message.outgoing(),
            Some(attempt),
        );
        let body = serde_json::to_vec(&envelope).unwrap_or_default();
        drop(envelope);
        subscription.attempts.fetch_add(1, Ordering::SeqCst);
        let result = http
            .post(&subscription.endpoint)
            .timeout(policy.ack_deadline)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        drop(permit);
        let failure = match result {
            Ok(response) if response.status().is_success() => return DeliveryState::Acked,
            Ok(response) => format!("HTTP {}", response.status().as_u16()),
            Err(err) => format!("no answer: {err}"),
        };
        tracing::debug!(event = "bus_delivery_failed", subscription = %subscription.name, message_id = %message_id, attempt, %failure, "push delivery failed");
        if attempt < policy.max_delivery_attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
    tracing::warn!(event = "bus_dead_lettered", subscription = %subscription.name, message_id = %message_id, "message dead-lettered after max delivery attempts");
    DeliveryState::DeadLettered
}

impl Publisher for MemoryBus {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        Box::pin(async move {
            if self.inner.fail_publishes.load(Ordering::SeqCst) {
                return Err(PublishError {
                    topic: topic.to_owned(),
                    reason: "the in-memory bus is set to fail publishes".into(),
                });
            }
            let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
            let kept = Arc::new(Kept::new(id, message));
            let subscriptions = {
                let mut topics = self.inner.topics.lock().expect("bus lock");
                let entry = topics.entry(topic.to_owned()).or_default();
                entry.messages.push(Arc::clone(&kept));
                entry.subscriptions.clone()
            };
            for subscription in subscriptions {
                self.spawn_delivery(subscription, Arc::clone(&kept));
            }
            Ok(id.to_string())
        })
    }
}
