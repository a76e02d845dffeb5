//! One error type for every Stark Bank call, classified by what the caller may safely do next.
//!
//! The distinction that matters when moving money is whether the operation may have happened:
//! a POST that timed out after its bytes left may have created the transfer, so it must never be
//! blindly retried; the caller looks the object up (by tag or `externalId`) instead.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One entry of Stark's `{"errors": [{"code", "message"}]}` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarkError {
    /// Machine-readable code, e.g. `invalidTaxId`.
    pub code: String,
    /// Human-readable message, in the `Accept-Language` asked for.
    pub message: String,
}

/// The body Stark sends with a 400 or 500 (and, perhaps, with the other error statuses).
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) errors: Vec<StarkError>,
}

/// What went wrong, in the classes a caller has to tell apart (plus local failures).
///
/// Each variant is one reason, classified by the HTTP answer: only the answer tells whether the
/// request could have been applied and whether repeating it can help.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Stark answered 400 (or a 4xx not listed below): the request was refused and nothing
    /// happened. Retrying the same request cannot succeed.
    #[error("Stark Bank rejected the request (HTTP {status}): {}", summarize(.errors))]
    Rejected {
        /// The HTTP status (400 in practice).
        status: u16,
        /// Stark's error list (empty if the body had none).
        errors: Vec<StarkError>,
    },
    /// Stark (or something in front of it) answered 408, 425 or 429: not now, try again later.
    /// For 425 and 429 the request was not processed; a 408 means the server gave up waiting
    /// for the request, which for a POST may come after it was applied, so
    /// [`Error::may_have_happened`] is true for 408 only.
    #[error("Stark Bank asked us to slow down (HTTP {status}){}: {}", retry_after_hint(*.retry_after), summarize(.errors))]
    Throttled {
        /// 408, 425 or 429.
        status: u16,
        /// How long the server asked us to wait (`Retry-After`, as delta-seconds or an
        /// HTTP-date), when it said.
        retry_after: Option<Duration>,
        /// Stark's error list, if the body carried one.
        errors: Vec<StarkError>,
    },
    /// Stark answered 401 or 403: our credentials or permissions are refused. Nothing happened,
    /// and no retry helps until someone fixes the configuration.
    #[error(
        "Stark Bank refused our credentials (HTTP {status}): {}; this is a configuration problem: check STARK_ACCESS_ID, that the private key is the one registered for it, and the project's permissions at Stark",
        summarize(.errors)
    )]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// Stark's error list, if the body carried one.
        errors: Vec<StarkError>,
    },
    /// Stark answered 5xx. For a GET nothing happened; for a POST Stark's docs promise nothing,
    /// so treat it as an unknown outcome before retrying (see [`Error::may_have_happened`]).
    #[error("Stark Bank failed (HTTP {status}): {}", summarize(.errors))]
    StarkFault {
        /// The HTTP status.
        status: u16,
        /// Stark's error list, if the body carried one.
        errors: Vec<StarkError>,
    },
    /// The request never reached Stark (DNS, connect, TLS): safe to retry.
    #[error("could not reach Stark Bank at {url}: {source}")]
    NotSent {
        /// The URL that was tried (no query string secrets exist in our URLs).
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The request was (or may have been) sent, but no complete answer came back: a timeout, a
    /// reset connection, an unreadable 200 body, or a non-200 success status. The operation may
    /// have happened.
    #[error("unknown outcome of {method} {url}: {detail}")]
    UnknownOutcome {
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// What was observed.
        detail: String,
    },
    /// The client is misconfigured or was given invalid input; nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// Classifies a non-200 error status with its parsed body. `retry_after` is the parsed
    /// `Retry-After` header; only the throttling statuses keep it.
    pub(crate) fn from_status(
        status: u16,
        errors: Vec<StarkError>,
        retry_after: Option<Duration>,
    ) -> Self {
        match status {
            401 | 403 => Error::Unauthorized { status, errors },
            408 | 425 | 429 => Error::Throttled {
                status,
                retry_after,
                errors,
            },
            500..=599 => Error::StarkFault { status, errors },
            _ => Error::Rejected { status, errors },
        }
    }

    /// The class of this error, for metrics and ack decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Rejected { .. } => ErrorKind::Rejected,
            Error::Throttled { .. } => ErrorKind::Throttled,
            Error::Unauthorized { .. } => ErrorKind::Configuration,
            Error::StarkFault { .. } => ErrorKind::StarkFault,
            Error::NotSent { .. } => ErrorKind::NotSent,
            Error::UnknownOutcome { .. } => ErrorKind::UnknownOutcome,
            Error::InvalidRequest(_) => ErrorKind::InvalidRequest,
        }
    }

    /// Stark's error list (empty for transport and local errors).
    pub fn errors(&self) -> &[StarkError] {
        match self {
            Error::Rejected { errors, .. }
            | Error::Throttled { errors, .. }
            | Error::Unauthorized { errors, .. }
            | Error::StarkFault { errors, .. } => errors,
            Error::NotSent { .. } | Error::UnknownOutcome { .. } | Error::InvalidRequest(_) => &[],
        }
    }

    /// The HTTP status, when Stark answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Rejected { status, .. }
            | Error::Throttled { status, .. }
            | Error::Unauthorized { status, .. }
            | Error::StarkFault { status, .. } => Some(*status),
            Error::NotSent { .. } | Error::UnknownOutcome { .. } | Error::InvalidRequest(_) => None,
        }
    }

    /// How long the server asked us to wait before trying again (`Retry-After` on a
    /// [`Error::Throttled`] answer), so that a caller that queues the work can schedule it.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether Stark's error list contains `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors().iter().any(|e| e.code == code)
    }

    /// True when a retry of the same request could succeed (throttling, 5xx, transport,
    /// unknown outcome). Refusals and configuration errors are not: the same request will be
    /// refused again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Throttled
                | ErrorKind::StarkFault
                | ErrorKind::NotSent
                | ErrorKind::UnknownOutcome
        )
    }

    /// True when a state-changing request may have been applied despite the error: the caller
    /// must look the object up before creating it again. A 408 counts (the server may time out
    /// after applying a POST); 425 and 429 are refusals to process and do not.
    pub fn may_have_happened(&self) -> bool {
        match self {
            Error::Throttled { status, .. } => *status == 408,
            Error::StarkFault { .. } | Error::UnknownOutcome { .. } => true,
            Error::Rejected { .. }
            | Error::Unauthorized { .. }
            | Error::NotSent { .. }
            | Error::InvalidRequest(_) => false,
        }
    }
}

/// The classes of [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400 (or an unlisted 4xx) from Stark: refused, nothing happened.
    Rejected,
    /// 408, 425 or 429: try again later, after [`Error::retry_after`] when given.
    Throttled,
    /// 401 or 403: credentials or permissions are wrong; alert, do not retry.
    Configuration,
    /// 5xx from Stark.
    StarkFault,
    /// Never sent.
    NotSent,
    /// Sent, outcome unknown.
    UnknownOutcome,
    /// Refused locally before sending.
    InvalidRequest,
}

fn retry_after_hint(retry_after: Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(", retry after {} s", wait.as_secs_f64()),
        None => String::new(),
    }
}

fn summarize(errors: &[StarkError]) -> String {
    if errors.is_empty() {
        return "no error list in the body".into();
    }
    errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}
