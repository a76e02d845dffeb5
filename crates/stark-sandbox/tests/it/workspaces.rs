//! Several workspaces: each sees only its own objects, events name their workspace and are all
//! signed with the one environment key, balances are separate.

use serde_json::Value;
use stark_client::{InvoiceLogQuery, InvoiceQuery, PublicKey, TransferQuery, TransferStatus};
use stark_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn a_project_sees_only_its_own_workspace() {
    let env = start(SandboxConfig {
        initial_balance: 100_000,
        ..fast()
    })
    .await;
    let (other_ws, other) = env.client_in_new_workspace();
    assert_eq!(other_ws.len(), 16);
    assert_ne!(other_ws, env.sandbox.workspace_id());

    let mine = env
        .client
        .create_invoices(&[invoice(1_000, "mine")])
        .await
        .unwrap();
    let my_transfer = env
        .client
        .create_transfers(&[transfer(500, "1-1", Some("same-ext"))])
        .await
        .unwrap();
    let my_hook = env
        .client
        .create_webhook("https://example.com/mine", &["invoice".into()])
        .await
        .unwrap();

    // Another workspace's ids answer exactly like unknown ids.
    let err = other.get_invoice(&mine[0].id).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.has_code("invalidInvoice"), "{err}");
    let unknown = other.get_invoice("1234567890123456").await.unwrap_err();
    assert_eq!(err.errors()[0].code, unknown.errors()[0].code);
    let err = other.get_transfer(&my_transfer[0].id).await.unwrap_err();
    assert!(err.has_code("invalidTransfer"), "{err}");
    let err = other
        .delete::<Value>(&format!("transfer/{}", my_transfer[0].id))
        .await
        .unwrap_err();
    assert!(err.has_code("invalidTransfer"), "{err}");
    let err = other
        .patch::<Value>(
            &format!("invoice/{}", mine[0].id),
            &serde_json::json!({"status": "canceled"}),
        )
        .await
        .unwrap_err();
    assert!(err.has_code("invalidInvoice"), "{err}");
    assert!(
        other
            .get_webhook(&my_hook.id)
            .await
            .unwrap_err()
            .has_code("invalidWebhookId")
    );
    assert!(other.get_invoice_payment(&mine[0].id).await.is_err());

    // Lists are per workspace, logs included.
    env.sandbox.advance(std::time::Duration::from_secs(60));
    assert!(
        other
            .query_invoices(&InvoiceQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        other
            .query_invoice_logs(&InvoiceLogQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        other
            .query_transfers(&TransferQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    let logs: Value = other.get("transfer/log", &[]).await.unwrap();
    assert_eq!(logs["logs"], serde_json::json!([]));
    assert!(other.list_webhooks().await.unwrap().is_empty());
    assert_eq!(
        env.client
            .query_invoices(&InvoiceQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // externalId is unique per workspace: the other workspace may reuse it.
    let theirs = other
        .create_transfers(&[transfer(500, "1-1", Some("same-ext"))])
        .await
        .unwrap();
    let state = env.sandbox.state();
    assert_eq!(
        state.transfer_workspace(&my_transfer[0].id),
        Some(state.workspace_id.as_str())
    );
    assert_eq!(
        state.transfer_workspace(&theirs[0].id),
        Some(other_ws.as_str())
    );
    assert_eq!(
        state.invoice_workspace(&mine[0].id),
        Some(env.sandbox.workspace_id().as_str())
    );
    assert_eq!(state.invoices_in(&other_ws).count(), 0);
    assert_eq!(state.transfers_in(&other_ws).count(), 1);

    // Balances are separate: the other workspace starts at zero, so its transfer fails while
    // the default workspace's (funded by the initial balance) succeeds.
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            [&my_transfer[0].id, &theirs[0].id].iter().all(|id| {
                s.transfer(id).is_some_and(|t| {
                    matches!(t.status, TransferStatus::Success | TransferStatus::Failed)
                })
            })
        })
        .await
        .unwrap();
    assert_eq!(
        state.transfer(&my_transfer[0].id).unwrap().status,
        TransferStatus::Success
    );
    assert_eq!(
        state.transfer(&theirs[0].id).unwrap().status,
        TransferStatus::Failed
    );
    let fee = state.transfer(&my_transfer[0].id).unwrap().fee;
    assert_eq!(env.sandbox.balance(), 100_000 - 500 - fee);
    assert_eq!(env.sandbox.balance_of(&other_ws), Some(0));
    assert_eq!(state.balances[&other_ws], 0);
    assert_eq!(env.sandbox.balance_of("0000000000000000"), None);
    // A deposit funds only the workspace it names.
    assert_eq!(env.sandbox.deposit(&other_ws, 700).unwrap(), 700);
    assert_eq!(env.sandbox.balance_of(&other_ws), Some(700));
    assert_eq!(env.sandbox.balance(), 100_000 - 500 - fee);
    assert!(env.sandbox.deposit(&other_ws, 0).is_err());
    assert!(env.sandbox.deposit("0000000000000000", 1).is_err());
}

#[tokio::test]
async fn every_workspace_gets_its_own_events_signed_with_the_one_environment_key() {
    let env = start(fast()).await;
    let (other_ws, other) = env.client_in_new_workspace();
    let my_hook = receiver(Some(env.client.clone())).await;
    let their_hook = receiver(Some(other.clone())).await;
    env.client
        .create_webhook(&my_hook.url, &["invoice".into()])
        .await
        .unwrap();
    other
        .create_webhook(&their_hook.url, &["invoice".into()])
        .await
        .unwrap();
    let mine = env
        .client
        .create_invoices(&[invoice(100, "a")])
        .await
        .unwrap();
    let theirs = other.create_invoices(&[invoice(200, "b")]).await.unwrap();
    env.sandbox
        .wait_for(DEADLINE, |s| {
            s.events.len() == 2 && s.events.iter().all(|e| e.is_delivered == Some(true))
        })
        .await
        .unwrap();
    let check = |hook: &Receiver, workspace: &str, invoice_id: &str| {
        let received = hook.received();
        assert_eq!(received.len(), 1, "one event, its own workspace's only");
        let event = received[0].verified.clone().unwrap().expect("verifies");
        assert_eq!(event.workspace_id.as_deref(), Some(workspace));
        assert_eq!(event.invoice_log().unwrap().invoice.id, invoice_id);
    };
    check(&my_hook, &env.sandbox.workspace_id(), &mine[0].id);
    check(&their_hook, &other_ws, &theirs[0].id);

    // One key for the environment: both projects are served the same one.
    let a = env.client.list_public_keys(1).await.unwrap();
    let b = other.list_public_keys(1).await.unwrap();
    assert_eq!(a, b);
    assert_eq!(
        PublicKey::from_pem(&a[0].content).unwrap(),
        env.sandbox.public_key()
    );
    // Events are listed per workspace, and another workspace's event is not found.
    let their_events = other.query_events(&Default::default()).await.unwrap();
    assert_eq!(their_events.len(), 1);
    let my_events = env.client.query_events(&Default::default()).await.unwrap();
    assert_eq!(my_events.len(), 1);
    assert!(
        other
            .get_event(&my_events[0].id)
            .await
            .unwrap_err()
            .has_code("invalidEvent")
    );
}
