//! Invoice and transfer lifecycles on the sandbox clock.

use std::time::Duration;

use stark_client::{Discount, InvoiceStatus, NewInvoice, TransferStatus};
use stark_sandbox::SandboxConfig;

use crate::common::*;

fn paying() -> SandboxConfig {
    SandboxConfig {
        pay_probability: 1.0,
        invoice_fee: 50,
        ..fast()
    }
}

#[tokio::test]
async fn invoices_are_paid_then_credited_with_fee_and_fund_the_balance() {
    let env = start(paying()).await;
    let due = (env.sandbox.now() + time::Duration::days(3)).date();
    let discounted = NewInvoice {
        discounts: vec![Discount {
            percentage: 10.5,
            due: due.to_string(),
        }],
        due: Some((due + time::Duration::days(1)).to_string()),
        ..invoice(4100, "discounted")
    };
    let created = env
        .client
        .create_invoices(&[invoice(10_000, "plain"), discounted])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            created
                .iter()
                .all(|i| s.invoice_log_types(&i.id) == ["created", "paid", "credited"])
        })
        .await
        .unwrap();
    let plain = state.invoice(&created[0].id).unwrap();
    assert_eq!(plain.status, InvoiceStatus::Paid);
    assert_eq!(
        (plain.amount, plain.nominal_amount, plain.fee),
        (10_000, 10_000, 50)
    );
    assert_eq!(plain.transaction_ids.len(), 1);
    let discounted = state.invoice(&created[1].id).unwrap();
    // The real 2020 sandbox sample: 4100 with 10.5 % off is credited as 3669 (discount 431).
    assert_eq!(
        (
            discounted.amount,
            discounted.discount_amount,
            discounted.fee
        ),
        (3669, 431, 50)
    );
    assert_eq!(state.balance, (10_000 - 50) + (3669 - 50));
    assert_eq!(env.sandbox.balance(), state.balance);

    // The credited log carries the invoice as it was then; the paid log had no fee yet.
    let paid_log = state
        .invoice_logs
        .iter()
        .find(|l| l.invoice.id == created[0].id && l.log_type.as_str() == "paid")
        .unwrap();
    assert_eq!(paid_log.invoice.fee, 0);
    assert!(paid_log.invoice.transaction_ids.is_empty());

    let payment = env
        .client
        .get_invoice_payment(&created[0].id)
        .await
        .unwrap();
    assert_eq!(payment.amount, 10_000);
    assert_eq!(payment.method, "pix");
    assert_eq!(payment.end_to_end_id.len(), 32);
    let fetched = env.client.get_invoice(&created[1].id).await.unwrap();
    assert_eq!(fetched.amount, 3669);
}

#[tokio::test]
async fn late_payment_adds_fine_and_interest() {
    let env = start(SandboxConfig {
        pay_delay: Duration::from_secs(60),
        ..paying()
    })
    .await;
    let due = env.sandbox.now() - time::Duration::days(10);
    let late = NewInvoice {
        due: Some(stark_sandbox::clock::timestamp(due)),
        ..invoice(30_000, "late")
    };
    let created = env.client.create_invoices(&[late]).await.unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.invoice_log_types(&created[0].id).contains(&"credited")
        })
        .await
        .unwrap();
    assert_eq!(
        state.invoice_log_types(&created[0].id),
        ["created", "overdue", "paid", "credited"]
    );
    let inv = state.invoice(&created[0].id).unwrap();
    // 2 % fine, and 1 % a month for 10 days = 0.333 % interest.
    assert_eq!((inv.fine_amount, inv.interest_amount), (600, 100));
    assert_eq!(inv.amount, 30_700);
    assert_eq!(inv.nominal_amount, 30_000);
}

#[tokio::test]
async fn unpaid_invoices_go_overdue_then_expire() {
    // Slow enough that real time alone cannot reach the expiry between the two jumps.
    let env = start(SandboxConfig {
        speed: 60.0,
        ..fast()
    })
    .await;
    let due = env.sandbox.now() + time::Duration::hours(1);
    let new = NewInvoice {
        due: Some(stark_sandbox::clock::timestamp(due)),
        expiration: Some(3600),
        ..invoice(500, "unpaid")
    };
    let created = env.client.create_invoices(&[new]).await.unwrap();
    assert_eq!(created[0].status, InvoiceStatus::Created);
    env.sandbox.advance(Duration::from_secs(90 * 60));
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.invoice_log_types(&created[0].id).len() == 2)
        .await
        .unwrap();
    assert_eq!(
        state.invoice(&created[0].id).unwrap().status,
        InvoiceStatus::Overdue
    );
    env.sandbox.advance(Duration::from_secs(60 * 60));
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.invoice_log_types(&created[0].id).len() == 3)
        .await
        .unwrap();
    assert_eq!(
        state.invoice_log_types(&created[0].id),
        ["created", "overdue", "expired"]
    );
    assert_eq!(
        state.invoice(&created[0].id).unwrap().status,
        InvoiceStatus::Expired
    );
    assert_eq!(state.balance, 0);
}

