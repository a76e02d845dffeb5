//! Webhooks, the events made for them, and delivery bookkeeping: attempts (failed deliveries),
//! retries on the configured schedule, and the record of every POST.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stark_client::python_json::to_string_sorted;
use stark_client::{Event, EventLog, Webhook};
use time::OffsetDateTime;

use super::{Job, World};
use crate::clock::timestamp;
use crate::state::{Delivery, DeliveryOutcome, EventAttempt};
use crate::table::{ListParams, Scope, Ws};

/// An event and its delivery bookkeeping.
#[derive(Debug, Clone)]
pub struct EventRec {
    /// The event as `GET /v2/event` shows it, shared with the snapshots taken since it last
    /// changed.
    pub event: Arc<Event>,
    /// The webhook this event is for (one event per log per subscribed webhook).
    pub webhook_id: String,
    /// Failed deliveries so far; indexes the retry schedule.
    pub failures: u32,
}

/// A webhook POST to make, prepared under the lock and sent outside it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The event delivered.
    pub event_id: String,
    /// The webhook it goes to.
    pub webhook_id: String,
    /// Where to POST.
    pub url: String,
    /// `{"event": {...}}` in Python `json.dumps(sort_keys=True)` bytes.
    pub body: String,
    /// The `Digital-Signature` header.
    pub signature: String,
    /// Whether that signature is high-S.
    pub high_s: bool,
    /// 1 for the first try.
    pub try_number: u32,
    /// This is the extra copy of the duplicate-delivery fault (it changes no state).
    pub duplicate: bool,
    /// After a successful delivery, send a duplicate (rolled when prepared).
    pub send_duplicate: bool,
}

impl World {
    // ----- webhooks -----------------------------------------------------------------------

    /// Registers a webhook of workspace `ws` (the route has checked the URL and
    /// subscriptions): it gets the events of that workspace's objects only.
    pub fn add_webhook(
        &mut self,
        ws: Ws,
        url: String,
        subscriptions: Vec<String>,
        now: OffsetDateTime,
    ) -> Webhook {
        let webhook = Webhook {
            id: self.ids.next_id(),
            url,
            subscriptions,
        };
        self.webhooks.insert(&webhook.id, now, ws, webhook.clone());
        webhook
    }

    /// Workspace `ws`'s webhook, not deleted, by id.
    pub fn webhook(&self, ws: Ws, id: &str) -> Option<&Webhook> {
        self.webhooks.get_in(id, ws).map(|r| &r.item)
    }

    /// One page of workspace `ws`'s webhooks.
    pub fn webhooks_page(&self, ws: Ws, params: &ListParams) -> (Vec<&Webhook>, Option<String>) {
        self.webhooks.page(params, Scope::all(ws), |_| true)
    }

    /// Deletes a webhook: no more events are made for it, and its pending deliveries stop.
    pub fn delete_webhook(&mut self, ws: Ws, id: &str) -> Option<Webhook> {
        let row = self.webhooks.get_mut_in(id, ws)?;
        row.deleted = true;
        Some(row.item.clone())
    }

    // ----- events -------------------------------------------------------------------------

    /// Workspace `ws`'s event, not deleted, by id.
    pub fn event(&self, ws: Ws, id: &str) -> Option<&Event> {
        self.events.get_in(id, ws).map(|r| &*r.item.event)
    }

    /// One page of workspace `ws`'s events passing `keep`.
    pub fn events_page(
        &self,
        ws: Ws,
        params: &ListParams,
        keep: impl Fn(&Event) -> bool,
    ) -> (Vec<&Event>, Option<String>) {
        let (recs, cursor) = self.events.page(params, Scope::all(ws), |r| keep(&r.event));
        (recs.into_iter().map(|r| &*r.event).collect(), cursor)
    }

    /// Sets `isDelivered` (a delivered event is not retried any more).
    pub fn set_event_delivered(&mut self, ws: Ws, id: &str, delivered: bool) -> Option<Event> {
        let row = self.events.get_mut_in(id, ws)?;
        Arc::make_mut(&mut row.item.event).is_delivered = Some(delivered);
        Some(Event::clone(&row.item.event))
    }

    /// Deletes an event: it is no longer listed, found or delivered.
    pub fn delete_event(&mut self, ws: Ws, id: &str) -> Option<Event> {
        let row = self.events.get_mut_in(id, ws)?;
        row.deleted = true;
        Some(Event::clone(&row.item.event))
    }

    /// Workspace `ws`'s failed delivery attempt by id.
    pub fn attempt(&self, ws: Ws, id: &str) -> Option<&EventAttempt> {
        self.attempts.get_in(id, ws).map(|r| &r.item)
    }

    /// One page of workspace `ws`'s attempts passing `keep`.
    pub fn attempts_page(
        &self,
        ws: Ws,
        params: &ListParams,
        keep: impl Fn(&EventAttempt) -> bool,
    ) -> (Vec<&EventAttempt>, Option<String>) {
        self.attempts.page(params, Scope::all(ws), keep)
    }

