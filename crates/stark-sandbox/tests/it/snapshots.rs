//! Snapshots share what did not change and never see what changes later; an event holds its
//! log, not a copy; a sandbox told not to keep delivery bodies keeps everything else.

use std::sync::Arc;

use stark_client::{EventLog, InvoiceStatus};
use stark_sandbox::{DeliveryOutcome, SandboxConfig, SandboxState};

use crate::common::*;

/// Every event delivered and every invoice credited: nothing changes any more.
fn settled(state: &SandboxState, invoices: usize) -> bool {
    state.events.len() == 3 * invoices
        && state.events.iter().all(|e| e.is_delivered == Some(true))
        && state
            .invoices
            .iter()
            .all(|i| state.invoice_log_types(&i.id).contains(&"credited"))
}

#[tokio::test]
async fn a_snapshot_shares_unchanged_rows_and_keeps_the_rows_it_saw() {
    let env = start(SandboxConfig {
        pay_probability: 1.0,
        ..fast()
    })
    .await;
    let _hook = env.invoice_hook(None).await;
    let created = env
        .client
        .create_invoices(&[invoice(1_500, "snap"), invoice(2_500, "snap")])
        .await
        .unwrap();
    let before = env.sandbox.state();
    let after = env
        .sandbox
        .wait_for(DEADLINE, |s| settled(s, 2))
        .await
        .unwrap();

    // What the first snapshot saw stays as it was: the payment copied the rows it changed.
    for invoice in &created {
        assert_eq!(
            before.invoice(&invoice.id).unwrap().status,
            InvoiceStatus::Created
        );
        assert_eq!(
            after.invoice(&invoice.id).unwrap().status,
            InvoiceStatus::Paid
        );
    }
    assert_eq!(before.invoice_logs.len(), 2, "created, twice");
    assert!(before.events.iter().all(|e| e.is_delivered != Some(true)));

    // Two snapshots of a world that did not change between them point at the same rows.
    let again = env.sandbox.state();
    let shared = |a: &SandboxState, b: &SandboxState| {
        (
            a.invoices.len(),
            a.invoice_logs.len(),
            a.events.len(),
            a.deliveries.len(),
        ) == (
            b.invoices.len(),
            b.invoice_logs.len(),
            b.events.len(),
            b.deliveries.len(),
        ) && a
            .invoices
            .iter()
            .zip(&b.invoices)
            .all(|(x, y)| Arc::ptr_eq(x, y))
            && a.invoice_logs
                .iter()
                .zip(&b.invoice_logs)
                .all(|(x, y)| Arc::ptr_eq(x, y))
            && a.events
                .iter()
                .zip(&b.events)
                .all(|(x, y)| Arc::ptr_eq(x, y))
            && a.deliveries
                .iter()
                .zip(&b.deliveries)
                .all(|(x, y)| Arc::ptr_eq(x, y))
    };
    assert!(shared(&after, &again));
    // Across the payment: the invoices it changed are new rows, the `created` logs the same.
    assert!(
        before
            .invoices
            .iter()
            .zip(&after.invoices)
            .all(|(x, y)| !Arc::ptr_eq(x, y))
    );
    assert!(
        before
            .invoice_logs
            .iter()
            .zip(&after.invoice_logs)
            .all(|(x, y)| Arc::ptr_eq(x, y))
    );

    // An invoice and its latest log share one copy; earlier logs keep the versions they saw.
    for invoice in &after.invoices {
        let logs: Vec<_> = after
            .invoice_logs
            .iter()
            .filter(|l| l.invoice.id == invoice.id)
            .collect();
        assert_eq!(logs.len(), 3, "created, paid, credited");
        assert!(Arc::ptr_eq(&logs[2].invoice, invoice));
        assert!(!Arc::ptr_eq(&logs[0].invoice, &logs[1].invoice));
        assert_eq!(logs[0].invoice.status, InvoiceStatus::Created);
    }

    // Each event carries the very log the log listing holds.
    for event in &after.events {
        let EventLog::Invoice(log) = &event.log else {
            panic!("an invoice event: {event:?}");
        };
        assert!(
            after.invoice_logs.iter().any(|l| Arc::ptr_eq(l, log)),
            "event {} holds a copy of log {}",
            event.id,
            log.id
        );
    }
}

#[tokio::test]
async fn without_delivery_bodies_every_delivery_is_still_recorded_and_signed() {
    let env = start(SandboxConfig {
        pay_probability: 1.0,
        keep_delivery_bodies: false,
        ..fast()
    })
    .await;
    let hook = env.invoice_hook(Some(env.client.clone())).await;
    env.client
        .create_invoices(&[invoice(1_000, "bodiless"), invoice(2_000, "bodiless")])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| settled(s, 2))
        .await
        .unwrap();
    let received = hook.received();
    assert_eq!(received.len(), 6);
    assert_eq!(state.deliveries.len(), 6);
    for r in &received {
        assert!(!r.body.is_empty(), "the receiver got the body");
        r.verified
            .clone()
            .expect("verified")
            .unwrap_or_else(|e| panic!("verification failed: {e}"));
        let delivery = state
            .deliveries
            .iter()
            .find(|d| Some(&d.signature) == r.signature.as_ref())
            .expect("the POST is recorded with its signature");
        assert!(delivery.body.is_empty(), "no body kept: {delivery:?}");
        assert_eq!(delivery.outcome, DeliveryOutcome::Delivered);
    }
}
