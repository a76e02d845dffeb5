//! money-sender against the local Stark sandbox: exactly one transfer per credited invoice of
//! ours, for Stark's own numbers, and nothing for anything else, whatever a message claims.

use std::time::Duration;

use money_sender::{Config, Deps, build};
use pipeline_domain::messages::{PaidInvoice, SCHEMA_VERSION, TopicMessage as _};
use pipeline_domain::receiver::Receiver;
use pipeline_domain::vocab::invoice_tags;
use pipeline_testkit::{LogCapture, Stark, push, push_raw, run, stark};
use stark_client::{Client, Invoice, NewInvoice, TransferStatus};
use stark_sandbox::{FaultConfig, SandboxConfig};

/// What the sandbox and money-sender both charge per transfer.
const TRANSFER_FEE: i64 = 50;
/// The sandbox's fee per credited invoice.
const INVOICE_FEE: i64 = 50;

fn sandbox_config() -> SandboxConfig {
    SandboxConfig {
        speed: 600.0,
        pay_probability: 1.0,
        pay_delay: Duration::from_secs(30),
        credit_delay: Duration::from_secs(5),
        invoice_fee: INVOICE_FEE,
        transfer_fee: TRANSFER_FEE,
        ..Default::default()
    }
}

/// [`sandbox_config`] with transfers that wait an hour of sandbox time (6 s here) before Stark
/// processes them: long enough to drain the balance in between, or to outlast a settle wait.
fn slow_transfers() -> SandboxConfig {
    SandboxConfig {
        transfer_processing_delay: Duration::from_secs(3600),
        ..sandbox_config()
    }
}

async fn setup() -> (Stark, String) {
    let stark = stark(sandbox_config()).await;
    let url = format!("{}/push", money_sender_at(&stark).await);
    (stark, url)
}

/// money-sender built as its binary builds it, against `stark`; its base URL.
async fn money_sender_at(stark: &Stark) -> String {
    money_sender_with(stark, Duration::ZERO).await
}

/// The push URL of a money-sender with a settle wait (`PAYOUT_SETTLE_WAIT`).
async fn waiting_push_url(stark: &Stark, settle_wait: Duration) -> String {
    format!("{}/push", money_sender_with(stark, settle_wait).await)
}

/// [`money_sender_at`] with `settle_wait`; its base URL.
async fn money_sender_with(stark: &Stark, settle_wait: Duration) -> String {
    let deps = Deps {
        stark: stark.client.clone(),
    };
    let mut config = Config::local();
    config.transfer_fee = TRANSFER_FEE;
    config.settle_wait = settle_wait;
    run(build(config, deps).await.unwrap())
}

/// Issues an invoice through `client`, tagged as a request of ours would be.
async fn issue(client: &Client, request: &str, amount: i64) -> Invoice {
    let invoice = NewInvoice {
        amount,
        tax_id: "012.345.678-90".into(),
        name: "Maria Payer".into(),
        tags: invoice_tags(request, "test", 0),
        ..Default::default()
    };
    client.create_invoices(&[invoice]).await.unwrap().remove(0)
}

/// Waits until the sandbox shows `invoice` credited.
async fn credited(stark: &Stark, invoice: &Invoice) {
    let id = invoice.id.clone();
    stark
        .sandbox
        .wait_for(Duration::from_secs(10), move |s| {
            s.invoice_log_types(&id).contains(&"credited")
        })
        .await
        .unwrap();
}

/// A credited invoice of ours of `amount` cents.
async fn credited_invoice(stark: &Stark, request: &str, amount: i64) -> Invoice {
    let invoice = issue(&stark.client, request, amount).await;
    credited(stark, &invoice).await;
    invoice
}

/// The message the ingester publishes for `invoice` (with `amount` as it claims).
fn paid(invoice: &Invoice, amount: i64) -> PaidInvoice {
    PaidInvoice {
        schema_version: SCHEMA_VERSION,
        event_id: format!("event-of-{}", invoice.id),
        invoice_id: invoice.id.clone(),
        amount,
        fee: INVOICE_FEE,
        payer_name: invoice.name.to_string(),
        payer_tax_id: invoice.tax_id.to_string(),
        credited_at: "2026-11-27T10:00:00.000000+00:00".into(),
        tags: invoice.tags.to_vec(),
    }
}

