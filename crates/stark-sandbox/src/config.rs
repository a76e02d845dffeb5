//! Everything a sandbox is started with, and the faults it can inject.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stark_client::{PrivateKey, PublicKey};

use crate::error::SandboxError;

/// How a sandbox behaves. Every delay is in **sandbox time** (see [`SandboxConfig::speed`])
/// unless its doc says "real".
///
/// Start from [`SandboxConfig::default`] and override what a test cares about:
/// ```
/// # use std::time::Duration;
/// let config = stark_sandbox::SandboxConfig {
///     speed: 600.0,
///     pay_probability: 1.0,
///     pay_delay: Duration::from_secs(60),
///     ..Default::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// TCP port on 127.0.0.1; 0 picks a free one (what tests want, so that they run in parallel).
    pub port: u16,
    /// Sandbox seconds per real second. Stark pays invoices minutes after creation and retries
    /// webhooks over hours; a speed of 600 turns ten sandbox minutes into one real second so
    /// that tests see all of it.
    pub speed: f64,
    /// Projects allowed to call the API, by project id (the digits of `project/{id}`) and the
    /// public key registered for them. More can be added while running.
    pub projects: Vec<(String, PublicKey)>,
    /// Seed of every behavioural random choice (which invoices get paid, ids, high-S
    /// signatures), so that a run can be repeated. Faults have their own seed in
    /// [`FaultConfig::seed`].
    pub seed: u64,
    /// How long after creation a paid invoice is paid (the real sandbox took 7 to 9 minutes).
    pub pay_delay: Duration,
    /// How long after `paid` the money is `credited` to the balance.
    pub credit_delay: Duration,
    /// Chance that an invoice is ever paid. The real sandbox pays "most" invoices.
    pub pay_probability: f64,
    /// Fee in cents Stark keeps from each credited invoice: the balance grows by
    /// `amount - invoice_fee`. Default 50, what a 2020 sandbox invoice was charged (2024 samples
    /// show 0): non-zero, so that code which pays out the gross amount is caught.
    pub invoice_fee: i64,
    /// Fee in cents charged per transfer, debited with it (`amount + transfer_fee`) when it is
    /// processed. Default 50 (Stark's real figure is not documented): with the invoice fee, a
    /// payout of `amount - invoice_fee` costs the whole invoice amount, more than that invoice
    /// credited, so a payout from a zero balance can fail, as it can at Stark.
    pub transfer_fee: i64,
    /// Chance that a credited invoice is later reversed by its payer (a Pix refund the payer's
    /// bank claws back), lowering its `amount`, debiting the balance and logging `reversed`.
    /// 0 by default here; the local stack turns it on.
    pub reversal_rate: f64,
    /// Of the reversals, the share that returns the whole amount (`amount` becomes 0); the
    /// others return a random part of it.
    pub full_reversal_share: f64,
    /// Each reversal comes a uniformly random time between 0 and this after the credit, so that
    /// some land before a payout of the invoice and some after it.
    pub reversal_delay: Duration,
    /// How long after its creation a new invoice, transfer or log shows up in list queries
    /// (`GET /v2/invoice`, `/v2/transfer`, `/v2/invoice/log`, `/v2/transfer/log`); a GET by
    /// id finds it at once. Stark promises no read-after-write for lists, so a client that
    /// checks a list before creating (or after a create whose answer was lost) can miss what is
    /// there. Default 2 s: enough to make that race show whenever a client lists within two
    /// sandbox seconds of a create, small enough that nothing waiting for a list waits long.
    pub listing_lag: Duration,
    /// How long a transfer stays `created` before `processing` (when the balance is checked
    /// and debited).
    pub transfer_processing_delay: Duration,
    /// How long a transfer stays `processing` before `success` or `failed`.
    pub transfer_settle_delay: Duration,
    /// Balance in cents of the default workspace at start (other workspaces always start at
    /// zero). The real sandbox starts at zero and is funded by paid invoices, hence the default
    /// 0; tests of transfers may start with money instead of waiting.
    pub initial_balance: i64,
    /// Allowed difference, in **real** time, between `Access-Time` and the sandbox host's wall
    /// clock. Clients sign with their wall clock, not the sandbox clock, so the skew check
    /// ignores [`SandboxConfig::speed`]. Stark does not document its window.
    pub access_time_skew: Duration,
    /// Id of the default workspace: where configured projects and `SandboxHandle::new_project`
    /// act, and the `workspaceId` of its events. More workspaces come from
    /// `SandboxHandle::new_workspace`.
    pub workspace_id: String,
    /// The key the sandbox signs webhooks with; `None` draws a fresh one.
    pub signing_key: Option<PrivateKey>,
    /// **Real** time a webhook receiver has to answer before the attempt counts as `timeout`.
    pub delivery_timeout: Duration,
    /// Waits after each failed delivery before the next try. Stark retries 3 more times, after
    /// 5, 30 and 120 minutes; when the list is used up the event stays `isDelivered=false`.
    pub retry_schedule: Vec<Duration>,
    /// Faults injected from the start; change them later with `SandboxHandle::set_faults`.
    pub faults: FaultConfig,
    /// Whether [`crate::Delivery::body`] keeps each POST's body (true by default, for tests that
    /// replay or compare what a receiver got). A long campaign that never reads bodies turns
    /// it off: they were a quarter of the sandbox's memory at 1 000× the invoice rate (the
    /// body is then empty; the signature, outcome and everything else are kept).
    pub keep_delivery_bodies: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            port: 0,
            speed: 1.0,
            projects: Vec::new(),
            seed: 0,
            pay_delay: Duration::from_secs(8 * 60),
            credit_delay: Duration::from_secs(2),
            pay_probability: 0.9,
            invoice_fee: 50,
            transfer_fee: 50,
            reversal_rate: 0.0,
            full_reversal_share: 0.5,
            reversal_delay: Duration::from_secs(10 * 60),
            listing_lag: Duration::from_secs(2),
            transfer_processing_delay: Duration::from_secs(5),
            transfer_settle_delay: Duration::from_secs(10),
            initial_balance: 0,
            access_time_skew: Duration::from_secs(300),
            workspace_id: "6010044957065216".to_owned(),
            signing_key: None,
            delivery_timeout: Duration::from_secs(10),
            retry_schedule: stark_retry_schedule(),
            faults: FaultConfig::default(),
            keep_delivery_bodies: true,
        }
    }
}

