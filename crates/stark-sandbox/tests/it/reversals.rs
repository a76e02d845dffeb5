//! Reversals: on demand, by PATCH, and by themselves at the configured rate.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use stark_client::{InvoiceLogType, InvoiceStatus};
use stark_sandbox::{SandboxConfig, SandboxState};

use crate::common::*;

fn paying() -> SandboxConfig {
    SandboxConfig {
        pay_probability: 1.0,
        ..fast()
    }
}

async fn credited(env: &Env, amounts: &[i64]) -> Vec<String> {
    let new: Vec<_> = amounts.iter().map(|a| invoice(*a, "rev")).collect();
    let created = env.client.create_invoices(&new).await.unwrap();
    let ids: Vec<String> = created.into_iter().map(|i| i.id).collect();
    env.sandbox
        .wait_for(DEADLINE, |s| {
            ids.iter()
                .all(|id| s.invoice_log_types(id).contains(&"credited"))
        })
        .await
        .unwrap();
    ids
}

#[tokio::test]
async fn an_invoice_can_be_reversed_in_parts_then_fully_and_each_part_leaves_the_balance() {
    let env = start(paying()).await;
    let hook = env.invoice_hook(Some(env.client.clone())).await;
    let fee = SandboxConfig::default().invoice_fee;
    let ids = credited(&env, &[10_000]).await;
    let id = &ids[0];
    assert_eq!(env.sandbox.balance(), 10_000 - fee);

    let partly = env.sandbox.reverse_invoice(id, 2_500).unwrap();
    assert_eq!(partly.amount, 7_500);
    assert_eq!(partly.status, InvoiceStatus::Paid);
    assert_eq!(env.sandbox.balance(), 10_000 - fee - 2_500);
    let refused = env.sandbox.reverse_invoice(id, 7_501).unwrap_err();
    assert!(
        refused.to_string().contains("7500 cents are left"),
        "{refused}"
    );
    assert!(env.sandbox.reverse_invoice(id, 0).is_err());

    let fully = env.sandbox.reverse_invoice(id, 7_500).unwrap();
    assert_eq!(fully.amount, 0);
    // Stark has no "reversed" invoice status: a fully reversed invoice stays paid, at 0.
    assert_eq!(fully.status, InvoiceStatus::Paid);
    assert_eq!(
        fully.transaction_ids.len(),
        3,
        "the credit, then one per reversal"
    );
    assert_eq!(fully.fee, fee, "the fee is not refunded");
    assert_eq!(env.sandbox.balance(), -fee);
    assert!(env.sandbox.reverse_invoice(id, 1).is_err(), "nothing left");

    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.events.len() == 5 && s.events.iter().all(|e| e.is_delivered == Some(true))
        })
        .await
        .unwrap();
    assert_eq!(
        state.invoice_log_types(id),
        ["created", "paid", "credited", "reversed", "reversed"]
    );
    // Deliveries run concurrently, so they may arrive in any order.
    let mut reversed: Vec<i64> = hook
        .received()
        .iter()
        .filter_map(|r| r.verified.clone().unwrap().ok())
        .filter_map(|e| e.invoice_log().cloned())
        .filter(|l| l.log_type == InvoiceLogType::Reversed)
        .map(|l| l.invoice.amount)
        .collect();
    reversed.sort_unstable();
    assert_eq!(
        reversed,
        [0, 7_500],
        "each reversed event shows the amount left"
    );
    let logs: Value = env
        .client
        .get("invoice/log", &[("types", "reversed".into())])
        .await
        .unwrap();
    assert_eq!(logs["logs"].as_array().unwrap().len(), 2);

    // Only credited invoices can be reversed.
    let unpaid = env
        .client
        .create_invoices(&[invoice(500, "unpaid")])
        .await
        .unwrap();
    let err = env.sandbox.reverse_invoice(&unpaid[0].id, 100).unwrap_err();
    assert!(err.to_string().contains("not credited"), "{err}");
    assert!(env.sandbox.reverse_invoice("1234567890123456", 1).is_err());
}

