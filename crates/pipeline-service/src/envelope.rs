//! The Pub/Sub push envelope, as an axum extractor.
//!
//! Pub/Sub (and its emulator, and our in-process bus) POSTs
//! `{"subscription", "message": {"data", "attributes", "messageId", "publishTime"}, "deliveryAttempt"?}`.
//! Real Pub/Sub sends both `messageId` and `message_id` (and both publish-time spellings), so the
//! two spellings are read as separate optional fields rather than serde aliases, which would
//! reject the duplicate. A malformed envelope is answered 400 with the reason: never 2xx, so the
//! message is retried and then dead-lettered where an operator sees it.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use pipeline_domain::messages::TopicMessage;

/// A decoded push delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEnvelope {
    /// Full subscription name, e.g. `projects/p/subscriptions/s`.
    pub subscription: String,
    /// Pub/Sub message id (stable across redeliveries).
    pub message_id: String,
    /// When Pub/Sub accepted the message (RFC 3339).
    pub publish_time: String,
    /// Message attributes.
    pub attributes: BTreeMap<String, String>,
    /// The decoded payload.
    pub data: Vec<u8>,
    /// 1-based delivery attempt, when the subscription has a dead-letter policy (the emulator
    /// never sends it).
    pub delivery_attempt: Option<u32>,
}

/// The wire form, used by the in-process bus to build deliveries too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireEnvelope {
    /// Subscription name.
    #[serde(default)]
    pub subscription: String,
    /// The message.
    pub message: WireMessage,
    /// Delivery attempt.
    #[serde(
        rename = "deliveryAttempt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delivery_attempt: Option<u32>,
}

/// The `message` object of a push delivery.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WireMessage {
    /// Base64 payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, String>>,
    /// Message id, camelCase spelling.
    #[serde(rename = "messageId", default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Message id, snake_case spelling.
    #[serde(
        rename = "message_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub message_id_snake: Option<String>,
    /// Publish time, camelCase spelling.
    #[serde(
        rename = "publishTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub publish_time: Option<String>,
    /// Publish time, snake_case spelling.
    #[serde(
        rename = "publish_time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub publish_time_snake: Option<String>,
}

/// Why a push delivery was refused (answered 400, so Pub/Sub retries and then dead-letters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PushRejection(pub String);

impl IntoResponse for PushRejection {
    fn into_response(self) -> Response {
        tracing::warn!(event = "push_rejected", reason = %self.0, "refusing a malformed push delivery");
        (StatusCode::BAD_REQUEST, self.0).into_response()
    }
}

impl WireEnvelope {
    /// The delivery Pub/Sub would POST for `message` (both id and time spellings, as real
    /// Pub/Sub sends them). The in-process bus and tests build deliveries with it.
    pub fn for_message(
        subscription: &str,
        message_id: &str,
        publish_time: &str,
        message: &crate::publisher::OutgoingMessage,
        delivery_attempt: Option<u32>,
    ) -> Self {
        WireEnvelope {
            subscription: subscription.to_owned(),
            message: WireMessage {
                data: Some(B64.encode(&message.data)),
                attributes: Some(message.attributes.clone()),
                message_id: Some(message_id.to_owned()),
                message_id_snake: Some(message_id.to_owned()),
                publish_time: Some(publish_time.to_owned()),
                publish_time_snake: Some(publish_time.to_owned()),
            },
            delivery_attempt,
        }
    }
}

/// The stable log event names of one push handler's refusals.
#[derive(Debug, Clone, Copy)]
pub struct NackEvents {
    /// Logged (warning) when the delivery will be retried (5xx).
    pub retry: &'static str,
    /// Logged (error) when no retry can fix it and it heads for the dead-letter topic.
    pub rejected: &'static str,
}

