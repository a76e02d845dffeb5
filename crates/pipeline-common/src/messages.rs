//! The messages on the two topics, as versioned JSON.
//!
//! Each payload carries `schemaVersion` so that a consumer can refuse (and dead-letter) a message
//! it does not understand instead of misreading it; attributes repeat the ids so that operators
//! can filter and seek without decoding payloads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::publisher::OutgoingMessage;

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
    /// Tags to put on the invoice; include [`PendingInvoice::request_tag`].
    pub tags: Vec<String>,
}

impl PendingInvoice {
    /// The tag that identifies the invoice made from this request (lowercase: Stark lowercases
    /// tags).
    pub fn request_tag(&self) -> String {
        request_tag(&self.request_id)
    }
}

/// The invoice tag for a request id.
pub fn request_tag(request_id: &str) -> String {
    format!("request:{}", request_id.to_lowercase())
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
    /// The message for a credited invoice log, as the ingester publishes it (and as the
    /// operator commands republish it). `event_id` is for tracing only.
    pub fn from_credited_log(log: &stark_client::InvoiceLog, event_id: &str) -> Self {
        PaidInvoice {
            schema_version: SCHEMA_VERSION,
            event_id: event_id.to_owned(),
            invoice_id: log.invoice.id.clone(),
            amount: log.invoice.amount,
            fee: log.invoice.fee,
            payer_name: log.invoice.name.clone(),
            payer_tax_id: log.invoice.tax_id.clone(),
            credited_at: log.created.clone(),
            tags: log.invoice.tags.clone(),
        }
    }

    /// `amount - fee`, the payout in cents (may be ≤ 0: then nothing is paid).
    pub fn payout(&self) -> i64 {
        self.amount.saturating_sub(self.fee)
    }

    /// The transfer `externalId` and tag for this invoice. Derived from the invoice id, never
    /// the event id: `paid` and `credited` (and duplicates) have different event ids.
    pub fn payout_key(&self) -> String {
        payout_key(&self.invoice_id)
    }
}

/// The `externalId`/tag of the payout of `invoice_id`.
pub fn payout_key(invoice_id: &str) -> String {
    format!("payout-{invoice_id}")
}

/// A message that goes on a topic.
pub trait TopicMessage: Serialize + DeserializeOwned {
    /// The topic it goes to.
    const TOPIC: &'static str;
    /// The attributes operators filter on.
    fn attributes(&self) -> BTreeMap<String, String>;
    /// Its schema version.
    fn schema_version(&self) -> u32;

    /// Serializes into a message ready to publish.
    fn to_message(&self) -> OutgoingMessage {
        let mut attributes = self.attributes();
        attributes.insert("schemaVersion".into(), self.schema_version().to_string());
        OutgoingMessage {
            data: serde_json::to_vec(self).expect("messages always serialize"),
            attributes,
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
        assert_eq!(paid().payout(), 12300);
        assert_eq!(paid().payout_key(), "payout-5166945473134592");
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