/// Pushes `message` until money-sender answers something else than 503, moving the sandbox
/// clock on between attempts so that Stark processes the transfer, as time passes between
/// Pub/Sub's redeliveries; the last answer.
async fn deliver(stark: &Stark, url: &str, message: &PaidInvoice) -> u16 {
    for _ in 0..10 {
        let status = push(url, message).await;
        if status != 503 {
            return status;
        }
        stark.sandbox.advance(Duration::from_secs(600));
    }
    503
}

/// Our workspace's transfers.
fn transfers(stark: &Stark) -> Vec<stark_client::Transfer> {
    let state = stark.sandbox.state();
    state.transfers_in(&state.workspace_id).cloned().collect()
}

#[tokio::test]
async fn pays_starks_amount_minus_both_fees_to_the_configured_receiver() {
    let (stark, url) = setup().await;
    let invoice = credited_invoice(&stark, "r-1", 12_345).await;
    // Acked only once Stark completed the transfer.
    assert_eq!(push(&url, &paid(&invoice, 12_345)).await, 503);
    assert_eq!(deliver(&stark, &url, &paid(&invoice, 12_345)).await, 200);
    assert_eq!(transfers(&stark)[0].status, TransferStatus::Success);
    let transfers = transfers(&stark);
    assert_eq!(transfers.len(), 1);
    let t = &transfers[0];
    assert_eq!(t.amount, 12_345 - INVOICE_FEE - TRANSFER_FEE);
    let key = format!("payout-{}", invoice.id);
    assert_eq!(t.external_id.as_deref(), Some(key.as_str()));
    assert!(t.tags.contains(&key));
    // The receiver is the configured account, never the payer of the invoice.
    assert_eq!(
        (&*t.bank_code, &*t.branch_code, &*t.account_number),
        ("20018183", "0001", "6341320293482496")
    );
    assert_eq!(*t.tax_id, *Receiver::default().tax_id.to_string());
    assert_eq!(&*t.name, "Stark Bank S.A.");
}

#[tokio::test]
async fn redelivery_and_a_second_event_for_the_same_invoice_make_one_transfer() {
    let (stark, url) = setup().await;
    let invoice = credited_invoice(&stark, "r-2", 5_000).await;
    let first = paid(&invoice, 5_000);
    assert_eq!(deliver(&stark, &url, &first).await, 200);
    assert_eq!(push(&url, &first).await, 200);
    let mut again = first.clone();
    again.event_id = "another-event".into();
    assert_eq!(push(&url, &again).await, 200);
    assert_eq!(transfers(&stark).len(), 1);
}

#[tokio::test]
async fn concurrent_deliveries_make_one_transfer() {
    let (stark, url) = setup().await;
    let invoice = credited_invoice(&stark, "r-3", 7_000).await;
    let message = paid(&invoice, 7_000);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            let message = message.clone();
            tokio::spawn(async move { push(&url, &message).await })
        })
        .collect();
    for task in tasks {
        // Retried while in flight, acked once Stark completed it.
        let status = task.await.unwrap();
        assert!(status == 503 || status == 200, "{status}");
    }
    assert_eq!(deliver(&stark, &url, &message).await, 200);
    let transfers = transfers(&stark);
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].amount, 7_000 - INVOICE_FEE - TRANSFER_FEE);
}

#[tokio::test]
async fn two_instances_make_one_transfer_despite_listing_lag() {
    // Two money-senders (two Cloud Run instances: no shared lock) and a sandbox whose lists
    // trail its writes by a long time: the check before the create sees nothing, so only
    // Stark's externalId rule stops the second transfer.
    let stark = stark(SandboxConfig {
        listing_lag: Duration::from_secs(600),
        ..sandbox_config()
    })
    .await;
    let first = format!("{}/push", money_sender_at(&stark).await);
    let second = format!("{}/push", money_sender_at(&stark).await);
    let invoice = issue(&stark.client, "r-lag", 8_000).await;
    credited(&stark, &invoice).await;
    // The credit is not listed yet: both wait.
    assert_eq!(push(&first, &paid(&invoice, 8_000)).await, 503);
    stark.sandbox.advance(Duration::from_secs(600));
    let message = paid(&invoice, 8_000);
    // One creates the transfer, the other sees its create refused (the externalId is taken)
    // and the winner's transfer not listed yet: both are retried.
    let (a, b) = tokio::join!(push(&first, &message), push(&second, &message));
    assert_eq!((a, b), (503, 503));
    assert_eq!(transfers(&stark).len(), 1);
    assert_eq!(deliver(&stark, &second, &message).await, 200);
    assert_eq!(deliver(&stark, &first, &message).await, 200);
    assert_eq!(transfers(&stark).len(), 1);
}

