//! money-sender against the local Stark sandbox: exactly one transfer per credited invoice.

use std::time::Duration;

use money_sender::{Config, Deps, build};
use pipeline_domain::messages::{PaidInvoice, SCHEMA_VERSION, TopicMessage as _};
use pipeline_domain::receiver::Receiver;
use pipeline_testkit::{Stark, push, push_raw, run, stark};
use stark_sandbox::{FaultConfig, SandboxConfig};

async fn setup() -> (Stark, String) {
    let stark = stark(SandboxConfig {
        initial_balance: 1_000_000_000,
        ..Default::default()
    })
    .await;
    let base = money_sender_at(&stark).await;
    (stark, format!("{base}/push"))
}

/// money-sender built as its binary builds it, against `stark`; its base URL.
async fn money_sender_at(stark: &Stark) -> String {
    let deps = Deps {
        stark: stark.client.clone(),
    };
    run(build(Config::local(), deps).await.unwrap())
}

fn paid(invoice_id: &str, amount: i64, fee: i64) -> PaidInvoice {
    PaidInvoice {
        schema_version: SCHEMA_VERSION,
        event_id: format!("event-of-{invoice_id}"),
        invoice_id: invoice_id.to_owned(),
        amount,
        fee,
        payer_name: "Maria Payer".into(),
        payer_tax_id: "012.345.678-90".into(),
        credited_at: "2026-11-27T10:00:00.000000+00:00".into(),
        tags: vec![],
    }
}

#[tokio::test]
async fn pays_amount_minus_fee_to_the_configured_receiver() {
    let (stark, url) = setup().await;
    assert_eq!(push(&url, &paid("5166945473134592", 12_345, 45)).await, 200);
    let transfers = stark.sandbox.state().transfers;
    assert_eq!(transfers.len(), 1);
    let t = &transfers[0];
    let receiver = Receiver::default();
    assert_eq!(t.amount, 12_300);
    assert_eq!(t.external_id.as_deref(), Some("payout-5166945473134592"));
    assert!(t.tags.contains(&"payout-5166945473134592".to_owned()));
    // The receiver is the configured account, never the payer of the invoice.
    assert_eq!(
        (
            t.bank_code.as_str(),
            t.branch_code.as_str(),
            t.account_number.as_str()
        ),
        ("20018183", "0001", "6341320293482496")
    );
    assert_eq!(t.tax_id, receiver.tax_id.to_string());
    assert_ne!(t.tax_id, "012.345.678-90");
    assert_eq!(t.name, "Stark Bank S.A.");
}

#[tokio::test]
async fn redelivery_and_a_second_event_for_the_same_invoice_make_one_transfer() {
    let (stark, url) = setup().await;
    let first = paid("1000000000000001", 5_000, 0);
    assert_eq!(push(&url, &first).await, 200);
    assert_eq!(push(&url, &first).await, 200);
    // A different event id (a duplicate webhook) for the same invoice.
    let mut again = first.clone();
    again.event_id = "another-event".into();
    assert_eq!(push(&url, &again).await, 200);
    assert_eq!(stark.sandbox.state().transfers.len(), 1);
}

#[tokio::test]
async fn concurrent_deliveries_make_one_transfer() {
    let (stark, url) = setup().await;
    let message = paid("1000000000000002", 7_000, 100);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            let message = message.clone();
            tokio::spawn(async move { push(&url, &message).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let transfers = stark.sandbox.state().transfers;
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].amount, 6_900);
}

#[tokio::test]
async fn applied_but_answer_lost_ends_with_one_transfer() {
    let (stark, url) = setup().await;
    stark
        .sandbox
        .set_faults(FaultConfig {
            seed: 7,
            lost_answer_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    let message = paid("1000000000000003", 9_000, 0);
    // The create is applied and its answer lost; the lookup finds it (or a retry will).
    let first = push(&url, &message).await;
    assert!(first == 200 || first == 503, "{first}");
    stark.sandbox.set_faults(FaultConfig::default()).unwrap();
    assert_eq!(push(&url, &message).await, 200);
    let state = stark.sandbox.state();
    assert!(
        state.faults.iter().any(|f| f.kind.contains("lost")),
        "{:?}",
        state.faults
    );
    assert_eq!(state.transfers.len(), 1);
}

#[tokio::test]
async fn non_positive_payout_is_acked_without_a_transfer() {
    let (stark, url) = setup().await;
    assert_eq!(push(&url, &paid("1000000000000004", 50, 50)).await, 200);
    assert_eq!(push(&url, &paid("1000000000000005", 0, 10)).await, 200);
    assert!(stark.sandbox.state().transfers.is_empty());
}

#[tokio::test]
async fn stark_faults_answer_503_and_nothing_is_paid() {
    let (stark, url) = setup().await;
    stark
        .sandbox
        .set_faults(FaultConfig {
            seed: 1,
            server_error_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(push(&url, &paid("1000000000000006", 1_000, 0)).await, 503);
    assert!(stark.sandbox.state().transfers.is_empty());
    // Once Stark recovers, the redelivery pays once.
    stark.sandbox.set_faults(FaultConfig::default()).unwrap();
    assert_eq!(push(&url, &paid("1000000000000006", 1_000, 0)).await, 200);
    assert_eq!(stark.sandbox.state().transfers.len(), 1);
}

#[tokio::test]
async fn stark_refusal_is_422_for_the_dead_letter_topic() {
    let (stark, url) = setup().await;
    // Stark refuses amounts of 1e15 cents and more (invalidAmount).
    assert_eq!(
        push(&url, &paid("1000000000000007", 1_000_000_000_000_000, 0)).await,
        422
    );
    assert!(stark.sandbox.state().transfers.is_empty());
}

#[tokio::test]
async fn malformed_messages_are_400() {
    let (stark, url) = setup().await;
    let mut message = paid("1000000000000008", 1_000, 0).to_message();
    // A payload trying to smuggle a receiver is refused, not half-read.
    let mut value: serde_json::Value = serde_json::from_slice(&message.data).unwrap();
    value["accountNumber"] = serde_json::json!("666");
    message.data = serde_json::to_vec(&value).unwrap();
    assert_eq!(push_raw(&url, &message).await, 400);
    assert_eq!(
        pipeline_testkit::post_json(&url, b"{\"message\": 1}".to_vec()).await,
        400
    );
    assert_eq!(push(&url, &paid("../etc", 1_000, 0)).await, 400);
    assert!(stark.sandbox.state().transfers.is_empty());
}

#[tokio::test]
async fn a_transfer_that_failed_at_stark_is_not_acked_as_paid() {
    // No balance: Stark accepts the transfer, then fails it.
    let stark = stark(SandboxConfig {
        speed: 600.0,
        ..Default::default()
    })
    .await;
    let url = format!("{}/push", money_sender_at(&stark).await);
    let message = paid("1000000000000009", 1_000, 0);
    assert_eq!(push(&url, &message).await, 200);
    stark
        .sandbox
        .wait_for(Duration::from_secs(10), |s| {
            s.transfers
                .iter()
                .any(|t| t.status == stark_client::TransferStatus::Failed)
        })
        .await
        .unwrap();
    // A redelivery finds the failed transfer and parks the message for an operator.
    assert_eq!(push(&url, &message).await, 422);
    assert_eq!(stark.sandbox.state().transfers.len(), 1);
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
}

#[test]
fn binary_refuses_to_start_naming_the_missing_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_money-sender"))
        .env_clear()
        .env("STARK_ENVIRONMENT", "sandbox")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("STARK_ACCESS_ID"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_money-sender"))
        .env_clear()
        .env("PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("PORT"));
}
