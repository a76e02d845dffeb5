//! The messages on the two topics, as versioned JSON.
//!
//! Each payload carries `schemaVersion` so that a consumer can refuse (and dead-letter) a message
//! it does not understand instead of misreading it; attributes repeat the ids so that operators
//! can filter and seek without decoding payloads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::vocab::{PayoutKey, RequestTag};

/// A message ready to publish: its bytes, attributes and ordering key. Plain data, so that the
/// domain knows what goes on a topic without knowing how it gets there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The payload (JSON of one of the messages of this module).
    pub data: Vec<u8>,
    /// Attributes operators filter on (ids, schema version).
    pub attributes: BTreeMap<String, String>,
    /// Pub/Sub ordering key: messages with the same key are delivered one at a time, in order,
    /// on a subscription with message ordering enabled, so two instances of a push service
    /// never work on the same request or invoice at once. `None` publishes without one.
    pub ordering_key: Option<String>,
}

/// Topic of invoice requests (spammer → invoice-sender).
pub const PENDING_INVOICES: &str = "pending_invoices";
/// Topic of credited invoices (webhook-ingester → money-sender).
pub const PAID_INVOICES: &str = "paid_invoices";

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One invoice to issue, published by the spammer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PendingInvoice {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Deterministic id of this request: the same (campaign, slot, index) gives the same id, so a
    /// retried spammer run republishes the same requests and the sender deduplicates by it.
    pub request_id: String,
    /// Campaign name.
    pub campaign: String,
    /// Hour slot within the campaign, 0-based.
    pub slot: u32,
    /// Cents.
    pub amount: i64,
    /// Payer name.
    pub name: String,
    /// Payer CPF, formatted.
    pub tax_id: String,
    /// Due datetime (`YYYY-MM-DDTHH:MM:SS+00:00`), or `None` for Stark's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// Seconds after `due` until expiry, or `None` for Stark's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<i64>,
    /// Tags to put on the invoice: [`crate::vocab::invoice_tags`], set by the spammer (the one
    /// component that adds the request tag); the invoice sender refuses a request without it.
    pub tags: Vec<String>,
}

impl PendingInvoice {
    /// The tag that identifies the invoice made from this request.
    pub fn request_tag(&self) -> RequestTag {
        RequestTag::for_request(&self.request_id)
    }
}

/// One credited invoice to pay out, published by the webhook ingester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaidInvoice {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Stark event id (for tracing; idempotency keys on the invoice id instead).
    pub event_id: String,
    /// Stark invoice id.
    pub invoice_id: String,
    /// Credited amount, cents.
    pub amount: i64,
    /// Stark's fee, cents.
    pub fee: i64,
    /// Payer name.
    pub payer_name: String,
    /// Payer tax id.
    pub payer_tax_id: String,
    /// When the credit happened (the log's `created`).
    pub credited_at: String,
    /// The invoice's tags (carry the request tag back for reconciliation).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl PaidInvoice {
    /// `amount - fee` as the message claims it, in cents. A hint only: money-sender pays what
    /// Stark's own record says, and logs when the two differ.
    pub fn claimed_payout(&self) -> i64 {
        self.amount.saturating_sub(self.fee)
    }

    /// The first-generation payout key of this invoice.
    pub fn payout_key(&self) -> PayoutKey {
        PayoutKey::for_invoice(&self.invoice_id)
    }
}

/// A message that goes on a topic.
pub trait TopicMessage: Serialize + DeserializeOwned {
    /// The topic it goes to.
    const TOPIC: &'static str;
    /// The attributes operators filter on.
    fn attributes(&self) -> BTreeMap<String, String>;
    /// Its schema version.
    fn schema_version(&self) -> u32;
    /// The ordering key: the id whose deliveries must never overlap (see
    /// [`OutgoingMessage::ordering_key`]).
    fn ordering_key(&self) -> String;

    /// Serializes into a message ready to publish.
    fn to_message(&self) -> OutgoingMessage {
        let mut attributes = self.attributes();
        attributes.insert("schemaVersion".into(), self.schema_version().to_string());
        OutgoingMessage {
            data: serde_json::to_vec(self).expect("messages always serialize"),
            attributes,
            ordering_key: Some(self.ordering_key()),
        }
    }

    /// Parses a payload, refusing other schema versions.
    fn from_payload(data: &[u8]) -> Result<Self, String> {
        let message: Self = serde_json::from_slice(data)
            .map_err(|e| format!("invalid {} payload: {e}", Self::TOPIC))?;
        if message.schema_version() != SCHEMA_VERSION {
            return Err(format!(
                "{} payload has schemaVersion {}, this build reads {SCHEMA_VERSION}",
                Self::TOPIC,
                message.schema_version()
            ));
        }
        Ok(message)
    }
}

impl TopicMessage for PendingInvoice {
    const TOPIC: &'static str = PENDING_INVOICES;

    fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("requestId".into(), self.request_id.clone()),
            ("campaign".into(), self.campaign.clone()),
            ("slot".into(), self.slot.to_string()),
        ])
    }

    fn schema_version(&self) -> u32 {
        self.schema_version
    }

    fn ordering_key(&self) -> String {
        self.request_id.clone()
    }
}

impl TopicMessage for PaidInvoice {
    const TOPIC: &'static str = PAID_INVOICES;

    fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("invoiceId".into(), self.invoice_id.clone()),
            ("eventId".into(), self.event_id.clone()),
        ])
    }

    fn schema_version(&self) -> u32 {
        self.schema_version
    }

    fn ordering_key(&self) -> String {
        self.invoice_id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid() -> PaidInvoice {
        PaidInvoice {
            schema_version: 1,
            event_id: "e1".into(),
            invoice_id: "5166945473134592".into(),
            amount: 12345,
            fee: 45,
            payer_name: "Ana".into(),
            payer_tax_id: "012.345.678-90".into(),
            credited_at: "2024-02-29T05:00:11.794243+00:00".into(),
            tags: vec![],
        }
    }

    #[test]
    fn round_trip_with_attributes() {
        let message = paid().to_message();
        assert_eq!(message.attributes["invoiceId"], "5166945473134592");
        assert_eq!(message.attributes["schemaVersion"], "1");
        assert_eq!(PaidInvoice::from_payload(&message.data).unwrap(), paid());
        assert_eq!(paid().claimed_payout(), 12300);
        assert_eq!(paid().payout_key().to_string(), "payout-5166945473134592");
        assert_eq!(message.ordering_key.as_deref(), Some("5166945473134592"));
    }

    #[test]
    fn other_versions_and_unknown_fields_are_refused() {
        let mut v2 = paid();
        v2.schema_version = 2;
        let err = PaidInvoice::from_payload(&serde_json::to_vec(&v2).unwrap()).unwrap_err();
        assert!(err.contains("schemaVersion 2"), "{err}");
        let mut value = serde_json::to_value(paid()).unwrap();
        value["surprise"] = serde_json::json!(1);
        assert!(PaidInvoice::from_payload(value.to_string().as_bytes()).is_err());
        assert!(
            PendingInvoice::from_payload(b"not json")
                .unwrap_err()
                .contains("pending_invoices")
        );
    }
}
