//! What the pipeline means, with no I/O: no HTTP, no Pub/Sub, no Stark client.
//!
//! Everything here is a value or a pure function, so every rule that decides whether money
//! moves can be tested on hand-built inputs, and every component that applies a rule applies
//! the same one.
//!
//! # Layout
//! - [`money`]: cents for people (`R$ 1.234,56`).
//! - [`taxid`]: CPF/CNPJ validation and formatting, for the pipeline and the local sandbox.
//! - [`vocab`]: every tag and key the pipeline writes to Stark (request tag, payout key and its
//!   generations, campaign and slot tags), formatted and parsed in one place.
//! - [`messages`]: the versioned payloads of `pending_invoices` and `paid_invoices`.
//! - [`receiver`]: the one payout account, and how a transfer is checked against it.
//! - [`audit`]: what "exactly once" means, one function per rule.
#![forbid(unsafe_code)]

pub mod audit;
pub mod messages;
pub mod money;
pub mod receiver;
pub mod taxid;
pub mod vocab;

pub use money::format_brl;
