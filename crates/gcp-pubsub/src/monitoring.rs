//! What waits in a subscription, as Cloud Monitoring counts it.
//!
//! Pub/Sub has no "how many messages are in this subscription" call. A peek
//! ([`crate::ops::count_undelivered`]) pulls and gives back what it got: it sees at most what
//! one pull returns, misses messages leased to someone else, and delays the ones it touched.
//! Cloud Monitoring's subscription metrics are Pub/Sub's own bookkeeping, so in production
//! they are the authoritative count:
//!
//! - [`UNDELIVERED_METRIC`] (`num_undelivered_messages`): messages not yet acknowledged;
//! - [`OLDEST_UNACKED_AGE_METRIC`] (`oldest_unacked_message_age`): seconds the oldest of them
//!   has waited, what an on-call wants next.
//!
//! Pub/Sub samples them every minute and Monitoring shows a sample up to a few minutes later,
//! so a reading lags the subscription by that much. [`Monitoring::backlog`] lists each metric
//! over the last [`DEFAULT_WINDOW`] with `projects.timeSeries.list` (REST, v3) and keeps the
//! newest point. Monitoring writes no point for a subscription without activity: no point in
//! the window is read as **0, with no sample** ([`Backlog::sampled_at`] is `None`), and callers
//! say "no data" rather than pretend to a fresh count.
//!
//! The emulator has no metrics; there the peek remains the best effort.
//!
//! Authentication is Application Default Credentials (`google-cloud-auth`), like every other
//! client of this crate in production; the caller needs `monitoring.timeSeries.list` on the
//! project, i.e. `roles/monitoring.viewer` (Owner, Editor and Viewer include it). The endpoint
//! is an argument ([`ENDPOINT_VAR`] by convention) so that tests point it at a local server.
//!
//! Every answer is treated as untrusted input: a bad status, an oversized or malformed body,
//! a point of another subscription or a value that is not a non-negative integer is a
//! [`MonitoringError`] naming the metric and subscription, never a panic or a guessed 0.

use std::collections::BTreeMap;
use std::time::Duration;

