//! The job's configuration, read once from the environment.
//!
//! Everything that changes what a slot publishes lives here, so that a batch is a pure function
//! of this struct and the slot number. Every invalid value is reported as a
//! [`ConfigError`] naming the variable, because a job that cannot start must say which variable
//! to fix rather than publish something surprising.

use std::ops::RangeInclusive;

use pipeline_service::config::{ConfigError, Env};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Campaign name; becomes part of every request id and the `campaign:<id>` tag.
pub const CAMPAIGN_ID: &str = "CAMPAIGN_ID";
/// First instant of slot 0, RFC 3339.
pub const CAMPAIGN_START: &str = "CAMPAIGN_START";
/// Number of hour slots in the campaign.
pub const CAMPAIGN_HOURS: &str = "CAMPAIGN_HOURS";
/// Smallest invoice amount, integer cents.
pub const INVOICE_AMOUNT_MIN_CENTS: &str = "INVOICE_AMOUNT_MIN_CENTS";
/// Largest invoice amount, integer cents.
pub const INVOICE_AMOUNT_MAX_CENTS: &str = "INVOICE_AMOUNT_MAX_CENTS";
/// Hours from the slot's start to the invoice's due datetime; unset leaves Stark's default.
pub const INVOICE_DUE_HOURS: &str = "INVOICE_DUE_HOURS";
/// Seconds from due to expiration; unset leaves Stark's default.
pub const INVOICE_EXPIRATION_SECONDS: &str = "INVOICE_EXPIRATION_SECONDS";
/// How many publishes may be in flight at once.
pub const PUBLISH_CONCURRENCY: &str = "PUBLISH_CONCURRENCY";
/// Multiplies the number of invoices per slot (load and scale tests).
pub const INVOICE_RATE_MULTIPLIER: &str = "INVOICE_RATE_MULTIPLIER";

/// Default campaign length: the issue asks for 24 hourly runs.
pub const DEFAULT_HOURS: u32 = 24;
/// Default smallest amount: R$ 10,00.
pub const DEFAULT_AMOUNT_MIN_CENTS: i64 = 1_000;
/// Default largest amount: R$ 500,00.
pub const DEFAULT_AMOUNT_MAX_CENTS: i64 = 50_000;
/// Default publish concurrency: enough to overlap round trips of a 12-message batch without
/// opening a burst of streams for nothing.
pub const DEFAULT_PUBLISH_CONCURRENCY: usize = 4;

/// The longest campaign accepted (one leap year of hourly slots). Guards against a typo such as
/// `CAMPAIGN_HOURS=240000` silently turning a day-long test into a decades-long one.
pub const MAX_HOURS: u32 = 24 * 366;
/// The largest rate multiplier accepted (at most 12 000 invoices per slot): beyond that a value
/// is more likely a typo than a load test.
pub const MAX_RATE_MULTIPLIER: u32 = 1_000;
/// The longest campaign id accepted, so that request ids and tags stay short.
pub const MAX_CAMPAIGN_ID_LEN: usize = 48;

/// Everything one run needs besides the clock and the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpammerConfig {
    /// Campaign name: lowercase ASCII letters, digits and `-` (checked by
    /// [`validate_campaign_id`]), because it is embedded verbatim in request ids and Stark tags,
    /// which Stark lowercases and lists comma-separated. Two campaigns must not share a name:
    /// the invoice sender would take the second one's requests for replays of the first.
    pub campaign: String,
    /// Start of slot 0. Slot `n` covers `[start + n h, start + (n+1) h)`.
    pub start: OffsetDateTime,
    /// Number of slots; runs at or after `start + hours` publish nothing.
    pub hours: u32,
    /// Amounts are drawn uniformly from this inclusive range of cents. Part of the batch's
    /// input: changing it mid-campaign changes the amounts (not the request ids) of later runs.
    pub amount_cents: RangeInclusive<i64>,
    /// When set, every invoice is due this many hours after its slot's start, so that the due
    /// date is deterministic too. `None` (the default) leaves `due` out and lets Stark apply its
    /// own default (creation + 2 days), which never lands in the past: a backfilled or
    /// long-retried slot would otherwise be refused by Stark for a past due date.
    pub due_after_hours: Option<u32>,
    /// Seconds between due and expiration; `None` leaves Stark's default (59 days).
    pub expiration_seconds: Option<i64>,
    /// Publishes in flight at once. Not part of the batch: it only changes timing.
    pub publish_concurrency: usize,
    /// Each slot issues `multiplier ×` its drawn count (8 to 12) of invoices, for load and
    /// scale tests; 1 (the default) is the campaign the issue asks for. Part of the batch:
    /// changing it mid-campaign changes how many requests later slots publish, and the first
    /// requests of a slot are the same for every multiplier.
    pub rate_multiplier: u32,
}

