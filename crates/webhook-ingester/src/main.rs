//! webhook-ingester binary: read the environment, connect to Pub/Sub, serve until SIGTERM.
#![forbid(unsafe_code)]

use std::sync::Arc;

use gcp_pubsub::{GcpPublisher, PubSubTarget};
use pipeline_common::config::{Env, or_exit};
use pipeline_common::logging::{self, LogFormat};

#[tokio::main]
async fn main() {
    logging::init(LogFormat::from_env());
    let config = or_exit(
        "webhook-ingester",
        webhook_ingester::Config::from_env(&Env::from_process()),
    );
    let target = match PubSubTarget::from_env() {
        Ok(target) => target,
        Err(err) => {
            tracing::error!(event = "config_invalid", "{err}");
            eprintln!("webhook-ingester: {err}");
            std::process::exit(2);
        }
    };
    let publisher = match GcpPublisher::connect(target).await {
        Ok(publisher) => Arc::new(publisher),
        Err(err) => {
            tracing::error!(event = "pubsub_unavailable", "{err}");
            std::process::exit(1);
        }
    };
    if let Err(err) =
        webhook_ingester::serve(config, publisher, pipeline_common::serve::shutdown_signal()).await
    {
        tracing::error!(event = "server_failed", "{err}");
        std::process::exit(1);
    }
}
