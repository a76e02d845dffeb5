//! [`GcpPublisher`]: the Pub/Sub backend of [`pipeline_service::publisher::Publisher`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use google_cloud_pubsub::client::{BasePublisher, Publisher as TopicPublisher};
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

/// Publishes to topics of one project and resolves each publish with the server's message id.
///
/// One gRPC connection ([`BasePublisher`]) serves all topics; the per-topic
/// [`TopicPublisher`] (which owns a batching task) is created on first use and cached, so
/// that a service publishing thousands of messages does not spawn a batcher per message.
#[derive(Debug)]
pub struct GcpPublisher {
    /// Where the topics live; turns short names into `projects/P/topics/T`.
    target: PubSubTarget,
    /// The shared connection the per-topic publishers are built from.
    base: BasePublisher,
    /// Per-topic publishers, keyed by short name. A std mutex is enough: it is held only
    /// to look up or insert (building a topic publisher is synchronous), never across an
    /// `.await`.
    topics: Mutex<HashMap<String, TopicPublisher>>,
}

impl GcpPublisher {
    /// Connects with [`DEFAULT_PUBLISH_TIMEOUT`].
    pub async fn connect(target: PubSubTarget) -> Result<Self, Error> {
        Self::connect_with_timeout(target, DEFAULT_PUBLISH_TIMEOUT).await
    }

    /// Connects; each publish retries transient errors for at most `publish_timeout`.
    ///
    /// The gRPC channel is opened lazily, so this succeeds even if Pub/Sub is unreachable;
    /// the first publish reports that.
    pub async fn connect_with_timeout(
        target: PubSubTarget,
        publish_timeout: Duration,
    ) -> Result<Self, Error> {
        let base = target.base_publisher(publish_timeout).await?;
        Ok(Self {
            target,
            base,
            topics: Mutex::new(HashMap::new()),
        })
    }

    /// The target this publisher writes to.
    pub fn target(&self) -> &PubSubTarget {
        &self.target
    }

    /// The cached publisher for `topic`, created on first use.
    fn topic_publisher(&self, topic: &str) -> TopicPublisher {
        // A poisoned lock only means another thread panicked while inserting into a
        // HashMap of clonable handles; the map is still usable.
        let mut topics = self
            .topics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        topics
            .entry(topic.to_owned())
            .or_insert_with(|| {
                // Single messages must not wait for a batch to fill: the default 10 ms
                // delay threshold is kept (it bounds latency), and a burst still batches.
                self.base.publisher(self.target.topic_path(topic)).build()
            })
            .clone()
    }

    /// Flushes every topic publisher; call before exiting so that nothing buffered is lost.
    pub async fn flush(&self) {
        let publishers: Vec<TopicPublisher> = {
            let topics = self
                .topics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            topics.values().cloned().collect()
        };
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
            let publisher = self.topic_publisher(topic);
            let message = Message::new()
                .set_data(message.data)
                .set_attributes(message.attributes);
            match publisher.publish(message).await {
                Ok(id) => {
                    tracing::debug!(topic, message_id = %id, "published");
                    Ok(id)
                }
                Err(error) => {
                    let reason = error_chain(&error);
                    tracing::warn!(topic, %reason, "publish failed");
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
}