use google_cloud_auth::credentials::{Builder as AdcBuilder, CacheableResource, Credentials};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The variable that overrides [`DEFAULT_ENDPOINT`] (a fake server in tests, a private
/// endpoint); read by the callers, not by this module.
pub const ENDPOINT_VAR: &str = "MONITORING_ENDPOINT";
/// Cloud Monitoring's public endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://monitoring.googleapis.com";
/// Messages of a subscription not acknowledged yet (a gauge, int64).
pub const UNDELIVERED_METRIC: &str = "pubsub.googleapis.com/subscription/num_undelivered_messages";
/// Age in seconds of the oldest unacknowledged message of a subscription (a gauge, int64).
pub const OLDEST_UNACKED_AGE_METRIC: &str =
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age";
/// The role that grants `monitoring.timeSeries.list`, named in the error of a 403.
pub const VIEWER_ROLE: &str = "roles/monitoring.viewer";
/// How far back a reading looks. Pub/Sub samples every 60 s and a sample becomes visible up
/// to about 2 minutes later; 10 minutes holds several samples of a busy subscription, so an
/// empty window means an idle one rather than a late one.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// The token scope. `cloud-platform` rather than `monitoring.read`: the credentials of
/// `gcloud auth application-default login` are granted `cloud-platform`, and IAM (the role
/// above) is what limits what the caller may read.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A request, connection included, gives up after this long: `status` is interactive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// An answer is a handful of points; anything larger is not the answer we asked for.
const MAX_BODY_BYTES: usize = 1 << 20;
/// How much of a server's message an error quotes.
const MAX_QUOTED_CHARS: usize = 300;

/// Why a reading failed. [`MonitoringError::is_transient`] tells "retry later" from "fix the
/// configuration or the permissions", which the operator CLI turns into its exit code.
#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    /// The endpoint is not an `http(s)://` URL.
    #[error("invalid Cloud Monitoring endpoint {endpoint:?} ({ENDPOINT_VAR}): {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A subscription id that Pub/Sub would not accept, refused before it reaches a filter.
    #[error("invalid subscription id {subscription:?}: expected letters, digits and -_.~+%")]
    InvalidSubscription {
        /// The id as given.
        subscription: String,
    },
    /// No credentials, or no token from them. Never transient: without an ADC file the auth
    /// library falls back to the metadata server, which exists only on Google Cloud, so on an
    /// operator's machine this nearly always means "not logged in" (the library calls that
    /// failure transient, and "retry later" would be the wrong advice).
    #[error(
        "no token from Application Default Credentials for Cloud Monitoring ({reason}): off \
         Google Cloud run `gcloud auth application-default login`; on it, check the service \
         account"
    )]
    Credentials {
        /// The auth library's message.
        reason: String,
    },
    /// Monitoring refused the credentials (401) or the permission (403).
    #[error(
        "Cloud Monitoring refused to read {metric} of {subscription} in project {project} \
         (HTTP {status}: {message}): {hint}"
    )]
    Refused {
        /// 401 or 403.
        status: u16,
        /// The metric type.
        metric: &'static str,
        /// The subscription id.
        subscription: String,
        /// The project.
        project: String,
        /// Monitoring's own message, shortened.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// Any other non-2xx answer.
    #[error(
        "Cloud Monitoring answered HTTP {status} reading {metric} of {subscription}: {message}"
    )]
    Http {
        /// The status code.
        status: u16,
        /// The metric type.
        metric: &'static str,
        /// The subscription id.
        subscription: String,
        /// Monitoring's own message, shortened.
        message: String,
    },
    /// Monitoring could not be reached, or the answer broke off.
    #[error("cannot reach Cloud Monitoring at {endpoint}: {reason}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// The transport's message.
        reason: String,
    },
    /// A 2xx answer that is not a time series list of the subscription's metric.
    #[error("Cloud Monitoring's answer for {metric} of {subscription} is malformed: {reason}")]
    Malformed {
        /// The metric type.
        metric: &'static str,
        /// The subscription id.
        subscription: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl MonitoringError {
    /// Whether the same call may succeed later: transport failures, timeouts, throttling,
    /// 5xx and malformed answers (Monitoring failing, not the request). Refusals, bad
    /// arguments and missing credentials need someone to fix them.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Malformed { .. } => true,
            Self::Http { status, .. } => matches!(status, 408 | 425 | 429) || *status >= 500,
            Self::InvalidEndpoint { .. }
            | Self::InvalidSubscription { .. }
            | Self::Credentials { .. }
            | Self::Refused { .. } => false,
        }
    }
}

/// The newest point of a metric in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The value (never negative: both metrics are counts).
    pub value: u64,
    /// The end of the point's interval: when Pub/Sub sampled it.
    pub sampled_at: OffsetDateTime,
}

/// What waits in one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// The subscription id.
    pub subscription: String,
    /// Undelivered messages; 0 when Monitoring had no point in the window.
    pub undelivered: u64,
    /// When the count was sampled; `None` when Monitoring had no point in the window
    /// (an idle subscription), in which case `undelivered` is 0 by that reading.
    pub sampled_at: Option<OffsetDateTime>,
    /// How long the oldest unacknowledged message has waited, when Monitoring had a point.
    pub oldest_unacked_age: Option<Duration>,
}

/// A Cloud Monitoring reader for one project's subscription metrics.
#[derive(Debug, Clone)]
pub struct Monitoring {
    project: String,
    endpoint: reqwest::Url,
    credentials: Credentials,
    http: reqwest::Client,
    window: Duration,
}

impl Monitoring {
    /// A reader of `project`'s metrics at `endpoint` (`https://monitoring.googleapis.com`, or a
    /// test server), authenticated by `credentials`.
    pub fn new(
        project: impl Into<String>,
        endpoint: &str,
        credentials: Credentials,
    ) -> Result<Self, MonitoringError> {
        let url = parse_endpoint(endpoint)?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| MonitoringError::InvalidEndpoint {
                endpoint: endpoint.to_owned(),
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self {
            project: project.into(),
            endpoint: url,
            credentials,
            http,
            window: DEFAULT_WINDOW,
        })
    }

