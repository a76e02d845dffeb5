//! Every `/v2` route through `stark-client`.

use std::collections::HashSet;

use serde_json::{Value, json};
use stark_client::{
    InvoiceLogQuery, InvoiceLogType, InvoiceQuery, InvoiceStatus, TransferQuery, TransferStatus,
};
use stark_sandbox::SandboxConfig;

use crate::common::*;

#[tokio::test]
async fn invoices_create_query_in_cursor_pages_get_and_logs() {
    let env = start(fast()).await;
    let mut batch: Vec<_> = (0..5).map(|i| invoice(1000 + i, "Batch-A")).collect();
    batch[4].tags = vec!["Other Tag".into()];
    let created = env.client.create_invoices(&batch).await.unwrap();
    assert_eq!(created.len(), 5);
    let ids: Vec<String> = created.iter().map(|i| i.id.clone()).collect();
    for inv in &created {
        assert_eq!(inv.id.len(), 16, "ids are 16 digits");
        assert!(inv.id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(inv.status, InvoiceStatus::Created);
        assert_eq!(&*inv.tax_id, "012.345.678-90");
        assert_eq!(inv.nominal_amount, inv.amount);
        assert_eq!(
            (inv.fine, inv.interest, inv.expiration),
            (2.0, 1.0, 5_097_600)
        );
        assert!(
            inv.created.ends_with("+00:00") && inv.created.len() == 32,
            "{}",
            inv.created
        );
        assert!(inv.brcode.starts_with("000201"));
    }
    assert_eq!(*created[0].tags, ["batch-a"], "tags are lowercased");
    assert_eq!(*created[4].tags, ["other tag"]);
    env.past_listing_lag();

    // Cursor pages of 2, newest first, cover everything once.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let query = InvoiceQuery {
            limit: Some(2),
            ..Default::default()
        };
        let page = env
            .client
            .page_invoices(&query, cursor.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|i| i.id));
        pages += 1;
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let all = env
        .client
        .query_invoices(&InvoiceQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    let tagged = env
        .client
        .query_invoices(&InvoiceQuery {
            tags: vec!["batch-a".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 4);
    let by_ids = env
        .client
        .query_invoices(&InvoiceQuery {
            ids: vec![ids[1].clone(), ids[3].clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_ids.iter().map(|i| &i.id).collect::<HashSet<_>>(),
        HashSet::from([&ids[1], &ids[3]])
    );
    let paid = env
        .client
        .query_invoices(&InvoiceQuery {
            status: Some(InvoiceStatus::Paid),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(paid.is_empty());
    // The creation day (at 600x, sandbox midnight can pass during a test).
    let today = time::Date::parse(
        &created[0].created[..10],
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    let tomorrow = (today + time::Duration::days(1)).to_string();
    let yesterday = (today - time::Duration::days(1)).to_string();
    let after_tomorrow = env
        .client
        .query_invoices(&InvoiceQuery {
            after: Some(tomorrow),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(after_tomorrow.is_empty());
    let window = InvoiceQuery {
        after: Some(yesterday),
        before: Some(today.to_string()),
        ..Default::default()
    };
    assert_eq!(env.client.query_invoices(&window).await.unwrap().len(), 5);

    let one = env.client.get_invoice(&ids[2]).await.unwrap();
    assert_eq!(one, created[2]);
    let err = env
        .client
        .get_invoice("1234567890123456")
        .await
        .unwrap_err();
    assert!(err.has_code("invalidInvoice"), "{err}");
    assert_eq!(err.status(), Some(400));

    let logs = env
        .client
        .query_invoice_logs(&InvoiceLogQuery {
            invoice_ids: vec![ids[0].clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].log_type, InvoiceLogType::Created);
    assert_eq!(logs[0].invoice.id, ids[0]);
    let created_logs = env
        .client
        .query_invoice_logs(&InvoiceLogQuery {
            types: vec![InvoiceLogType::Created],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created_logs.len(), 5);
    let paid_logs = env
        .client
        .query_invoice_logs(&InvoiceLogQuery {
            types: vec![InvoiceLogType::Paid],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(paid_logs.is_empty());
    let log = env.client.get_invoice_log(&logs[0].id).await.unwrap();
    assert_eq!(log, logs[0]);
    assert!(
        env.client
            .get_invoice_log("1234567890123456")
            .await
            .unwrap_err()
            .has_code("invalidInvoiceLog")
    );
    // Not paid yet: no payment information.
    assert!(env.client.get_invoice_payment(&ids[0]).await.is_err());
}

#[tokio::test]
async fn invoice_batches_are_checked_item_by_item_and_all_or_nothing() {
    let env = start(fast()).await;
    let good = json!({"amount": 100, "taxId": "20018183000180", "name": "Stark"});
    let body = json!({"invoices": [
        good,
        {"amount": 100, "taxId": "012.345.678-91", "name": "Bad digits"},
        {"amount": 100, "taxId": "111.111.111-11", "name": "All equal"},
        {"amount": -1, "taxId": "012.345.678-90", "name": "Negative"},
        {"amount": "100", "taxId": "012.345.678-90", "name": "String amount"},
        {"amount": 100, "taxId": "012.345.678-90"},
        {"amount": 100, "taxId": "012.345.678-90", "name": "Extra", "color": "blue"},
        {"amount": 100, "taxId": "012.345.678-90", "name": "Bad due", "due": "tomorrow"},
    ]});
    let answer = raw(&env, "POST", "/v2/invoice", &body.to_string(), None).await;
    assert_eq!(answer.status(), 400);
    let codes: Vec<&str> = answer.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalidTaxId",
            "invalidTaxId",
            "invalidAmount",
            "invalidAmount",
            "invalidJson",
            "invalidJson",
            "invalidDateTime"
        ]
    );
    let first_message = answer.json()["errors"][0]["message"].as_str().unwrap();
    assert!(first_message.starts_with("Element 1:"), "{first_message}");
    assert!(
        env.sandbox.state().invoices.is_empty(),
        "a bad item rejects the whole batch"
    );

    let too_many = json!({"invoices": vec![good.clone(); 101]});
    let answer = raw(&env, "POST", "/v2/invoice", &too_many.to_string(), None).await;
    assert_eq!(answer.status(), 400);
    assert_eq!(answer.json()["errors"].as_array().unwrap().len(), 1);
    assert_eq!(answer.first_code(), "invalidJson");

    let hundred = json!({"invoices": vec![good; 100]});
    let answer = raw(&env, "POST", "/v2/invoice", &hundred.to_string(), None).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json()["invoices"].as_array().unwrap().len(), 100);
    assert_eq!(
        answer.json()["invoices"][0]["taxId"],
        "20.018.183/0001-80",
        "tax ids come back formatted"
    );
}

#[tokio::test]
async fn transfers_create_query_get_and_duplicate_rules() {
    // A slower clock keeps every create on the same sandbox day (the duplicate rule is per day).
    let env = start(SandboxConfig {
        initial_balance: 1_000_000,
        speed: 60.0,
        ..fast()
    })
    .await;
    let first = env
        .client
        .create_transfers(&[transfer(500, "111-1", Some("ext-1"))])
        .await
        .unwrap();
    assert_eq!(first[0].status, TransferStatus::Created);
    assert_eq!(first[0].external_id.as_deref(), Some("ext-1"));
    assert_eq!(*first[0].tags, ["payout"]);
    assert_eq!(first[0].id.len(), 16);

    // The repeated externalId fails, on its own item, and takes the batch down with it.
    let err = env
        .client
        .create_transfers(&[
            transfer(700, "222-2", Some("ext-2")),
            transfer(500, "111-1", Some("ext-1")),
        ])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.errors().len(), 1);
    assert_eq!(
        err.errors()[0].code,
        stark_sandbox::codes::INVALID_EXTERNAL_ID
    );
    assert!(
        err.errors()[0].message.starts_with("Element 1:"),
        "{}",
        err.errors()[0].message
    );
    assert_eq!(
        env.sandbox.state().transfers.len(),
        1,
        "nothing of the failed batch was created"
    );
    // The same externalId twice in one batch.
    let err = env
        .client
        .create_transfers(&[
            transfer(1, "9-9", Some("twice")),
            transfer(2, "9-8", Some("twice")),
        ])
        .await
        .unwrap_err();
    assert!(err.has_code("invalidExternalId"));

    // Without externalId: same amount, receiver and day is refused; another amount is fine.
    env.client
        .create_transfers(&[transfer(900, "333-3", None)])
        .await
        .unwrap();
    let err = env
        .client
        .create_transfers(&[transfer(900, "333-3", None)])
        .await
        .unwrap_err();
    assert!(
        err.has_code(stark_sandbox::codes::DUPLICATE_TRANSFER),
        "{err}"
    );
    env.client
        .create_transfers(&[transfer(901, "333-3", None)])
        .await
        .unwrap();
    let err = env
        .client
        .create_transfers(&[transfer(42, "444-4", None), transfer(42, "444-4", None)])
        .await
        .unwrap_err();
    assert!(
        err.has_code("duplicateTransfer"),
        "duplicates inside one batch too"
    );

    // Validation and the 100-item limit.
    let bad = json!({"transfers": [
        {"amount": 0, "name": "A", "taxId": "20.018.183/0001-80", "bankCode": "20018183", "branchCode": "0001", "accountNumber": "1-1"},
        {"amount": 10, "name": "A", "taxId": "20.018.183/0001-80", "bankCode": "1234", "branchCode": "0001", "accountNumber": "1-1"},
        {"amount": 10, "name": "A", "taxId": "00.000.000/0000-00", "bankCode": "341", "branchCode": "0001", "accountNumber": "1-1"},
        {"amount": 10, "name": "A", "taxId": "20.018.183/0001-80", "bankCode": "341", "branchCode": "0001", "accountNumber": "1-1", "scheduled": "2000-01-01"},
    ]});
    let answer = raw(&env, "POST", "/v2/transfer", &bad.to_string(), None).await;
    let codes: Vec<&str> = answer.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "invalidAmount",
            "invalidBankCode",
            "invalidTaxId",
            "invalidDate"
        ]
    );
    let item = serde_json::to_value(transfer(1, "5-5", None)).unwrap();
    let answer = raw(
        &env,
        "POST",
        "/v2/transfer",
        &json!({"transfers": vec![item; 101]}).to_string(),
        None,
    )
    .await;
    assert_eq!(answer.json()["errors"].as_array().unwrap().len(), 1);
    assert_eq!(answer.first_code(), "invalidJson");

    // Queries (lists trail creates by the listing lag).
    env.past_listing_lag();
    let all = env
        .client
        .query_transfers(&TransferQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    let by_tag = env
        .client
        .query_transfers(&TransferQuery {
            tags: vec!["payout".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_tag.len(), 3);
    let by_id = env
        .client
        .query_transfers(&TransferQuery {
            ids: vec![first[0].id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_id.len(), 1);
    let page = env
        .client
        .page_transfers(
            &TransferQuery {
                limit: Some(2),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = env
        .client
        .page_transfers(
            &TransferQuery {
                limit: Some(2),
                ..Default::default()
            },
            page.cursor.as_deref(),
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.cursor.is_none());
    let got = env.client.get_transfer(&first[0].id).await.unwrap();
    assert_eq!(got.id, first[0].id);
    assert!(
        env.client
            .get_transfer("1234567890123456")
            .await
            .unwrap_err()
            .has_code("invalidTransfer")
    );

    // They all settle (the balance covers them); status filters follow.
    env.sandbox
        .wait_for(DEADLINE, |s| {
            s.transfers
                .iter()
                .all(|t| t.status == TransferStatus::Success)
        })
        .await
        .unwrap();
    let success = env
        .client
        .query_transfers(&TransferQuery {
            status: Some(TransferStatus::Success),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(success.len(), 3);
    let created = env
        .client
        .query_transfers(&TransferQuery {
            status: Some(TransferStatus::Created),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created.is_empty());
    // Transfer logs (the success log, just written, reaches lists after the listing lag).
    env.past_listing_lag();
    let logs: Value = env
        .client
        .get("transfer/log", &[("transferIds", first[0].id.clone())])
        .await
        .unwrap();
    let types: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["success", "processing", "created"]);
    let one: Value = env
        .client
        .get(
            &format!("transfer/log/{}", logs["logs"][0]["id"].as_str().unwrap()),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(one["log"]["type"], "success");
}

#[tokio::test]
async fn webhooks_create_list_get_delete() {
    let env = start(fast()).await;
    let a = env
        .client
        .create_webhook("https://example.com/a", &["invoice".into()])
        .await
        .unwrap();
    let b = env
        .client
        .create_webhook(
            "http://127.0.0.1:9/b",
            &["invoice".into(), "transfer".into()],
        )
        .await
        .unwrap();
    assert_eq!(a.id.len(), 16);
    assert_eq!(b.subscriptions, ["invoice", "transfer"]);
    let listed = env.client.list_webhooks().await.unwrap();
    assert_eq!(listed, [b.clone(), a.clone()]);
    assert_eq!(env.client.get_webhook(&a.id).await.unwrap(), a);
    assert_eq!(env.client.delete_webhook(&a.id).await.unwrap(), a);
    assert!(
        env.client
            .get_webhook(&a.id)
            .await
            .unwrap_err()
            .has_code("invalidWebhookId")
    );
    assert!(
        env.client
            .delete_webhook(&a.id)
            .await
            .unwrap_err()
            .has_code("invalidWebhookId")
    );
    assert_eq!(env.client.list_webhooks().await.unwrap(), [b]);
    let err = env
        .client
        .create_webhook("not a url", &["unknown".into()])
        .await
        .unwrap_err();
    assert!(
        err.has_code("invalidUrl") && err.has_code("invalidSubscription"),
        "{err}"
    );
}

#[tokio::test]
async fn events_list_get_patch_delete_and_attempts() {
    let env = start(fast()).await;
    let hook = env.invoice_hook(None).await;
    hook.set_status(500);
    let created = env
        .client
        .create_invoices(&[invoice(100, "a"), invoice(200, "b")])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.attempts.len() >= 2)
        .await
        .unwrap();
    let attempt = &state.attempts[0];
    assert_eq!(attempt.code, "badHttpStatus");
    assert_eq!(attempt.message, "HTTP POST request returned status 500");

    let events = env
        .client
        .query_events(&stark_client::EventQuery {
            is_delivered: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.is_delivered == Some(false) && e.subscription == "invoice")
    );
    assert_eq!(
        events[0].invoice_log().unwrap().invoice.id,
        created[1].id,
        "newest first"
    );
    // Python sends True/False.
    for (value, expected) in [("False", 2), ("false", 2), ("True", 0), ("true", 0)] {
        let page: Value = env
            .client
            .get("event", &[("isDelivered", value.into())])
            .await
            .unwrap();
        assert_eq!(
            page["events"].as_array().unwrap().len(),
            expected,
            "isDelivered={value}"
        );
    }
    let one = env.client.get_event(&events[0].id).await.unwrap();
    assert_eq!(one.id, events[0].id);
    assert_eq!(one.workspace_id.as_deref(), Some("6010044957065216"));

    let attempts: Value = env
        .client
        .get("event/attempt", &[("eventIds", attempt.event_id.clone())])
        .await
        .unwrap();
    let list = attempts["attempts"].as_array().unwrap();
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|a| a["eventId"] == attempt.event_id.as_str())
    );
    let got: Value = env
        .client
        .get(&format!("event/attempt/{}", attempt.id), &[])
        .await
        .unwrap();
    assert_eq!(got["attempt"]["id"], attempt.id.as_str());
    assert_eq!(got["attempt"]["webhookId"], attempt.webhook_id.as_str());

    let patched = env.client.set_event_delivered(&events[0].id).await.unwrap();
    assert_eq!(patched.is_delivered, Some(true));
    let undelivered = env
        .client
        .query_events(&stark_client::EventQuery {
            is_delivered: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(undelivered.len(), 1);
    let deleted = env.client.delete_event(&events[1].id).await.unwrap();
    assert_eq!(deleted.id, events[1].id);
    assert!(
        env.client
            .get_event(&events[1].id)
            .await
            .unwrap_err()
            .has_code("invalidEvent")
    );
    assert!(
        env.client
            .set_event_delivered("1234567890123456")
            .await
            .unwrap_err()
            .has_code("invalidEvent")
    );
    assert_eq!(
        env.client
            .query_events(&Default::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn public_key_lists_the_signing_key_newest_first() {
    let env = start(fast()).await;
    let keys = env.client.list_public_keys(10).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        stark_client::PublicKey::from_pem(&keys[0].content).unwrap(),
        env.sandbox.public_key()
    );
    assert!(keys[0].content.contains("MFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAE"));
    let old = env.sandbox.public_key();
    let new = env.sandbox.rotate_key();
    assert_ne!(old, new);
    let keys = env.client.list_public_keys(10).await.unwrap();
    let parsed: Vec<_> = keys
        .iter()
        .map(|k| stark_client::PublicKey::from_pem(&k.content).unwrap())
        .collect();
    assert_eq!(parsed, [new, old]);
    assert_eq!(env.client.list_public_keys(1).await.unwrap().len(), 1);
}

#[tokio::test]
async fn invoices_can_be_updated_or_canceled_until_paid() {
    let env = start(fast()).await;
    let created = env
        .client
        .create_invoices(&[invoice(1_000, "a"), invoice(2_000, "b")])
        .await
        .unwrap();
    let updated: Value = env
        .client
        .patch(
            &format!("invoice/{}", created[0].id),
            &json!({"amount": 1_500, "expiration": 7_200}),
        )
        .await
        .unwrap();
    assert_eq!(updated["invoice"]["amount"], 1_500);
    assert_eq!(updated["invoice"]["nominalAmount"], 1_500);
    assert_eq!(updated["invoice"]["expiration"], 7_200);
    let canceled: Value = env
        .client
        .patch(
            &format!("invoice/{}", created[1].id),
            &json!({"status": "canceled"}),
        )
        .await
        .unwrap();
    assert_eq!(canceled["invoice"]["status"], "canceled");
    let err = env
        .client
        .patch::<Value>(&format!("invoice/{}", created[1].id), &json!({"amount": 5}))
        .await
        .unwrap_err();
    assert!(err.has_code("invalidOperation"), "{err}");
    let state = env.sandbox.state();
    assert_eq!(
        state.invoice_log_types(&created[0].id),
        ["created", "updated"]
    );
    assert_eq!(
        state.invoice_log_types(&created[1].id),
        ["created", "canceled"]
    );
    env.past_listing_lag();
    let canceled = env
        .client
        .query_invoices(&InvoiceQuery {
            status: Some(InvoiceStatus::Canceled),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(canceled.len(), 1);
}

#[tokio::test]
async fn only_scheduled_transfers_can_be_canceled() {
    let env = start(SandboxConfig {
        initial_balance: 10_000,
        ..fast()
    })
    .await;
    let later = (env.sandbox.now().date() + time::Duration::days(2)).to_string();
    let scheduled = stark_client::NewTransfer {
        scheduled: Some(later.clone()),
        ..transfer(100, "1-1", Some("later"))
    };
    let created = env
        .client
        .create_transfers(&[scheduled, transfer(100, "2-2", Some("now"))])
        .await
        .unwrap();
    assert!(
        created[0].scheduled.starts_with(&later),
        "{}",
        created[0].scheduled
    );
    let canceled: Value = env
        .client
        .delete(&format!("transfer/{}", created[0].id))
        .await
        .unwrap();
    assert_eq!(canceled["transfer"]["status"], "canceled");
    let err = env
        .client
        .delete::<Value>(&format!("transfer/{}", created[1].id))
        .await
        .unwrap_err();
    assert!(err.has_code("invalidAction"), "{err}");
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.transfer_log_types(&created[1].id).len() == 3
        })
        .await
        .unwrap();
    assert_eq!(
        state.transfer_log_types(&created[0].id),
        ["created", "canceled"]
    );
    let fee = state.transfer(&created[1].id).unwrap().fee;
    assert!(fee > 0);
    assert_eq!(
        state.balance,
        10_000 - 100 - fee,
        "the canceled transfer is never debited"
    );
}