#[tokio::test]
async fn applied_but_answer_lost_ends_with_one_transfer() {
    let (stark, url) = setup().await;
    let invoice = credited_invoice(&stark, "r-4", 9_000).await;
    let message = paid(&invoice, 9_000);
    stark
        .sandbox
        .set_faults(FaultConfig {
            seed: 7,
            lost_answer_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    // The create is applied and its answer lost; the lookup finds it (or a retry will).
    let first = push(&url, &message).await;
    assert!(first == 200 || first == 503, "{first}");
    stark.sandbox.set_faults(FaultConfig::default()).unwrap();
    assert_eq!(deliver(&stark, &url, &message).await, 200);
    let state = stark.sandbox.state();
    assert!(
        state.faults.iter().any(|f| f.kind.contains("lost")),
        "{:?}",
        state.faults
    );
    assert_eq!(transfers(&stark).len(), 1);
}

#[tokio::test]
async fn another_workspaces_invoice_is_refused_on_every_attempt() {
    // The attack: someone else's workspace, whose events Stark signs with the same key, issues
    // and pays itself an invoice tagged like ours; its credited event reaches us.
    let (stark, url) = setup().await;
    let workspace = stark.sandbox.new_workspace();
    let (project, key) = stark.sandbox.new_project_in(&workspace);
    let foreign = stark.sandbox.client(&project, key).unwrap();
    let theirs = issue(&foreign, "r-5", 50_000).await;
    credited(&stark, &theirs).await;
    let (logs, _guard) = LogCapture::start();
    for _ in 0..3 {
        assert_eq!(push(&url, &paid(&theirs, 50_000)).await, 422);
    }
    assert!(stark.sandbox.state().transfers.is_empty(), "nothing moved");
    let refused = logs.events("payout_refused_not_ours");
    assert_eq!(refused.len(), 3, "{:?}", logs.lines());
    assert_eq!(refused[0]["level"], "ERROR");
}

#[tokio::test]
async fn unknown_untagged_and_never_credited_invoices_are_refused() {
    let stark = stark(SandboxConfig {
        pay_probability: 0.0,
        ..sandbox_config()
    })
    .await;
    let url = format!("{}/push", money_sender_at(&stark).await);
    let unpaid = issue(&stark.client, "r-6", 10_000).await;
    assert_eq!(push(&url, &paid(&unpaid, 10_000)).await, 422);
    let mut unknown = paid(&unpaid, 10_000);
    unknown.invoice_id = "9999999999999999".into();
    assert_eq!(push(&url, &unknown).await, 422);
    let untagged = stark
        .client
        .create_invoices(&[NewInvoice {
            amount: 10_000,
            tax_id: "012.345.678-90".into(),
            name: "Someone".into(),
            ..Default::default()
        }])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(push(&url, &paid(&untagged, 10_000)).await, 422);
    assert!(stark.sandbox.state().transfers.is_empty());
}

#[tokio::test]
async fn an_inflated_or_stale_message_pays_starks_amount() {
    let (stark, url) = setup().await;
    let invoice = credited_invoice(&stark, "r-7", 10_005).await;
    let (logs, _guard) = LogCapture::start();
    assert_eq!(deliver(&stark, &url, &paid(&invoice, 1_000_500)).await, 200);
    let transfers = transfers(&stark);
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].amount, 10_005 - INVOICE_FEE - TRANSFER_FEE);
    let stale = logs.events("payout_message_stale");
    assert!(!stale.is_empty(), "{:?}", logs.lines());
    assert_eq!(stale[0]["fields"]["message_amount"], 1_000_500);
    assert_eq!(stale[0]["fields"]["stark_amount"], 10_005);
}

