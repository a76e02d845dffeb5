//! invoice-sender binary: read the environment, build, serve until SIGTERM.
#![forbid(unsafe_code)]

use invoice_sender::{Config, Deps, build};
use pipeline_service::config::{Env, or_exit};
use pipeline_service::logging::{self, LogFormat};
use pipeline_service::serve::run_service;

const SERVICE: &str = "invoice-sender";

/// Loads `./.env` first, then runs on the async runtime.
fn main() {
    pipeline_service::dotenv::main("invoice-sender", run)
}

async fn run() {
    logging::init(LogFormat::from_env());
    let env = Env::from_process();
    let config = or_exit(SERVICE, Config::from_env(&env));
    let deps = or_exit(SERVICE, Deps::from_env(&env));
    run_service(SERVICE, build(config, deps).await).await;
}
