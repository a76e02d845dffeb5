//! The listing lag: new objects and logs reach list queries a while after they are created,
//! while a GET by id finds them at once.

use std::time::Duration;

use serde_json::Value;
use stark_client::{InvoiceLogQuery, InvoiceQuery, TransferQuery};
use stark_sandbox::SandboxConfig;

use crate::common::*;

async fn transfer_log_count(env: &Env, transfer_id: &str) -> usize {
    let logs: Value = env
        .client
        .get("transfer/log", &[("transferIds", transfer_id.to_owned())])
        .await
        .unwrap();
    logs["logs"].as_array().unwrap().len()
}

#[tokio::test]
async fn new_objects_reach_lists_only_after_the_listing_lag() {
    assert!(SandboxConfig::default().listing_lag > Duration::ZERO);
    // Real time barely moves sandbox time at speed 1, so "not yet" stays true while the test
    // looks; the clock is moved by hand to cross the lag.
    let lag = Duration::from_secs(30);
    let env = start(SandboxConfig {
        speed: 1.0,
        listing_lag: lag,
        initial_balance: 10_000,
        ..fast()
    })
    .await;
    let invoices = env
        .client
        .create_invoices(&[invoice(1_000, "lagged")])
        .await
        .unwrap();
    let transfers = env
        .client
        .create_transfers(&[transfer(100, "1-1", Some("lagged"))])
        .await
        .unwrap();
    let (invoice_id, transfer_id) = (&invoices[0].id, &transfers[0].id);

    // By id: at once.
    assert_eq!(
        env.client.get_invoice(invoice_id).await.unwrap().id,
        *invoice_id
    );
    assert_eq!(
        env.client.get_transfer(transfer_id).await.unwrap().id,
        *transfer_id
    );
    // Lists: not yet. This is the check-then-create race: a client that lists to see whether
    // it already made a transfer gets "no" and makes a second one (unless externalId stops it).
    assert!(
        env.client
            .query_invoices(&InvoiceQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let by_tag = TransferQuery {
        tags: vec!["payout".into()],
        ..Default::default()
    };
    assert!(
        env.client
            .query_transfers(&by_tag)
            .await
            .unwrap()
            .is_empty()
    );
    let logs_of = InvoiceLogQuery {
        invoice_ids: vec![invoice_id.clone()],
        ..Default::default()
    };
    assert!(
        env.client
            .query_invoice_logs(&logs_of)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(transfer_log_count(&env, transfer_id).await, 0);
    let retry = env
        .client
        .create_transfers(&[transfer(100, "1-1", Some("lagged"))])
        .await
        .unwrap_err();
    assert!(
        retry.has_code("invalidExternalId"),
        "uniqueness does not lag: {retry}"
    );

    // Just short of the lag: still not listed; past it: listed.
    env.sandbox.advance(lag - Duration::from_secs(5));
    assert!(
        env.client
            .query_invoices(&InvoiceQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    env.sandbox.advance(Duration::from_secs(5));
    let listed = env
        .client
        .query_invoices(&InvoiceQuery::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(env.client.query_transfers(&by_tag).await.unwrap().len(), 1);
    assert_eq!(
        env.client.query_invoice_logs(&logs_of).await.unwrap().len(),
        1
    );

    // A log written later lags behind on its own: `processing` comes 5 s after creation.
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.transfer_log_types(transfer_id).len() >= 2)
        .await
        .unwrap();
    assert_eq!(
        state.transfer_log_types(transfer_id)[..2],
        ["created", "processing"]
    );
    assert_eq!(
        transfer_log_count(&env, transfer_id).await,
        1,
        "processing not listed yet"
    );
    env.sandbox.advance(lag);
    env.sandbox
        .wait_for(DEADLINE, |s| s.transfer_log_types(transfer_id).len() == 3)
        .await
        .unwrap();
    env.sandbox.advance(lag);
    assert_eq!(transfer_log_count(&env, transfer_id).await, 3);
}