#[tokio::test]
async fn reversals_before_the_payout_lower_it_or_cancel_it() {
    let (stark, url) = setup().await;
    let partly = credited_invoice(&stark, "r-8", 10_000).await;
    stark.sandbox.reverse_invoice(&partly.id, 4_000).unwrap();
    assert_eq!(deliver(&stark, &url, &paid(&partly, 10_000)).await, 200);
    let fully = credited_invoice(&stark, "r-9", 10_000).await;
    stark.sandbox.reverse_invoice(&fully.id, 10_000).unwrap();
    let (logs, _guard) = LogCapture::start();
    assert_eq!(push(&url, &paid(&fully, 10_000)).await, 200);
    let transfers = transfers(&stark);
    assert_eq!(transfers.len(), 1, "nothing for the fully reversed one");
    assert_eq!(transfers[0].amount, 6_000 - INVOICE_FEE - TRANSFER_FEE);
    assert_eq!(logs.events("payout_skipped_reversed").len(), 1);
}

#[tokio::test]
async fn a_payout_waits_for_the_balance_then_a_failed_one_is_made_again_once() {
    // The balance is drained before Stark processes a transfer, as a reversal can at Stark.
    let stark = stark(slow_transfers()).await;
    let url = format!("{}/push", money_sender_at(&stark).await);
    let ours = credited_invoice(&stark, "r-10", 10_000).await;
    let other = credited_invoice(&stark, "r-11", 10_000).await;
    // A reversal drains the balance below what the payout needs: wait, do not make a
    // transfer that is bound to fail.
    stark.sandbox.reverse_invoice(&other.id, 10_000).unwrap();
    let (logs, _guard) = LogCapture::start();
    assert_eq!(push(&url, &paid(&ours, 10_000)).await, 503);
    assert!(transfers(&stark).is_empty());
    assert_eq!(logs.events("payout_waiting_for_balance").len(), 1);

    // Once a credit covers it, the payout is made …
    let refunded = credited_invoice(&stark, "r-12", 10_000).await;
    assert_eq!(push(&url, &paid(&ours, 10_000)).await, 503, "in flight");
    // … and Stark fails it: another reversal took the balance before it was processed.
    stark.sandbox.reverse_invoice(&refunded.id, 10_000).unwrap();
    stark.sandbox.advance(Duration::from_secs(7200));
    stark
        .sandbox
        .wait_for(Duration::from_secs(10), |s| {
            s.transfers
                .iter()
                .any(|t| t.status == TransferStatus::Failed)
        })
        .await
        .unwrap();
    // A redelivery waits for the balance again, then makes the next generation, once.
    assert_eq!(push(&url, &paid(&ours, 10_000)).await, 503);
    assert!(
        transfers(&stark).len() == 1,
        "no second transfer without the balance"
    );
    credited_invoice(&stark, "r-13", 10_000).await;
    assert_eq!(deliver(&stark, &url, &paid(&ours, 10_000)).await, 200);
    assert_eq!(push(&url, &paid(&ours, 10_000)).await, 200);
    let transfers = transfers(&stark);
    let made: Vec<_> = transfers
        .iter()
        .map(|t| (t.external_id.clone().unwrap_or_default(), t.status))
        .collect();
    assert_eq!(
        made,
        [
            (format!("payout-{}", ours.id), TransferStatus::Failed),
            (format!("payout-{}-2", ours.id), TransferStatus::Success)
        ],
        "{transfers:?}"
    );
}

#[tokio::test]
async fn payouts_do_not_commit_one_balance_twice_before_stark_debits_it() {
    // Stark debits a transfer only when it processes it (an hour later here), so until then the
    // balance still shows the money the first payout will take.
    let stark = stark(slow_transfers()).await;
    let url = format!("{}/push", money_sender_at(&stark).await);
    let first = credited_invoice(&stark, "r-30", 10_000).await;
    let second = credited_invoice(&stark, "r-31", 10_000).await;
    let other = credited_invoice(&stark, "r-32", 10_000).await;
    // The balance (29 850 − 10 000 = 19 850) covers one payout of 9 900 + 50, not two.
    stark.sandbox.reverse_invoice(&other.id, 10_000).unwrap();
    let (logs, _guard) = LogCapture::start();
    let tasks: Vec<_> = [&first, &second]
        .map(|invoice| {
            let url = url.clone();
            let message = paid(invoice, 10_000);
            tokio::spawn(async move { push(&url, &message).await })
        })
        .into_iter()
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 503);
    }
    assert_eq!(transfers(&stark).len(), 1, "{:?}", logs.lines());
    let waiting = logs.events("payout_waiting_for_balance");
    assert_eq!(waiting.len(), 1, "{:?}", logs.lines());
    assert_eq!(waiting[0]["fields"]["committed"], 9_950, "{waiting:?}");
    let made = transfers(&stark)[0].external_id.clone().unwrap();
    let (paid_first, waiting_one) = if made == format!("payout-{}", first.id) {
        (&first, &second)
    } else {
        (&second, &first)
    };
    // Once Stark debited the first payout and a new credit covers the second, both are paid,
    // and no transfer ever failed for want of balance.
    assert_eq!(deliver(&stark, &url, &paid(paid_first, 10_000)).await, 200);
    assert_eq!(push(&url, &paid(waiting_one, 10_000)).await, 503);
    assert_eq!(transfers(&stark).len(), 1, "9 900 left, 9 950 needed");
    credited_invoice(&stark, "r-33", 10_000).await;
    assert_eq!(deliver(&stark, &url, &paid(waiting_one, 10_000)).await, 200);
    let states: Vec<_> = transfers(&stark).iter().map(|t| t.status).collect();
    assert_eq!(states, [TransferStatus::Success, TransferStatus::Success]);
}

