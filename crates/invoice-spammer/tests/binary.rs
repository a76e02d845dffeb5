//! The built binary: exit codes, stderr naming the variable, `--dry-run` JSON, log lines.
//!
//! Each test runs the process with a cleared environment so that the developer's shell cannot
//! leak configuration into it.

use std::process::{Command, Output};

use invoice_spammer::{SpammerConfig, batch};
use pipeline_domain::messages::PendingInvoice;
use pipeline_service::config::Env;
use serde_json::Value;

const CONFIG: [(&str, &str); 3] = [
    ("CAMPAIGN_ID", "bin-test"),
    ("CAMPAIGN_START", "2025-03-01T12:00:00Z"),
    ("CAMPAIGN_HOURS", "24"),
];

fn spammer(env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_invoice-spammer"))
        .env_clear()
        .envs(env.iter().copied())
        .env("LOG_FORMAT", "json")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `PUBSUB_EMULATOR_HOST` and a fresh project on it that holds the `pending_invoices` topic, for
/// runs that really publish. Without an emulator the test skips, except under `CI=true`, where
/// it fails.
fn emulator_with_topic(test: &str) -> Option<(String, String)> {
    let Ok(host) = std::env::var("PUBSUB_EMULATOR_HOST") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but PUBSUB_EMULATOR_HOST is not set"
        );
        eprintln!("SKIPPED {test}: no Pub/Sub emulator (set PUBSUB_EMULATOR_HOST)");
        return None;
    };
    let project = format!("spammer-{test}-{}", std::process::id()).replace('_', "-");
    let url = format!("http://{host}/v1/projects/{project}/topics/pending_invoices");
    let status = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { reqwest::Client::new().put(&url).send().await })
        .expect("the emulator answers")
        .status();
    assert!(status.is_success(), "creating {url}: {status}");
    Some((host, project))
}

#[test]
fn a_missing_variable_exits_2_naming_it() {
    let output = spammer(
        &[("CAMPAIGN_START", "2025-03-01T12:00:00Z")],
        &["--dry-run"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("CAMPAIGN_ID"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());

    let output = spammer(&[("CAMPAIGN_ID", "demo")], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("CAMPAIGN_START"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_invalid_variable_exits_2_naming_it() {
    let mut env = CONFIG.to_vec();
    env.push(("INVOICE_AMOUNT_MIN_CENTS", "0"));
    let output = spammer(&env, &["--dry-run"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("INVOICE_AMOUNT_MIN_CENTS"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn dry_run_prints_the_batch_as_json() {
    let output = spammer(&CONFIG, &["--dry-run", "--slot", "3"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    assert_eq!(json["campaign"], "bin-test");
    assert_eq!(json["window"], "in_window");
    assert_eq!(json["slot"], 3);
    let invoices: Vec<PendingInvoice> =
        serde_json::from_value(json["invoices"].clone()).expect("invoices parse as PendingInvoice");
    let expected = batch(
        &SpammerConfig::from_env(&Env::from_pairs(CONFIG)).unwrap(),
        3,
    );
    assert_eq!(invoices, expected, "the binary prints the library's batch");
    assert_eq!(json["count"], expected.len());
    assert_eq!(
        json["totalCents"],
        expected.iter().map(|i| i.amount).sum::<i64>()
    );

    // `--now` picks the slot from the given clock: 05:30 BRT is 08:30 UTC on the 2nd = slot 20.
    let output = spammer(
        &CONFIG,
        &["--dry-run", "--now", "2025-03-02T05:30:00-03:00"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["slot"], 20);
}

#[test]
fn dry_run_outside_the_window_prints_an_empty_batch() {
    for (now, window) in [
        ("2025-03-01T11:59:59Z", "not_started"),
        ("2025-03-02T12:00:00Z", "ended"),
    ] {
        let output = spammer(&CONFIG, &["--dry-run", "--now", now]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["window"], window);
        assert_eq!(json["slot"], Value::Null);
        assert_eq!(json["invoices"], serde_json::json!([]));
    }
}

#[test]
fn bad_flags_exit_2() {
    let output = spammer(&CONFIG, &["--dry-run", "--slot", "24"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--slot 24"), "{}", stderr(&output));
    let output = spammer(
        &CONFIG,
        &["--dry-run", "--slot", "1", "--now", "2025-03-01T12:00:00Z"],
    );
    assert_eq!(output.status.code(), Some(2), "--slot and --now conflict");
    let output = spammer(&CONFIG, &["--dry-run", "--now", "yesterday"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--now"), "{}", stderr(&output));
}

#[test]
fn a_run_logs_one_line_per_publish_and_a_summary() {
    let Some((host, project)) = emulator_with_topic("logs") else {
        return;
    };
    let mut env = CONFIG.to_vec();
    env.push(("PUBSUB_EMULATOR_HOST", host.as_str()));
    env.push(("PUBSUB_PROJECT_ID", project.as_str()));
    let output = spammer(&env, &["--slot", "7"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let events = |name: &str| {
        lines
            .iter()
            .filter(|l| l["event"] == name)
            .collect::<Vec<_>>()
    };
    let count = batch(
        &SpammerConfig::from_env(&Env::from_pairs(CONFIG)).unwrap(),
        7,
    )
    .len();
    let published = events("invoice_request_published");
    assert_eq!(published.len(), count);
    assert!(
        published
            .iter()
            .all(|l| l["campaign"] == "bin-test" && l["slot"] == 7)
    );
    assert!(published.iter().all(|l| l["severity"] == "INFO"));
    let summary = events("batch_published");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["count"], count);
}

#[test]
fn a_run_outside_the_window_exits_0_and_says_so() {
    let Some((host, project)) = emulator_with_topic("outside") else {
        return;
    };
    let mut env = CONFIG.to_vec();
    env.push(("PUBSUB_EMULATOR_HOST", host.as_str()));
    env.push(("PUBSUB_PROJECT_ID", project.as_str()));
    let output = spammer(&env, &["--now", "2030-01-01T00:00:00Z"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("\"outside_campaign_window\""), "{stdout}");
    assert!(!stdout.contains("invoice_request_published"), "{stdout}");
}

#[test]
fn the_default_pubsub_publisher_needs_a_project() {
    let output = spammer(&CONFIG, &["--slot", "0"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("PUBSUB_PROJECT_ID"),
        "{}",
        stderr(&output)
    );
}
