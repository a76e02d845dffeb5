//! webhook-ingester binary: read the environment, connect to Pub/Sub, build, serve until
//! SIGTERM.
#![forbid(unsafe_code)]

use std::sync::Arc;

use gcp_pubsub::{GcpPublisher, PubSubTarget};
use pipeline_service::config::{Env, or_exit};
use pipeline_service::logging::{self, LogFormat};
use pipeline_service::serve::run_service;
use webhook_ingester::{Config, Deps, build};

const SERVICE: &str = "webhook-ingester";

/// Loads `./.env` first, then runs on the async runtime.
fn main() {
    pipeline_service::dotenv::main("webhook-ingester", run)
}

async fn run() {
    logging::init(LogFormat::from_env());
    let env = Env::from_process();
    let config = or_exit(SERVICE, Config::from_env(&env));
    let stark = or_exit(SERVICE, pipeline_service::config::stark_client(&env));
    let target = match PubSubTarget::from_lookup(|name| env.optional(name).map(str::to_owned)) {
        Ok(target) => target,
        Err(err) => {
            // The error names the variable (PUBSUB_PROJECT_ID, PUBSUB_EMULATOR_HOST, …).
            tracing::error!(event = "config_invalid", "{err}");
            eprintln!("{SERVICE}: {err}");
            std::process::exit(2);
        }
    };
    let publisher = match GcpPublisher::connect(target).await {
        Ok(publisher) => Arc::new(publisher),
        Err(err) => {
            tracing::error!(event = "pubsub_unavailable", "{err}");
            eprintln!("{SERVICE}: {err}");
            std::process::exit(1);
        }
    };
    run_service(SERVICE, build(config, Deps { stark, publisher }).await).await;
}
