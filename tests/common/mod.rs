//! Shared by the end-to-end and operator tests.

use stark_pipeline::local::StackOptions;
use stark_pipeline::local::bus::BusChoice;

/// The stack every end-to-end and operator test starts from: the hostile defaults, on the
/// emulator (see [`bus_choice`]), one campaign hour in 2 s.
pub fn options(campaign: &str, hours: u32) -> StackOptions {
    StackOptions {
        bus: bus_choice(),
        hours,
        speed: 1800.0,
        campaign: campaign.to_owned(),
        ..Default::default()
    }
}

/// The real Pub/Sub emulator when there is one (`PUBSUB_EMULATOR_HOST`, as `scripts/test.sh`
/// exports, or an installed gcloud emulator); required when `CI=true`. Elsewhere, the in-process
/// bus with a notice, so that a newcomer without gcloud still runs the suite.
pub fn bus_choice() -> BusChoice {
    capture_logs();
    let shared = std::env::var_os("PUBSUB_EMULATOR_HOST").is_some_and(|h| !h.is_empty());
    if shared || gcp_pubsub::emulator::Emulator::available() {
        return BusChoice::Emulator;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but no Pub/Sub emulator: set PUBSUB_EMULATOR_HOST (scripts/test.sh does) or install gcloud's pubsub-emulator"
    );
    eprintln!(
        "NOTICE: no Pub/Sub emulator installed; this test runs on the in-process bus instead"
    );
    BusChoice::Memory
}

/// Sends the services' logs (`warn` and up unless `RUST_LOG` says otherwise) to the test
/// harness's capture: a failing test prints what the pipeline logged while it ran, a passing one
/// prints nothing. Threads a test spawns (its Tokio workers) inherit its capture.
fn capture_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}
