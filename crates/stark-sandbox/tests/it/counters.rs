//! `SandboxHandle::counters`: the cheap progress numbers agree with the full state.

use std::sync::Arc;

use stark_client::{InvoiceStatus, TransferStatus};
use stark_sandbox::{Counters, SandboxConfig, SandboxState};

use crate::common::*;

/// The counters as the full state implies them, given the `/v2` requests made (the state keeps
/// no request log).
fn counted(state: &SandboxState, requests: u64) -> Counters {
    let with_log = |log: &str| {
        state
            .invoices
            .iter()
            .filter(|i| state.invoice_log_types(&i.id).contains(&log))
            .count() as u64
    };
    let transfers = |status: TransferStatus| {
        state
            .transfers
            .iter()
            .filter(|t| t.status == status)
            .count() as u64
    };
    Counters {
        invoices_issued: state.invoices.len() as u64,
        invoices_paid: with_log("paid"),
        invoices_credited: with_log("credited"),
        invoices_reversed: with_log("reversed"),
        reversals: state
            .invoice_logs
            .iter()
            .filter(|l| l.log_type == stark_client::InvoiceLogType::Reversed)
            .count() as u64,
        transfers_created: state.transfers.len() as u64,
        transfers_settled: transfers(TransferStatus::Success),
        transfers_failed: transfers(TransferStatus::Failed),
        requests,
        webhook_posts: state.deliveries.len() as u64,
    }
}

