//! Publishing to a topic, behind one trait with two backends: Google Cloud Pub/Sub (the
//! `gcp-pubsub` crate) and the local stack's in-process bus (`pipeline-testkit`).
//!
//! A publish returns only once the backend confirmed it (Pub/Sub returned a message id): the
//! webhook ingester answers Stark 200 only after that, so a crash in between loses nothing.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use pipeline_domain::messages::OutgoingMessage;

/// Why a publish failed. The caller answers 5xx so that its own input is retried.
#[derive(Debug, thiserror::Error)]
#[error("publish to {topic} failed: {reason}")]
pub struct PublishError {
    /// Topic name.
    pub topic: String,
    /// What the backend said.
    pub reason: String,
}

/// Publishes messages and waits for each to be confirmed.
pub trait Publisher: Send + Sync + fmt::Debug {
    /// Publishes one message to `topic` (a short name such as `paid_invoices`) and resolves
    /// with the backend's message id once it is durably accepted.
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, PublishError>>;
}

/// A shared publisher.
pub type SharedPublisher = Arc<dyn Publisher>;
