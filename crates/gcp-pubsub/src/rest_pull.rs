//! Unary pull over the emulator's REST API (`:pull`, `:acknowledge`, `:modifyAckDeadline`).
//!
//! Why not the streaming pull used against real Pub/Sub: the emulator (0.8.20) throws
//! `NoSuchMethodError` in `onRstStreamRead()` whenever a client cancels a streaming pull, and
//! never unregisters that stream. Later messages are dealt to those dead streams too and stay
//! leased there, so a read that follows earlier reads misses messages for minutes
//! (`tests/emulator.rs::reads_after_earlier_reads_see_every_message` shows it). A unary pull has
//! no stream to leave behind. The official crate exposes no unary pull, and the emulator needs
//! no credentials, so this is plain HTTP.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};
use crate::ops::{ReceivedMessage, Settle};

/// Pause between two empty pulls while waiting out `idle`.
const POLL: Duration = Duration::from_millis(200);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullResponse {
    #[serde(default)]
    received_messages: Vec<Received>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Received {
    ack_id: String,
    message: Message,
    delivery_attempt: Option<i32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    #[serde(default)]
    data: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    message_id: String,
    publish_time: Option<String>,
}

/// One emulator subscription, addressed over REST.
#[derive(Debug)]
pub(crate) struct Owned {
    http: reqwest::Client,
    endpoint: String,
    name: String,
}

impl Owned {
    fn error(&self, action: &'static str, reason: impl Into<String>) -> Error {
        Error::EmulatorPull {
            action,
            subscription: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// POSTs `body` to `/v1/{subscription}:{verb}` and returns the answer's bytes, or an error
    /// carrying the emulator's own message (e.g. `Subscription does not exist`).
    async fn call(
        &self,
        action: &'static str,
        verb: &str,
        body: serde_json::Value,
    ) -> Result<Vec<u8>> {
        let url = format!("{}/v1/{}:{verb}", self.endpoint, self.name);
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.error(action, e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.error(action, e.to_string()))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(self.error(action, format!("HTTP {status}: {message}")));
        }
        Ok(bytes.to_vec())
    }

    async fn pull(&self, max: usize) -> Result<Vec<Received>> {
        let body = serde_json::json!({ "maxMessages": max, "returnImmediately": true });
        let bytes = self.call("pull", "pull", body).await?;
        let parsed: PullResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.error("pull", format!("unreadable answer: {e}")))?;
        Ok(parsed.received_messages)
    }

    pub(crate) async fn settle(&self, settle: Settle, ack_ids: Vec<String>) -> Result<()> {
        if ack_ids.is_empty() {
            return Ok(());
        }
        match settle {
            Settle::Ack => {
                let body = serde_json::json!({ "ackIds": ack_ids });
                self.call("acknowledge", "acknowledge", body).await?;
            }
            // A zero deadline is a nack: the messages are available again at once.
            Settle::Nack => {
                let body = serde_json::json!({ "ackIds": ack_ids, "ackDeadlineSeconds": 0 });
                self.call("nack", "modifyAckDeadline", body).await?;
            }
        }
        Ok(())
    }
}

fn decode(subscription: &str, received: Received) -> Result<ReceivedMessage> {
    let message = received.message;
    let data = base64::engine::general_purpose::STANDARD
        .decode(message.data.as_bytes())
        .map_err(|e| Error::EmulatorPull {
            action: "pull",
            subscription: subscription.to_owned(),
            reason: format!("message {} has undecodable data: {e}", message.message_id),
        })?;
    Ok(ReceivedMessage {
        message_id: message.message_id,
        data,
        attributes: message.attributes,
        publish_time: message
            .publish_time
            .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok()),
        delivery_attempt: received.delivery_attempt,
    })
}

/// Reads up to `max` messages from the subscription `name` (full path) at the emulator
/// `endpoint`, with the same contract as [`crate::ops::lease`]: stop at the maximum or when no
/// new message came for `idle`, and hold everything read (held messages are not offered again
/// meanwhile, so nothing is counted twice). Returns the messages, the subscription to settle
/// them on, and every ack id with its message id.
#[allow(clippy::type_complexity)]
pub(crate) async fn lease(
    endpoint: &str,
    name: &str,
    max: usize,
    idle: Duration,
) -> Result<(Vec<ReceivedMessage>, Owned, Vec<(String, String)>)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::EmulatorPull {
            action: "pull",
            subscription: name.to_owned(),
            reason: e.to_string(),
        })?;
    let subscription = Owned {
        http,
        endpoint: endpoint.to_owned(),
        name: name.to_owned(),
    };
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    let mut ack_ids = Vec::new();
    let mut failure = None;
    let mut idle_deadline = tokio::time::Instant::now() + idle;
    while messages.len() < max {
        let batch = match subscription.pull(max - messages.len()).await {
            Ok(batch) => batch,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let mut fresh = false;
        for received in batch {
            ack_ids.push((received.message.message_id.clone(), received.ack_id.clone()));
            if !seen.insert(received.message.message_id.clone()) {
                continue;
            }
            match decode(name, received) {
                Ok(message) => {
                    fresh = true;
                    messages.push(message);
                }
                Err(e) => failure = Some(e),
            }
        }
        if failure.is_some() {
            break;
        }
        let now = tokio::time::Instant::now();
        if fresh {
            idle_deadline = now + idle;
        } else if now >= idle_deadline {
            break;
        } else {
            tokio::time::sleep(POLL.min(idle_deadline - now)).await;
        }
    }
    match failure {
        // Give back what was read: the caller gets an error instead of the messages.
        Some(e) => {
            let all = ack_ids.into_iter().map(|(_, a)| a).collect();
            subscription.settle(Settle::Nack, all).await?;
            Err(e)
        }
        None => Ok((messages, subscription, ack_ids)),
    }
}