#[tokio::test]
async fn counters_follow_every_lifecycle_step_without_copying_the_state() {
    let env = start(SandboxConfig {
        pay_probability: 0.5,
        seed: 3,
        ..fast()
    })
    .await;
    assert_eq!(env.sandbox.counters(), Counters::default());
    let new: Vec<_> = (0..6).map(|i| invoice(10_000 + i, "count")).collect();
    let created = env.client.create_invoices(&new).await.unwrap();
    assert_eq!(env.sandbox.counters().invoices_issued, 6);

    // Past every payment and credit.
    let (pay, credit) = (fast().pay_delay, fast().credit_delay);
    env.sandbox.advance(pay + credit);
    let state =
        env.sandbox
            .wait_for(DEADLINE, |s| {
                s.invoices.iter().all(|i| {
                    i.status != InvoiceStatus::Paid || s.invoice_log_types(&i.id).len() == 3
                }) && s.invoices.iter().any(|i| i.status == InvoiceStatus::Paid)
            })
            .await
            .unwrap();
    let paid: Vec<&str> = created
        .iter()
        .filter(|c| state.invoice(&c.id).unwrap().status == InvoiceStatus::Paid)
        .map(|c| c.id.as_str())
        .collect();
    assert!(
        !paid.is_empty() && paid.len() < 6,
        "seed 3 pays some: {paid:?}"
    );

    env.sandbox.reverse_invoice(paid[0], 1_000).unwrap();
    env.sandbox.reverse_invoice(paid[0], 1_000).unwrap();
    let transfers = env
        .client
        .create_transfers(&[
            transfer(100, "1-1", Some("fits")),
            transfer(100_000_000, "2-2", Some("too-much")),
        ])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            transfers.iter().all(|t| {
                s.transfer(&t.id).is_some_and(|t| {
                    matches!(t.status, TransferStatus::Success | TransferStatus::Failed)
                })
            })
        })
        .await
        .unwrap();
    let counters = env.sandbox.counters();
    // Two requests: the two creates.
    assert_eq!(counters, counted(&state, 2));
    assert_eq!(counters, state.counters);
    assert_eq!(
        (
            counters.invoices_paid,
            counters.invoices_credited,
            counters.invoices_reversed
        ),
        (paid.len() as u64, paid.len() as u64, 1),
        "two reversals of one invoice count it once"
    );
    assert_eq!(counters.reversals, 2);
    assert_eq!(
        (
            counters.transfers_created,
            counters.transfers_settled,
            counters.transfers_failed
        ),
        (2, 1, 1)
    );
    let body = reqwest::get(format!("{}/_sandbox/counters", env.sandbox.root_url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let http: Counters = serde_json::from_slice(&body).unwrap();
    assert_eq!(http, counters);
    // Everything so far happened in the default workspace.
    assert_eq!(env.sandbox.workspace_counters(), counters);
}

#[tokio::test]
async fn workspace_counters_leave_other_workspaces_out() {
    let env = start(fast()).await;
    let other = env.sandbox.new_workspace();
    let (project, key) = env.sandbox.new_project_in(&other);
    let foreign = stark_client::Client::new(env.sandbox.client_config(&project, key)).unwrap();
    foreign
        .create_invoices(&[invoice(5_000, "theirs"), invoice(6_000, "theirs")])
        .await
        .unwrap();
    env.client
        .create_invoices(&[invoice(7_000, "ours")])
        .await
        .unwrap();
    assert_eq!(env.sandbox.counters().invoices_issued, 3);
    assert_eq!(env.sandbox.workspace_counters().invoices_issued, 1);
}

#[tokio::test]
async fn reversed_state_is_the_full_state_cut_to_reversed_invoices_and_their_transfers() {
    let config = SandboxConfig {
        pay_probability: 1.0,
        ..fast()
    };
    let env = start(config.clone()).await;
    let new: Vec<_> = (0..4).map(|i| invoice(10_000 + i, "rev")).collect();
    let created = env.client.create_invoices(&new).await.unwrap();
    env.sandbox.advance(config.pay_delay + config.credit_delay);
    env.sandbox
        .wait_for(DEADLINE, |s| {
            s.invoices
                .iter()
                .all(|i| s.invoice_log_types(&i.id).contains(&"credited"))
        })
        .await
        .unwrap();
    // Payouts of invoices 0 and 1, found by a tag naming the invoice.
    let tag = |id: &str| format!("invoice-{id}");
    for paid_out in &created[..2] {
        let mut payout = transfer(1_000, "1-1", Some(&tag(&paid_out.id)));
        payout.tags.push(tag(&paid_out.id));
        env.client.create_transfers(&[payout]).await.unwrap();
    }
    // Invoice 1 is reversed after its payout, invoice 2 twice without one.
    env.sandbox.reverse_invoice(&created[1].id, 500).unwrap();
    env.sandbox.reverse_invoice(&created[2].id, 500).unwrap();
    env.sandbox.reverse_invoice(&created[2].id, 700).unwrap();

    let full = env.sandbox.state();
    let cut = env.sandbox.reversed_state(&tag);
    let reversed = [created[1].id.as_str(), created[2].id.as_str()];
    fn sorted<T: Clone>(items: impl IntoIterator<Item = T>, id: impl Fn(&T) -> String) -> Vec<T> {
        let mut items: Vec<T> = items.into_iter().collect();
        items.sort_by_key(|item| id(item));
        items
    }
    let invoice_id = |i: &Arc<stark_client::Invoice>| i.id.clone();
    let log_id = |l: &Arc<stark_client::InvoiceLog>| l.id.clone();
    assert_eq!(
        sorted(cut.invoices.clone(), invoice_id),
        sorted(
            full.invoices
                .iter()
                .filter(|i| reversed.contains(&i.id.as_str()))
                .cloned(),
            invoice_id
        )
    );
    assert_eq!(
        cut.invoice_logs.len(),
        9,
        "created, paid, credited, reversed (once, twice)"
    );
    assert_eq!(
        sorted(cut.invoice_logs.clone(), log_id),
        sorted(
            full.invoice_logs
                .iter()
                .filter(|l| reversed.contains(&l.invoice.id.as_str()))
                .cloned(),
            log_id
        )
    );
    // Only the payout of the reversed invoice 1; invoice 0's is not reversed.
    let payout_of_1: Vec<_> = full
        .transfers
        .iter()
        .filter(|t| t.tags.contains(&tag(&created[1].id)))
        .cloned()
        .collect();
    assert_eq!(payout_of_1.len(), 1);
    assert_eq!(cut.transfers, payout_of_1);
    assert_eq!(
        (cut.balance, cut.counters, &cut.balances, &cut.workspace_id),
        (
            full.balance,
            full.counters,
            &full.balances,
            &full.workspace_id
        )
    );
    assert_eq!(
        cut.invoice_workspaces.keys().collect::<Vec<_>>(),
        sorted(reversed.iter().map(|id| id.to_string()), String::clone)
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(cut.transfer_workspaces.len(), 1);
    assert!(cut.events.is_empty() && cut.deliveries.is_empty() && cut.transfer_logs.is_empty());
}
