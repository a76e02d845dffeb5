//! The signed HTTP transport shared by every resource.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorBody, StarkError};
use crate::keys::PrivateKey;
use crate::webhook_verify::PublicKeyCache;

/// Who signs the requests: the `Access-Id` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessId {
    /// `project/{id}`: the usual integration user.
    Project(String),
    /// `organization/{id}`: only for creating or listing workspaces.
    Organization(String),
    /// `organization/{id}/workspace/{workspace}`: an organization acting on one workspace.
    OrganizationWorkspace {
        /// Organization id.
        organization: String,
        /// Workspace id.
        workspace: String,
    },
}

impl AccessId {
    /// Parses the header form (`project/123`, `organization/1/workspace/2`), checking that ids
    /// are decimal so that a typo is caught at start-up rather than as `invalidCredentials`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = text.split('/').collect();
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        match parts.as_slice() {
            ["project", id] if digits(id) => Ok(Self::Project((*id).to_owned())),
            ["organization", id] if digits(id) => Ok(Self::Organization((*id).to_owned())),
            ["organization", org, "workspace", ws] if digits(org) && digits(ws) => {
                Ok(Self::OrganizationWorkspace {
                    organization: (*org).to_owned(),
                    workspace: (*ws).to_owned(),
                })
            }
            _ => Err(Error::InvalidRequest(format!(
                "invalid Stark access id {text:?}: expected project/<digits>, organization/<digits> or organization/<digits>/workspace/<digits>"
            ))),
        }
    }
}

impl fmt::Display for AccessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessId::Project(id) => write!(f, "project/{id}"),
            AccessId::Organization(id) => write!(f, "organization/{id}"),
            AccessId::OrganizationWorkspace {
                organization,
                workspace,
            } => write!(f, "organization/{organization}/workspace/{workspace}"),
        }
    }
}

/// Where the API lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Environment {
    /// `https://sandbox.api.starkbank.com/v2`.
    Sandbox,
    /// `https://api.starkbank.com/v2`.
    Production,
    /// Any base URL ending in the API version, e.g. `http://127.0.0.1:8765/v2` for the local
    /// sandbox.
    Custom(String),
}

impl Environment {
    /// Parses `sandbox`, `production`, or an `http(s)://` URL.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text.trim() {
            "sandbox" => Ok(Self::Sandbox),
            "production" => Ok(Self::Production),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                url::Url::parse(url).map_err(|e| {
                    Error::InvalidRequest(format!("invalid Stark base URL {url:?}: {e}"))
                })?;
                Ok(Self::Custom(url.trim_end_matches('/').to_owned()))
            }
            other => Err(Error::InvalidRequest(format!(
                "invalid Stark environment {other:?}: expected sandbox, production or an http(s) URL"
            ))),
        }
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        match self {
            Environment::Sandbox => "https://sandbox.api.starkbank.com/v2",
            Environment::Production => "https://api.starkbank.com/v2",
            Environment::Custom(url) => url,
        }
    }
}

/// Language of Stark's error messages (`Accept-Language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Language {
    /// `en-US`.
    #[default]
    English,
    /// `pt-BR`.
    Portuguese,
}

impl Language {
    fn header(self) -> &'static str {
        match self {
            Language::English => "en-US",
            Language::Portuguese => "pt-BR",
        }
    }
}