impl SpammerConfig {
    /// A configuration with the defaults for everything but the campaign's identity.
    pub fn new(campaign: impl Into<String>, start: OffsetDateTime) -> Self {
        Self {
            campaign: campaign.into(),
            start,
            hours: DEFAULT_HOURS,
            amount_cents: DEFAULT_AMOUNT_MIN_CENTS..=DEFAULT_AMOUNT_MAX_CENTS,
            due_after_hours: None,
            expiration_seconds: None,
            publish_concurrency: DEFAULT_PUBLISH_CONCURRENCY,
            rate_multiplier: 1,
        }
    }

    /// Reads and validates every variable; the first bad one is reported by name.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let campaign = env.required(CAMPAIGN_ID)?.trim().to_owned();
        validate_campaign_id(&campaign).map_err(|reason| ConfigError::new(CAMPAIGN_ID, reason))?;

        let raw_start = env.required(CAMPAIGN_START)?.trim();
        let start = OffsetDateTime::parse(raw_start, &Rfc3339).map_err(|e| {
            ConfigError::new(
                CAMPAIGN_START,
                format!(
                    "invalid value {raw_start:?}: {e} (expected RFC 3339, e.g. 2025-01-01T00:00:00Z)"
                ),
            )
        })?;

        let hours: u32 = env.parse_or(CAMPAIGN_HOURS, DEFAULT_HOURS)?;
        if !(1..=MAX_HOURS).contains(&hours) {
            return Err(ConfigError::new(
                CAMPAIGN_HOURS,
                format!("must be between 1 and {MAX_HOURS}, got {hours}"),
            ));
        }

        let min: i64 = env.parse_or(INVOICE_AMOUNT_MIN_CENTS, DEFAULT_AMOUNT_MIN_CENTS)?;
        let max: i64 = env.parse_or(INVOICE_AMOUNT_MAX_CENTS, DEFAULT_AMOUNT_MAX_CENTS)?;
        if min < 1 {
            return Err(ConfigError::new(
                INVOICE_AMOUNT_MIN_CENTS,
                format!("must be at least 1 cent, got {min}"),
            ));
        }
        if min > max {
            return Err(ConfigError::new(
                INVOICE_AMOUNT_MAX_CENTS,
                format!("must be at least {INVOICE_AMOUNT_MIN_CENTS} ({min}), got {max}"),
            ));
        }

        let due_after_hours = optional_parse::<u32>(env, INVOICE_DUE_HOURS)?;
        if due_after_hours == Some(0) {
            return Err(ConfigError::new(
                INVOICE_DUE_HOURS,
                "must be at least 1 (unset it to use Stark's default due date)",
            ));
        }
        let expiration_seconds = optional_parse::<i64>(env, INVOICE_EXPIRATION_SECONDS)?;
        if let Some(seconds) = expiration_seconds
            && seconds < 1
        {
            return Err(ConfigError::new(
                INVOICE_EXPIRATION_SECONDS,
                format!("must be at least 1 second, got {seconds}"),
            ));
        }

        let publish_concurrency: usize =
            env.parse_or(PUBLISH_CONCURRENCY, DEFAULT_PUBLISH_CONCURRENCY)?;
        if !(1..=64).contains(&publish_concurrency) {
            return Err(ConfigError::new(
                PUBLISH_CONCURRENCY,
                format!("must be between 1 and 64, got {publish_concurrency}"),
            ));
        }

        let rate_multiplier: u32 = env.parse_or(INVOICE_RATE_MULTIPLIER, 1)?;
        if !(1..=MAX_RATE_MULTIPLIER).contains(&rate_multiplier) {
            return Err(ConfigError::new(
                INVOICE_RATE_MULTIPLIER,
                format!("must be between 1 and {MAX_RATE_MULTIPLIER}, got {rate_multiplier}"),
            ));
        }

        Ok(Self {
            campaign,
            start,
            hours,
            amount_cents: min..=max,
            due_after_hours,
            expiration_seconds,
            publish_concurrency,
            rate_multiplier,
        })
    }
}

/// Parses a variable that may be unset.
fn optional_parse<T>(env: &Env, name: &str) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    env.optional(name)
        .map(|_| env.parse_required(name))
        .transpose()
}

/// Checks that a campaign id can be embedded as is in request ids and tags.
///
/// The id is validated rather than sanitized: sanitizing could map two different campaigns to
/// the same request ids, and the invoice sender would then skip the second campaign's invoices
/// as duplicates. `:` and `,` are excluded because tags are `campaign:<id>` and Stark's tag
/// filter is comma-separated; uppercase because Stark lowercases tags.
pub fn validate_campaign_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_CAMPAIGN_ID_LEN {
        return Err(format!(
            "must have 1 to {MAX_CAMPAIGN_ID_LEN} characters, got {}",
            id.len()
        ));
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if !id.bytes().all(allowed) {
        return Err(format!(
            "invalid value {id:?}: use only lowercase letters a-z, digits and '-'"
        ));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err(format!(
            "invalid value {id:?}: must not start or end with '-'"
        ));
    }
    Ok(())
}
