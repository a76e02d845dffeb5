//! invoice-sender binary: read the environment, build, serve until SIGTERM.
#![forbid(unsafe_code)]

use invoice_sender::{Config, Deps, build};
use pipeline_service::config::{Env, or_exit};
use pipeline_service::logging::{self, LogFormat};
use pipeline_service::serve::run_service;

const SERVICE: &str = "invoice-sender";

/// Loads `./.env` first (before the async runtime starts threads: it sets process variables),
/// then runs.
fn main() {
    pipeline_service::dotenv::load_or_exit("invoice-sender");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the async runtime starts")
        .block_on(run())
}

async fn run() {
    logging::init(LogFormat::from_env());
    let env = Env::from_process();
    let config = or_exit(SERVICE, Config::from_env(&env));
    let deps = or_exit(SERVICE, Deps::from_env(&env));
    run_service(SERVICE, build(config, deps).await).await;
}