/// Everything needed to build a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The signing identity.
    pub access_id: AccessId,
    /// The private key registered at Stark for `access_id`.
    pub private_key: PrivateKey,
    /// Sandbox, production or an explicit URL.
    pub environment: Environment,
    /// Error message language.
    pub language: Language,
    /// Whole-request timeout. A POST that hits it is an unknown outcome.
    pub timeout: Duration,
    /// Connect timeout; a failure here means the request was never sent.
    pub connect_timeout: Duration,
    /// How many times a GET is retried after a transient failure (POST, PATCH and DELETE never
    /// are: their caller decides after looking the object up).
    pub get_retries: u32,
    /// First backoff delay for GET retries; doubles each time.
    pub retry_backoff: Duration,
    /// The longest a GET waits before retrying a throttled answer (408, 425, 429) that carried
    /// `Retry-After`. A longer wait is not slept through: the error is returned at once, with
    /// [`Error::retry_after`] saying when to come back, so that a request handler never hangs
    /// for minutes on a server's say-so. Default 30 s.
    pub max_retry_after: Duration,
    /// Minimum time between two webhook public-key refreshes, so that a flood of forged
    /// signatures cannot make us hammer `GET /v2/public-key`.
    pub public_key_min_refresh: Duration,
}

impl ClientConfig {
    /// A config with the usual defaults (10 s timeout, 2 GET retries, `Retry-After` honoured up
    /// to 30 s).
    pub fn new(access_id: AccessId, private_key: PrivateKey, environment: Environment) -> Self {
        Self {
            access_id,
            private_key,
            environment,
            language: Language::English,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            get_retries: 2,
            retry_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(30),
            public_key_min_refresh: Duration::from_secs(10),
        }
    }
}

/// A Stark Bank API client. Cheap to clone; clones share the connection pool and the webhook
/// public-key cache.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: ClientConfig,
    http: reqwest::Client,
    access_id: String,
    pub(crate) public_keys: PublicKeyCache,
}

/// The signed headers of one request; public so that tests and the sandbox can check them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `Access-Id`.
    pub access_id: String,
    /// `Access-Time` (integer seconds, as the Node, Go and Elixir SDKs send).
    pub access_time: String,
    /// `Access-Signature`: base64 DER over `{id}:{time}:{body}`.
    pub access_signature: String,
}

/// Signs `{access_id}:{access_time}:{body}` the way Stark Bank checks it.
pub fn sign_request(
    key: &PrivateKey,
    access_id: &str,
    access_time: &str,
    body: &str,
) -> SignedHeaders {
    let message = format!("{access_id}:{access_time}:{body}");
    SignedHeaders {
        access_id: access_id.to_owned(),
        access_time: access_time.to_owned(),
        access_signature: key.sign_base64(message.as_bytes()),
    }
}

const USER_AGENT: &str = concat!("Rust-SDK-bank-stark-client-", env!("CARGO_PKG_VERSION"));