    /// A reader authenticated with Application Default Credentials (the Cloud Run service
    /// account, or an operator's `gcloud auth application-default login`); `endpoint` `None`
    /// means [`DEFAULT_ENDPOINT`].
    pub fn with_adc(
        project: impl Into<String>,
        endpoint: Option<&str>,
    ) -> Result<Self, MonitoringError> {
        let endpoint = endpoint
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .unwrap_or(DEFAULT_ENDPOINT);
        // A bad endpoint is reported as such, whatever the credentials.
        parse_endpoint(endpoint)?;
        let credentials = AdcBuilder::default()
            .with_scopes([SCOPE])
            .build()
            .map_err(|e| MonitoringError::Credentials {
                reason: e.to_string(),
            })?;
        Self::new(project, endpoint, credentials)
    }

    /// A reader that sends no credentials: for a local fake of Monitoring (tests, drills) or
    /// a proxy that adds them itself.
    pub fn unauthenticated(
        project: impl Into<String>,
        endpoint: &str,
    ) -> Result<Self, MonitoringError> {
        let credentials = google_cloud_auth::credentials::anonymous::Builder::new().build();
        Self::new(project, endpoint, credentials)
    }

    /// The same reader looking back `window` instead of [`DEFAULT_WINDOW`].
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The project whose metrics are read.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// How far back a reading looks.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The endpoint, for messages.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str().trim_end_matches('/')
    }

    /// What waits in `subscription` (a short id, e.g. `paid_invoices-dead-letter`): both
    /// metrics, read concurrently; either failing fails the reading.
    pub async fn backlog(&self, subscription: &str) -> Result<Backlog, MonitoringError> {
        let (undelivered, age) = futures::try_join!(
            self.latest(UNDELIVERED_METRIC, subscription),
            self.latest(OLDEST_UNACKED_AGE_METRIC, subscription),
        )?;
        Ok(Backlog {
            subscription: subscription.to_owned(),
            undelivered: undelivered.map_or(0, |p| p.value),
            sampled_at: undelivered.map(|p| p.sampled_at),
            oldest_unacked_age: age.map(|p| Duration::from_secs(p.value)),
        })
    }

    /// The newest point of `metric` for `subscription` within the window, `None` when there
    /// is none.
    pub async fn latest(
        &self,
        metric: &'static str,
        subscription: &str,
    ) -> Result<Option<Point>, MonitoringError> {
        if !valid_subscription_id(subscription) {
            return Err(MonitoringError::InvalidSubscription {
                subscription: subscription.to_owned(),
            });
        }
        let end = OffsetDateTime::now_utc();
        let start = end - self.window;
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| MonitoringError::InvalidEndpoint {
                endpoint: self.endpoint().to_owned(),
                reason: "cannot be a base URL".into(),
            })?
            .pop_if_empty()
            .extend(["v3", "projects", &self.project, "timeSeries"]);
        url.query_pairs_mut()
            .append_pair("filter", &filter(metric, subscription))
            .append_pair("interval.startTime", &rfc3339(start))
            .append_pair("interval.endTime", &rfc3339(end))
            .append_pair("view", "FULL");

        let headers = match self.credentials.headers(Default::default()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => {
                return Err(MonitoringError::Credentials {
                    reason: "the credentials returned no headers".into(),
                });
            }
            Err(e) => {
                return Err(MonitoringError::Credentials {
                    reason: e.to_string(),
                });
            }
        };
        let transport = |e: &dyn std::fmt::Display| MonitoringError::Transport {
            endpoint: self.endpoint().to_owned(),
            reason: e.to_string(),
        };
        let response = self
            .http
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| transport(&error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = read_body(response).await.map_err(|e| transport(&e))?;
        let too_large = || format!("the answer exceeds {MAX_BODY_BYTES} bytes");
        if !(200..300).contains(&status) {
            let message = body.as_deref().map_or_else(too_large, google_message);
            return Err(match status {
                401 => MonitoringError::Refused {
                    status,
                    metric,
                    subscription: subscription.to_owned(),
                    project: self.project.clone(),
                    message,
                    hint: "the credentials were not accepted; run `gcloud auth \
                           application-default login` again",
                },
                403 => MonitoringError::Refused {
                    status,
                    metric,
                    subscription: subscription.to_owned(),
                    project: self.project.clone(),
                    message,
                    hint: "the caller needs roles/monitoring.viewer on the project (or the \
                           Monitoring API enabled, if the message says it is disabled)",
                },
                _ => MonitoringError::Http {
                    status,
                    metric,
                    subscription: subscription.to_owned(),
                    message,
                },
            });
        }
        body.ok_or_else(too_large)
            .and_then(|body| newest_point(&body, subscription))
            .map_err(|reason| MonitoringError::Malformed {
                metric,
                subscription: subscription.to_owned(),
                reason,
            })
    }
}

