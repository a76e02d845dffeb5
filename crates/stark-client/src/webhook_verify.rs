//! Verifying the `Digital-Signature` of a webhook Stark Bank posted to us.
//!
//! The steps follow the Python SDK's `event.parse`, which is the reference: decode the signature
//! (no I/O if it is malformed), verify over the raw bytes, then over Python's sorted-keys
//! re-serialization, and if both fail refresh Stark's public key once (it may have rotated) and
//! try again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{Mutex, RwLock};

use crate::client::Client;
use crate::error::Error;
use crate::event::{Event, RawEvent};
use crate::keys::{PublicKey, SignatureError, parse_signature};
use crate::python_json;

/// Why a webhook was not accepted. Each reason maps to one HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The header is missing, not base64, or not DER: answer 401.
    #[error("malformed Digital-Signature: {0}")]
    MalformedSignature(String),
    /// The signature is well formed but does not match the body under Stark's current key, even
    /// after refreshing the key: answer 401.
    #[error("the Digital-Signature does not match the body and Stark's public key")]
    SignatureMismatch,
    /// Stark's public key could not be fetched: an infrastructure failure, answer 5xx so that
    /// Stark retries the delivery.
    #[error("Stark's public key is unavailable: {0}")]
    PublicKeyUnavailable(#[source] Error),
    /// The signature is valid but the body is not an event we can read: answer 400.
    #[error("the signed body is not a valid event: {0}")]
    InvalidEvent(String),
}

/// The cached Stark public key, shared by all clones of a [`Client`].
#[derive(Debug)]
pub(crate) struct PublicKeyCache {
    current: RwLock<Option<CachedKey>>,
    /// Serializes refreshes so that a burst of failures triggers one fetch, not one per request.
    refresh: Mutex<()>,
    min_refresh: Duration,
}

#[derive(Debug, Clone)]
struct CachedKey {
    key: Arc<PublicKey>,
    fetched: Instant,
    generation: u64,
}

impl PublicKeyCache {
    pub(crate) fn new(min_refresh: Duration) -> Self {
        Self {
            current: RwLock::new(None),
            refresh: Mutex::new(()),
            min_refresh,
        }
    }
}

/// The message Python's SDK falls back to: `json.dumps(json.loads(content), sort_keys=True)`.
fn sorted_reserialization(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(python_json::to_string_sorted(&value))
}

/// Verifies over the raw bytes, then over the sorted-keys re-serialization. `sorted` is computed
/// on first need and kept for a retry with a refreshed key: a valid raw signature (every real
/// delivery) never pays for parsing and re-serializing the body.
fn matches(
    key: &PublicKey,
    body: &[u8],
    sorted: &mut Option<Option<String>>,
    signature: &k256::ecdsa::Signature,
) -> bool {
    if key.verify(body, signature).is_ok() {
        return true;
    }
    sorted
        .get_or_insert_with(|| sorted_reserialization(body))
        .as_deref()
        .is_some_and(|s| s.as_bytes() != body && key.verify(s.as_bytes(), signature).is_ok())
}

