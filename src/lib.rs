//! The operator CLI and the one-command local stack of the Stark Bank invoice → payout pipeline.
//!
//! # Layout
//! - [`cli`]: argument parsing and the subcommands.
//! - [`env_file`]: `.env` loading and the checks of variable names.
//! - [`local`]: the whole pipeline on one machine (sandbox, bus, services, spammer) and the
//!   end-of-campaign report; the end-to-end tests in `tests/` drive it.
//! - [`ops`]: the operator commands (keygen, webhook, replay, reconcile, events, status).
//! - [`provision`]: the Pub/Sub topology applied to a real project or the emulator.
#![forbid(unsafe_code)]

pub mod cli;
pub mod env_file;
pub mod local;
pub mod ops;
pub mod provision;
