//! Events (what webhooks deliver) and `/v2/event`.

use std::sync::Arc;

use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Error;
use crate::invoice::InvoiceLog;
use crate::page::{Page, check_id, push_list, push_opt};
use crate::transfer::TransferLog;

/// The log an event carries, typed by the event's `subscription`.
///
/// Invoice and transfer logs are behind an [`Arc`]: an event *is* one log, and whoever keeps
/// many events and their logs (the local Stark sandbox keeps every one of a campaign) then holds
/// each log once instead of a copy per event. Reading goes through `Deref` as before.
#[derive(Debug, Clone, PartialEq)]
pub enum EventLog {
    /// `subscription == "invoice"`.
    Invoice(Arc<InvoiceLog>),
    /// `subscription == "transfer"`.
    Transfer(Arc<TransferLog>),
    /// Any other subscription (deposit, boleto…), kept as raw JSON.
    Other(Value),
}

/// A Stark Bank event: one log of a subscribed resource.
///
/// An `invoice` or `transfer` event whose log does not parse is an error, never `Other`: silently
/// downgrading a malformed `credited` event would drop a payout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawEvent", into = "RawEvent")]
pub struct Event {
    /// Event id (distinct from the log id: `paid` and `credited` are different events).
    pub id: String,
    /// When the event was created.
    pub created: String,
    /// Present on `GET /v2/event`, absent from webhook bodies.
    pub is_delivered: Option<bool>,
    /// `invoice`, `transfer`, …
    pub subscription: String,
    /// Workspace the event belongs to (missing before 2021).
    pub workspace_id: Option<String>,
    /// The typed log.
    pub log: EventLog,
}

impl Event {
    /// The invoice log when this is an invoice event.
    pub fn invoice_log(&self) -> Option<&InvoiceLog> {
        match &self.log {
            EventLog::Invoice(log) => Some(log),
            _ => None,
        }
    }
}

/// An event as it travels: the log is typed only once `subscription` is known, and the
/// subscription may come after the log in the JSON. `L` is a [`Value`] when the event comes
/// from a listing (pages are read as values), and a borrowed
/// [`serde_json::value::RawValue`] in a webhook body, so that the ingester's hot path parses
/// the log once, straight into its type, instead of building a value tree first.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawEvent<L = Value> {
    id: String,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    is_delivered: Option<bool>,
    subscription: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workspace_id: Option<String>,
    log: L,
}

impl<L> RawEvent<L> {
    /// Types the log by the subscription. One rule for both representations of the log.
    pub(crate) fn into_event<'de>(self) -> Result<Event, String>
    where
        L: IntoDeserializer<'de, serde_json::Error>,
    {
        let log = self.log.into_deserializer();
        let log = match self.subscription.as_str() {
            "invoice" => EventLog::Invoice(Arc::new(
                InvoiceLog::deserialize(log).map_err(|e| format!("invalid invoice log: {e}"))?,
            )),
            "transfer" => EventLog::Transfer(Arc::new(
                TransferLog::deserialize(log).map_err(|e| format!("invalid transfer log: {e}"))?,
            )),
            _ => EventLog::Other(Value::deserialize(log).map_err(|e| format!("invalid log: {e}"))?),
        };
        Ok(Event {
            id: self.id,
            created: self.created,
            is_delivered: self.is_delivered,
            subscription: self.subscription,
            workspace_id: self.workspace_id,
            log,
        })
    }
}

impl TryFrom<RawEvent> for Event {
    type Error = String;

    fn try_from(raw: RawEvent) -> Result<Self, String> {
        raw.into_event()
    }
}

impl From<Event> for RawEvent {
    fn from(event: Event) -> Self {
        let log = match event.log {
            EventLog::Invoice(log) => serde_json::to_value(log),
            EventLog::Transfer(log) => serde_json::to_value(log),
            EventLog::Other(value) => Ok(value),
        }
        .unwrap_or(Value::Null);
        RawEvent {
            id: event.id,
            created: event.created,
            is_delivered: event.is_delivered,
            subscription: event.subscription,
            workspace_id: event.workspace_id,
            log,
        }
    }
}

/// Filters of `GET /v2/event`.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Maximum number in total (`None`: all).
    pub limit: Option<usize>,
    /// Created on or after this date.
    pub after: Option<String>,
    /// Created on or before this date.
    pub before: Option<String>,
    /// `Some(false)`: only events Stark could not deliver (or we have not marked).
    pub is_delivered: Option<bool>,
}

