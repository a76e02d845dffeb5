//! A Rust client for the Stark Bank API v2.
//!
//! Stark Bank publishes no Rust SDK; this crate does what the official Python SDK does, checked
//! against it: secp256k1 keys in Stark's PEM formats, signed requests, typed resources, and
//! webhook verification that accepts Stark's high-S signatures.
//!
//! # Layout
//! - [`keys`]: load, generate and write keys; sign (`k256`) and verify (libsecp256k1, about 3
//!   times faster on the webhook path; the measurements are in that module).
//! - [`client`]: configuration, request signing and the HTTP transport (only 200 is success; GETs
//!   retry with backoff, honouring `Retry-After`; writes never do).
//! - [`error`]: one error type whose [`ErrorKind`] says whether the operation may have happened.
//! - [`invoice`], [`transfer`], [`webhook`], [`event`], [`balance`]: the typed resources.
//! - [`webhook_verify`]: `Digital-Signature` verification with a shared, refreshable key cache.
//! - [`python_json`]: Python's `json.dumps` byte for byte (the signatures depend on it).
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use stark_client::{AccessId, Client, ClientConfig, Environment, NewInvoice, PrivateKey};
//! let key = PrivateKey::from_file("private-key.pem")?;
//! let config = ClientConfig::new(AccessId::parse("project/5656565656565656")?, key, Environment::Sandbox);
//! let client = Client::new(config)?;
//! let invoice = NewInvoice { amount: 10_000, tax_id: "012.345.678-90".into(), name: "Ana Souza".into(), tags: vec!["demo".into()], ..Default::default() };
//! let created = client.create_invoices(&[invoice]).await?;
//! println!("invoice {} is {:?}", created[0].id, created[0].status);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod balance;
pub mod client;
pub mod error;
pub mod event;
pub mod invoice;
pub mod keys;
pub mod page;
pub mod python_json;
pub mod transfer;
pub mod webhook;
pub mod webhook_verify;

pub use balance::Balance;
pub use client::{
    AccessId, Client, ClientConfig, Environment, Language, SignedHeaders, sign_request,
};
pub use error::{Error, ErrorKind, StarkError};
pub use event::{Event, EventAttempt, EventAttemptQuery, EventLog, EventQuery, PublicKeyEntry};
pub use invoice::{
    Description, Discount, Invoice, InvoiceLog, InvoiceLogQuery, InvoiceLogType, InvoicePayment,
    InvoiceQuery, InvoiceStatus, NewInvoice, Rule, Split,
};
pub use keys::{KeyError, PrivateKey, PublicKey, SignatureError};
pub use page::Page;
pub use transfer::{NewTransfer, Transfer, TransferLog, TransferQuery, TransferStatus};
pub use webhook::Webhook;
pub use webhook_verify::VerifyError;