#[tokio::test]
async fn lowering_a_paid_invoices_amount_by_patch_is_a_reversal() {
    let env = start(paying()).await;
    let ids = credited(&env, &[4_000]).await;
    let id = &ids[0];
    let before = env.sandbox.balance();
    let patched: Value = env
        .client
        .patch(&format!("invoice/{id}"), &json!({"amount": 1_000}))
        .await
        .unwrap();
    assert_eq!(patched["invoice"]["amount"], 1_000);
    assert_eq!(patched["invoice"]["status"], "paid");
    assert_eq!(env.sandbox.balance(), before - 3_000);
    for (body, code) in [
        (json!({"amount": 1_000}), "invalidAmount"),
        (json!({"amount": 5_000}), "invalidAmount"),
        (json!({"due": "2030-01-01"}), "invalidOperation"),
        (json!({"status": "canceled"}), "invalidOperation"),
    ] {
        let err = env
            .client
            .patch::<Value>(&format!("invoice/{id}"), &body)
            .await
            .unwrap_err();
        assert!(err.has_code(code), "{body}: {err}");
    }
    let (_, other) = env.client_in_new_workspace();
    let err = other
        .patch::<Value>(&format!("invoice/{id}"), &json!({"amount": 0}))
        .await
        .unwrap_err();
    assert!(err.has_code("invalidInvoice"), "{err}");
    let zero: Value = env
        .client
        .patch(&format!("invoice/{id}"), &json!({"amount": 0}))
        .await
        .unwrap();
    assert_eq!(zero["invoice"]["amount"], 0);
    assert_eq!(env.sandbox.balance(), before - 4_000);
    assert_eq!(
        env.sandbox.state().invoice_log_types(id),
        ["created", "paid", "credited", "reversed", "reversed"]
    );
}

fn sandbox_time(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// Sandbox seconds from each invoice's credit to its first reversal.
fn reversal_delays(state: &SandboxState) -> HashMap<String, f64> {
    let at = sandbox_time;
    let mut credited = HashMap::new();
    let mut delays = HashMap::new();
    for log in &state.invoice_logs {
        match log.log_type {
            InvoiceLogType::Credited => {
                credited.insert(log.invoice.id.clone(), at(&log.created));
            }
            InvoiceLogType::Reversed => {
                let since = at(&log.created) - credited[&log.invoice.id];
                delays
                    .entry(log.invoice.id.clone())
                    .or_insert(since.as_seconds_f64());
            }
            _ => {}
        }
    }
    delays
}

async fn reversal_run(rate: f64) -> (SandboxState, Vec<String>) {
    let delay = Duration::from_secs(3_600);
    let env = start(SandboxConfig {
        // An hour of sandbox time in 0.6 real seconds.
        speed: 6_000.0,
        seed: 21,
        reversal_rate: rate,
        full_reversal_share: 0.5,
        reversal_delay: delay,
        ..paying()
    })
    .await;
    let amounts: Vec<i64> = (0..20).map(|i| 1_000 + 100 * i).collect();
    let ids = credited(&env, &amounts).await;
    // Let an hour of sandbox time pass (reversals keep their own times), then credit a barrier
    // invoice: the scheduler runs jobs in due order, so every reversal has run before it.
    let until = env.sandbox.now() + delay;
    env.sandbox
        .wait_for(DEADLINE, |s| sandbox_time(&s.now) > until)
        .await
        .unwrap();
    let barrier = credited(&env, &[100]).await;
    let state = env.sandbox.state();
    let ids = ids.into_iter().filter(|i| *i != barrier[0]).collect();
    (state, ids)
}

#[tokio::test]
async fn reversals_come_by_themselves_full_and_partial_spread_over_the_delay() {
    let (state, ids) = reversal_run(1.0).await;
    let fee = SandboxConfig::default().invoice_fee;
    let amounts: Vec<i64> = ids
        .iter()
        .map(|id| state.invoice(id).unwrap().amount)
        .collect();
    let full = amounts.iter().filter(|a| **a == 0).count();
    assert!(
        full > 0 && full < ids.len(),
        "both full and partial: {amounts:?}"
    );
    for (id, left) in ids.iter().zip(&amounts) {
        let inv = state.invoice(id).unwrap();
        assert!(*left < inv.nominal_amount, "every invoice was reversed");
        assert_eq!(state.invoice_log_types(id).last(), Some(&"reversed"));
        assert_eq!(inv.status, InvoiceStatus::Paid);
    }
    let credited_net: i64 = ids.iter().map(|_| -fee).sum::<i64>() + amounts.iter().sum::<i64>();
    assert_eq!(
        state.balance,
        credited_net + (100 - fee),
        "balance = what is left, net of fees"
    );

    // Spread over [0, delay] after the credit, so that some come before a payout, some after.
    let delays = reversal_delays(&state);
    let early = ids.iter().filter(|id| delays[*id] < 1_800.0).count();
    assert!(early > 0 && early < ids.len(), "{delays:?}");
    assert!(
        delays.values().all(|d| *d >= 0.0 && *d <= 3_600.0 + 600.0),
        "{delays:?}"
    );

    // Seeded: the same run reverses the same cents.
    let (again, again_ids) = reversal_run(1.0).await;
    let again_amounts: Vec<i64> = again_ids
        .iter()
        .map(|id| again.invoice(id).unwrap().amount)
        .collect();
    assert_eq!(amounts, again_amounts);

    let (none, none_ids) = reversal_run(0.0).await;
    assert!(
        none_ids
            .iter()
            .all(|id| !none.invoice_log_types(id).contains(&"reversed"))
    );
}