#[tokio::test]
async fn a_commitment_settled_on_another_instance_does_not_hold_the_balance() {
    let stark = stark(slow_transfers()).await;
    let here = format!("{}/push", money_sender_at(&stark).await);
    let there = format!("{}/push", money_sender_at(&stark).await);
    let first = credited_invoice(&stark, "r-40", 10_000).await;
    let second = credited_invoice(&stark, "r-41", 10_000).await;
    // This instance makes the first payout and commits its 9 950 of the 19 900 …
    assert_eq!(push(&here, &paid(&first, 10_000)).await, 503);
    // … which Stark debits, while the redelivery goes to the other instance and is acked there.
    assert_eq!(deliver(&stark, &there, &paid(&first, 10_000)).await, 200);
    assert_eq!(stark.sandbox.balance(), 9_950);
    // Here the commitment was never seen released: looked up, it no longer holds the 9 950
    // the second payout needs.
    let (logs, _guard) = LogCapture::start();
    assert_eq!(push(&here, &paid(&second, 10_000)).await, 503);
    assert!(
        logs.events("payout_waiting_for_balance").is_empty(),
        "{:?}",
        logs.lines()
    );
    assert_eq!(deliver(&stark, &here, &paid(&second, 10_000)).await, 200);
    let states: Vec<_> = transfers(&stark).iter().map(|t| t.status).collect();
    assert_eq!(states, [TransferStatus::Success, TransferStatus::Success]);
}

#[tokio::test]
async fn stark_faults_answer_503_and_nothing_is_paid() {
    let (stark, url) = setup().await;
    let invoice = credited_invoice(&stark, "r-15", 1_000).await;
    for faults in [
        FaultConfig {
            seed: 1,
            server_error_rate: 1.0,
            ..Default::default()
        },
        FaultConfig {
            seed: 2,
            rate_limit_rate: 1.0,
            ..Default::default()
        },
        FaultConfig {
            seed: 3,
            timeout_rate: 1.0,
            ..Default::default()
        },
    ] {
        stark.sandbox.set_faults(faults).unwrap();
        assert_eq!(push(&url, &paid(&invoice, 1_000)).await, 503);
        assert!(transfers(&stark).is_empty());
    }
    // Once Stark recovers, the redelivery pays once.
    stark.sandbox.set_faults(FaultConfig::default()).unwrap();
    assert_eq!(deliver(&stark, &url, &paid(&invoice, 1_000)).await, 200);
    assert_eq!(transfers(&stark).len(), 1);
}

#[tokio::test]
async fn nothing_left_after_the_fees_is_acked_without_a_transfer() {
    let (stark, url) = setup().await;
    let tiny = credited_invoice(&stark, "r-16", INVOICE_FEE + TRANSFER_FEE).await;
    assert_eq!(push(&url, &paid(&tiny, 100)).await, 200);
    assert!(transfers(&stark).is_empty());
}

#[tokio::test]
async fn malformed_messages_are_400() {
    let (stark, url) = setup().await;
    let invoice = credited_invoice(&stark, "r-17", 1_000).await;
    let mut message = paid(&invoice, 1_000).to_message();
    // A payload trying to smuggle a receiver is refused, not half-read.
    let mut value: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
    value["accountNumber"] = serde_json::json!("666");
    message.data = serde_json::to_vec(&value).unwrap();
    assert_eq!(push_raw(&url, &message).await, 400);
    assert_eq!(
        pipeline_testkit::post_json(&url, b"{\"message\": 1}".to_vec()).await,
        400
    );
    let mut traversal = paid(&invoice, 1_000);
    traversal.invoice_id = "../etc".into();
    assert_eq!(push(&url, &traversal).await, 400);
    assert!(transfers(&stark).is_empty());
}