#[tokio::test]
async fn transfers_debit_amount_plus_fee_and_fail_beyond_the_balance() {
    let env = start(SandboxConfig {
        invoice_fee: 0,
        transfer_fee: 100,
        ..paying()
    })
    .await;
    let created = env
        .client
        .create_invoices(&[invoice(10_000, "funding")])
        .await
        .unwrap();
    env.sandbox
        .wait_for(DEADLINE, |s| {
            s.invoice_log_types(&created[0].id).contains(&"credited")
        })
        .await
        .unwrap();
    assert_eq!(env.sandbox.balance(), 10_000);

    let ok = env
        .client
        .create_transfers(&[transfer(6_000, "1-1", Some("ok"))])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.transfer_log_types(&ok[0].id).len() == 3)
        .await
        .unwrap();
    assert_eq!(
        state.transfer_log_types(&ok[0].id),
        ["created", "processing", "success"]
    );
    assert_eq!(state.transfer(&ok[0].id).unwrap().transaction_ids.len(), 1);
    assert_eq!(state.transfer(&ok[0].id).unwrap().fee, 100);
    assert_eq!(state.balance, 10_000 - 6_000 - 100);

    // 3_900 cannot cover 3_900 + 100: the fee counts.
    let too_much = env
        .client
        .create_transfers(&[transfer(3_900, "2-2", Some("too-much"))])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.transfer_log_types(&too_much[0].id).len() == 3
        })
        .await
        .unwrap();
    assert_eq!(
        state.transfer_log_types(&too_much[0].id),
        ["created", "processing", "failed"]
    );
    let failed = state.transfer(&too_much[0].id).unwrap();
    assert_eq!(failed.status, TransferStatus::Failed);
    assert!(failed.transaction_ids.is_empty());
    let failed_log = state
        .transfer_logs
        .iter()
        .find(|l| l.transfer.id == too_much[0].id && l.log_type == "failed")
        .unwrap();
    assert!(
        failed_log.errors[0]
            .as_str()
            .unwrap()
            .contains("Insufficient balance")
    );
    assert_eq!(state.balance, 3_900, "a failed transfer debits nothing");
}

#[tokio::test]
async fn fees_are_charged_by_default_and_the_balance_starts_at_zero() {
    let defaults = SandboxConfig::default();
    assert!(defaults.invoice_fee > 0 && defaults.transfer_fee > 0);
    assert_eq!(defaults.initial_balance, 0);
    let env = start(SandboxConfig {
        pay_probability: 1.0,
        ..fast()
    })
    .await;
    let (fee_in, fee_out) = (defaults.invoice_fee, defaults.transfer_fee);
    let balance = |env: &Env| {
        let env = env.client.clone();
        async move {
            let page: serde_json::Value = env.get("balance", &[]).await.unwrap();
            page["balances"][0].clone()
        }
    };
    let at_start = balance(&env).await;
    assert_eq!(at_start["amount"], 0);
    assert_eq!(at_start["currency"], "BRL");
    assert_eq!(at_start["id"].as_str().unwrap().len(), 16);
    assert!(at_start["updated"].as_str().unwrap().ends_with("+00:00"));

    let created = env
        .client
        .create_invoices(&[invoice(10_000, "funding")])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.invoice_log_types(&created[0].id).contains(&"credited")
        })
        .await
        .unwrap();
    assert_eq!(state.invoice(&created[0].id).unwrap().fee, fee_in);
    let credited = 10_000 - fee_in;
    assert_eq!(state.balance, credited);
    let after_credit = balance(&env).await;
    assert_eq!(after_credit["amount"], credited);
    assert_eq!(
        after_credit["id"], at_start["id"],
        "one balance object per workspace"
    );
    assert_ne!(after_credit["updated"], at_start["updated"]);

    // Paying out what the invoice credited costs that plus the transfer fee: more than the
    // balance holds, so the payout fails, as it would at Stark.
    let payout = env
        .client
        .create_transfers(&[transfer(credited, "1-1", Some("payout"))])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.transfer_log_types(&payout[0].id).len() == 3)
        .await
        .unwrap();
    assert_eq!(
        state.transfer_log_types(&payout[0].id),
        ["created", "processing", "failed"]
    );
    assert_eq!(state.balance, credited);
    // What the balance can cover goes through, fee included.
    let fits = env
        .client
        .create_transfers(&[transfer(credited - fee_out, "1-1", Some("fits"))])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.transfer_log_types(&fits[0].id).len() == 3)
        .await
        .unwrap();
    assert_eq!(
        state.transfer(&fits[0].id).unwrap().status,
        TransferStatus::Success
    );
    assert_eq!(state.transfer(&fits[0].id).unwrap().fee, fee_out);
    assert_eq!(state.balance, 0);
    assert_eq!(balance(&env).await["amount"], 0);
}
