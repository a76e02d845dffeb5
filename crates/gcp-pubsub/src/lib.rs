//! Google Cloud Pub/Sub for the invoice → payout pipeline, on the official
//! `google-cloud-pubsub` crate.
//!
//! Every step of the pipeline goes through Pub/Sub so that a failure is retried, parked in
//! a dead-letter topic, or replayed by an operator within 7 days. This crate is the one
//! place that knows how:
//!
//! - [`GcpPublisher`] implements [`pipeline_service::publisher::Publisher`]: a publish
//!   resolves only once Pub/Sub returned the message id.
//! - [`topology`] declares the topics, push subscriptions and dead-letter pairs, and
//!   [`apply`] makes a project match the declaration idempotently.
//! - [`ops`] holds what an operator (or the local stack) does by hand: seek back to replay,
//!   read dead letters, check that a subscription is empty.
//! - [`emulator`] runs the real Pub/Sub emulator for tests and the local stack.
//!
//! # Layout
//!
//! - `target.rs`: [`PubSubTarget`], where Pub/Sub is (project, emulator or not); the only
//!   code that builds clients, because the official crate ignores `PUBSUB_EMULATOR_HOST`
//!   and every builder needs `with_endpoint` plus anonymous credentials for the emulator.
//! - `publisher.rs`: [`GcpPublisher`], one connection, a cached publisher per topic.
//! - `topology.rs`: [`Topology`], [`apply`], [`delete_all`], [`ApplyReport`].
//! - `ops.rs`: seek, snapshots, pull/peek/count; `rest_pull.rs`: the emulator's unary pull.
//! - `monitoring.rs`: [`monitoring::Monitoring`], a subscription's backlog as Cloud Monitoring
//!   counts it (production; the emulator has no metrics).
//! - `emulator.rs`: [`emulator::Emulator`], a child process group killed on drop.
//! - `error.rs`: [`Error`], naming the resource and operation that failed.
//!
//! `README.md` next to this crate records how the official crate and the emulator
//! actually behave (retry timing, dead-lettering, seek, missing `deliveryAttempt`).

#![forbid(unsafe_code)]

pub mod emulator;
mod error;
pub mod monitoring;
pub mod ops;
mod publisher;
mod rest_pull;
mod target;
pub mod topology;

pub use error::{Error, Result};
pub use publisher::{Batching, DEFAULT_PUBLISH_TIMEOUT, GcpPublisher, PublisherOptions};
pub use target::{EMULATOR_HOST_VAR, FALLBACK_PROJECT_VAR, PROJECT_VAR, PubSubTarget, TargetError};
pub use topology::{
    ApplyReport, Delivery, Flow, MessageOrdering, OrderingMismatch, Outcome, Topology, apply,
    delete_all,
};