impl Client {
    /// Verifies a webhook body against its `Digital-Signature` header and returns the event.
    pub async fn verify_webhook(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<Event, VerifyError> {
        let signature = signature
            .ok_or_else(|| VerifyError::MalformedSignature("the header is missing".into()))?;
        let signature = parse_signature(signature).map_err(|e| match e {
            SignatureError::Malformed(m) => VerifyError::MalformedSignature(m),
            SignatureError::Mismatch => VerifyError::SignatureMismatch,
        })?;
        let mut sorted = None;
        let cached = self.stark_public_key(None).await?;
        if !matches(&cached.key, body, &mut sorted, &signature) {
            let refreshed = self.stark_public_key(Some(&cached)).await?;
            if refreshed.generation == cached.generation
                || !matches(&refreshed.key, body, &mut sorted, &signature)
            {
                return Err(VerifyError::SignatureMismatch);
            }
        }
        parse_event(body)
    }

    /// Returns the cached key, or fetches it. With `stale`, the caller saw that key fail: fetch
    /// a new one unless another task already did, or the last fetch is too recent.
    async fn stark_public_key(&self, stale: Option<&CachedKey>) -> Result<CachedKey, VerifyError> {
        let cache = &self.inner.public_keys;
        if stale.is_none()
            && let Some(current) = cache.current.read().await.clone()
        {
            return Ok(current);
        }
        let _guard = cache.refresh.lock().await;
        let current = cache.current.read().await.clone();
        match (&current, stale) {
            (Some(current), None) => return Ok(current.clone()),
            (Some(current), Some(stale)) if current.generation != stale.generation => {
                return Ok(current.clone());
            }
            (Some(current), Some(_)) if current.fetched.elapsed() < cache.min_refresh => {
                tracing::warn!(
                    event = "stark_public_key_refresh_skipped",
                    "signature mismatch, but Stark's key was fetched moments ago"
                );
                return Ok(current.clone());
            }
            _ => {}
        }
        let entries = self
            .list_public_keys(1)
            .await
            .map_err(VerifyError::PublicKeyUnavailable)?;
        let entry = entries.first().ok_or_else(|| {
            VerifyError::PublicKeyUnavailable(Error::UnknownOutcome {
                method: "GET".into(),
                url: "public-key".into(),
                detail: "Stark listed no public key".into(),
            })
        })?;
        let key = PublicKey::from_pem(&entry.content).map_err(|e| {
            VerifyError::PublicKeyUnavailable(Error::UnknownOutcome {
                method: "GET".into(),
                url: "public-key".into(),
                detail: format!("Stark's public key does not parse: {e}"),
            })
        })?;
        let fresh = CachedKey {
            key: Arc::new(key),
            fetched: Instant::now(),
            generation: current.map_or(1, |c| c.generation + 1),
        };
        tracing::info!(
            event = "stark_public_key_fetched",
            generation = fresh.generation,
            "fetched Stark's webhook public key"
        );
        *cache.current.write().await = Some(fresh.clone());
        Ok(fresh)
    }
}

/// Parses `{"event": {...}}`.
fn parse_event(body: &[u8]) -> Result<Event, VerifyError> {
    #[derive(Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        event: RawEvent<&'a RawValue>,
    }
    serde_json::from_slice::<Envelope>(body)
        .map_err(|e| e.to_string())
        .and_then(|envelope| envelope.event.into_event())
        .map_err(VerifyError::InvalidEvent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    /// A webhook body is read through borrowed raw logs, a listing through values: both must
    /// give the same event, and the same refusals.
    #[test]
    fn a_webhook_body_parses_like_a_listed_event() {
        let events = [
            r#"{"id": "1", "created": "2024-02-29T05:00:12+00:00", "subscription": "invoice", "workspaceId": "6010044957065216",
                "log": {"id": "2", "created": "2024-02-29T05:00:11+00:00", "type": "credited", "errors": [],
                  "invoice": {"id": "3", "amount": 1000, "fee": 50, "status": "paid", "taxId": "012.345.678-90", "name": "Ana",
                    "tags": ["request:r1"], "descriptions": [], "discounts": [], "created": "x", "updated": "x"}}}"#,
            r#"{"id": "4", "created": "2024-02-29T05:00:12+00:00", "subscription": "deposit", "log": {"id": "5", "deposit": {"amount": 7}}}"#,
        ];
        for json in events {
            let listed: Event = serde_json::from_str(json).unwrap();
            let body = format!(r#"{{"event": {json}}}"#);
            assert_eq!(parse_event(body.as_bytes()).unwrap(), listed, "{json}");
        }
        assert!(matches!(
            parse_event(br#"{"event": {"id": "4", "created": "x", "subscription": "deposit", "log": {"id": "5"}}}"#)
                .unwrap()
                .log,
            crate::EventLog::Other(_)
        ));

        let broken = [
            // An invoice event whose log is not an invoice log is refused, never `Other`.
            r#"{"event": {"id": "1", "created": "x", "subscription": "invoice", "log": {"id": "2"}}}"#,
            r#"{"event": {"id": "1", "created": "x", "subscription": "transfer", "log": []}}"#,
            r#"{"event": {"id": "1", "created": "x", "log": {}}}"#,
            r#"{"event": {"id": "1", "created": "x", "subscription": "deposit", "log": {"id": "5"}"#,
        ];
        for body in broken {
            let listed = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| serde_json::from_value::<Event>(v["event"].clone()).ok());
            assert!(listed.is_none(), "{body}");
            assert!(
                matches!(
                    parse_event(body.as_bytes()),
                    Err(VerifyError::InvalidEvent(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn the_sorted_fallback_runs_only_when_the_raw_bytes_fail() {
        let key = PrivateKey::generate();
        let sorted_body = r#"{"event": {"id": "1", "log": {}}}"#;
        let compact_body = br#"{"event":{"id":"1","log":{}}}"#;
        let signature = key.sign(sorted_body.as_bytes());

        // A valid raw signature: the body is never re-serialized.
        let mut sorted = None;
        assert!(matches(
            &key.public_key(),
            sorted_body.as_bytes(),
            &mut sorted,
            &signature
        ));
        assert_eq!(sorted, None);

        // Signed over the sorted form, delivered compact: computed once, then reused.
        assert!(matches(
            &key.public_key(),
            compact_body,
            &mut sorted,
            &signature
        ));
        assert_eq!(sorted, Some(Some(sorted_body.to_owned())));
        let other = PrivateKey::generate().public_key();
        assert!(!matches(&other, compact_body, &mut sorted, &signature));
    }
}
