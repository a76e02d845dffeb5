//! The operator commands against stark-sandbox and the Pub/Sub emulator (the in-process bus
//! only outside CI when no emulator is installed; see tests/e2e.rs).

mod common;

use std::time::Duration;

use pipeline_domain::receiver::Receiver;
use stark_client::InvoiceLogType;
use stark_pipeline::local::bus::MONEY_SUBSCRIPTION;
use stark_pipeline::local::{Stack, StackOptions};
use stark_pipeline::ops;
use stark_sandbox::SandboxState;
use time::OffsetDateTime;

fn options(campaign: &str, hours: u32) -> StackOptions {
    StackOptions {
        // These tests count payouts against credits; reversals are the end-to-end tests' job.
        reversal_rate: 0.0,
        ..common::options(campaign, hours)
    }
}

async fn stack(campaign: &str, hours: u32) -> Stack {
    Stack::start(options(campaign, hours)).await.unwrap()
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// Our workspace's credited invoices (another workspace's are paid too, and post to us).
fn credited(state: &SandboxState) -> usize {
    state
        .invoice_logs
        .iter()
        .filter(|l| l.log_type == InvoiceLogType::Credited)
        .filter(|l| state.invoice_workspace(&l.invoice.id) == Some(state.workspace_id.as_str()))
        .count()
}

/// Our workspace's invoices.
fn issued(state: &SandboxState) -> usize {
    state.invoices_in(&state.workspace_id).count()
}

/// Plays a campaign while the ingester is down: Stark's deliveries fail, are retried on its
/// schedule (compressed like every other delay, so Stark gives up within seconds), and stay
/// undelivered, so no payout happens.
async fn campaign_with_lost_webhooks(campaign: &str) -> Stack {
    let stack = Stack::start(StackOptions {
        webhook_retries: Some(stark_sandbox::stark_retry_schedule()),
        ..options(campaign, 2)
    })
    .await
    .unwrap();
    stack.ingester.shutdown().await;
    for slot in 0..stack.spammer.hours {
        stack.run_slot(slot).await.unwrap();
    }
    let expected = stack.expected_invoices();
    stack
        .sandbox
        .wait_for(Duration::from_secs(60), |s| {
            let credited_events: Vec<_> = s
                .events
                .iter()
                .filter(|e| {
                    e.workspace_id.as_deref() == Some(s.workspace_id.as_str())
                        && e.invoice_log()
                            .is_some_and(|l| l.log_type == InvoiceLogType::Credited)
                })
                .collect();
            issued(s) == expected
                && credited_events.len() == credited(s)
                && credited(s) > 0
                && stark_pipeline::local::report::settled_invoices(s, Duration::from_secs(20 * 60))
                && credited_events
                    .iter()
                    .all(|e| s.attempts.iter().filter(|a| a.event_id == e.id).count() >= 4)
        })
        .await
        .unwrap();
    assert!(
        stack.sandbox.state().transfers.is_empty(),
        "no webhook arrived, so nothing was paid"
    );
    stack
}

async fn wait_for_payouts(stack: &Stack) -> SandboxState {
    stack
        .sandbox
        .wait_for(Duration::from_secs(60), |s| {
            s.transfers.len() == credited(s)
                && s.transfers
                    .iter()
                    .all(|t| t.status == stark_client::TransferStatus::Success)
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_lost_payouts_and_repair_pays_each_once() {
    let stack = campaign_with_lost_webhooks("ops-reconcile").await;
    let receiver = Receiver::default();
    let now = stack.sandbox.now();
    let args = ops::reconcile::ReconcileArgs {
        since: "1d".into(),
        repair: false,
        grace: Duration::from_secs(600),
        campaign: None,
        output: table(),
    };
    let (ok, out) = reconcile(&stack, &args, false, &receiver, now).await;
    let report = text(&out);
    let lost = credited(&stack.sandbox.state());
    assert!(!ok, "{report}");
    assert_eq!(
        report.matches("credited but not paid out").count(),
        lost,
        "{report}"
    );
    let json = reconcile_json(&stack, &receiver, now).await;
    assert_eq!(json["ok"], false, "{json}");
    let findings = json["findings"].as_array().unwrap();
    let unpaid: Vec<_> = findings
        .iter()
        .filter(|f| f["kind"] == "not_paid_out")
        .collect();
    assert_eq!(unpaid.len(), lost, "{json}");
    assert!(
        unpaid.iter().all(|f| f["problem"] == true
            && f["due"].as_i64().unwrap() > 0
            && f["invoice_id"].is_string()),
        "{json}"
    );
    assert_eq!(json["summary"]["problems"], lost, "{json}");
    assert_eq!(json["summary"]["credited"], lost, "{json}");
    assert!(rfc3339(&json["since"]), "{json}");

    // Within the grace period (here: a day, longer than the campaign) nothing is republished:
    // the pipeline may still be paying those.
    let patient = ops::reconcile::ReconcileArgs {
        since: "1d".into(),
        repair: true,
        grace: Duration::from_secs(86_400),
        campaign: None,
        output: table(),
    };
    let (_, out) = reconcile(&stack, &patient, true, &receiver, now).await;
    assert_eq!(text(&out).matches("REPAIR").count(), 0, "{}", text(&out));
    let repair = ops::reconcile::ReconcileArgs {
        since: "1d".into(),
        repair: true,
        grace: Duration::from_secs(600),
        campaign: None,
        output: table(),
    };
    let (_, out) = reconcile(&stack, &repair, true, &receiver, now).await;
    assert_eq!(text(&out).matches("REPAIR").count(), lost, "{}", text(&out));
    let state = wait_for_payouts(&stack).await;
    assert_eq!(state.transfers.len(), lost);

    // A second repair finds nothing to do and, even if it republished, nothing would be paid twice.
    let (ok, out) = reconcile(&stack, &repair, true, &receiver, now).await;
    assert!(ok, "{}", text(&out));
    let summary = text(&out);
    assert!(
        summary.contains(&format!("{lost} paid out correctly"))
            && summary.contains(" 0 problem(s)"),
        "{summary}"
    );
    let json = reconcile_json(&stack, &receiver, now).await;
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["summary"]["paid_out"], lost, "{json}");
    assert_eq!(json["summary"]["problems"], 0, "{json}");
    assert_eq!(stack.sandbox.state().transfers.len(), lost);
    stack.shutdown().await;
}

/// `trace ID --format json`, parsed.
async fn trace_json(stack: &Stack, id: &str) -> serde_json::Value {
    let mut out = Vec::new();
    ops::trace::run(
        &ops::trace::TraceArgs {
            id: id.to_owned(),
            output: json_format(),
        },
        &stack.stark,
        stack.options.transfer_fee,
        &mut out,
    )
    .await
    .unwrap();
    parse_json(&out)
}

fn table() -> ops::output::FormatArg {
    ops::output::FormatArg::default()
}

fn json_format() -> ops::output::FormatArg {
    ops::output::FormatArg {
        format: ops::output::Format::Json,
    }
}

/// Whether a JSON value is an RFC 3339 instant.
fn rfc3339(value: &serde_json::Value) -> bool {
    value.as_str().is_some_and(|t| {
        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

fn parse_json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// `reconcile --since 1d --format json`, parsed.
async fn reconcile_json(
    stack: &Stack,
    receiver: &Receiver,
    now: OffsetDateTime,
) -> serde_json::Value {
    let args = ops::reconcile::ReconcileArgs {
        since: "1d".into(),
        repair: false,
        grace: Duration::from_secs(600),
        campaign: None,
        output: json_format(),
    };
    parse_json(&reconcile(stack, &args, false, receiver, now).await.1)
}

/// `ops::reconcile::run` against the stack, repairing through its bus when `repair`: whether
/// all was well, and what it printed.
async fn reconcile(
    stack: &Stack,
    args: &ops::reconcile::ReconcileArgs,
    repair: bool,
    receiver: &Receiver,
    now: OffsetDateTime,
) -> (bool, Vec<u8>) {
    let mut out = Vec::new();
    let ok = ops::reconcile::run(
        args,
        &stack.stark,
        repair.then(|| stack.repair_bus()),
        receiver,
        stack.options.transfer_fee,
        now,
        &mut out,
    )
    .await
    .unwrap();
    (ok, out)
}

/// `events undelivered`, with `format` and optionally `--since`.
fn undelivered(
    republish: bool,
    since: Option<&str>,
    output: ops::output::FormatArg,
) -> ops::events::EventsCommand {
    ops::events::EventsCommand::Undelivered {
        republish,
        after: None,
        since: since.map(str::to_owned),
        output,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_events_are_republished_and_marked_delivered() {
    let stack = campaign_with_lost_webhooks("ops-events").await;
    let lost = credited(&stack.sandbox.state());
    let now = stack.sandbox.now();
    let mut out = Vec::new();
    assert!(
        !ops::events::run(
            &undelivered(false, None, table()),
            &stack.stark,
            None,
            now,
            &mut out
        )
        .await
        .unwrap()
    );
    assert!(
        text(&out).contains(&format!("{lost} credited invoice(s) waiting")),
        "{}",
        text(&out)
    );
    let mut out = Vec::new();
    ops::events::run(
        &undelivered(false, Some("1d"), json_format()),
        &stack.stark,
        None,
        now,
        &mut out,
    )
    .await
    .unwrap();
    let json = parse_json(&out);
    assert_eq!(json["summary"]["credited_waiting"], lost, "{json}");
    let credited_events: Vec<&serde_json::Value> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["credited"] == true)
        .collect();
    assert_eq!(credited_events.len(), lost, "{json}");
    assert!(
        credited_events.iter().all(|e| rfc3339(&e["created"])
            && e["subscription"] == "invoice"
            && e["log_type"] == "credited"
            && e["republished_message_id"].is_null()),
        "{json}"
    );
    // `--since` is an instant: nothing was created after now.
    let mut out = Vec::new();
    ops::events::run(
        &undelivered(false, Some("0s"), json_format()),
        &stack.stark,
        None,
        now,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        parse_json(&out)["summary"]["undelivered"],
        0,
        "{}",
        text(&out)
    );

    // trace names the way out: resend the undelivered credited event.
    let first = credited_events[0]["id"].as_str().unwrap().to_owned();
    let invoice = credited_events[0]["resource_id"].as_str().unwrap();
    let json = trace_json(&stack, invoice).await;
    assert_eq!(json["verdict"], "credited, payout pending", "{json}");
    assert!(
        json["next"].as_str().unwrap().contains("events resend"),
        "{json}"
    );
    assert!(
        json["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["source"] == "attempt"),
        "every failed delivery attempt is shown: {json}"
    );

    // `events resend` handles one event; `--republish` the rest.
    let publisher = stack.bus.publisher();
    let mut out = Vec::new();
    ops::events::run(
        &ops::events::EventsCommand::Resend {
            event_id: first.clone(),
        },
        &stack.stark,
        Some(publisher.as_ref()),
        now,
        &mut out,
    )
    .await
    .unwrap();
    assert!(text(&out).contains("marked delivered"), "{}", text(&out));
    assert_eq!(
        stack.stark.get_event(&first).await.unwrap().is_delivered,
        Some(true)
    );
    let mut out = Vec::new();
    ops::events::run(
        &undelivered(true, None, table()),
        &stack.stark,
        Some(publisher.as_ref()),
        now,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(
        text(&out).matches("marked delivered").count(),
        lost - 1,
        "{}",
        text(&out)
    );
    let state = wait_for_payouts(&stack).await;
    assert_eq!(state.transfers.len(), lost);
    let mut out = Vec::new();
    assert!(
        ops::events::run(
            &undelivered(false, None, table()),
            &stack.stark,
            None,
            now,
            &mut out
        )
        .await
        .unwrap(),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("0 credited invoice(s) waiting"),
        "{}",
        text(&out)
    );
    let json = reconcile_json(&stack, &Receiver::default(), stack.sandbox.now()).await;
    assert_eq!(json["ok"], true, "{json}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_and_status_after_a_campaign() {
    let started = OffsetDateTime::now_utc();
    let stack = stack("ops-replay", 2).await;
    stack.play(|_, _| {}).await.unwrap();
    let state = stack
        .settle(Duration::from_secs(60), |_, _| {})
        .await
        .unwrap();
    let transfers = state.transfers.len();
    assert!(transfers > 0);

    // status
    let mut out = Vec::new();
    let healthy = ops::status::run(
        &ops::status::StatusArgs {
            campaign: "ops-replay".into(),
            output: table(),
        },
        &stack.stark,
        stack.bus.target(),
        &Receiver::default(),
        stack.options.transfer_fee,
        &mut out,
    )
    .await
    .unwrap();
    let status = text(&out);
    assert!(healthy, "{status}");
    assert!(status.contains("0 problem(s)"), "{status}");
    assert!(status.contains("2 (hours 0..=1)"), "{status}");
    let mut out = Vec::new();
    ops::status::run(
        &ops::status::StatusArgs {
            campaign: "ops-replay".into(),
            output: json_format(),
        },
        &stack.stark,
        stack.bus.target(),
        &Receiver::default(),
        stack.options.transfer_fee,
        &mut out,
    )
    .await
    .unwrap();
    let json = parse_json(&out);
    assert_eq!(json["healthy"], true, "{json}");
    assert_eq!(json["slots"]["run"], 2, "{json}");
    assert_eq!(json["slots"]["first"], 0, "{json}");
    assert_eq!(json["slots"]["last"], 1, "{json}");
    assert_eq!(json["invoices"]["issued"], issued(&state), "{json}");
    assert_eq!(json["transfers"]["total"], transfers, "{json}");
    assert_eq!(json["transfers"]["success"], transfers, "{json}");
    let paid_out: i64 = state.transfers.iter().map(|t| t.amount).sum();
    assert_eq!(json["transfers"]["paid_out_amount"], paid_out, "{json}");
    assert_eq!(json["problems"].as_array().unwrap().len(), 0, "{json}");
    if stack.bus.target().is_some() {
        let dead = json["dead_letters"].as_array().unwrap();
        assert_eq!(dead.len(), 2, "{json}");
        assert!(dead.iter().all(|d| d["waiting"] == 0), "{json}");
    }

    // doctor: every check passes against the local stack.
    let context = ops::Context {
        env: pipeline_service::config::Env::from_pairs([(
            "STARK_WORKSPACE_ID",
            state.workspace_id.as_str(),
        )]),
        stark: Some(stack.stark.clone()),
        pubsub: stack.bus.target().cloned(),
    };
    let doctor = ops::doctor::DoctorArgs {
        ingester_url: Some(stack.ingester.url("/webhook")),
        output: json_format(),
    };
    let mut out = Vec::new();
    let exit = ops::doctor::run(&doctor, &context, None, &mut out)
        .await
        .unwrap();
    let json = parse_json(&out);
    let checks = json["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "stark_credentials",
            "pubsub_topology",
            "stark_webhook",
            "workspace_id"
        ]
    );
    let expected_failures = usize::from(stack.bus.target().is_none());
    let failing: Vec<_> = checks.iter().filter(|c| c["status"] == "fail").collect();
    assert_eq!(failing.len(), expected_failures, "{json}");
    if expected_failures == 0 {
        assert_eq!(exit, ops::exit::Exit::Ok, "{json}");
        assert_eq!(json["ok"], true, "{json}");
    }
    assert_eq!(
        json["configuration"]["workspace_id"],
        state.workspace_id.as_str()
    );
    assert!(
        json["configuration"]["public_key_fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{json}"
    );
    // With no ingester URL and no workspace id, those two checks fail with their fix.
    let bare = ops::Context {
        env: Default::default(),
        ..context
    };
    let mut out = Vec::new();
    let exit = ops::doctor::run(
        &ops::doctor::DoctorArgs {
            ingester_url: Some("https://elsewhere.example.com/webhook".into()),
            output: table(),
        },
        &bare,
        None,
        &mut out,
    )
    .await
    .unwrap();
    let report = text(&out);
    assert_eq!(exit, ops::exit::Exit::Problems, "{report}");
    assert!(report.contains("PASS stark_credentials"), "{report}");
    assert!(report.contains("FAIL stark_webhook"), "{report}");
    assert!(
        report.contains(
            "fix: stark-pipeline webhook register --url https://elsewhere.example.com/webhook"
        ),
        "{report}"
    );
    assert!(report.contains("FAIL workspace_id"), "{report}");

    // trace: a paid-out invoice by its request id, an unpaid one, and another workspace's.
    let paid = state
        .transfers
        .iter()
        .find(|t| t.status == stark_client::TransferStatus::Success)
        .and_then(|t| t.external_id.as_deref())
        .and_then(pipeline_domain::vocab::PayoutKey::parse)
        .unwrap();
    let paid_invoice = state
        .invoices
        .iter()
        .find(|i| i.id == paid.invoice_id())
        .unwrap();
    let request = pipeline_domain::vocab::RequestTag::find(&paid_invoice.tags).unwrap();
    let json = trace_json(&stack, request.request_id()).await;
    assert_eq!(json["verdict"], "paid out", "{json}");
    assert_eq!(json["invoice_id"], paid_invoice.id.as_str(), "{json}");
    assert_eq!(json["request_id"], request.request_id(), "{json}");
    assert_eq!(json["transfers"][0]["status"], "success", "{json}");
    assert_eq!(json["transfers"][0]["generation"], 1, "{json}");
    assert!(
        json["credit_to_payout_seconds"].as_f64().unwrap() >= 0.0,
        "{json}"
    );
    let timeline = json["timeline"].as_array().unwrap();
    let has = |source: &str, what: &str| {
        timeline
            .iter()
            .any(|e| e["source"] == source && e["what"] == what && rfc3339(&e["at"]))
    };
    assert!(
        has("invoice", "credited") && has("event", "credited") && has("transfer", "success"),
        "{json}"
    );
    assert!(
        json["logging_filter"]
            .as_str()
            .unwrap()
            .contains(&format!("jsonPayload.invoice_id=\"{}\"", paid_invoice.id)),
        "{json}"
    );
    if let Some(unpaid) = state
        .invoices_in(&state.workspace_id)
        .find(|i| i.status == stark_client::InvoiceStatus::Created)
    {
        let json = trace_json(&stack, &unpaid.id).await;
        assert_eq!(json["verdict"], "waiting for payment", "{json}");
    }
    let foreign = state
        .invoices
        .iter()
        .find(|i| state.invoice_workspace(&i.id) != Some(state.workspace_id.as_str()))
        .unwrap();
    let json = trace_json(&stack, &foreign.id).await;
    assert_eq!(json["verdict"], "refused: not ours", "{json}");
    let mut out = Vec::new();
    ops::trace::run(
        &ops::trace::TraceArgs {
            id: paid_invoice.id.clone(),
            output: table(),
        },
        &stack.stark,
        stack.options.transfer_fee,
        &mut out,
    )
    .await
    .unwrap();
    let report = text(&out);
    assert!(
        report.contains("verdict: paid out") && report.contains("credit → payout: "),
        "{report}"
    );

    // replay: refused beyond 7 days, dry run changes nothing, a real replay pays nothing twice.
    let Some(target) = stack.bus.target() else {
        eprintln!("NOTICE: replay needs the emulator; skipped on the in-process bus");
        return;
    };
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::new();
    let too_old = ops::replay::ReplayArgs {
        subscription: MONEY_SUBSCRIPTION.into(),
        since: "8d".into(),
        dry_run: false,
    };
    let err = ops::replay::run(&too_old, target, now, &mut out)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("7 days"), "{err}");
    let since = started
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let dry = ops::replay::ReplayArgs {
        subscription: MONEY_SUBSCRIPTION.into(),
        since: since.clone(),
        dry_run: true,
    };
    let posts = stack.money.posts();
    ops::replay::run(&dry, target, now, &mut out).await.unwrap();
    assert!(text(&out).contains("dry run: would seek"), "{}", text(&out));
    let real = ops::replay::ReplayArgs {
        subscription: MONEY_SUBSCRIPTION.into(),
        since,
        dry_run: false,
    };
    ops::replay::run(&real, target, now, &mut out)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stack.money.posts() < posts + transfers as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replay did not redeliver every message"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = stack
        .settle(Duration::from_secs(60), |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        after.transfers.len(),
        transfers,
        "a replay creates no transfer"
    );
    assert_eq!(issued(&after), issued(&state), "nor an invoice");
    stack.shutdown().await;
}

#[tokio::test]
async fn webhook_register_is_idempotent_and_list_delete_work() {
    let stark = stark_sandbox::Sandbox::start(Default::default())
        .await
        .unwrap();
    let (project, key) = stark.new_project();
    let client = stark.client(&project, key).unwrap();
    let register = ops::webhook::WebhookCommand::Register {
        url: "https://ingester.example.com/webhook".into(),
        subscriptions: vec!["invoice".into()],
    };
    let mut out = Vec::new();
    ops::webhook::run(&register, &client, &mut out)
        .await
        .unwrap();
    ops::webhook::run(&register, &client, &mut out)
        .await
        .unwrap();
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    let webhooks = client.list_webhooks().await.unwrap();
    assert_eq!(webhooks.len(), 1);
    let mut out = Vec::new();
    ops::webhook::run(
        &ops::webhook::WebhookCommand::List { output: table() },
        &client,
        &mut out,
    )
    .await
    .unwrap();
    let listed = text(&out);
    assert!(
        listed.contains("https://ingester.example.com/webhook"),
        "{listed}"
    );
    assert!(!listed.contains("[\""), "no Debug output: {listed}");
    let mut out = Vec::new();
    ops::webhook::run(
        &ops::webhook::WebhookCommand::List {
            output: json_format(),
        },
        &client,
        &mut out,
    )
    .await
    .unwrap();
    let json = parse_json(&out);
    assert_eq!(
        json["webhooks"][0]["url"], "https://ingester.example.com/webhook",
        "{json}"
    );
    assert_eq!(
        json["webhooks"][0]["subscriptions"],
        serde_json::json!(["invoice"]),
        "{json}"
    );
    assert_eq!(json["webhooks"][0]["id"], webhooks[0].id.as_str(), "{json}");
    ops::webhook::run(
        &ops::webhook::WebhookCommand::Delete {
            id: webhooks[0].id.clone(),
        },
        &client,
        &mut out,
    )
    .await
    .unwrap();
    assert!(client.list_webhooks().await.unwrap().is_empty());
    let plain = ops::webhook::WebhookCommand::Register {
        url: "http://example.com/webhook".into(),
        subscriptions: vec!["invoice".into()],
    };
    assert!(
        ops::webhook::run(&plain, &client, &mut out)
            .await
            .unwrap_err()
            .to_string()
            .contains("HTTPS")
    );
}

#[test]
fn keygen_writes_stark_formats_and_refuses_to_overwrite() {
    let dir = std::env::temp_dir().join(format!("stark-keygen-{}", std::process::id()));
    let args = ops::keygen::KeygenArgs {
        dir: dir.clone(),
        force: false,
    };
    let mut out = Vec::new();
    assert!(ops::keygen::run(&args, &mut out).unwrap());
    assert!(text(&out).contains("Integrations"), "{}", text(&out));
    let private = std::fs::read_to_string(dir.join("private-key.pem")).unwrap();
    let public = std::fs::read_to_string(dir.join("public-key.pem")).unwrap();
    let key = stark_client::PrivateKey::from_pem(&private).unwrap();
    assert_eq!(
        stark_client::PublicKey::from_pem(&public).unwrap(),
        key.public_key()
    );
    let err = ops::keygen::run(&args, &mut out).unwrap_err();
    assert!(format!("{err:#}").contains("exists"), "{err:#}");
    assert_eq!(
        std::fs::read_to_string(dir.join("private-key.pem")).unwrap(),
        private,
        "untouched"
    );
    let forced = ops::keygen::KeygenArgs {
        dir: dir.clone(),
        force: true,
    };
    ops::keygen::run(&forced, &mut out).unwrap();
    assert_ne!(
        std::fs::read_to_string(dir.join("private-key.pem")).unwrap(),
        private
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh directory for one CLI run (its `.env`, if any, is the only configuration).
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stark-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the built `stark-pipeline` in `dir` with only `vars` set.
fn cli(dir: &std::path::Path, args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stark-pipeline"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn cli_reports_missing_configuration_by_name() {
    let dir = temp_dir("missing");
    let output = cli(&dir, &["webhook", "list"], &[]);
    assert_eq!(output.status.code(), Some(2), "a configuration error");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("STARK_ACCESS_ID"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn status_reads_campaign_id_when_the_flag_is_absent() {
    let dir = temp_dir("campaign");
    let output = cli(&dir, &["status"], &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--campaign"));
    // With CAMPAIGN_ID the arguments parse, and the next thing missing is Stark's configuration.
    let output = cli(&dir, &["status"], &[("CAMPAIGN_ID", "black-friday")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("STARK_ACCESS_ID"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn doctor_shows_the_dotenv_settings_and_exits_3_when_stark_is_unreachable() {
    let dir = temp_dir("doctor");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let key = stark_client::PrivateKey::generate();
    let pem = key.to_pem();
    let secret_line = pem.lines().nth(1).unwrap().to_owned();
    let fingerprint = ops::doctor::fingerprint(&key.public_key());
    std::fs::write(
        dir.join(".env"),
        format!(
            "STARK_ACCESS_ID=project/5656565656565656\nSTARK_ENVIRONMENT=http://127.0.0.1:{port}/v2\nSTARK_PRIVATE_KEY_PEM=\"{}\"\nSTARK_WORKSPACE_ID=6010044957065216\nPAYOUT_NAME=\"Ana Souza Ltda\"\nINGESTER_URL=https://ingester.example.com/webhook\n",
            pem.trim_end().replace('\n', "\\n")
        ),
    )
    .unwrap();
    let output = cli(&dir, &["doctor"], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stdout}{stderr}");
    for shown in [
        "project/5656565656565656",
        &format!("http://127.0.0.1:{port}/v2 (custom)"),
        "from STARK_PRIVATE_KEY_PEM",
        &fingerprint,
        "6010044957065216",
        "Ana Souza Ltda",
        "https://ingester.example.com/webhook",
        "FAIL stark_credentials: Stark is unreachable",
        "PUBSUB_PROJECT_ID",
    ] {
        assert!(stdout.contains(shown), "{shown} missing from:\n{stdout}");
    }
    assert!(
        !stdout.contains(&secret_line) && !stderr.contains(&secret_line),
        "the key leaked"
    );

    let output = cli(&dir, &["doctor", "--format", "json"], &[]);
    assert_eq!(output.status.code(), Some(3));
    let json = parse_json(&output.stdout);
    assert_eq!(json["ok"], false);
    assert_eq!(json["checks"][0]["name"], "stark_credentials");
    assert_eq!(json["checks"][0]["status"], "fail");
    assert_eq!(
        json["configuration"]["public_key_fingerprint"],
        fingerprint.as_str()
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dotenv_is_loaded_without_overriding_and_checked() {
    let dir = temp_dir("dotenv");
    std::fs::write(
        dir.join(".env"),
        "STARK_ACCESS_ID=project/1\nBASE_URL=http://127.0.0.1:9/v2\nSTARK_ACESS_ID=project/2\n",
    )
    .unwrap();
    // The process's own value wins over the file's.
    let output = cli(&dir, &["webhook", "list"], &[("STARK_ACCESS_ID", "nope")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("\"nope\""), "{stderr}");
    assert!(
        stderr.contains("STARK_ACESS_ID") && stderr.contains("did you mean STARK_ACCESS_ID?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("reading BASE_URL as STARK_ENVIRONMENT"),
        "{stderr}"
    );

    std::fs::write(
        dir.join(".env"),
        "STARK_ACCESS_ID=project/1\n# Stark\nPAYOUT_NAME=Stark Bank S.A.\n",
    )
    .unwrap();
    let output = cli(&dir, &["webhook", "list"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3 (PAYOUT_NAME)"), "{stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reissues_lost_requests_and_cancels_later_duplicates() {
    // invoice-sender is down for the first slot and its requests are dead-lettered after five
    // attempts: nothing but the reconciler, which knows the spammer's batches, brings them back.
    // A slow clock (an invoice is paid 8 minutes after its creation: 8 real seconds here), so
    // that the duplicate made below is still `created` when the repair cancels it.
    let stack = Stack::start(StackOptions {
        max_delivery_attempts: 5,
        speed: 60.0,
        ..options("ops-reissue", 1)
    })
    .await
    .unwrap();
    stack.sender.shutdown().await;
    stack.run_slot(0).await.unwrap();
    let batch = invoice_spammer::batch(&stack.spammer, 0).len();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let parked = stack.bus.dead_letters().await.unwrap();
        if parked
            .iter()
            .any(|(name, n)| name.starts_with("pending_invoices") && *n >= batch)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not parked: {parked:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.sender.restart().await.unwrap();
    // A duplicate of one request, as a bug or a race could make: still `created`.
    let (_, first) = (0, invoice_spammer::batch(&stack.spammer, 0).remove(0));
    let repair = |grace: u64| ops::reconcile::ReconcileArgs {
        since: "1d".into(),
        repair: true,
        grace: Duration::from_secs(grace),
        campaign: Some(stack.spammer.clone()),
        output: table(),
    };
    let now = stack.sandbox.now() + time::Duration::hours(1);
    let (_, out) = reconcile(&stack, &repair(600), true, &Receiver::default(), now).await;
    let report = text(&out);
    assert_eq!(report.matches("REPAIR request").count(), batch, "{report}");
    assert!(report.contains("not_issued"), "{report}");
    stack
        .sandbox
        .wait_for(Duration::from_secs(60), |s| issued(s) == batch)
        .await
        .unwrap();
    let duplicate = stark_client::NewInvoice {
        amount: first.amount,
        tax_id: first.tax_id.clone(),
        name: first.name.clone(),
        tags: first.tags.clone(),
        ..Default::default()
    };
    let made = stack.stark.create_invoices(&[duplicate]).await.unwrap();
    stack.sandbox.advance(Duration::from_secs(60));
    let (_, out) = reconcile(&stack, &repair(600), true, &Receiver::default(), now).await;
    let report = text(&out);
    assert_eq!(
        report.matches("REPAIR request").count(),
        0,
        "all issued now: {report}"
    );
    assert!(
        report.contains(&format!("REPAIR invoice {}: canceled", made[0].id)),
        "{report}"
    );
    let state = stack.sandbox.state();
    assert_eq!(
        state.invoice(&made[0].id).unwrap().status,
        stark_client::InvoiceStatus::Canceled
    );
    stack.shutdown().await;
}

#[test]
fn keep_running_serves_drills_from_local_env_until_sigint() {
    // The whole stack, its own emulator included, kept up after a one-hour campaign.
    let dir = temp_dir("keep");
    let path = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var("HOME").unwrap_or_default();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_stark-pipeline"))
        .args([
            "run",
            "--keep-running",
            "--hours",
            "1",
            "--speed",
            "3600",
            "--campaign",
            "drill",
        ])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", &path)
        .env("HOME", &home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let env_file = dir.join("target/local.env");
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    while !env_file.exists() {
        assert!(std::time::Instant::now() < deadline, "no target/local.env");
        assert!(child.try_wait().unwrap().is_none(), "the stack exited");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(200));
    let vars: Vec<(String, String)> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap();
            (name.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect();
    let var = |name: &str| vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let mut env: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    env.push(("PATH", &path));
    let status = cli(&dir, &["status", "--format", "json"], &env);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["campaign"], "drill", "{json}");
    assert!(json["invoices"]["issued"].as_u64().unwrap() >= 8, "{json}");
    // One of its invoices, traced.
    let root = var("STARK_ENVIRONMENT")
        .unwrap()
        .trim_end_matches("/v2")
        .to_owned();
    let state: serde_json::Value = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            reqwest::get(format!("{root}/_sandbox/state"))
                .await?
                .json()
                .await
        })
        .unwrap();
    let workspace = var("STARK_WORKSPACE_ID").unwrap();
    let invoice = state["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .find(|id| state["invoiceWorkspaces"][id] == workspace.as_str())
        .expect("an invoice of ours");
    let trace = cli(&dir, &["trace", &invoice, "--format", "json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&trace.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&trace.stderr)));
    assert!(
        json["verdict"].is_string() || json["verdict"].is_object(),
        "{json}"
    );
    // SIGINT stops everything, the emulator included.
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit}");
    let closed = |address: &str| std::net::TcpStream::connect(address).is_err();
    let sandbox = root.trim_start_matches("http://").to_owned();
    assert!(closed(&sandbox), "the sandbox still answers");
    match var("PUBSUB_EMULATOR_HOST") {
        Some(host) => {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !closed(&host) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the emulator still answers"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        None => assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the stack ran without the emulator"
        ),
    }
    let _ = std::fs::remove_dir_all(dir);
}