#[test]
fn receiver_config_is_validated_and_names_the_variable() {
    use pipeline_service::config::Env;
    assert_eq!(
        money_sender::receiver_from_env(&Env::default()).unwrap(),
        Receiver::default()
    );
    let err = money_sender::receiver_from_env(&Env::from_pairs([(
        "PAYOUT_TAX_ID",
        "11.111.111/1111-11",
    )]))
    .unwrap_err();
    assert_eq!(err.variable, "PAYOUT_TAX_ID");
    let err = money_sender::receiver_from_env(&Env::from_pairs([("PAYOUT_ACCOUNT_TYPE", "gold")]))
        .unwrap_err();
    assert_eq!(err.variable, "PAYOUT_ACCOUNT_TYPE");
    let err = money_sender::transfer_fee_from_env(&Env::from_pairs([(
        "PAYOUT_TRANSFER_FEE_CENTS",
        "-1",
    )]))
    .unwrap_err();
    assert_eq!(err.variable, "PAYOUT_TRANSFER_FEE_CENTS");
    let config = |pairs: &[(&str, &str)]| Config::from_env(&Env::from_pairs(pairs.iter().copied()));
    assert_eq!(
        config(&[]).unwrap().settle_wait,
        money_sender::DEFAULT_SETTLE_WAIT
    );
    assert_eq!(
        config(&[("PAYOUT_SETTLE_WAIT", "0s")]).unwrap().settle_wait,
        Duration::ZERO
    );
    let err = config(&[("PAYOUT_SETTLE_WAIT", "1m")]).unwrap_err();
    assert_eq!(err.variable, "PAYOUT_SETTLE_WAIT");
}

#[test]
fn binary_refuses_to_start_naming_the_missing_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_money-sender"))
        .env_clear()
        .env("STARK_ENVIRONMENT", "sandbox")
        .env("LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STARK_ACCESS_ID"));
    // Text logs into a pipe carry no colour codes.
    let logged = String::from_utf8_lossy(&output.stdout);
    assert!(logged.contains("config_invalid"), "{logged}");
    assert!(!logged.contains('\u{1b}'), "{logged:?}");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_money-sender"))
        .env_clear()
        .env("PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT"));
}

#[tokio::test]
async fn refused_credentials_are_a_configuration_error_retried_until_fixed() {
    // A Stark (or something in front of it) answering 403: no money moves, the delivery is
    // retried (503), and the log says it is our configuration.
    for status in [401u16, 403] {
        let deps = Deps {
            stark: pipeline_testkit::refusing_stark(status).await,
        };
        let url = format!("{}/push", run(build(Config::local(), deps).await.unwrap()));
        let message = PaidInvoice {
            schema_version: SCHEMA_VERSION,
            event_id: "e".into(),
            invoice_id: "5166945473134592".into(),
            amount: 1_000,
            fee: 0,
            payer_name: "Ana".into(),
            payer_tax_id: "012.345.678-90".into(),
            credited_at: "2026-11-27T10:00:00.000000+00:00".into(),
            tags: vec![],
        };
        let (logs, _guard) = LogCapture::start();
        assert_eq!(push(&url, &message).await, 503, "HTTP {status}");
        assert_eq!(logs.events("stark_unauthorized").len(), 1, "HTTP {status}");
    }
}

