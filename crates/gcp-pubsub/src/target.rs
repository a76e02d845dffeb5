//! Where Pub/Sub is: a Google Cloud project, optionally behind the local emulator.
//!
//! The official `google-cloud-pubsub` crate ignores `PUBSUB_EMULATOR_HOST`, so every client
//! built here goes through [`PubSubTarget`], which is the one place that decides between
//! "real Pub/Sub with Application Default Credentials" and "emulator endpoint with
//! anonymous credentials". Nothing else in the crate builds a client.

use google_cloud_auth::credentials::Credentials;
use google_cloud_auth::credentials::anonymous::Builder as AnonymousCredentials;
use google_cloud_gax::client_builder::ClientBuilder;
use google_cloud_pubsub::client::{BasePublisher, Subscriber, SubscriptionAdmin, TopicAdmin};

use crate::error::Error;

/// The environment variable naming the project; checked first.
pub const PROJECT_VAR: &str = "PUBSUB_PROJECT_ID";
/// The fallback project variable, set by Cloud Run and most Google tooling.
pub const FALLBACK_PROJECT_VAR: &str = "GOOGLE_CLOUD_PROJECT";
/// The conventional emulator variable (`host:port`), honoured here because the crate does not.
pub const EMULATOR_HOST_VAR: &str = "PUBSUB_EMULATOR_HOST";

/// A project on real Pub/Sub, or on the emulator when `emulator_host` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubTarget {
    /// The Google Cloud project id; every topic and subscription name is built under it.
    pub project: String,
    /// `host:port` (or `http://host:port`) of a Pub/Sub emulator. `None` means real Pub/Sub
    /// with Application Default Credentials (the Cloud Run service account in production).
    pub emulator_host: Option<String>,
}

