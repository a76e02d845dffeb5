//! [`GcpPublisher`]: the Pub/Sub backend of [`pipeline_service::publisher::Publisher`].
//!
//! Three behaviours of the official client (1.7) shape this file; `README.md` has the details:
//!
//! - **Batching delay.** The client holds a message up to `delay_threshold` (10 ms by
//!   default) for others to join its batch, and a message that is alone waits all of it.
//!   [`Batching::default`] uses no delay: a message goes out as soon as the batcher runs,
//!   and only messages already queued by then share its request.
//! - **Paused ordering keys.** When a publish with an ordering key fails (after the retry
//!   policy gave up), the client pauses that key: every later publish of the key fails at
//!   once with "publishing is paused" until `resume_publish(key)`. Our callers answer a
//!   failed publish with 5xx so that *their* input is redelivered and published again; a
//!   paused key would turn that retry into a permanent failure. So a key that failed is
//!   resumed right before it is published again.
//! - **One task per ordering key, forever.** The client spawns a batching task per ordering
//!   key and never removes it (its source says so: `TODO(#4012)`). Our keys are request and
//!   invoice ids, each used a handful of times, so a long-running service would accumulate
//!   one idle task per invoice. The per-topic client is therefore replaced after
//!   [`PublisherOptions::recycle_after_ordered`] keyed publishes; dropping the old one ends
//!   its tasks once their messages are sent.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use google_cloud_pubsub::client::{BasePublisher, Publisher as TopicPublisher};
use google_cloud_pubsub::error::PublishError as ClientPublishError;
use google_cloud_pubsub::model::Message;
use pipeline_service::publisher::{OutgoingMessage, PublishError, Publisher};

use crate::error::Error;
use crate::target::PubSubTarget;

/// How long one publish keeps retrying transient errors before it fails.
///
/// The crate's default is 600 s, far beyond what a caller can wait: the webhook ingester
/// answers Stark only after the publish is confirmed, and Stark gives up on a webhook well
/// before ten minutes. Failing after 30 s lets the caller answer 5xx so that *its* input is
/// redelivered instead.
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// How the per-topic client groups messages into `Publish` requests.
///
/// A batch is sent when it reaches `max_messages` or `max_bytes`, or `delay` after its first
/// message arrived, whichever comes first. Batches never mix ordering keys: messages with
/// distinct keys always travel in separate requests, whatever these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Longest a message waits for company. The client's timer has millisecond
    /// granularity, so [`Duration::ZERO`] means "at the next millisecond tick".
    pub delay: Duration,
    /// A batch is sent as soon as it holds this many messages (the client caps it at 1000).
    pub max_messages: u32,
    /// ... or this many bytes, as the client estimates them (data, attributes and key;
    /// capped at 10 MB; Pub/Sub rejects requests over 10 MB).
    pub max_bytes: u32,
}

impl Batching {
    /// The official client's defaults: 100 messages, 1 MB, 10 ms. Kept for comparison (the
    /// `publish_latency` example measures both); every lone message waits the full 10 ms.
    pub const CLIENT_DEFAULT: Self = Self {
        delay: Duration::from_millis(10),
        max_messages: 100,
        max_bytes: 1_000_000,
    };

    /// What [`GcpPublisher`] uses: no delay, the client's size limits. A lone message is
    /// sent at once; messages that queue up while the batcher is busy (a burst) still share
    /// requests of up to 100 messages / 1 MB. Measured against the emulator in `README.md`.
    pub const LOW_LATENCY: Self = Self {
        delay: Duration::ZERO,
        max_messages: 100,
        max_bytes: 1_000_000,
    };
}

impl Default for Batching {
    fn default() -> Self {
        Self::LOW_LATENCY
    }
}

/// How a [`GcpPublisher`] publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublisherOptions {
    /// How long one publish retries transient errors before it fails
    /// ([`DEFAULT_PUBLISH_TIMEOUT`]).
    pub publish_timeout: Duration,
    /// Batching of the per-topic clients ([`Batching::LOW_LATENCY`]).
    pub batching: Batching,
    /// After this many publishes with an ordering key, a topic's client is replaced by a
    /// fresh one, which bounds the idle per-key tasks the client never removes (module
    /// docs). Replacing costs one task spawn; messages in flight on the old client are still
    /// sent and confirmed. Two publishes of one key that overlap a replacement may be
    /// stored in either order, which is true of any two concurrent publishes anyway.
    pub recycle_after_ordered: u32,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        Self {
            publish_timeout: DEFAULT_PUBLISH_TIMEOUT,
            batching: Batching::default(),
            recycle_after_ordered: 1000,
        }
    }
}

