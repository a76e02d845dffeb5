//! Compatibility proof with the official Stark Bank Python SDK (`starkbank` on PyPI): the SDK,
//! pointed at the sandbox with the monkeypatch (docs/stark-api.md, "Base URLs and paths"),
//! creates and queries invoices, creates transfers (including the official SDK test's own
//! `scheduled` shapes: `datetime.utcnow()` and `date.today()` by the client's clock while the
//! sandbox clock runs ahead), a webhook, reads the balance, and `starkbank.event.parse`s the
//! webhooks the sandbox delivered.
//!
//! The virtualenv is cached under `target/tmp`, so only the first run installs. Without python3
//! (or PyPI) the test skips with a message, except when `CI=true`, where it fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stark_sandbox::{Sandbox, SandboxConfig};

/// The SDK version docs/stark-api.md was checked against; bump deliberately.
const STARKBANK: &str = "starkbank==2.36.0";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Sandbox seconds from invoice creation to payment; the script advances the clock by this much.
const PAY_DELAY_SECS: u64 = 86_400;

/// Skips outside CI, fails in CI.
fn unavailable(why: String) -> Option<PathBuf> {
    assert!(
        !in_ci(),
        "CI=true but the Python SDK test cannot run: {why}"
    );
    eprintln!("SKIPPED official Python SDK test: {why}");
    None
}

async fn run(program: &Path, args: &[&str]) -> Result<(), String> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?} failed: {}\n{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The venv's python, created and filled on first use.
async fn python_with_sdk() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stark-sandbox-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("installed.txt");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == STARKBANK) && python.exists() {
        return Some(python);
    }
    if let Err(e) = run(Path::new("python3"), &["-m", "venv", venv.to_str()?]).await {
        return unavailable(e);
    }
    if let Err(e) = run(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            STARKBANK,
        ],
    )
    .await
    {
        return unavailable(e);
    }
    std::fs::write(&stamp, STARKBANK).ok()?;
    Some(python)
}

/// A receiver that answers 200 to every webhook.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/stark-webhook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(|| async { "ok" }))
            .await
            .unwrap();
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_runs_against_the_sandbox() {
    let Some(python) = python_with_sdk().await else {
        return;
    };
    let sandbox = Sandbox::start(SandboxConfig {
        speed: 600.0,
        pay_probability: 1.0,
        // Nothing is paid until the script moves the clock (`/_sandbox/advance`), so that its
        // checks of unpaid invoices cannot race the payments.
        pay_delay: Duration::from_secs(PAY_DELAY_SECS),
        initial_balance: 100_000,
        ..Default::default()
    })
    .await
    .unwrap();
    let (project, key) = sandbox.new_project();
    let key_path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("stark-sandbox-py-{}.pem", std::process::id()));
    std::fs::write(&key_path, key.to_pem()).unwrap();
    let receiver_url = receiver().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/compat.py");
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(&python)
            .arg(script)
            .env("SANDBOX_ROOT", sandbox.root_url())
            .env("PROJECT_ID", &project)
            .env("PRIVATE_KEY_PATH", &key_path)
            .env("RECEIVER_URL", &receiver_url)
            .env("PAY_DELAY_SECS", PAY_DELAY_SECS.to_string())
            .env(
                "LISTING_LAG_SECS",
                SandboxConfig::default().listing_lag.as_secs().to_string(),
            )
            .output(),
    )
    .await
    .expect("the Python script finished in time")
    .expect("the Python script ran");
    let _ = std::fs::remove_file(&key_path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Python SDK script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    eprintln!("Python SDK summary: {summary}");
    assert_eq!(summary["ok"], true);
    assert!(summary["parsed_events"].as_u64().unwrap() >= 9, "{summary}");
    assert!(
        summary["high_s"].as_u64().unwrap() > 0 && summary["low_s"].as_u64().unwrap() > 0,
        "{summary}"
    );

    // The SDK's requests were really checked: every one was signed and accepted.
    let state = sandbox.state();
    assert_eq!(state.invoices.len(), 3);
    // One transfer of its own, and five in the shape of the SDK's TestTransferPost, scheduled
    // "now" and "today" by the script's clock while the sandbox's ran a day ahead.
    assert_eq!(summary["sdk_test_transfers"], 5, "{summary}");
    assert_eq!(state.transfers.len(), 6);
    assert_eq!(state.webhooks.len(), 1);
    sandbox.shutdown().await;
}
