//! The background scheduler: runs lifecycle jobs when sandbox time reaches them, and posts
//! webhooks.
//!
//! One task sleeps until the earliest job is due (converted to real time through the clock's
//! speed), or until it is woken because a request added a job or a test moved the clock. There
//! is no polling loop: an idle sandbox sleeps. Each webhook POST runs in its own task so that a
//! slow receiver delays nobody else; its outcome goes back to the world, which schedules the
//! retry.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::state::DeliveryOutcome;
use crate::world::{Outgoing, World};

/// What the server, the scheduler and the handle share.
#[derive(Debug)]
pub struct Shared {
    /// All state; locked briefly, never across an await.
    pub world: Mutex<World>,
    /// Sandbox time.
    pub clock: Clock,
    /// Wakes the scheduler when jobs were added or the clock jumped.
    pub wake: Notify,
    /// Posts webhooks.
    pub http: reqwest::Client,
    /// Real time a receiver has to answer.
    pub delivery_timeout: Duration,
    /// Allowed `Access-Time` skew (real time).
    pub skew: Duration,
    /// A scripted outage, `[start, end)` in sandbox time: every `/v2` request is answered 503
    /// and webhooks wait for the end, as when Stark is down.
    pub outage: Mutex<Option<(OffsetDateTime, OffsetDateTime)>>,
}

impl Shared {
    /// The end of the outage `now` falls in, if any.
    pub fn outage_until(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let outage = *self.outage.lock().unwrap_or_else(|e| e.into_inner());
        outage.and_then(|(start, end)| (start <= now && now < end).then_some(end))
    }
}

impl Shared {
    /// Locks the world. A panic while holding the lock cannot leave it half-changed in a way
    /// that matters more than losing the sandbox, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs due jobs until `shutdown` turns true.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (outgoing, next) = {
            let now = shared.clock.now();
            let mut world = shared.lock();
            let outgoing = world.run_due(now);
            (outgoing, world.next_job_at())
        };
        for out in outgoing {
            tokio::spawn(deliver(shared.clone(), out));
        }
        // With nothing scheduled, sleep until woken; the hour is just an upper bound.
        let wait = next.map_or(Duration::from_secs(3600), |at| shared.clock.real_until(at));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shared.wake.notified() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// POSTs one webhook (and its duplicate, if the fault rolled one) and records the outcome.
async fn deliver(shared: Arc<Shared>, out: Outgoing) {
    let mut next = Some(out);
    while let Some(out) = next.take() {
        // Down: the webhook waits in Stark's queue until the outage is over (checked often,
        // since a test may move the clock past it).
        while let Some(end) = shared.outage_until(shared.clock.now()) {
            let wait = shared.clock.real_until(end);
            tokio::time::sleep(wait.clamp(Duration::from_millis(10), Duration::from_millis(200)))
                .await;
        }
        let outcome = post(&shared, &out).await;
        tracing::info!(
            event_id = %out.event_id,
            url = %out.url,
            try_number = out.try_number,
            duplicate = out.duplicate,
            high_s = out.high_s,
            outcome = ?outcome,
            "webhook delivery"
        );
        next = {
            let now = shared.clock.now();
            shared.lock().record_delivery(&out, outcome, now)
        };
        shared.wake.notify_one();
    }
}

async fn post(shared: &Shared, out: &Outgoing) -> DeliveryOutcome {
    let sent = shared
        .http
        .post(&out.url)
        .header("Content-Type", "application/json")
        .header("Digital-Signature", &out.signature)
        .body(out.body.clone())
        .timeout(shared.delivery_timeout)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().as_u16() == 200 => DeliveryOutcome::Delivered,
        Ok(response) => DeliveryOutcome::BadHttpStatus {
            status: response.status().as_u16(),
        },
        Err(err) if err.is_timeout() => DeliveryOutcome::Timeout,
        Err(err) => DeliveryOutcome::BadConnection {
            detail: describe(&err),
        },
    }
}

/// The error chain in one line (reqwest's top-level message alone says little).
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
