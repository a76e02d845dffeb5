//! One error type for every Stark Bank call, classified by what the caller may safely do next.
//!
//! The distinction that matters when moving money is whether the operation may have happened:
//! a POST that timed out after its bytes left may have created the transfer, so it must never be
//! blindly retried; the caller looks the object up (by tag or `externalId`) instead.

use serde::{Deserialize, Serialize};

/// One entry of Stark's `{"errors": [{"code", "message"}]}` list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StarkError {
    /// Machine-readable code, e.g. `invalidTaxId`.
    pub code: String,
    /// Human-readable message, in the `Accept-Language` asked for.
    pub message: String,
}

/// The body Stark sends with a 400 or 500.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) errors: Vec<StarkError>,
}

/// What went wrong, in the four classes a caller has to tell apart (plus local failures).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Stark answered 4xx: the request was refused and nothing happened. Retrying the same
    /// request cannot succeed.
    #[error("Stark Bank rejected the request (HTTP {status}): {}", summarize(.errors))]
    Rejected {
        /// The HTTP status (400 in practice).
        status: u16,
        /// Stark's error list (empty if the body had none).
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
    /// The class of this error, for metrics and ack decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Rejected { .. } => ErrorKind::Rejected,
            Error::StarkFault { .. } => ErrorKind::StarkFault,
            Error::NotSent { .. } => ErrorKind::NotSent,
            Error::UnknownOutcome { .. } => ErrorKind::UnknownOutcome,
            Error::InvalidRequest(_) => ErrorKind::InvalidRequest,
        }
    }

    /// Stark's error list (empty for transport and local errors).
    pub fn errors(&self) -> &[StarkError] {
        match self {
            Error::Rejected { errors, .. } | Error::StarkFault { errors, .. } => errors,
            _ => &[],
        }
    }

    /// The HTTP status, when Stark answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Rejected { status, .. } | Error::StarkFault { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether Stark's error list contains `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors().iter().any(|e| e.code == code)
    }

    /// True when a retry of the same request could succeed (5xx, transport, unknown outcome).
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::StarkFault | ErrorKind::NotSent | ErrorKind::UnknownOutcome
        )
    }

    /// True when a state-changing request may have been applied despite the error: the caller
    /// must look the object up before creating it again.
    pub fn may_have_happened(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::StarkFault | ErrorKind::UnknownOutcome
        )
    }
}

/// The classes of [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 4xx from Stark.
    Rejected,
    /// 5xx from Stark.
    StarkFault,
    /// Never sent.
    NotSent,
    /// Sent, outcome unknown.
    UnknownOutcome,
    /// Refused locally before sending.
    InvalidRequest,
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
