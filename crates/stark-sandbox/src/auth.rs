//! Request authentication, as Stark checks it (docs/stark-api.md, "Authentication and request signing").
//!
//! The signed message is `{Access-Id}:{Access-Time}:{raw body}` with the time header string
//! exactly as received (Python sends `1795811685.0121124`, the others integer seconds) and the
//! body bytes exactly as received, never re-serialized. Signatures are normalized to low-S
//! before verifying, because the Node SDK and old Python SDKs send high-S about half the time and
//! Stark accepts them.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use stark_client::PublicKey;

use crate::error::{ApiError, codes};

/// Stark's message for a signature that does not verify (quoted from the Go and Elixir docs).
const BAD_SIGNATURE: &str = "Provided digital signature in the header Access-Signature does not check out. See https://docs.api.starkbank.com/#auth for details.";

/// Checks that a project id is what Stark issues: decimal digits.
pub fn check_project_id(id: &str) -> Result<(), String> {
    if !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!("project id {id:?} must be decimal digits"))
    }
}

/// Registered projects: project id → the public key uploaded for it.
pub type Projects = HashMap<String, PublicKey>;

/// Verifies the `Access-*` headers of one request and returns the project id.
///
/// Header lookup is case-insensitive (`HeaderMap` lowercases names): the Node SDK sends
/// `Access-signature`.
pub fn authenticate(
    projects: &Projects,
    headers: &HeaderMap,
    body: &[u8],
    skew: Duration,
) -> Result<String, ApiError> {
    let header = |name: &str| -> Result<&str, ApiError> {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::bad(
                    codes::INVALID_CREDENTIALS,
                    format!("Missing or unreadable header {name}."),
                )
            })
    };
    let access_id = header("Access-Id")?;
    let project = access_id
        .strip_prefix("project/")
        .filter(|id| check_project_id(id).is_ok())
        .ok_or_else(|| {
            ApiError::bad(
                codes::INVALID_CREDENTIALS,
                format!("Access-Id {access_id:?} is not of the form project/<id>."),
            )
        })?;
    let Some(key) = projects.get(project) else {
        return Err(ApiError::bad(
            codes::INVALID_PROJECT,
            format!("Project {project} does not exist or is not registered in this sandbox."),
        ));
    };
    let access_time = header("Access-Time")?;
    check_time(access_time, skew)?;
    let signature = header("Access-Signature")?;
    let mut message = Vec::with_capacity(access_id.len() + access_time.len() + body.len() + 2);
    message.extend_from_slice(access_id.as_bytes());
    message.push(b':');
    message.extend_from_slice(access_time.as_bytes());
    message.push(b':');
    message.extend_from_slice(body);
    // `verify_base64` parses strict DER and normalizes S before verifying.
    key.verify_base64(&message, signature)
        .map_err(|_| ApiError::bad(codes::INVALID_CREDENTIALS, BAD_SIGNATURE))?;
    Ok(project.to_owned())
}

/// `Access-Time` is decimal seconds since the epoch, integer or fractional; it must be within
/// `skew` of this host's wall clock (not the sandbox clock: clients sign with their own).
fn check_time(text: &str, skew: Duration) -> Result<(), ApiError> {
    let seconds: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .ok_or_else(|| {
            ApiError::bad(
                codes::INVALID_CREDENTIALS,
                format!("Access-Time {text:?} is not a number of seconds since the epoch."),
            )
        })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    if (now - seconds).abs() > skew.as_secs_f64() {
        return Err(ApiError::bad(
            codes::INVALID_CREDENTIALS,
            format!(
                "Access-Time {text} is more than {} seconds away from the server time; check the client clock.",
                skew.as_secs()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stark_client::PrivateKey;
    use stark_client::keys::{high_s_twin, signature_to_base64};

    fn headers(id: &str, time: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("access-id", id.parse().unwrap());
        h.insert("ACCESS-TIME", time.parse().unwrap());
        h.insert("Access-signature", sig.parse().unwrap());
        h
    }

    fn now() -> String {
        format!(
            "{:.7}",
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        )
    }

    #[test]
    fn accepts_low_and_high_s_and_refuses_the_rest() {
        let key = PrivateKey::generate();
        let projects: Projects = [("5656565656565656".to_owned(), key.public_key())].into();
        let skew = Duration::from_secs(60);
        let t = now();
        let body = br#"{"a": "Jo\u00e3o"}"#;
        let msg = [
            b"project/5656565656565656:".as_slice(),
            t.as_bytes(),
            b":",
            body,
        ]
        .concat();
        let low = key.sign(&msg);
        let high = signature_to_base64(&high_s_twin(&low));
        let low = signature_to_base64(&low);
        let id = "project/5656565656565656";
        assert_eq!(
            authenticate(&projects, &headers(id, &t, &low), body, skew).unwrap(),
            "5656565656565656"
        );
        assert!(authenticate(&projects, &headers(id, &t, &high), body, skew).is_ok());
        let err = authenticate(&projects, &headers(id, &t, &low), b"{}", skew).unwrap_err();
        assert_eq!(err.errors[0].code, "invalidCredentials");
        let err = authenticate(&projects, &headers("project/1", &t, &low), body, skew).unwrap_err();
        assert_eq!(err.errors[0].code, "invalidProject");
        let err = authenticate(&projects, &headers(id, "1000", &low), body, skew).unwrap_err();
        assert_eq!(err.errors[0].code, "invalidCredentials");
        let err = authenticate(
            &projects,
            &headers(id, &t, "bm90IGEgc2lnbmF0dXJl"),
            body,
            skew,
        )
        .unwrap_err();
        assert_eq!(err.errors[0].code, "invalidCredentials");
        assert!(authenticate(&projects, &HeaderMap::new(), body, skew).is_err());
    }
}
