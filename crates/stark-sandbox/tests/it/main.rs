//! Black-box tests of the sandbox through `stark-client` and raw signed HTTP.

mod common;

mod api;
mod auth;
mod binary;
mod counters;
mod faults;
mod lifecycle;
mod listing;
mod reversals;
mod schedule;
mod snapshots;
mod webhooks;
mod workspaces;
