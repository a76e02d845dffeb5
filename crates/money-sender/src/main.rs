//! money-sender binary: read the environment, serve until SIGTERM.
#![forbid(unsafe_code)]

use pipeline_common::config::{Env, or_exit};
use pipeline_common::logging::{self, LogFormat};

#[tokio::main]
async fn main() {
    logging::init(LogFormat::from_env());
    let config = or_exit(
        "money-sender",
        money_sender::Config::from_env(&Env::from_process()),
    );
    if let Err(err) = money_sender::serve(config, pipeline_common::serve::shutdown_signal()).await {
        tracing::error!(event = "server_failed", "{err}");
        std::process::exit(1);
    }
}
