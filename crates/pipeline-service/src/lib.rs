//! How a pipeline service runs: the plumbing every deployable shares, and none of the rules.
//!
//! The rules (money, tax ids, messages, tags, the audit) live in `pipeline-domain`; the
//! in-process bus of the local stack lives in `pipeline-testkit`, so that no deployable links it.
//!
//! # Layout
//! - [`config`]: environment variables, read once, errors that name the variable; the Stark
//!   client built from `STARK_*`.
//! - [`dotenv`]: `./.env`, loaded first by every binary.
//! - [`envelope`]: the Pub/Sub push envelope as an axum extractor, and the nack rules.
//! - [`publisher`]: the `Publisher` trait (Pub/Sub in `gcp-pubsub`, in-process in the testkit).
//! - [`records`]: Stark's records turned into the domain's (messages, audit records).
//! - [`locks`]: per-key async locks against concurrent duplicate deliveries.
//! - [`logging`]: Cloud Logging JSON lines with trace ids, or text in a terminal.
//! - [`serve`]: bind, `/healthz`, request tracing, graceful shutdown; [`ready`]: `/readyz`, the
//!   startup probe that reaches Stark.
#![forbid(unsafe_code)]

pub mod config;
pub mod dotenv;
pub mod envelope;
pub mod locks;
pub mod logging;
pub mod publisher;
pub mod ready;
pub mod records;
pub mod serve;
