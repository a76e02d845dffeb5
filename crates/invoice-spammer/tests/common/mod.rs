//! Helpers shared by the integration tests.
#![allow(dead_code)]

use invoice_spammer::SpammerConfig;
use time::OffsetDateTime;
use time::macros::datetime;

/// The campaign start every test uses.
pub const START: OffsetDateTime = datetime!(2025-03-01 12:00 UTC);

/// A 24-hour campaign with the default amounts, starting at [`START`].
pub fn config(campaign: &str) -> SpammerConfig {
    SpammerConfig::new(campaign, START)
}