impl Client {
    /// Builds a client; fails only if the TLS stack cannot initialize.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| Error::InvalidRequest(format!("cannot build the HTTP client: {e}")))?;
        let access_id = config.access_id.to_string();
        let public_keys = PublicKeyCache::new(config.public_key_min_refresh);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                access_id,
                public_keys,
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// GET `path` with `query`, retrying transient failures with exponential backoff. A
    /// throttled answer with `Retry-After` waits what the server asked instead (if that is
    /// within [`ClientConfig::max_retry_after`]; otherwise the error is returned at once).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, Error> {
        let config = &self.inner.config;
        let mut attempt = 0;
        loop {
            let err = match self.send(Method::GET, path, query, None).await {
                Err(err) if err.is_transient() && attempt < config.get_retries => err,
                other => return other,
            };
            let backoff = config.retry_backoff * 2u32.saturating_pow(attempt);
            let delay = match err.retry_after() {
                Some(asked) if asked > config.max_retry_after => return Err(err),
                Some(asked) => asked.max(backoff),
                None => backoff,
            };
            tracing::warn!(event = "stark_get_retry", path, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying Stark GET");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// POST a JSON body once. Never retried here.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Error> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    /// PATCH a JSON body once.
    pub async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Error> {
        self.send(Method::PATCH, path, &[], Some(body)).await
    }

    /// DELETE once (signed with an empty body).
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        self.send(Method::DELETE, path, &[], None).await
    }

    /// Signs and sends one request. The body is serialized exactly once; those same bytes are
    /// signed and sent.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, Error> {
        let url = self.url(path, query)?;
        let body_text = match body {
            Some(value) => serde_json::to_string(value)
                .map_err(|e| Error::InvalidRequest(format!("cannot serialize body: {e}")))?,
            None => String::new(),
        };
        let access_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let signed = sign_request(
            &self.inner.config.private_key,
            &self.inner.access_id,
            &access_time,
            &body_text,
        );
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header("Access-Id", signed.access_id)
            .header("Access-Time", signed.access_time)
            .header("Access-Signature", signed.access_signature)
            .header("Content-Type", "application/json")
            .header("Accept-Language", self.inner.config.language.header());
        if body.is_some() {
            request = request.body(body_text);
        }
        let started = std::time::Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Err(classify_transport(&method, &url, err)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, SystemTime::now()));
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => {
                return Err(Error::UnknownOutcome {
                    method: method.to_string(),
                    url: redact(&url),
                    detail: format!("HTTP {status} but the body could not be read: {err}"),
                });
            }
        };
        tracing::debug!(event = "stark_call", method = %method, path, status, elapsed_ms = started.elapsed().as_millis() as u64, "Stark call");
        match status {
            200 => serde_json::from_slice(&bytes).map_err(|e| Error::UnknownOutcome {
                method: method.to_string(),
                url: redact(&url),
                detail: format!("HTTP 200 with an unexpected body: {e}"),
            }),
            400..=599 => Err(Error::from_status(
                status,
                parse_errors(&bytes),
                retry_after,
            )),
            _ => Err(Error::UnknownOutcome {
                method: method.to_string(),
                url: redact(&url),
                detail: format!("HTTP {status}: Stark answers successes with 200 only"),
            }),
        }
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<reqwest::Url, Error> {
        let base = self.inner.config.environment.base_url();
        let mut url = reqwest::Url::parse(&format!("{base}/{}", path.trim_start_matches('/')))
            .map_err(|e| Error::InvalidRequest(format!("invalid URL for path {path:?}: {e}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                pairs.append_pair(key, value);
            }
        }
        Ok(url)
    }
}

/// Parses a `Retry-After` value (RFC 9110 section 10.2.3): delta-seconds, or an HTTP-date, which
/// is turned into the wait from `now` (zero if it is already past). Anything else is ignored, as
/// if the header were absent.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // A huge number is still "a long time": saturate rather than ignore it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_errors(bytes: &[u8]) -> Vec<StarkError> {
    serde_json::from_slice::<ErrorBody>(bytes)
        .map(|body| body.errors)
        .unwrap_or_default()
}

/// Connect and DNS failures happen before any byte is sent; everything else may have reached
/// Stark.
fn classify_transport(method: &Method, url: &reqwest::Url, err: reqwest::Error) -> Error {
    if err.is_connect() || err.is_builder() {
        Error::NotSent {
            url: redact(url),
            source: err,
        }
    } else {
        Error::UnknownOutcome {
            method: method.to_string(),
            url: redact(url),
            detail: if err.is_timeout() {
                "timed out waiting for the answer".to_owned()
            } else {
                format!("the connection broke: {err}")
            },
        }
    }
}

/// URLs carry no secrets, but cursors can be long; keep logs readable.
fn redact(url: &reqwest::Url) -> String {
    let mut text = url.to_string();
    if text.len() > 300 {
        text.truncate(300);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_delta_seconds_and_http_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(parse_retry_after("120", now), secs(120));
        assert_eq!(parse_retry_after(" 0 ", now), secs(0));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            secs(u64::MAX)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            secs(30)
        );
        // The obsolete forms HTTP-date still allows.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now),
            secs(60)
        );
        assert_eq!(parse_retry_after("Wed Oct 21 07:28:05 2015", now), secs(5));
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now),
            secs(0)
        );
        for bad in ["", "-1", "1.5", "soon", "Wed, 21 Oct 2015"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }
}
