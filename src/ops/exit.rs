//! One exit-code contract for every command, so that scripts, Cloud Run jobs and alerts can
//! tell "the pipeline has a problem" from "this command was called wrong" from "Stark or
//! Pub/Sub could not be reached, try again":
//!
//! | code | meaning |
//! |---|---|
//! | 0 | all good |
//! | 1 | problems found (reconcile findings, doctor failures, dead letters), or a failure not listed below |
//! | 2 | usage or configuration error (a bad flag, a missing or invalid variable, credentials or input Stark refused, a role Google Cloud found missing) |
//! | 3 | Stark Bank, Pub/Sub or Cloud Monitoring unreachable or failing (network, timeout, 5xx, throttled): retry later |

use std::process::ExitCode;

use gcp_pubsub::monitoring::MonitoringError;
use stark_client::ErrorKind;

/// The outcome of a command, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// 0: all good.
    Ok,
    /// 1: problems found.
    Problems,
    /// 2: usage or configuration error.
    Usage,
    /// 3: Stark or Pub/Sub unreachable.
    Unreachable,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Problems => 1,
            Exit::Usage => 2,
            Exit::Unreachable => 3,
        }
    }

    /// `Ok` when `healthy`, else `Problems`: what the reporting commands return.
    pub fn healthy(healthy: bool) -> Self {
        if healthy { Exit::Ok } else { Exit::Problems }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A usage or configuration error found by the CLI itself (a missing variable, a bad
/// argument), so that [`classify`] can tell it from a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Stark codes of a 400 that mean our credentials, not the request, are wrong.
const CREDENTIAL_CODES: [&str; 3] = ["invalidCredentials", "invalidProject", "invalidAccessId"];

/// The exit code an error calls for: the first cause in its chain that says.
pub fn classify(err: &anyhow::Error) -> Exit {
    err.chain()
        .find_map(|cause| {
            if let Some(stark) = cause.downcast_ref::<stark_client::Error>() {
                return Some(stark_exit(stark));
            }
            if let Some(pubsub) = cause.downcast_ref::<gcp_pubsub::Error>() {
                return Some(pubsub_exit(pubsub));
            }
            if let Some(monitoring) = cause.downcast_ref::<MonitoringError>() {
                return Some(monitoring_exit(monitoring));
            }
            if cause.is::<UsageError>()
                || cause.is::<pipeline_service::config::ConfigError>()
                || cause.is::<gcp_pubsub::TargetError>()
                || cause.is::<crate::env_file::DotenvError>()
            {
                return Some(Exit::Usage);
            }
            if cause.is::<pipeline_service::publisher::PublishError>() {
                return Some(Exit::Unreachable);
            }
            None
        })
        .unwrap_or(Exit::Problems)
}

/// Stark errors by [`stark_client::Error::kind`]: transport, 5xx, throttling and unknown
/// outcomes are "unreachable, retry later"; refused credentials and requests are ours to fix.
pub fn stark_exit(err: &stark_client::Error) -> Exit {
    match err.kind() {
        ErrorKind::NotSent
        | ErrorKind::UnknownOutcome
        | ErrorKind::StarkFault
        | ErrorKind::Throttled => Exit::Unreachable,
        ErrorKind::Configuration | ErrorKind::InvalidRequest | ErrorKind::Rejected => Exit::Usage,
    }
}

/// Whether a Stark error is one of refused credentials (400 `invalidCredentials` and kin, 401,
/// 403), which `doctor` reports with its own fix.
pub fn is_credentials_error(err: &stark_client::Error) -> bool {
    err.kind() == ErrorKind::Configuration || CREDENTIAL_CODES.iter().any(|c| err.has_code(c))
}

/// Pub/Sub errors: a refusal by the service (not found, permission, invalid) is ours to fix;
/// a transport failure, timeout or 5xx means it could not be reached.
pub fn pubsub_exit(err: &gcp_pubsub::Error) -> Exit {
    use gcp_pubsub::Error as E;
    use google_cloud_gax::error::rpc::Code;
    match err {
        E::Rpc { source, .. } | E::Pull { source, .. } => {
            if source.is_authentication() {
                return Exit::Usage;
            }
            let refused = source.status().is_some_and(|s| {
                matches!(
                    s.code,
                    Code::NotFound
                        | Code::PermissionDenied
                        | Code::InvalidArgument
                        | Code::FailedPrecondition
                        | Code::AlreadyExists
                        | Code::Unauthenticated
                        | Code::OutOfRange
                )
            }) || source
                .http_status_code()
                .is_some_and(|code| (400..500).contains(&code) && code != 408 && code != 429);
            if refused {
                Exit::Usage
            } else {
                Exit::Unreachable
            }
        }
        E::EmulatorPull { reason, .. } if reason.starts_with("HTTP 4") => Exit::Usage,
        E::EmulatorPull { .. } => Exit::Unreachable,
        _ => Exit::Usage,
    }
}

/// Cloud Monitoring errors (`status` in production): what may pass (transport, 5xx,
/// throttling, a malformed answer) is "unreachable"; a refused permission (the missing
/// `roles/monitoring.viewer`), missing credentials or a bad endpoint are ours to fix.
pub fn monitoring_exit(err: &MonitoringError) -> Exit {
    if err.is_transient() {
        Exit::Unreachable
    } else {
        Exit::Usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_contract() {
        let unreachable = anyhow::Error::new(stark_client::Error::StarkFault {
            status: 503,
            errors: vec![],
        })
        .context("reading invoices");
        assert_eq!(classify(&unreachable), Exit::Unreachable);
        let refused = anyhow::Error::new(stark_client::Error::Unauthorized {
            status: 401,
            errors: vec![],
        });
        assert_eq!(classify(&refused), Exit::Usage);
        let missing = anyhow::Error::new(pipeline_service::config::ConfigError::new(
            "STARK_ACCESS_ID",
            "is required but not set",
        ));
        assert_eq!(classify(&missing), Exit::Usage);
        assert_eq!(
            classify(&anyhow::Error::new(UsageError("bad".into()))),
            Exit::Usage
        );
        assert_eq!(classify(&anyhow::anyhow!("other")), Exit::Problems);
        let publish = anyhow::Error::new(pipeline_service::publisher::PublishError {
            topic: "paid_invoices".into(),
            reason: "deadline exceeded".into(),
        });
        assert_eq!(classify(&publish), Exit::Unreachable);
        let forbidden = anyhow::Error::new(MonitoringError::Refused {
            status: 403,
            metric: gcp_pubsub::monitoring::UNDELIVERED_METRIC,
            subscription: "paid_invoices-dead-letter".into(),
            project: "p".into(),
            message: "denied".into(),
            hint: "grant roles/monitoring.viewer",
        })
        .context("cannot count the messages in paid_invoices-dead-letter");
        assert_eq!(classify(&forbidden), Exit::Usage);
        let down = anyhow::Error::new(MonitoringError::Transport {
            endpoint: "https://monitoring.googleapis.com".into(),
            reason: "connection refused".into(),
        });
        assert_eq!(classify(&down), Exit::Unreachable);
        let codes: Vec<u8> = [Exit::Ok, Exit::Problems, Exit::Usage, Exit::Unreachable]
            .iter()
            .map(|e| e.code())
            .collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }
}