/// Answers a push delivery that was not processed, per the ack rules: logs a warning when it
/// will be retried, an error (with Stark's error list, if any) when it is bound for the
/// dead-letter topic, and returns `status` with the reason as body.
pub fn nack(
    events: NackEvents,
    status: StatusCode,
    reason: String,
    stark: Option<&stark_client::Error>,
) -> Response {
    if status.is_server_error() {
        tracing::warn!(event = events.retry, status = status.as_u16(), %reason, "delivery will be retried");
    } else {
        let stark_errors = stark
            .map(|e| serde_json::to_string(e.errors()).unwrap_or_default())
            .unwrap_or_default();
        tracing::error!(event = events.rejected, status = status.as_u16(), %reason, stark_errors, "cannot be processed; the message goes to the dead-letter topic after its attempts");
    }
    (status, reason).into_response()
}

impl PushEnvelope {
    /// Parses the JSON body of a push request.
    pub fn parse(body: &[u8]) -> Result<Self, PushRejection> {
        let wire: WireEnvelope = serde_json::from_slice(body)
            .map_err(|e| PushRejection(format!("malformed push envelope: {e}")))?;
        let message = wire.message;
        let message_id = message
            .message_id
            .or(message.message_id_snake)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                PushRejection("malformed push envelope: message.messageId is missing".into())
            })?;
        let data = match message.data {
            Some(text) => B64.decode(text.as_bytes()).map_err(|e| {
                PushRejection(format!(
                    "malformed push envelope: message.data is not base64: {e}"
                ))
            })?,
            None => Vec::new(),
        };
        Ok(Self {
            subscription: wire.subscription,
            message_id,
            publish_time: message
                .publish_time
                .or(message.publish_time_snake)
                .unwrap_or_default(),
            attributes: message.attributes.unwrap_or_default(),
            data,
            delivery_attempt: wire.delivery_attempt,
        })
    }

    /// Decodes the payload as a topic message.
    pub fn payload<T: TopicMessage>(&self) -> Result<T, PushRejection> {
        T::from_payload(&self.data).map_err(PushRejection)
    }
}

impl<S: Send + Sync> FromRequest<S> for PushEnvelope {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let envelope = PushEnvelope::parse(&body).map_err(IntoResponse::into_response)?;
        tracing::Span::current().record("message_id", envelope.message_id.as_str());
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_pubsub_shape_with_both_spellings() {
        let body = br#"{"message":{"attributes":{"invoiceId":"1"},"data":"eyJhIjoxfQ==","messageId":"136969346945","message_id":"136969346945","publishTime":"2026-11-27T10:00:00.123Z","publish_time":"2026-11-27T10:00:00.123Z"},"subscription":"projects/p/subscriptions/s","deliveryAttempt":3}"#;
        let envelope = PushEnvelope::parse(body).unwrap();
        assert_eq!(envelope.message_id, "136969346945");
        assert_eq!(envelope.data, br#"{"a":1}"#);
        assert_eq!(envelope.attributes["invoiceId"], "1");
        assert_eq!(envelope.delivery_attempt, Some(3));
        assert_eq!(envelope.subscription, "projects/p/subscriptions/s");
    }

    #[test]
    fn emulator_shape_without_delivery_attempt() {
        let body = br#"{"subscription":"projects/p/subscriptions/s","message":{"data":"","messageId":"1","publishTime":"2026-11-27T10:00:00Z"}}"#;
        let envelope = PushEnvelope::parse(body).unwrap();
        assert_eq!(envelope.delivery_attempt, None);
        assert!(envelope.data.is_empty());
    }

    #[test]
    fn malformed_envelopes_say_why() {
        for (body, why) in [
            (&b"nope"[..], "malformed push envelope"),
            (br#"{"subscription":"s"}"#, "message"),
            (br#"{"message":{"data":"e30="}}"#, "messageId"),
            (br#"{"message":{"data":"***","messageId":"1"}}"#, "base64"),
        ] {
            let err = PushEnvelope::parse(body).unwrap_err();
            assert!(err.0.contains(why), "{err} should mention {why}");
        }
    }
}
