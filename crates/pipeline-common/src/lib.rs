//! Domain and plumbing shared by the four pipeline services.
#![forbid(unsafe_code)]

pub mod publisher;