/// A topic's client and what we know about its ordering keys.
#[derive(Debug)]
struct TopicState {
    /// The client; cheap to clone (a channel to its batching task).
    client: TopicPublisher,
    /// Keyed publishes through `client`, to know when to replace it.
    ordered: u32,
    /// Keys whose last publish failed, so the client may have paused them. Bounded by
    /// `recycle_after_ordered`, since a replacement starts over.
    failed_keys: HashSet<String>,
}

/// Publishes to topics of one project and resolves each publish with the server's message id.
///
/// One gRPC connection ([`BasePublisher`]) serves all topics; the per-topic
/// [`TopicPublisher`] (which owns a batching task) is created on first use and cached, so
/// that a service publishing thousands of messages does not spawn a batcher per message.
/// [`OutgoingMessage::ordering_key`] is passed on as the Pub/Sub ordering key.
#[derive(Debug)]
pub struct GcpPublisher {
    /// Where the topics live; turns short names into `projects/P/topics/T`.
    target: PubSubTarget,
    /// The shared connection the per-topic publishers are built from.
    base: BasePublisher,
    /// Batching and recycling.
    options: PublisherOptions,
    /// Per-topic clients, keyed by short name. A std mutex is enough: it is held only to
    /// look up, insert or replace (building a client is synchronous), never across an
    /// `.await`.
    topics: Mutex<HashMap<String, TopicState>>,
}

impl GcpPublisher {
    /// Connects with [`PublisherOptions::default`].
    pub async fn connect(target: PubSubTarget) -> Result<Self, Error> {
        Self::connect_with_options(target, PublisherOptions::default()).await
    }

    /// Connects; each publish retries transient errors for at most `publish_timeout`.
    ///
    /// The gRPC channel is opened lazily, so this succeeds even if Pub/Sub is unreachable;
    /// the first publish reports that.
    pub async fn connect_with_timeout(
        target: PubSubTarget,
        publish_timeout: Duration,
    ) -> Result<Self, Error> {
        Self::connect_with_options(
            target,
            PublisherOptions {
                publish_timeout,
                ..PublisherOptions::default()
            },
        )
        .await
    }

    /// Connects with explicit `options` (batching, timeout, recycling).
    pub async fn connect_with_options(
        target: PubSubTarget,
        options: PublisherOptions,
    ) -> Result<Self, Error> {
        let base = target.base_publisher(options.publish_timeout).await?;
        Ok(Self {
            target,
            base,
            options,
            topics: Mutex::new(HashMap::new()),
        })
    }

    /// The target this publisher writes to.
    pub fn target(&self) -> &PubSubTarget {
        &self.target
    }

    /// The options this publisher was connected with.
    pub fn options(&self) -> &PublisherOptions {
        &self.options
    }