impl EventQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push_opt(&mut pairs, "after", self.after.as_deref());
        push_opt(&mut pairs, "before", self.before.as_deref());
        if let Some(delivered) = self.is_delivered {
            pairs.push(("isDelivered", delivered.to_string()));
        }
        pairs
    }
}

/// One failed delivery of an event to a webhook (`/v2/event/attempt`). Stark records one per
/// failed try, so the attempts of an event say why it is still undelivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventAttempt {
    /// Attempt id.
    pub id: String,
    /// Why it failed: `badHttpStatus`, `badConnection` or `timeout`. Kept as text so that a
    /// code Stark adds later still reaches the logs verbatim.
    pub code: String,
    /// What happened, e.g. "HTTP POST request returned status 404".
    pub message: String,
    /// The event that was being delivered.
    pub event_id: String,
    /// The webhook it was delivered to.
    pub webhook_id: String,
    /// When the attempt was made.
    pub created: String,
}

/// Filters of `GET /v2/event/attempt`.
#[derive(Debug, Clone, Default)]
pub struct EventAttemptQuery {
    /// Maximum number in total (`None`: all).
    pub limit: Option<usize>,
    /// Created on or after this date.
    pub after: Option<String>,
    /// Created on or before this date.
    pub before: Option<String>,
    /// Only attempts to deliver these events.
    pub event_ids: Vec<String>,
    /// Only attempts made to these webhooks.
    pub webhook_ids: Vec<String>,
}

impl EventAttemptQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push_opt(&mut pairs, "after", self.after.as_deref());
        push_opt(&mut pairs, "before", self.before.as_deref());
        push_list(&mut pairs, "eventIds", &self.event_ids);
        push_list(&mut pairs, "webhookIds", &self.webhook_ids);
        pairs
    }
}

/// One public key Stark signs webhooks with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyEntry {
    /// SPKI PEM.
    pub content: String,
    /// When it was created; the list is newest first.
    pub created: String,
}

impl Client {
    /// All events matching `query`.
    pub async fn query_events(&self, query: &EventQuery) -> Result<Vec<Event>, Error> {
        self.collect("event", "events", &query.pairs(), query.limit)
            .await
    }

    /// One page of events.
    pub async fn page_events(
        &self,
        query: &EventQuery,
        cursor: Option<&str>,
    ) -> Result<Page<Event>, Error> {
        let limit = query.limit.unwrap_or(crate::page::MAX_PAGE);
        self.page("event", "events", &query.pairs(), cursor, limit)
            .await
    }

    /// `GET /v2/event/{id}`.
    pub async fn get_event(&self, id: &str) -> Result<Event, Error> {
        check_id("event", id)?;
        let body: OneEvent = self.get(&format!("event/{id}"), &[]).await?;
        Ok(body.event)
    }

    /// `PATCH /v2/event/{id}` with `{"isDelivered": true}`: drops it from undelivered queries.
    pub async fn set_event_delivered(&self, id: &str) -> Result<Event, Error> {
        check_id("event", id)?;
        let body: OneEvent = self
            .patch(&format!("event/{id}"), &json!({ "isDelivered": true }))
            .await?;
        Ok(body.event)
    }

    /// `DELETE /v2/event/{id}`.
    pub async fn delete_event(&self, id: &str) -> Result<Event, Error> {
        check_id("event", id)?;
        let body: OneEvent = self.delete(&format!("event/{id}")).await?;
        Ok(body.event)
    }

    /// All delivery attempts matching `query`, following cursors.
    pub async fn query_event_attempts(
        &self,
        query: &EventAttemptQuery,
    ) -> Result<Vec<EventAttempt>, Error> {
        self.collect("event/attempt", "attempts", &query.pairs(), query.limit)
            .await
    }

    /// `GET /v2/event/attempt/{id}`.
    pub async fn get_event_attempt(&self, id: &str) -> Result<EventAttempt, Error> {
        #[derive(Deserialize)]
        struct OneAttempt {
            attempt: EventAttempt,
        }
        check_id("event attempt", id)?;
        let body: OneAttempt = self.get(&format!("event/attempt/{id}"), &[]).await?;
        Ok(body.attempt)
    }

    /// `GET /v2/public-key`: Stark's webhook signing keys, newest first.
    pub async fn list_public_keys(&self, limit: usize) -> Result<Vec<PublicKeyEntry>, Error> {
        let page: Page<PublicKeyEntry> = self
            .page("public-key", "publicKeys", &[], None, limit)
            .await?;
        Ok(page.items)
    }
}

#[derive(Deserialize)]
struct OneEvent {
    event: Event,
}