#[test]
fn binary_reads_dotenv_without_overriding_and_names_a_malformed_line() {
    let dir = std::env::temp_dir().join(format!("money-sender-dotenv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |vars: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_money-sender"))
            .current_dir(&dir)
            .env_clear()
            .envs(vars.iter().copied())
            .output()
            .unwrap()
    };
    // The file is read: its bad PORT stops the service, naming the variable.
    std::fs::write(dir.join(".env"), "PORT=eighty\n").unwrap();
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT"));
    // A variable already set wins over the file.
    let output = run(&[("PORT", "8080"), ("STARK_ENVIRONMENT", "sandbox")]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("STARK_ACCESS_ID") && !stderr.contains("eighty"),
        "{stderr}"
    );
    // A malformed line is named, its value never shown.
    std::fs::write(dir.join(".env"), "PORT=8080\nPAYOUT_NAME=Stark Bank S.A.\n").unwrap();
    let output = run(&[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("PAYOUT_NAME"),
        "{stderr}"
    );
    assert!(!stderr.contains("Bank S.A."), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_delivery_that_makes_a_payout_acks_it_once_stark_completes_it_within_the_wait() {
    // Transfers complete 15 s of sandbox time after their creation: 25 ms here.
    let stark = stark(sandbox_config()).await;
    let url = waiting_push_url(&stark, Duration::from_secs(10)).await;
    let invoice = credited_invoice(&stark, "r-20", 7_000).await;
    let (logs, _guard) = LogCapture::start();
    assert_eq!(push(&url, &paid(&invoice, 7_000)).await, 200);
    let made = transfers(&stark);
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].status, TransferStatus::Success);
    assert_eq!(made[0].amount, 7_000 - INVOICE_FEE - TRANSFER_FEE);
    assert_eq!(logs.events("payout_settled").len(), 1, "{:?}", logs.lines());
    assert!(logs.events("payout_in_flight").is_empty());
    // A replay finds the payout done: acked, nothing made.
    assert_eq!(push(&url, &paid(&invoice, 7_000)).await, 200);
    assert_eq!(transfers(&stark).len(), 1);
}

#[tokio::test]
async fn a_payout_still_processing_after_the_wait_is_left_to_the_redelivery() {
    // Stark processes the transfer 6 s after its creation, past the wait.
    let stark = stark(slow_transfers()).await;
    let url = waiting_push_url(&stark, Duration::from_millis(300)).await;
    let invoice = credited_invoice(&stark, "r-21", 7_000).await;
    let (logs, _guard) = LogCapture::start();
    assert_eq!(push(&url, &paid(&invoice, 7_000)).await, 503);
    let in_flight = logs.events("payout_in_flight");
    assert_eq!(in_flight.len(), 1, "{:?}", logs.lines());
    assert_eq!(in_flight[0]["fields"]["status"], "created", "{in_flight:?}");
    assert_eq!(transfers(&stark).len(), 1);
    // The redelivery finds the same transfer: nothing new is made, it is acked once done.
    assert_eq!(deliver(&stark, &url, &paid(&invoice, 7_000)).await, 200);
    assert_eq!(transfers(&stark).len(), 1);
}

#[tokio::test]
async fn a_payout_that_fails_during_the_wait_is_made_again_by_the_redelivery() {
    let stark = stark(slow_transfers()).await;
    let url = waiting_push_url(&stark, Duration::from_secs(20)).await;
    let ours = credited_invoice(&stark, "r-22", 10_000).await;
    let other = credited_invoice(&stark, "r-23", 10_000).await;
    let (logs, _guard) = LogCapture::start();
    let delivery = tokio::spawn({
        let url = url.clone();
        let message = paid(&ours, 10_000);
        async move { push(&url, &message).await }
    });
    // Once the payout is made, a reversal drains the balance before Stark processes it.
    stark
        .sandbox
        .wait_for(Duration::from_secs(10), |s| !s.transfers.is_empty())
        .await
        .unwrap();
    stark.sandbox.reverse_invoice(&other.id, 10_000).unwrap();
    stark.sandbox.advance(Duration::from_secs(7200));
    assert_eq!(delivery.await.unwrap(), 503, "{:?}", logs.lines());
    assert_eq!(transfers(&stark)[0].status, TransferStatus::Failed);
    let retried = logs.events("payout_retry");
    assert!(
        retried.iter().any(|e| e["fields"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("failed"))),
        "{retried:?}"
    );
    // The redelivery makes the next generation once the balance covers it.
    credited_invoice(&stark, "r-24", 10_000).await;
    assert_eq!(deliver(&stark, &url, &paid(&ours, 10_000)).await, 200);
    let made: Vec<_> = transfers(&stark)
        .iter()
        .map(|t| {
            (
                t.external_id.clone().unwrap_or_default(),
                t.status,
                t.amount,
            )
        })
        .collect();
    assert_eq!(
        made,
        [
            (
                format!("payout-{}", ours.id),
                TransferStatus::Failed,
                10_000 - INVOICE_FEE - TRANSFER_FEE
            ),
            (
                format!("payout-{}-2", ours.id),
                TransferStatus::Success,
                10_000 - INVOICE_FEE - TRANSFER_FEE
            )
        ]
    );
}