/// Why the Pub/Sub target could not be read from the environment. Each variant names the
/// variable so that a misconfigured deployment says what to fix at start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    /// Neither project variable is set (or both are empty).
    #[error("{PROJECT_VAR} (or {FALLBACK_PROJECT_VAR}) must name the Google Cloud project")]
    MissingProject,
    /// A variable is set to something unusable.
    #[error("{variable}={value:?} is invalid: {reason}")]
    Invalid {
        /// The offending variable.
        variable: &'static str,
        /// Its value as read.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl PubSubTarget {
    /// Real Pub/Sub in `project`, authenticated with Application Default Credentials.
    pub fn cloud(project: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            emulator_host: None,
        }
    }

    /// The emulator at `host` (`127.0.0.1:8085`) serving `project`.
    pub fn emulator(project: impl Into<String>, host: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            emulator_host: Some(host.into()),
        }
    }

    /// Reads [`PROJECT_VAR`] (falling back to [`FALLBACK_PROJECT_VAR`]) and
    /// [`EMULATOR_HOST_VAR`] from the process environment.
    pub fn from_env() -> Result<Self, TargetError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as [`from_env`](Self::from_env) over any lookup function, so that the parsing
    /// is testable without mutating the process environment (which edition 2024 makes
    /// `unsafe`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, TargetError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let project = non_empty(PROJECT_VAR)
            .map(|v| (PROJECT_VAR, v))
            .or_else(|| non_empty(FALLBACK_PROJECT_VAR).map(|v| (FALLBACK_PROJECT_VAR, v)));
        let Some((variable, project)) = project else {
            return Err(TargetError::MissingProject);
        };
        let project = project.trim().to_owned();
        if !valid_project_id(&project) {
            return Err(TargetError::Invalid {
                variable,
                value: project,
                reason: "a project id has only lowercase letters, digits and hyphens",
            });
        }
        let emulator_host = match non_empty(EMULATOR_HOST_VAR) {
            None => None,
            Some(host) => {
                let host = host.trim().to_owned();
                if !valid_host_port(&host) {
                    return Err(TargetError::Invalid {
                        variable: EMULATOR_HOST_VAR,
                        value: host,
                        reason: "expected host:port, e.g. 127.0.0.1:8085",
                    });
                }
                Some(host)
            }
        };
        Ok(Self {
            project,
            emulator_host,
        })
    }

    /// Whether clients talk to the emulator rather than real Pub/Sub.
    pub fn is_emulator(&self) -> bool {
        self.emulator_host.is_some()
    }

    /// `projects/P/topics/SHORT`.
    pub fn topic_path(&self, short_name: &str) -> String {
        format!("projects/{}/topics/{short_name}", self.project)
    }

    /// `projects/P/subscriptions/SHORT`.
    pub fn subscription_path(&self, short_name: &str) -> String {
        format!("projects/{}/subscriptions/{short_name}", self.project)
    }

    /// `projects/P/snapshots/SHORT`.
    pub fn snapshot_path(&self, short_name: &str) -> String {
        format!("projects/{}/snapshots/{short_name}", self.project)
    }

    /// The endpoint URL handed to `with_endpoint`, or `None` for Google's default.
    ///
    /// The emulator speaks plain HTTP (REST for the admin clients, h2c gRPC for the
    /// publisher and subscriber) on one port, hence `http://`.
    pub fn endpoint(&self) -> Option<String> {
        self.emulator_host.as_deref().map(|host| {
            if host.starts_with("http://") || host.starts_with("https://") {
                host.trim_end_matches('/').to_owned()
            } else {
                format!("http://{host}")
            }
        })
    }

    /// A human-readable description for logs and error messages.
    pub fn describe(&self) -> String {
        match self.endpoint() {
            Some(endpoint) => format!("emulator at {endpoint}, project {}", self.project),
            None => format!("Google Cloud Pub/Sub, project {}", self.project),
        }
    }

    /// Anonymous credentials for the emulator (it rejects nothing, and Application Default
    /// Credentials would fail on a developer machine without a login); `None` lets each
    /// builder fall back to Application Default Credentials.
    fn credentials(&self) -> Option<Credentials> {
        self.is_emulator()
            .then(|| AnonymousCredentials::new().build())
    }

    /// Points an admin client builder at the emulator when there is one; the same for every
    /// REST admin client (they share gax's generic builder).
    fn admin_builder<F, Cr>(&self, mut builder: ClientBuilder<F, Cr>) -> ClientBuilder<F, Cr>
    where
        Credentials: Into<Cr>,
    {
        if let Some(endpoint) = self.endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(credentials) = self.credentials() {
            builder = builder.with_credentials(credentials);
        }
        builder
    }

    /// A topic admin client (REST transport).
    pub async fn topic_admin(&self) -> Result<TopicAdmin, Error> {
        self.admin_builder(TopicAdmin::builder())
            .build()
            .await
            .map_err(|source| self.connect_error("topic admin", source))
    }

    /// A subscription admin client (REST transport).
    pub async fn subscription_admin(&self) -> Result<SubscriptionAdmin, Error> {
        self.admin_builder(SubscriptionAdmin::builder())
            .build()
            .await
            .map_err(|source| self.connect_error("subscription admin", source))
    }

    /// A streaming-pull subscriber client (gRPC transport).
    pub async fn subscriber(&self) -> Result<Subscriber, Error> {
        let mut builder = Subscriber::builder();
        if let Some(endpoint) = self.endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(credentials) = self.credentials() {
            builder = builder.with_credentials(credentials);
        }
        builder
            .build()
            .await
            .map_err(|source| self.connect_error("subscriber", source))
    }

    /// A publisher connection shared by all topics (gRPC transport); `publish_timeout`
    /// bounds how long a publish keeps retrying transient errors.
    pub(crate) async fn base_publisher(
        &self,
        publish_timeout: std::time::Duration,
    ) -> Result<BasePublisher, Error> {
        use google_cloud_gax::retry_policy::RetryPolicyExt;
        use google_cloud_pubsub::retry_policy::RetryableErrors;

        let mut builder = BasePublisher::builder()
            .with_retry_policy(RetryableErrors.with_time_limit(publish_timeout));
        if let Some(endpoint) = self.endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(credentials) = self.credentials() {
            builder = builder.with_credentials(credentials);
        }
        builder
            .build()
            .await
            .map_err(|source| self.connect_error("publisher", source))
    }

    fn connect_error(
        &self,
        client: &'static str,
        source: google_cloud_gax::client_builder::Error,
    ) -> Error {
        Error::Connect {
            client,
            target: self.describe(),
            source,
        }
    }
}