/// An `http(s)://host[:port][/path]` base URL, without query or fragment.
fn parse_endpoint(endpoint: &str) -> Result<reqwest::Url, MonitoringError> {
    let invalid = |reason: String| MonitoringError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid("expected http:// or https://".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("expected no query or fragment".into()));
    }
    Ok(url)
}

/// `metric.type = "…" AND resource.type = "pubsub_subscription" AND
/// resource.labels.subscription_id = "…"`: exactly one metric, as `timeSeries.list` requires,
/// of the one subscription (the project is in the URL). `subscription` is a validated id, so
/// it cannot close the quotes.
fn filter(metric: &str, subscription: &str) -> String {
    format!(
        "metric.type = \"{metric}\" AND resource.type = \"pubsub_subscription\" \
         AND resource.labels.subscription_id = \"{subscription}\""
    )
}

/// Pub/Sub's rule for subscription ids: 3 to 255 characters, a letter first, then letters,
/// digits and `-_.~+%`. Anything else (a quote above all) never reaches a filter.
fn valid_subscription_id(id: &str) -> bool {
    (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

fn rfc3339(instant: OffsetDateTime) -> String {
    instant
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The error and its sources on one line: reqwest's top-level message alone ("error sending
/// request") does not say that the connection was refused.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The body, up to [`MAX_BODY_BYTES`]; `Ok(None)` when it is longer (then the rest is not
/// read); `Err` when it broke off.
async fn read_body(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Google's `{"error": {"message": …}}`, or the start of whatever else the body is, on one
/// line and shortened: it ends up in a terminal.
fn google_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        message: String,
    }
    let text = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) => envelope.error.message,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let text = shorten(&text);
    if text.is_empty() {
        "(no message)".to_owned()
    } else {
        text
    }
}

/// At most [`MAX_QUOTED_CHARS`] characters, control characters as spaces.
fn shorten(text: &str) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .take(MAX_QUOTED_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > MAX_QUOTED_CHARS {
        out.push('…');
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    #[serde(default)]
    time_series: Option<Vec<Series>>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    points: Option<Vec<WirePoint>>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct WirePoint {
    interval: Interval,
    value: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Interval {
    end_time: String,
}

/// The newest point of the answer, whatever order its series and points come in (Monitoring
/// sends newest first, which nothing here relies on).
fn newest_point(body: &[u8], subscription: &str) -> Result<Option<Point>, String> {
    let answer: ListResponse = serde_json::from_slice(body)
        .map_err(|e| shorten(&format!("not a timeSeries list: {e}")))?;
    let mut newest: Option<Point> = None;
    for series in answer.time_series.unwrap_or_default() {
        let labelled = series
            .resource
            .as_ref()
            .and_then(|r| r.labels.get("subscription_id"));
        if let Some(other) = labelled.filter(|id| id.as_str() != subscription) {
            return Err(shorten(&format!(
                "a series of subscription {other:?}, which the filter excludes"
            )));
        }
        for point in series.points.unwrap_or_default() {
            let point = parse_point(&point)?;
            if newest.is_none_or(|n| point.sampled_at > n.sampled_at) {
                newest = Some(point);
            }
        }
    }
    Ok(newest)
}

/// One point: its interval's end (RFC 3339) and its `int64Value`, which Monitoring's JSON
/// encodes as a string (an integer literal is accepted too, as proto3 JSON allows).
fn parse_point(point: &WirePoint) -> Result<Point, String> {
    let sampled_at = OffsetDateTime::parse(&point.interval.end_time, &Rfc3339).map_err(|e| {
        shorten(&format!(
            "interval.endTime {:?} is not RFC 3339: {e}",
            point.interval.end_time
        ))
    })?;
    let raw = point
        .value
        .get("int64Value")
        .ok_or_else(|| shorten(&format!("a point without int64Value: {:?}", point.value)))?;
    let value = match raw {
        serde_json::Value::String(text) => text.parse::<i64>().ok(),
        serde_json::Value::Number(number) => number.as_i64(),
        _ => None,
    }
    .ok_or_else(|| shorten(&format!("int64Value {raw} is not a 64-bit integer")))?;
    let value = u64::try_from(value).map_err(|_| format!("int64Value {value} is negative"))?;
    Ok(Point { value, sampled_at })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, Query};
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header::AUTHORIZATION};
    use google_cloud_auth::credentials::{CredentialsProvider, EntityTag};

    use super::*;

    /// Credentials that hand out a fixed bearer token, so that the fake can check the
    /// header reaches Monitoring.
    #[derive(Debug)]
    struct FixedToken;

    impl CredentialsProvider for FixedToken {
        async fn headers(
            &self,
            _extensions: axum::http::Extensions,
        ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError>
        {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer test-token"));
            Ok(CacheableResource::New {
                entity_tag: EntityTag::new(),
                data: headers,
            })
        }

        async fn universe_domain(&self) -> Option<String> {
            None
        }
    }

    /// Credentials that cannot give a token, as ADC off Google Cloud without a login (the
    /// library falls back to the metadata server and calls its failure transient).
    #[derive(Debug)]
    struct NoToken;

    impl CredentialsProvider for NoToken {
        async fn headers(
            &self,
            _extensions: axum::http::Extensions,
        ) -> Result<CacheableResource<HeaderMap>, google_cloud_auth::errors::CredentialsError>
        {
            Err(google_cloud_auth::errors::CredentialsError::from_msg(
                true,
                "cannot reach the metadata server",
            ))
        }

        async fn universe_domain(&self) -> Option<String> {
            None
        }
    }

    /// One request the fake received.
    #[derive(Debug, Clone)]
    struct Seen {
        project: String,
        filter: String,
        start: OffsetDateTime,
        end: OffsetDateTime,
        authorization: Option<String>,
    }

    /// A fake Monitoring: `answer(metric, subscription)` gives the status and body of each
    /// request; every request is recorded.
    struct Fake {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    /// The quoted value after `key = "` in a filter, found without the code under test.
    fn quoted_after(filter: &str, key: &str) -> Option<String> {
        let rest = &filter[filter.find(&format!("{key} = \""))? + key.len() + 4..];
        Some(rest[..rest.find('"')?].to_owned())
    }

    async fn fake(
        answer: impl Fn(&str, &str) -> (u16, String) + Send + Sync + Clone + 'static,
    ) -> Fake {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let handler = move |Path(project): Path<String>,
                            Query(query): Query<Vec<(String, String)>>,
                            headers: HeaderMap| {
            let answer = answer.clone();
            let record = record.clone();
            async move {
                let param = |name: &str| {
                    query
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let filter = param("filter");
                let time = |name: &str| OffsetDateTime::parse(&param(name), &Rfc3339).unwrap();
                record.lock().unwrap().push(Seen {
                    project,
                    filter: filter.clone(),
                    start: time("interval.startTime"),
                    end: time("interval.endTime"),
                    authorization: headers
                        .get(AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                });
                let metric = quoted_after(&filter, "metric.type").unwrap_or_default();
                let subscription =
                    quoted_after(&filter, "resource.labels.subscription_id").unwrap_or_default();
                let (status, body) = answer(&metric, &subscription);
                (StatusCode::from_u16(status).unwrap(), body)
            }
        };
        let app = axum::Router::new().route(
            "/v3/projects/{project}/timeSeries",
            axum::routing::get(handler),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Fake { url, seen }
    }

    fn reader(fake: &Fake) -> Monitoring {
        Monitoring::new("pipeline-prod", &fake.url, FixedToken.into()).unwrap()
    }

    /// A series of `subscription` with `(endTime, int64Value)` points, as Monitoring writes it.
    fn series(subscription: &str, metric: &str, points: &[(&str, &str)]) -> String {
        let points: Vec<serde_json::Value> = points
            .iter()
            .map(|(end, value)| {
                serde_json::json!({
                    "interval": {"startTime": end, "endTime": end},
                    "value": {"int64Value": value}
                })
            })
            .collect();
        serde_json::json!({
            "timeSeries": [{
                "metric": {"type": metric},
                "resource": {
                    "type": "pubsub_subscription",
                    "labels": {"project_id": "pipeline-prod", "subscription_id": subscription}
                },
                "metricKind": "GAUGE",
                "valueType": "INT64",
                "points": points
            }],
            "unit": "1"
        })
        .to_string()
    }

    #[tokio::test]
    async fn reads_the_newest_point_of_both_metrics_with_the_filter_and_token() {
        let fake = fake(|metric, subscription| {
            let points: &[(&str, &str)] = if metric == UNDELIVERED_METRIC {
                // Out of order on purpose: the newest wins, not the first.
                &[
                    ("2026-11-27T10:39:00Z", "5"),
                    ("2026-11-27T10:41:00Z", "7"),
                    ("2026-11-27T10:40:00Z", "6"),
                ]
            } else {
                &[("2026-11-27T10:41:00.5Z", "7260")]
            };
            (200, series(subscription, metric, points))
        })
        .await;
        let backlog = reader(&fake)
            .backlog("paid_invoices-dead-letter")
            .await
            .unwrap();
        assert_eq!(
            backlog,
            Backlog {
                subscription: "paid_invoices-dead-letter".into(),
                undelivered: 7,
                sampled_at: Some(OffsetDateTime::parse("2026-11-27T10:41:00Z", &Rfc3339).unwrap()),
                oldest_unacked_age: Some(Duration::from_secs(7260)),
            }
        );
        let seen = fake.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let mut metrics = Vec::new();
        for request in &seen {
            assert_eq!(request.project, "pipeline-prod");
            assert_eq!(request.authorization.as_deref(), Some("Bearer test-token"));
            assert!(
                request
                    .filter
                    .contains(r#"resource.labels.subscription_id = "paid_invoices-dead-letter""#),
                "{}",
                request.filter
            );
            assert!(
                request
                    .filter
                    .contains(r#"resource.type = "pubsub_subscription""#),
                "{}",
                request.filter
            );
            assert_eq!(request.end - request.start, DEFAULT_WINDOW);
            let now = OffsetDateTime::now_utc();
            assert!((now - request.end).abs() < time::Duration::minutes(1));
            metrics.push(quoted_after(&request.filter, "metric.type").unwrap());
        }
        metrics.sort();
        assert_eq!(metrics, [UNDELIVERED_METRIC, OLDEST_UNACKED_AGE_METRIC]);
    }

    #[tokio::test]
    async fn no_point_in_the_window_reads_as_zero_without_a_sample() {
        for body in [
            "{}",
            r#"{"unit": "1"}"#,
            r#"{"timeSeries": []}"#,
            r#"{"timeSeries": null}"#,
            r#"{"timeSeries": [{"resource": {"labels": {"subscription_id": "pending_invoices-dead-letter"}}, "points": []}]}"#,
        ] {
            let fake = fake(move |_, _| (200, body.to_owned())).await;
            let backlog = reader(&fake)
                .backlog("pending_invoices-dead-letter")
                .await
                .unwrap();
            assert_eq!(backlog.undelivered, 0, "{body}");
            assert_eq!(backlog.sampled_at, None, "{body}");
            assert_eq!(backlog.oldest_unacked_age, None, "{body}");
        }
    }

    #[tokio::test]
    async fn int64_value_as_a_json_number_is_accepted() {
        let fake = fake(|_, _| {
            (
                200,
                r#"{"timeSeries": [{"points": [{"interval": {"endTime": "2026-11-27T10:41:00Z"}, "value": {"int64Value": 3}}]}]}"#
                    .to_owned(),
            )
        })
        .await;
        let backlog = reader(&fake)
            .backlog("paid_invoices-dead-letter")
            .await
            .unwrap();
        assert_eq!(backlog.undelivered, 3);
    }

    #[tokio::test]
    async fn forbidden_names_the_missing_role_and_is_not_transient() {
        let fake = fake(|_, _| {
            (
                403,
                r#"{"error": {"code": 403, "message": "Permission monitoring.timeSeries.list denied (or the resource may not exist).", "status": "PERMISSION_DENIED"}}"#
                    .to_owned(),
            )
        })
        .await;
        let err = reader(&fake)
            .backlog("paid_invoices-dead-letter")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MonitoringError::Refused { status: 403, .. }),
            "{text}"
        );
        assert!(text.contains(VIEWER_ROLE), "{text}");
        assert!(text.contains("monitoring.timeSeries.list denied"), "{text}");
        assert!(text.contains("paid_invoices-dead-letter"), "{text}");
        assert!(text.contains("pipeline-prod"), "{text}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn server_errors_and_throttling_are_transient_other_refusals_not() {
        for (status, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (400, false),
            (404, false),
            (401, false),
        ] {
            let fake = fake(move |_, _| (status, "<html>oops</html>".to_owned())).await;
            let err = reader(&fake)
                .backlog("paid_invoices-dead-letter")
                .await
                .unwrap_err();
            assert_eq!(err.is_transient(), transient, "{status}: {err}");
            let text = err.to_string();
            assert!(text.contains(&format!("HTTP {status}")), "{text}");
            assert!(
                text.contains("<html>oops</html>"),
                "the server's text is quoted: {text}"
            );
        }
    }

    #[tokio::test]
    async fn malformed_answers_are_errors_naming_the_subscription() {
        let point = |end: &str, value: &str| {
            format!(
                r#"{{"timeSeries": [{{"points": [{{"interval": {{"endTime": "{end}"}}, "value": {value}}}]}}]}}"#
            )
        };
        let cases = [
            ("not json".to_owned(), "not a timeSeries list"),
            ("[1, 2]".to_owned(), "not a timeSeries list"),
            (
                r#"{"timeSeries": {"a": 1}}"#.to_owned(),
                "not a timeSeries list",
            ),
            (
                r#"{"timeSeries": [{"points": [{"value": {"int64Value": "1"}}]}]}"#.to_owned(),
                "not a timeSeries list",
            ),
            (
                point("2026-11-27T10:41:00Z", r#"{"int64Value": "many"}"#),
                "not a 64-bit integer",
            ),
            (
                point(
                    "2026-11-27T10:41:00Z",
                    r#"{"int64Value": "99999999999999999999"}"#,
                ),
                "not a 64-bit integer",
            ),
            (
                point("2026-11-27T10:41:00Z", r#"{"int64Value": 1.5}"#),
                "not a 64-bit integer",
            ),
            (
                point("2026-11-27T10:41:00Z", r#"{"int64Value": "-1"}"#),
                "negative",
            ),
            (
                point("2026-11-27T10:41:00Z", r#"{"doubleValue": 1.0}"#),
                "without int64Value",
            ),
            (point("yesterday", r#"{"int64Value": "1"}"#), "not RFC 3339"),
            (
                series(
                    "paid_invoices-money-sender",
                    UNDELIVERED_METRIC,
                    &[("2026-11-27T10:41:00Z", "1")],
                ),
                "which the filter excludes",
            ),
            (
                format!("{{\"unit\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES)),
                "exceeds",
            ),
        ];
        for (body, expected) in cases {
            let answer = body.clone();
            let fake = fake(move |_, _| (200, answer.clone())).await;
            let err = reader(&fake)
                .backlog("paid_invoices-dead-letter")
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(text.contains(expected), "{expected:?} not in {text}");
            assert!(text.contains("paid_invoices-dead-letter"), "{text}");
            assert!(matches!(err, MonitoringError::Malformed { .. }), "{text}");
            assert!(text.chars().count() < 800, "errors stay short: {text}");
            assert!(err.is_transient(), "{text}");
        }
    }

    #[tokio::test]
    async fn unreachable_monitoring_is_a_transient_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = Monitoring::new("p", &url, FixedToken.into())
            .unwrap()
            .backlog("paid_invoices-dead-letter")
            .await
            .unwrap_err();
        assert!(matches!(err, MonitoringError::Transport { .. }), "{err}");
        assert!(err.is_transient());
        assert!(err.to_string().contains(&url), "{err}");
    }

    #[tokio::test]
    async fn bad_subscription_ids_and_endpoints_are_refused_before_any_request() {
        let fake = fake(|_, _| (200, "{}".to_owned())).await;
        for id in [r#"x" OR metric.type = "y"#, "ab", "1abc", "a b c", ""] {
            let err = reader(&fake).backlog(id).await.unwrap_err();
            assert!(
                matches!(err, MonitoringError::InvalidSubscription { .. }),
                "{id}: {err}"
            );
        }
        assert!(fake.seen.lock().unwrap().is_empty());
        for endpoint in ["monitoring.googleapis.com", "ftp://x", "http://x/?q=1", ""] {
            let err = Monitoring::unauthenticated("p", endpoint).unwrap_err();
            assert!(
                matches!(err, MonitoringError::InvalidEndpoint { .. }),
                "{endpoint}: {err}"
            );
            assert!(err.to_string().contains(ENDPOINT_VAR), "{err}");
        }
        let trailing = Monitoring::unauthenticated("p", &format!("{}/", fake.url)).unwrap();
        assert_eq!(trailing.endpoint(), fake.url);
        trailing.backlog("paid_invoices-dead-letter").await.unwrap();
    }

    #[tokio::test]
    async fn no_token_is_a_configuration_error_sent_nowhere() {
        let fake = fake(|_, _| (200, "{}".to_owned())).await;
        let err = Monitoring::new("p", &fake.url, NoToken.into())
            .unwrap()
            .backlog("paid_invoices-dead-letter")
            .await
            .unwrap_err();
        assert!(matches!(err, MonitoringError::Credentials { .. }), "{err}");
        assert!(!err.is_transient(), "not logged in: retrying will not help");
        assert!(
            err.to_string()
                .contains("gcloud auth application-default login"),
            "{err}"
        );
        assert!(fake.seen.lock().unwrap().is_empty());
    }

    #[test]
    fn long_or_control_laden_messages_are_shortened_to_one_line() {
        let message =
            google_message(format!("line1\nline2\u{1b}[31m{}", "x".repeat(1000)).as_bytes());
        assert!(
            !message.contains('\n') && !message.contains('\u{1b}'),
            "{message}"
        );
        assert!(message.chars().count() <= MAX_QUOTED_CHARS + 1, "{message}");
        assert!(message.ends_with('…'));
        assert_eq!(google_message(b""), "(no message)");
        assert_eq!(
            google_message(br#"{"error": {"code": 403, "message": "denied"}}"#),
            "denied"
        );
    }
}
