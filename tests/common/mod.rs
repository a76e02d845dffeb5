//! Shared by the end-to-end and operator tests.

use stark_pipeline::local::bus::BusChoice;

/// The real Pub/Sub emulator when there is one (`PUBSUB_EMULATOR_HOST`, as `scripts/test.sh`
/// exports, or an installed gcloud emulator); required when `CI=true`. Elsewhere, the in-process
/// bus with a notice, so that a newcomer without gcloud still runs the suite.
pub fn bus_choice() -> BusChoice {
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