/// Google's rule for project ids, loosely: what matters is catching a pasted project
/// *number* with spaces, a URL, or a `projects/...` path before it turns into confusing
/// NOT_FOUND errors much later. Digits-only ids are accepted because the emulator takes any.
fn valid_project_id(project: &str) -> bool {
    !project.is_empty()
        && project.len() <= 63
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_host_port(host: &str) -> bool {
    let bare = host
        .strip_prefix("http://")
        .or_else(|| host.strip_prefix("https://"))
        .unwrap_or(host)
        .trim_end_matches('/');
    match bare.rsplit_once(':') {
        Some((name, port)) => {
            !name.is_empty() && !name.contains('/') && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn project_var_wins_over_fallback() {
        let target = PubSubTarget::from_lookup(lookup(&[
            (PROJECT_VAR, "pipeline-dev"),
            (FALLBACK_PROJECT_VAR, "other"),
        ]))
        .unwrap();
        assert_eq!(target, PubSubTarget::cloud("pipeline-dev"));
        assert!(!target.is_emulator());
        assert_eq!(target.endpoint(), None);
    }

    #[test]
    fn falls_back_to_google_cloud_project_and_reads_emulator_host() {
        let target = PubSubTarget::from_lookup(lookup(&[
            (PROJECT_VAR, "  "),
            (FALLBACK_PROJECT_VAR, "local"),
            (EMULATOR_HOST_VAR, "127.0.0.1:8085"),
        ]))
        .unwrap();
        assert_eq!(target, PubSubTarget::emulator("local", "127.0.0.1:8085"));
        assert_eq!(target.endpoint().as_deref(), Some("http://127.0.0.1:8085"));
        assert_eq!(
            target.topic_path("paid_invoices"),
            "projects/local/topics/paid_invoices"
        );
    }

    #[test]
    fn missing_project_names_both_variables() {
        let err = PubSubTarget::from_lookup(lookup(&[(EMULATOR_HOST_VAR, "localhost:8085")]))
            .unwrap_err();
        assert_eq!(err, TargetError::MissingProject);
        let message = err.to_string();
        assert!(
            message.contains(PROJECT_VAR) && message.contains(FALLBACK_PROJECT_VAR),
            "{message}"
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let err = PubSubTarget::from_lookup(lookup(&[(PROJECT_VAR, "projects/x")])).unwrap_err();
        assert!(
            matches!(
                err,
                TargetError::Invalid {
                    variable: PROJECT_VAR,
                    ..
                }
            ),
            "{err}"
        );

        let err = PubSubTarget::from_lookup(lookup(&[
            (PROJECT_VAR, "p"),
            (EMULATOR_HOST_VAR, "localhost"),
        ]))
        .unwrap_err();
        assert!(
            matches!(
                err,
                TargetError::Invalid {
                    variable: EMULATOR_HOST_VAR,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("PUBSUB_EMULATOR_HOST="),
            "{err}"
        );
    }

    #[test]
    fn explicit_scheme_is_kept() {
        let target = PubSubTarget::emulator("p", "http://localhost:8085/");
        assert_eq!(target.endpoint().as_deref(), Some("http://localhost:8085"));
        assert!(valid_host_port("http://localhost:8085/"));
    }
}
