//! Errors at the two boundaries: starting a sandbox, and answering an API call.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use stark_client::StarkError;

/// Why a sandbox could not start or a setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A configuration value is out of range; the message names it.
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Bind {
        /// The port asked for.
        port: u16,
        /// What the OS said.
        source: std::io::Error,
    },
    /// [`crate::SandboxHandle::wait_for`] gave up.
    #[error("timed out: {0}")]
    Timeout(String),
    /// An action the sandbox's rules do not allow, e.g. reversing an invoice that was not
    /// credited, or by more than its amount; the message says why.
    #[error("refused: {0}")]
    Refused(String),
    /// A project key file could not be read or parsed.
    #[error("project {id}: {message}")]
    ProjectKey {
        /// The project id.
        id: String,
        /// Why the key was refused (never key material).
        message: String,
    },
}

/// An answer in Stark's error shape: `{"errors": [{"code", "message"}]}` with status 400 (input,
/// authentication, unknown ids) or 500 (injected faults). Messages never carry internals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// 400, 404, 405, 408, 429 or 500.
    pub status: StatusCode,
    /// One entry per problem; a batch reports every bad item.
    pub errors: Vec<StarkError>,
}

impl ApiError {
    /// A 400 with one error.
    pub fn bad(code: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            errors: vec![StarkError {
                code: code.to_owned(),
                message: message.into(),
            }],
        }
    }

    /// A 400 with several errors (every bad item of a batch).
    pub fn many(errors: Vec<StarkError>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            errors,
        }
    }

    /// Stark's 500, with the message its SDKs print.
    pub fn internal() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            errors: vec![StarkError {
                code: "internalServerError".into(),
                message: "Houston, we have a problem.".into(),
            }],
        }
    }

    /// 503: Stark is down (a scripted outage); nothing was done.
    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            errors: vec![StarkError {
                code: "serviceUnavailable".into(),
                message: "The service is unavailable; nothing was processed. Try again later."
                    .into(),
            }],
        }
    }

    /// 408: the request timed out before it was handled (an injected fault; nothing was done).
    pub fn request_timeout() -> Self {
        Self {
            status: StatusCode::REQUEST_TIMEOUT,
            errors: vec![StarkError {
                code: "requestTimeout".into(),
                message:
                    "The request took too long to arrive and was not processed; send it again."
                        .into(),
            }],
        }
    }

    /// 429: too many requests (an injected fault; nothing was done). The HTTP layer adds
    /// `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            errors: vec![StarkError {
                code: "tooManyRequests".into(),
                message: format!(
                    "Too many requests; nothing was processed. Retry after {retry_after_secs} seconds."
                ),
            }],
        }
    }

    /// A path the API does not have.
    pub fn not_found(path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            errors: vec![StarkError {
                code: "routeNotFound".into(),
                message: format!("There is no route {path}"),
            }],
        }
    }

    /// A path that exists, with a method it does not take.
    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            errors: vec![StarkError {
                code: "methodNotAllowed".into(),
                message: format!("{method} is not allowed on {path}"),
            }],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": self.errors });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Error codes the sandbox answers with where Stark's are undocumented (docs/stark-api.md, "Transfers" and "What is still unknown"):
/// pick one, keep it in one place, and let clients match on it.
pub mod codes {
    /// A transfer whose `externalId` was already used (by an earlier transfer or an earlier item
    /// of the same batch). Stark documents the rejection but not the code.
    pub const INVALID_EXTERNAL_ID: &str = "invalidExternalId";
    /// A transfer without `externalId` that repeats the amount and receiver of another
    /// transfer scheduled on the same day.
    pub const DUPLICATE_TRANSFER: &str = "duplicateTransfer";
    /// Bad or missing `Access-*` headers, skewed `Access-Time`, or a signature that does not
    /// check out.
    pub const INVALID_CREDENTIALS: &str = "invalidCredentials";
    /// An `Access-Id` naming a project that is not registered.
    pub const INVALID_PROJECT: &str = "invalidProject";
}