    /// One event per webhook of workspace `ws` subscribed to `subscription`, each scheduled for
    /// delivery now (or later, when the out-of-order fault holds it back). Every workspace's
    /// events carry their own `workspaceId` and are signed with the one environment key.
    pub(super) fn emit_event(
        &mut self,
        ws: Ws,
        subscription: &str,
        log: EventLog,
        now: OffsetDateTime,
    ) {
        let hooks: Vec<String> = self
            .webhooks
            .live()
            .filter(|r| r.ws == ws && r.item.subscriptions.iter().any(|s| s == subscription))
            .map(|r| r.item.id.clone())
            .collect();
        for webhook_id in hooks {
            let event = Event {
                id: self.ids.next_id(),
                created: timestamp(now),
                is_delivered: Some(false),
                subscription: subscription.to_owned(),
                workspace_id: Some(self.workspace_id(ws).to_owned()),
                log: log.clone(),
            };
            let event_id = event.id.clone();
            self.events.insert(
                &event_id,
                now,
                ws,
                EventRec {
                    event: Arc::new(event),
                    webhook_id,
                    failures: 0,
                },
            );
            if self.dice.roll_lost_webhook() {
                self.record_fault(0, "lostWebhook", event_id.clone());
                self.lose_webhook(ws, &event_id, now);
                continue;
            }
            let mut at = now;
            if self.dice.roll_out_of_order() {
                at += Duration::from_secs(self.dice.config.out_of_order_delay_secs);
                self.record_fault(0, "outOfOrder", event_id.clone());
            }
            self.schedule(at, Job::Deliver(event_id));
        }
    }

    /// The lost-webhook fault: one failed attempt per try Stark would make, no delivery. The
    /// event stays undelivered, as after Stark gave up on an unreachable endpoint.
    fn lose_webhook(&mut self, ws: Ws, event_id: &str, now: OffsetDateTime) {
        let Some(webhook_id) = self.events.get(event_id).map(|r| r.item.webhook_id.clone()) else {
            return;
        };
        let tries = self.settings.retry_schedule.len() + 1;
        for _ in 0..tries {
            let attempt = EventAttempt {
                id: self.ids.next_id(),
                code: "badConnection".to_owned(),
                message: "HTTP POST request failed: webhook lost (sandbox fault)".to_owned(),
                event_id: event_id.to_owned(),
                webhook_id: webhook_id.clone(),
                created: timestamp(now),
            };
            self.attempts.insert(&attempt.id.clone(), now, ws, attempt);
        }
        if let Some(row) = self.events.get_mut(event_id) {
            row.item.failures = u32::try_from(tries).unwrap_or(u32::MAX);
        }
    }

    // ----- delivery -----------------------------------------------------------------------

    /// Builds the signed POST for an event, unless it was deleted, delivered, or its webhook is
    /// gone.
    pub(super) fn prepare_delivery(
        &mut self,
        event_id: &str,
        now: OffsetDateTime,
    ) -> Option<Outgoing> {
        let rec = self.events.get(event_id)?;
        if rec.item.event.is_delivered == Some(true) {
            return None;
        }
        let webhook = self.webhooks.get(&rec.item.webhook_id)?.item.clone();
        let mut event = Event::clone(&rec.item.event);
        let try_number = rec.item.failures + 1;
        // Webhook bodies carry no isDelivered (only GET /v2/event shows it).
        event.is_delivered = None;
        if self.dice.roll_key_rotation() {
            self.keys.rotate(now);
            self.record_fault(0, "keyRotation", event_id.to_owned());
        }
        let send_duplicate = self.dice.roll_duplicate();
        let body = to_string_sorted(&json!({ "event": event }));
        let (signature, high_s) = self.keys.sign(body.as_bytes());
        Some(Outgoing {
            event_id: event_id.to_owned(),
            webhook_id: webhook.id,
            url: webhook.url,
            body,
            signature,
            high_s,
            try_number,
            duplicate: false,
            send_duplicate,
        })
    }

    /// Records how a POST ended; on failure records an attempt and schedules the next try. On
    /// success returns the duplicate to send, if the fault rolled one.
    pub fn record_delivery(
        &mut self,
        out: &Outgoing,
        outcome: DeliveryOutcome,
        now: OffsetDateTime,
    ) -> Option<Outgoing> {
        if let Some(ws) = self.webhooks.owner(&out.webhook_id) {
            self.counters.entry(ws.0).or_default().webhook_posts += 1;
        }
        self.deliveries.push(Arc::new(Delivery {
            event_id: out.event_id.clone(),
            webhook_id: out.webhook_id.clone(),
            url: out.url.clone(),
            body: if self.settings.keep_delivery_bodies {
                out.body.clone()
            } else {
                String::new()
            },
            signature: out.signature.clone(),
            high_s: out.high_s,
            duplicate: out.duplicate,
            try_number: out.try_number,
            at: timestamp(now),
            outcome: outcome.clone(),
        }));
        if out.duplicate {
            return None;
        }
        let (code, message) = match outcome {
            DeliveryOutcome::Delivered => {
                if let Some(row) = self.events.get_mut(&out.event_id) {
                    Arc::make_mut(&mut row.item.event).is_delivered = Some(true);
                }
                if out.send_duplicate {
                    self.record_fault(0, "duplicateDelivery", out.event_id.clone());
                    return Some(Outgoing {
                        duplicate: true,
                        ..out.clone()
                    });
                }
                return None;
            }
            DeliveryOutcome::BadHttpStatus { status } => (
                "badHttpStatus",
                format!("HTTP POST request returned status {status}"),
            ),
            DeliveryOutcome::BadConnection { detail } => (
                "badConnection",
                format!("HTTP POST request failed: {detail}"),
            ),
            DeliveryOutcome::Timeout => ("timeout", "HTTP POST request timed out".to_owned()),
        };
        let ws = self.events.owner(&out.event_id)?;
        let attempt = EventAttempt {
            id: self.ids.next_id(),
            code: code.to_owned(),
            message,
            event_id: out.event_id.clone(),
            webhook_id: out.webhook_id.clone(),
            created: timestamp(now),
        };
        self.attempts.insert(&attempt.id.clone(), now, ws, attempt);
        let row = self.events.get_mut(&out.event_id)?;
        row.item.failures += 1;
        let failures = row.item.failures as usize;
        if let Some(wait) = self.settings.retry_schedule.get(failures - 1).copied() {
            self.schedule(now + wait, Job::Deliver(out.event_id.clone()));
        }
        None
    }
}
