//! End-to-end: the whole pipeline on the real Pub/Sub emulator (required when `CI=true`),
//! stark-sandbox as Stark Bank, the services on loopback ports.
//!
//! Each test starts its own stack. `scripts/test.sh` runs one emulator for the suite and
//! exports `PUBSUB_EMULATOR_HOST`; each stack then uses a project of its own on it. Without
//! that variable a stack starts its own emulator; without an emulator at all the tests fall
//! back to the in-process bus with a notice, except under `CI=true`, where they fail.

mod common;

use std::time::{Duration, SystemTime};

use pipeline_domain::messages::{PAID_INVOICES, TopicMessage as _};
use pipeline_domain::vocab::InvoiceTag;
use pipeline_service::publisher::OutgoingMessage;
use stark_pipeline::local::Stack;
use stark_pipeline::local::bus::MONEY_SUBSCRIPTION;
use stark_pipeline::local::report::{self, Report};
use stark_sandbox::FaultConfig;

use common::options;

async fn finish(stack: &Stack) -> (stark_sandbox::SandboxState, Report) {
    let state = stack
        .settle(stack.hour() * 4 + Duration::from_secs(120), |_, _| {})
        .await
        .expect("the pipeline settles");
    let report = stack.report(&state).await.expect("report");
    (state, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_campaign_pays_every_credited_invoice_exactly_once() {
    let options = options("e2e-full", 24);
    let transfer_fee = options.transfer_fee;
    let stack = Stack::start(options).await.unwrap();
    stack.play(|_, _| {}).await.unwrap();
    let (state, report) = finish(&stack).await;
    println!("{report}");
    assert!(report.ok(), "{report}");
    assert_eq!(report.rows.len(), 24, "one row per hourly slot");
    assert!(
        report.rows.iter().all(|r| (8..=12).contains(&r.issued)),
        "{report}"
    );
    let credited: usize = report.rows.iter().map(|r| r.credited).sum();
    assert!(credited > 150, "most invoices are paid: {credited}");
    let summary = report.audit.summary;
    assert_eq!(summary.credited, credited);
    assert_eq!(summary.paid_out + summary.nothing_due, credited, "{report}");
    let latency = report.latency.expect("payouts were made");
    assert!(
        (summary.paid_out..=credited).contains(&latency.count),
        "every payout is measured: {report}"
    );
    assert!(
        latency.p50 > Duration::ZERO && latency.p50 <= latency.p99,
        "{latency:?}"
    );
    assert!(
        summary.reversed > 0,
        "the default run reverses some invoices: {report}"
    );
    // What reversals took, as the campaign's cut-down looks saw it and as the whole sandbox
    // shows it: the same, and what the treasury covered.
    let payouts_of = |id: &str| InvoiceTag::for_invoice(id).to_string();
    let cut = stack.sandbox.reversed_state(&payouts_of);
    let taken = report::clawbacks(&state, transfer_fee);
    assert!(
        taken > 0,
        "full reversals take at least the fee back: {report}"
    );
    assert_eq!(report::clawbacks(&cut, transfer_fee), taken);
    assert_eq!(report.clawbacks_covered, taken, "{report}");
    assert!(
        report.foreign.credited > 0 && report.foreign.refused > 0 && report.foreign.accepted == 0,
        "another workspace's events were sent and refused: {report}"
    );
    let ours: Vec<_> = state.transfers_in(&state.workspace_id).collect();
    assert_eq!(
        ours.len(),
        state.transfers.len(),
        "no transfer in another workspace"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_still_pays_exactly_once() {
    let mut opts = options("e2e-chaos", 12);
    opts.faults = FaultConfig {
        seed: 11,
        server_error_rate: 0.2,
        lost_answer_rate: 0.05,
        duplicate_delivery_rate: 0.2,
        out_of_order_rate: 0.2,
        out_of_order_delay_secs: 600,
        ..Default::default()
    };
    // The stack's default 100 attempts, as in production: with 20 % of Stark calls failing,
    // and a payout acked only once its transfer succeeded, a few could meet an unlucky streak;
    // the checks below require nothing dead-lettered.
    let stack = Stack::start(opts).await.unwrap();
    for slot in 0..stack.spammer.hours {
        stack.run_slot(slot).await.unwrap();
        if slot == 4 {
            stack.money.restart().await.unwrap();
        }
        if slot == 7 {
            stack.sender.restart().await.unwrap();
            stack.ingester.restart().await.unwrap();
        }
    }
    let (state, report) = finish(&stack).await;
    println!("{report}");
    assert!(report.ok(), "{report}");
    let kinds: std::collections::HashSet<&str> =
        state.faults.iter().map(|f| f.kind.as_str()).collect();
    assert!(
        kinds.len() >= 3,
        "several kinds of faults were injected: {kinds:?}"
    );
    assert!(
        state.deliveries.iter().any(|d| d.duplicate),
        "some webhooks were delivered twice"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_paid_invoices_adds_no_transfer() {
    let before_campaign = SystemTime::now();
    let stack = Stack::start(options("e2e-replay", 4)).await.unwrap();
    stack.play(|_, _| {}).await.unwrap();
    let (state, report) = finish(&stack).await;
    assert!(report.ok(), "{report}");
    let transfers = state.transfers.len();
    assert!(transfers > 0);
    let posts_before = stack.money.posts();
    stack
        .bus
        .seek(MONEY_SUBSCRIPTION, before_campaign)
        .await
        .unwrap();
    // Every paid_invoices message comes back: at least one push per transfer made.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stack.money.posts() < posts_before + transfers as u64 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {transfers} redelivered",
            stack.money.posts() - posts_before
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (after, report) = finish(&stack).await;
    assert!(report.ok(), "{report}");
    assert_eq!(
        after.transfers.len(),
        transfers,
        "a replay never pays twice"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_and_nothing_else_is_affected() {
    // Five attempts, so that the poison is parked soon (the stack's default is 100, as in
    // production).
    let stack = Stack::start(stark_pipeline::local::StackOptions {
        max_delivery_attempts: 5,
        ..options("e2e-poison", 3)
    })
    .await
    .unwrap();
    let poison = OutgoingMessage {
        data: b"this is not a paid invoice".to_vec(),
        attributes: [("kind".to_owned(), "poison".to_owned())].into(),
        ordering_key: None,
    };
    stack
        .bus
        .publisher()
        .publish(PAID_INVOICES, poison)
        .await
        .unwrap();
    stack.play(|_, _| {}).await.unwrap();
    // The poison is refused on every attempt, then parked in paid_invoices' dead letters;
    // every payout check holds meanwhile. (Reading a dead-letter subscription is a peek whose
    // nack may hide the message for a moment, so each round reads it exactly once.)
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, report) = finish(&stack).await;
        for check in report
            .checks
            .iter()
            .filter(|c| !c.name.starts_with("dead-letter"))
        {
            assert!(check.ok, "{report}");
        }
        let parked = report
            .checks
            .iter()
            .find(|c| c.name.starts_with("dead-letter"))
            .unwrap();
        if !parked.ok {
            assert!(
                parked.detail.starts_with("paid_invoices") && parked.detail.ends_with(": 1"),
                "{report}"
            );
            assert!(!parked.detail.contains("pending_invoices"), "{report}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "poison not dead-lettered: {report}"
        );
    }
    stack.shutdown().await;
}

/// The settle diagnostics name what is missing: every request before the spammer ran, none
/// once each has its invoice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unissued_requests_are_named_until_issued() {
    let stack = Stack::start(options("e2e-unissued", 1)).await.unwrap();
    let expected = stack.expected_invoices();
    let before = stack.unissued_requests(&stack.sandbox.state());
    assert_eq!(before.len(), expected, "{before:?}");
    assert!(
        before[0].starts_with("slot 0 e2e-unissued-0-"),
        "{before:?}"
    );
    stack.run_slot(0).await.unwrap();
    stack
        .sandbox
        .wait_for(Duration::from_secs(60), |s| {
            s.invoices_in(&s.workspace_id).count() == expected
        })
        .await
        .unwrap();
    let after = stack.unissued_requests(&stack.sandbox.state());
    assert!(after.is_empty(), "{after:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_events_and_forged_numbers_move_no_money() {
    // The ingester's workspace check is off, so another workspace's validly signed credited
    // events reach money-sender; Stark answers with a storm of 429s meanwhile.
    let mut opts = options("e2e-hostile", 4);
    opts.ingester_checks_workspace = false;
    opts.foreign_invoices_per_slot = 2;
    // Refusals are parked after ten attempts (the default 100 would take minutes here); our
    // own payouts need two or three successful deliveries of those ten.
    opts.max_delivery_attempts = 10;
    opts.faults = FaultConfig {
        seed: 5,
        rate_limit_rate: 0.2,
        ..Default::default()
    };
    let stack = Stack::start(opts).await.unwrap();
    stack.play(|_, _| {}).await.unwrap();
    let (state, report) = finish(&stack).await;
    // Every check holds but the dead letters: the foreign invoices' messages are refused on
    // every attempt and parked there for an operator (and an alert).
    for check in report
        .checks
        .iter()
        .filter(|c| !c.name.starts_with("dead-letter"))
    {
        assert!(check.ok, "{report}");
    }
    assert!(report.foreign.credited > 0, "{report}");
    assert!(
        report.foreign.accepted > 0,
        "the ingester let them through: {report}"
    );
    let foreign_ids: Vec<&str> = state
        .invoices
        .iter()
        .filter(|i| state.invoice_workspace(&i.id) != Some(state.workspace_id.as_str()))
        .map(|i| i.id.as_str())
        .collect();
    assert!(
        state.transfers.iter().all(|t| foreign_ids
            .iter()
            .all(|id| !t.tags.iter().any(|tag| tag.contains(id)))),
        "no transfer for another workspace's invoice"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let parked = stack.bus.dead_letters().await.unwrap();
        let paid = parked
            .iter()
            .find(|(name, _)| name.starts_with(PAID_INVOICES))
            .map_or(0, |(_, n)| *n);
        if paid >= report.foreign.credited {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refusals not parked yet: {parked:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        state
            .faults
            .iter()
            .any(|f| f.kind.contains("429") || f.kind.contains("rate")),
        "the 429 storm happened: {:?}",
        state.faults.iter().map(|f| &f.kind).collect::<Vec<_>>()
    );

    // A forged message claiming 100× one of our credited invoices pays nothing more: Stark's
    // record says it is paid out already.
    let ours = state
        .invoice_logs
        .iter()
        .find(|l| {
            l.log_type == stark_client::InvoiceLogType::Credited
                && state.invoice_workspace(&l.invoice.id) == Some(state.workspace_id.as_str())
        })
        .expect("a credited invoice of ours");
    let mut forged = pipeline_service::records::paid_invoice(ours, "forged");
    forged.amount *= 100;
    let posts = stack.money.posts();
    stack
        .bus
        .publisher()
        .publish(PAID_INVOICES, forged.to_message())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stack.money.posts() == posts {
        assert!(
            std::time::Instant::now() < deadline,
            "forged message never pushed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (after, report) = finish(&stack).await;
    assert_eq!(
        after.transfers_in(&after.workspace_id).count(),
        state.transfers_in(&state.workspace_id).count(),
        "{report}"
    );
    assert!(report.audit.ok(), "{report}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_each_consumer_with_listing_lag_issue_and_pay_once() {
    // Two instances of invoice-sender and of money-sender behind a round-robin proxy (no lock
    // crosses instances), Stark's lists trailing its writes by 30 minutes of campaign time
    // (1 s here), duplicate webhooks and lost answers: only the subscriptions' ordering keys and
    // the services' own rules keep it at one invoice per request and one payout per invoice.
    let mut opts = options("e2e-instances", 4);
    if opts.bus != stark_pipeline::local::bus::BusChoice::Emulator {
        eprintln!("SKIPPED: message ordering needs the Pub/Sub emulator");
        return;
    }
    opts.instances = 2;
    opts.listing_lag = Some(Duration::from_secs(1800));
    opts.faults = FaultConfig {
        seed: 9,
        duplicate_delivery_rate: 0.3,
        lost_answer_rate: 0.05,
        ..Default::default()
    };
    let stack = Stack::start(opts).await.unwrap();
    // Cloud Scheduler fires twice: every slot's batch is published twice at once, so two
    // deliveries of each request race for the two instances.
    let publisher = stack.bus.publisher();
    for slot in 0..stack.spammer.hours {
        let (first, again) = tokio::join!(
            stack.run_slot(slot),
            invoice_spammer::run_slot(&stack.spammer, publisher.as_ref(), slot)
        );
        first.unwrap();
        again.unwrap();
    }
    let (_, report) = finish(&stack).await;
    assert!(report.ok(), "{report}");
    assert_eq!(stack.replicas.len(), 4);
    for replica in &stack.replicas {
        assert!(replica.posts() > 0, "{} got no push", replica.name);
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stark_outage_of_hours_heals_by_itself() {
    // Stark answers 503 to everything from hour 2 to hour 4 and holds its webhooks meanwhile:
    // pushes are retried (100 attempts, as in production) and nothing is dead-lettered.
    let mut opts = options("e2e-outage", 6);
    opts.stark_outage = Some((Duration::from_secs(2 * 3600), Duration::from_secs(2 * 3600)));
    let stack = Stack::start(opts).await.unwrap();
    stack.play(|_, _| {}).await.unwrap();
    let (state, report) = finish(&stack).await;
    assert!(report.ok(), "{report}");
    assert!(
        state.faults.iter().filter(|f| f.kind == "outage").count() > 10,
        "the outage refused requests"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scheduled_reconcilers_heal_dead_letters_and_lost_webhooks() {
    // Five attempts (production has 100), so that things really are dead-lettered: Stark is
    // down from hour 1 to hour 4, so invoice requests of those slots run out of attempts;
    // money-sender is down from hour 5 to hour 7 (or until a payout is dead-lettered and met
    // by a reconciler), so payouts run out of attempts; and a fifth
    // of the webhooks are lost outright (Stark gives up on them). No operator acts: only the
    // two scheduled reconcilers, running at once, can bring every request to one invoice and
    // every credit to one payout.
    let mut opts = options("e2e-heal", 9);
    opts.max_delivery_attempts = 5;
    opts.reconcilers = 2;
    opts.stark_outage = Some((Duration::from_secs(3600), Duration::from_secs(3 * 3600)));
    opts.faults = FaultConfig {
        seed: 5,
        server_error_rate: 0.05,
        lost_webhook_rate: 0.2,
        ..Default::default()
    };
    let stack = Stack::start(opts).await.unwrap();
    let at = |hours: i64| stack.spammer.start + time::Duration::hours(hours);
    let money_outage = async {
        while stack.sandbox.now() < at(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stack.money.shutdown().await;
        // Down for two campaign hours at least, and until a reconciler has met a dead-lettered
        // payout (how long five failed pushes take is the emulator's business).
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while stack.sandbox.now() < at(7)
            || (stack.reconciler_stats().payout_letters_drained == 0
                && std::time::Instant::now() < deadline)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stack.money.restart().await.unwrap();
    };
    let (played, ()) = tokio::join!(stack.play(|_, _| {}), money_outage);
    played.unwrap();
    let (state, report) = finish(&stack).await;
    println!("{report}");
    assert!(report.ok(), "{report}");
    let stats = stack.reconciler_stats();
    // A dead-lettered payout is drained either way: republished, or acked because the
    // reconciler had already paid it from Stark's records (its credit outlived the grace).
    assert!(
        stats.request_letters_drained > 0,
        "invoice requests were dead-lettered and drained: {stats:?}"
    );
    assert!(
        stats.payout_letters_drained > 0,
        "payouts were dead-lettered and drained: {stats:?}"
    );
    // Credits whose webhook Stark gave up on: no message ever carried them, so only the
    // reconciler's reading of Stark's records can have paid them (and the report says all are).
    let lost_credits = state
        .faults
        .iter()
        .filter(|f| f.kind == "lostWebhook")
        .filter(|f| {
            state.events.iter().any(|e| {
                e.id == f.detail
                    && e.workspace_id.as_deref() == Some(state.workspace_id.as_str())
                    && e.invoice_log()
                        .is_some_and(|l| l.log_type == stark_client::InvoiceLogType::Credited)
            })
        })
        .count();
    assert!(lost_credits > 0, "some credited webhooks were lost");
    assert!(
        stats.payouts_republished > 0,
        "lost webhooks' payouts were republished from Stark's records: {stats:?}"
    );
    assert_eq!(stats.dead_letters_kept, 0, "{stats:?}");
    stack.shutdown().await;
}