/// Stark's webhook retry schedule: 5, 30 and 120 minutes after each failure.
pub fn stark_retry_schedule() -> Vec<Duration> {
    [5, 30, 120]
        .iter()
        .map(|m| Duration::from_secs(m * 60))
        .collect()
}

impl SandboxConfig {
    /// Refuses settings that cannot work, naming the field, before anything is bound.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |field: &str, why: &str| Err(SandboxError::Config(format!("{field}: {why}")));
        if !(self.speed.is_finite() && self.speed > 0.0) {
            return bad("speed", "must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.pay_probability) {
            return bad("pay_probability", "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.reversal_rate) {
            return bad("reversal_rate", "must be between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.full_reversal_share) {
            return bad("full_reversal_share", "must be between 0 and 1");
        }
        if self.invoice_fee < 0 || self.transfer_fee < 0 {
            return bad("fee", "must not be negative");
        }
        if self.initial_balance < 0 {
            return bad("initial_balance", "must not be negative");
        }
        if self.workspace_id.is_empty() || !self.workspace_id.bytes().all(|b| b.is_ascii_digit()) {
            return bad("workspace_id", "must be decimal digits");
        }
        for (id, _) in &self.projects {
            crate::auth::check_project_id(id).map_err(SandboxError::Config)?;
        }
        self.faults.validate()
    }
}

/// Faults the sandbox injects, each with a rate in `[0, 1]`, all drawn from RNGs seeded by
/// [`FaultConfig::seed`] so that a run with the same seed and the same requests injects the same
/// faults. Each kind has its own random stream, so turning one on does not change when another
/// fires.
///
/// Request faults are rolled once per `/v2` request in arrival order; webhook faults once per
/// delivery in schedule order. The JSON form (for `POST /_sandbox/faults`) uses the camelCase
/// field names; missing fields are 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the fault RNGs. Setting faults again reseeds them.
    pub seed: u64,
    /// Answer 500 (`internalServerError`) without doing anything.
    pub server_error_rate: f64,
    /// Answer 408 (`requestTimeout`) without doing anything, as a gateway that gave up waiting
    /// for the request would.
    pub timeout_rate: f64,
    /// Answer 429 (`tooManyRequests`) with a `Retry-After` of
    /// [`FaultConfig::retry_after_secs`], without doing anything. Stark documents no rate
    /// limit, but any API behind a gateway may answer so; a client must back off, not fail.
    pub rate_limit_rate: f64,
    /// The `Retry-After` of a 429, in seconds (real time: it is what a client sleeps).
    pub retry_after_secs: u64,
    /// Answer only after [`FaultConfig::slow_delay_ms`] of **real** time.
    pub slow_rate: f64,
    /// Delay of a slow answer, in real milliseconds (so that it can exceed a client timeout).
    pub slow_delay_ms: u64,
    /// Close the connection without any answer, doing nothing.
    pub drop_rate: f64,
    /// For `POST /v2/invoice` and `POST /v2/transfer`: create the objects, then lose the
    /// answer (half of the time a 500, half a cut connection). This is the case that makes
    /// money move twice in a naive client.
    pub lost_answer_rate: f64,
    /// Deliver a webhook a second time after a successful delivery.
    pub duplicate_delivery_rate: f64,
    /// Lose an event's webhook: every delivery attempt fails (recorded as `badConnection`
    /// attempts, as when our endpoint is unreachable) and Stark gives up, leaving the event
    /// undelivered. Only the reconciler, reading Stark's records, finds what it carried.
    pub lost_webhook_rate: f64,
    /// Hold back an event's first delivery by [`FaultConfig::out_of_order_delay_secs`] so that
    /// later events overtake it (Stark does not guarantee order: `credited` may come before
    /// `paid`).
    pub out_of_order_rate: f64,
    /// How long an out-of-order event is held back, in sandbox seconds.
    pub out_of_order_delay_secs: u64,
    /// Before a delivery, rotate the sandbox's signing key, as Stark may do at any time.
    pub key_rotation_rate: f64,
}

impl Default for FaultConfig {
    /// No faults; a slow answer takes 2 s, a 429 says to retry after 1 s, and an out-of-order
    /// event is held back a minute.
    fn default() -> Self {
        Self {
            seed: 0,
            server_error_rate: 0.0,
            timeout_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            slow_rate: 0.0,
            slow_delay_ms: 2_000,
            drop_rate: 0.0,
            lost_answer_rate: 0.0,
            duplicate_delivery_rate: 0.0,
            lost_webhook_rate: 0.0,
            out_of_order_rate: 0.0,
            out_of_order_delay_secs: 60,
            key_rotation_rate: 0.0,
        }
    }
}

impl FaultConfig {
    /// Checks that every rate is a probability.
    pub fn validate(&self) -> Result<(), SandboxError> {
        for (name, rate) in [
            ("serverErrorRate", self.server_error_rate),
            ("timeoutRate", self.timeout_rate),
            ("rateLimitRate", self.rate_limit_rate),
            ("slowRate", self.slow_rate),
            ("dropRate", self.drop_rate),
            ("lostAnswerRate", self.lost_answer_rate),
            ("duplicateDeliveryRate", self.duplicate_delivery_rate),
            ("lostWebhookRate", self.lost_webhook_rate),
            ("outOfOrderRate", self.out_of_order_rate),
            ("keyRotationRate", self.key_rotation_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(SandboxError::Config(format!(
                    "faults.{name}: {rate} is not a rate between 0 and 1"
                )));
            }
        }
        Ok(())
    }
}
