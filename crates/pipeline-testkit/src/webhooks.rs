//! Credited-invoice webhooks signed like stark-sandbox (and Stark) sign them: the load of the
//! ingester's benchmarks. (The stand-in for Stark's `GET /v2/public-key` is
//! [`crate::public_key_server`].)

use serde_json::json;
use stark_client::PrivateKey;
use stark_client::keys::{high_s_twin, signature_to_base64};

/// The workspace of every benchmark event (the ingester under load accepts only it, as a
/// deployed one does).
pub const WORKSPACE_ID: &str = "6010044957065216";

/// One webhook delivery: the exact bytes and its `Digital-Signature`.
#[derive(Debug, Clone)]
pub struct SignedWebhook {
    /// The body, Python `json.dumps(sort_keys=True)` bytes, as the sandbox sends.
    pub body: Vec<u8>,
    /// Base64 DER ECDSA signature over `body`.
    pub signature: String,
}

/// The body of event `n`: an `invoice`/`credited` event with every field a real delivery has
/// (about 1.3 KB), distinct ids and amounts per `n`.
pub fn credited_body(n: u64) -> String {
    let event_id = 5_415_223_380_934_656 + n;
    let invoice_id = 5_941_925_571_985_408 + n;
    let amount = 1_000 + (n * 7_919) % 49_000;
    let event = json!({"event": {
        "created": "2026-11-27T10:09:00.866857+00:00", "id": event_id.to_string(),
        "subscription": "invoice", "workspaceId": WORKSPACE_ID,
        "log": {"created": "2026-11-27T10:08:59.927706+00:00", "errors": [], "id": (4_687_457_496_858_624 + n).to_string(), "type": "credited",
            "invoice": {"amount": amount, "brcode": "00020101021226890014br.gov.bcb.pix2567invoice-h.sandbox.starkbank.com/v2/afdf94b770b0458a8440a335daf77c4c5204000053039865802BR5915Stark Bank S.A.6009Sao Paulo62070503***6304CC32",
                "created": "2026-11-27T10:00:50.886319+00:00", "descriptions": [], "discountAmount": 0, "discounts": [],
                "due": "2026-11-29T10:00:50.886319+00:00", "expiration": 5_097_600, "fee": 50, "fine": 2.0, "fineAmount": 0,
                "id": invoice_id.to_string(), "interest": 1.0, "interestAmount": 0,
                "link": "https://local.sandbox.starkbank.com/invoicelink/afdf94b770b0458a8440a335daf77c4c",
                "name": "Vitória Fidalgo", "nominalAmount": amount,
                "pdf": "https://invoice-h.sandbox.starkbank.com/pdf/afdf94b770b0458a8440a335daf77c4c",
                "status": "paid", "tags": [format!("request:bench-0-{n}"), "campaign:bench", "slot:0"], "taxId": "837.656.654-79",
                "transactionIds": [(6_547_649_079_541_760 + n).to_string()], "updated": "2026-11-27T10:08:59.927706+00:00"}}}});
    stark_client::python_json::to_string_sorted(&event)
}

/// `count` distinct credited webhooks signed with `key`; every other one carries the high-S
/// form of its signature, as about half of Stark's do.
pub fn signed_webhooks(key: &PrivateKey, count: u64) -> Vec<SignedWebhook> {
    (0..count)
        .map(|n| {
            let body = credited_body(n).into_bytes();
            let low = key.sign(&body);
            let low = low.normalize_s().unwrap_or(low);
            let signature = if n % 2 == 0 {
                signature_to_base64(&low)
            } else {
                signature_to_base64(&high_s_twin(&low))
            };
            SignedWebhook { body, signature }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_verify_and_alternate_high_and_low_s() {
        let key = PrivateKey::generate();
        let hooks = signed_webhooks(&key, 4);
        let public = key.public_key();
        for hook in &hooks {
            public.verify_base64(&hook.body, &hook.signature).unwrap();
            let event: serde_json::Value = serde_json::from_slice(&hook.body).unwrap();
            assert_eq!(event["event"]["log"]["type"], "credited");
        }
        let high = |h: &SignedWebhook| {
            let sig = stark_client::keys::parse_signature(&h.signature).unwrap();
            sig.normalize_s().is_some()
        };
        assert!(!high(&hooks[0]) && high(&hooks[1]));
        assert_ne!(hooks[0].body, hooks[2].body);
    }
}
