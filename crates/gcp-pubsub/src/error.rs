//! The crate's error type: one variant per kind of failure, each naming the resource
//! and the operation, because an operator reading "NOT_FOUND" alone cannot tell which of
//! eight topics and subscriptions is missing.

/// What went wrong talking to Pub/Sub.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client could not be built (bad endpoint, no Application Default Credentials).
    #[error("cannot create the Pub/Sub {client} client for {target}")]
    Connect {
        /// Which client: `publisher`, `subscriber`, `topic admin`, `subscription admin`.
        client: &'static str,
        /// The target as [`crate::PubSubTarget::describe`] puts it.
        target: String,
        /// The builder's error.
        #[source]
        source: google_cloud_gax::client_builder::Error,
    },
    /// An RPC failed.
    #[error("{action} {resource} failed: {source}")]
    Rpc {
        /// What was attempted: `create topic`, `seek subscription`, ...
        action: &'static str,
        /// The full resource name.
        resource: String,
        /// The service's or transport's error.
        #[source]
        source: google_cloud_pubsub::Error,
    },
    /// A subscription exists but is attached to another topic. Pub/Sub cannot move a
    /// subscription, and deleting it would drop its backlog, so this is left to an operator.
    #[error(
        "subscription {subscription} is attached to {actual}, not {expected}; \
         delete it (losing its backlog) to let the topology re-create it"
    )]
    TopicMismatch {
        /// The subscription's full name.
        subscription: String,
        /// The topic the topology wants.
        expected: String,
        /// The topic it is attached to.
        actual: String,
    },
    /// Subscriptions exist with message ordering other than declared. Pub/Sub cannot change
    /// ordering on an existing subscription, and re-creating one drops its backlog, its
    /// replay history and its IAM bindings, so `apply` leaves that to an operator: it
    /// applies everything else first (`report`), then fails with the migration steps.
    #[error(
        "message ordering cannot be changed on an existing subscription, so apply changed \
         everything else and left these for an operator: {}",
        .mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
    )]
    OrderingMismatch {
        /// Each subscription whose ordering differs.
        mismatches: Vec<crate::topology::OrderingMismatch>,
        /// What `apply` did before it stopped.
        report: crate::topology::ApplyReport,
    },
    /// The topology declaration itself is inconsistent (caught before any RPC).
    #[error("invalid topology: {0}")]
    InvalidTopology(String),
    /// A time cannot be expressed as a protobuf timestamp (out of range).
    #[error("cannot seek {subscription} to {time}: {reason}")]
    InvalidSeekTime {
        /// The subscription's full name.
        subscription: String,
        /// The requested time.
        time: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A streaming pull failed.
    #[error("pulling from {subscription} failed: {source}")]
    Pull {
        /// The subscription's full name.
        subscription: String,
        /// The stream's error.
        #[source]
        source: google_cloud_pubsub::Error,
    },
    /// A unary pull, acknowledge or nack over the emulator's REST API failed.
    #[error("{action} on {subscription} failed: {reason}")]
    EmulatorPull {
        /// `pull`, `acknowledge` or `nack`.
        action: &'static str,
        /// The subscription's full name.
        subscription: String,
        /// The emulator's message (e.g. `HTTP 404 Not Found: Subscription does not exist`).
        reason: String,
    },
}

impl Error {
    pub(crate) fn rpc(
        action: &'static str,
        resource: impl Into<String>,
    ) -> impl FnOnce(google_cloud_pubsub::Error) -> Self {
        let resource = resource.into();
        move |source| Self::Rpc {
            action,
            resource,
            source,
        }
    }
}

/// Whether an RPC error is the service saying "no such resource".
pub(crate) fn is_not_found(error: &google_cloud_pubsub::Error) -> bool {
    use google_cloud_gax::error::rpc::Code;
    error.status().is_some_and(|s| s.code == Code::NotFound)
        || error.http_status_code() == Some(404)
}

/// Whether an RPC error is the service saying "it already exists" (a concurrent `apply`).
pub(crate) fn is_already_exists(error: &google_cloud_pubsub::Error) -> bool {
    use google_cloud_gax::error::rpc::Code;
    error
        .status()
        .is_some_and(|s| s.code == Code::AlreadyExists)
        || error.http_status_code() == Some(409)
}

/// Crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