    fn lock_topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, TopicState>> {
        // A poisoned lock only means another thread panicked while updating a map of
        // clonable handles and counters; the map is still usable.
        self.topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn new_client(&self, topic: &str) -> TopicPublisher {
        let batching = self.options.batching;
        self.base
            .publisher(self.target.topic_path(topic))
            .set_delay_threshold(batching.delay)
            .set_message_count_threshold(batching.max_messages)
            .set_byte_threshold(batching.max_bytes)
            .build()
    }

    /// Sends `message` through `topic`'s client (creating, replacing or un-pausing it as
    /// needed) and returns the confirmation future together with the client it went to.
    ///
    /// The lock is held while the message is handed over, so that a resume and the publish
    /// after it reach the client in that order.
    fn start_publish(
        &self,
        topic: &str,
        message: Message,
    ) -> (
        TopicPublisher,
        google_cloud_pubsub::publisher::PublishFuture,
    ) {
        let mut topics = self.lock_topics();
        let state = topics
            .entry(topic.to_owned())
            .or_insert_with(|| TopicState {
                client: self.new_client(topic),
                ordered: 0,
                failed_keys: HashSet::new(),
            });
        let key = message.ordering_key.as_str();
        if !key.is_empty() {
            if state.ordered >= self.options.recycle_after_ordered.max(1) {
                tracing::debug!(topic, "replacing the topic's client to shed per-key tasks");
                state.client = self.new_client(topic);
                state.ordered = 0;
                state.failed_keys.clear();
            }
            state.ordered += 1;
            if state.failed_keys.remove(key) {
                // A no-op if the client did not pause the key. Sent on the same channel as,
                // and before, the publish below, so the client handles it first.
                state.client.resume_publish(key);
            }
        }
        let future = state.client.publish(message);
        (state.client.clone(), future)
    }

    /// Remembers that `key` failed on `client`, so that its next publish resumes it first.
    fn key_failed(&self, topic: &str, client: &TopicPublisher, key: &str) {
        // Resume now as well: usually the client paused the key before our caller saw the
        // error, and then the key works again straight away. If the client was a little
        // slower (the pause and our error race), the resume before the next publish covers
        // it; at worst that next publish fails once more with "paused" and is resumed too.
        client.resume_publish(key);
        let mut topics = self.lock_topics();
        if let Some(state) = topics.get_mut(topic) {
            state.failed_keys.insert(key.to_owned());
        }
    }

    /// Flushes every topic publisher; call before exiting so that nothing buffered is lost.
    pub async fn flush(&self) {
        let publishers: Vec<TopicPublisher> = self
            .lock_topics()
            .values()
            .map(|state| state.client.clone())
            .collect();
        futures::future::join_all(publishers.iter().map(TopicPublisher::flush)).await;
    }
}

impl Publisher for GcpPublisher {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        async move {
            let key = message.ordering_key.unwrap_or_default();
            let outgoing = Message::new()
                .set_data(message.data)
                .set_attributes(message.attributes)
                .set_ordering_key(key.as_str());
            let (client, confirmation) = self.start_publish(topic, outgoing);
            match confirmation.await {
                Ok(id) => {
                    tracing::debug!(topic, message_id = %id, ordering_key = %key, "published");
                    Ok(id)
                }
                Err(error) => {
                    if !key.is_empty() {
                        self.key_failed(topic, &client, &key);
                    }
                    let reason = describe_failure(&error, &key);
                    tracing::warn!(topic, ordering_key = %key, %reason, "publish failed");
                    Err(PublishError {
                        topic: topic.to_owned(),
                        reason,
                    })
                }
            }
        }
        .boxed()
    }
}

/// The failure as an operator needs it: the status code from the error's sources, and for a
/// paused key, that it failed because an earlier message of the key did (and is resumed).
fn describe_failure(error: &ClientPublishError, key: &str) -> String {
    match error {
        ClientPublishError::OrderingKeyPaused => format!(
            "ordering key {key:?} was paused after an earlier publish of it failed; \
             it is resumed, publish again"
        ),
        other => error_chain(other),
    }
}

/// The error and its sources on one line: the top-level publish error alone ("the publish
/// operation was interrupted by an error") hides the status code an operator needs.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: NOT_FOUND")]
    struct Inner;

    #[test]
    fn error_chain_includes_sources_once() {
        assert_eq!(error_chain(&Outer(Inner)), "outer: inner: NOT_FOUND");
    }

    #[test]
    fn a_paused_key_is_named_in_the_reason() {
        let reason = describe_failure(&ClientPublishError::OrderingKeyPaused, "req-7");
        assert!(
            reason.contains("\"req-7\"") && reason.contains("paused"),
            "{reason}"
        );
    }

    #[test]
    fn default_batching_sends_a_lone_message_at_once_and_keeps_the_size_limits() {
        let batching = PublisherOptions::default().batching;
        assert_eq!(batching.delay, Duration::ZERO);
        assert_eq!(batching.max_messages, Batching::CLIENT_DEFAULT.max_messages);
        assert_eq!(batching.max_bytes, Batching::CLIENT_DEFAULT.max_bytes);
        assert_eq!(
            PublisherOptions::default().publish_timeout,
            DEFAULT_PUBLISH_TIMEOUT
        );
    }
}
