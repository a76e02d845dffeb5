//! A local Stark Bank API v2 simulator, for tests (as a library) and for people (as the
//! `stark-sandbox` binary).
//!
//! It stands in for `https://sandbox.api.starkbank.com/v2` faithfully enough that the official
//! Python SDK and our `stark-client` run against it unchanged: it checks `Access-Signature` like
//! Stark (secp256k1, high-S accepted, raw body), keeps invoices and transfers, pays invoices by
//! itself after a delay, moves transfers and a balance, and posts webhooks signed with its own
//! key, retried on Stark's schedule. Time runs at a configurable speed, so an afternoon of Stark
//! behaviour fits in a test, and faults (5xx, slow or dropped answers, creates whose answer is
//! lost, duplicate and out-of-order webhooks, a rotated key) are injected from seeded RNGs so
//! that a failing run repeats.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use stark_sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig { speed: 600.0, pay_probability: 1.0, ..Default::default() }).await?;
//! let (project_id, key) = sandbox.new_project();
//! let client = sandbox.client(&project_id, key)?;
//! let invoice = stark_client::NewInvoice { amount: 10_000, tax_id: "012.345.678-90".into(), name: "Ana".into(), ..Default::default() };
//! let created = client.create_invoices(&[invoice]).await?;
//! sandbox.wait_for(std::time::Duration::from_secs(5), |s| s.invoice_log_types(&created[0].id).contains(&"credited")).await?;
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`sandbox`]: [`Sandbox::start`] and the [`SandboxHandle`] tests drive (register projects,
//!   inspect state, change faults, rotate the key, move the clock, stop).
//! - [`config`]: [`SandboxConfig`] and [`FaultConfig`], every knob with its default and why.
//! - [`state`]: the snapshot types tests assert on ([`SandboxState`], [`Delivery`], …).
//! - [`error`]: [`SandboxError`] for start-up, [`ApiError`] for Stark-shaped HTTP errors, and the
//!   error [`codes`] Stark leaves undocumented.
//! - `http`: the axum app: `/v2` (faults, then auth, then `api`) and `/_sandbox`.
//! - `api`: hand-written routing that tolerates `//` and trailing `/`; webhooks, events,
//!   attempts, public keys.
//! - `invoices`, `transfers`: validation and the resource routes.
//! - `world`: all state and every state change behind one lock, split by resource (invoices,
//!   transfers, events and webhooks, ids, signing keys, the job queue), with private fields.
//! - `engine`: the scheduler task and webhook delivery.
//! - [`clock`]: sandbox time; `auth`: request signatures; `conn`: connections a fault can cut;
//!   [`money`]: integer-cent percentages (tax ids are `pipeline_domain::taxid`, the one rule
//!   the pipeline applies too); `table`, `query`, `validate`:
//!   storage, list parameters and item checks.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod api;
mod auth;
pub mod clock;
pub mod config;
mod conn;
mod engine;
pub mod error;
mod faults;
mod http;
mod invoices;
pub mod money;
mod query;
pub mod sandbox;
pub mod state;
mod table;
mod transfers;
mod validate;
mod world;

pub use config::{FaultConfig, SandboxConfig, stark_retry_schedule};
pub use error::{ApiError, SandboxError, codes};
pub use sandbox::{Sandbox, SandboxHandle, SandboxStopper};
pub use state::{Counters, Delivery, DeliveryOutcome, EventAttempt, InjectedFault, SandboxState};
