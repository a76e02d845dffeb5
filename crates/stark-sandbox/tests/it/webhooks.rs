//! Webhook delivery: signatures, retries, attempts.

use std::time::Duration;

use serde_json::Value;
use stark_sandbox::{DeliveryOutcome, SandboxConfig};

use crate::common::*;

#[tokio::test]
async fn deliveries_verify_with_stark_client_in_both_high_and_low_s() {
    let env = start(SandboxConfig {
        pay_probability: 1.0,
        ..fast()
    })
    .await;
    let hook = receiver(Some(env.client.clone())).await;
    env.client
        .create_webhook(&hook.url, &["invoice".into(), "transfer".into()])
        .await
        .unwrap();
    let invoices: Vec<_> = (0..6).map(|i| invoice(1_000 + i, "hooked")).collect();
    let created = env.client.create_invoices(&invoices).await.unwrap();
    // created + paid + credited for each invoice, all delivered.
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.events.len() == 18 && s.events.iter().all(|e| e.is_delivered == Some(true))
        })
        .await
        .unwrap();
    let received = hook.received();
    assert_eq!(received.len(), 18);
    for r in &received {
        let delivery = state
            .deliveries
            .iter()
            .find(|d| d.body == r.body)
            .expect("recorded");
        assert_eq!(
            r.signature.as_ref(),
            Some(&delivery.signature),
            "Digital-Signature header"
        );
        let event = r
            .verified
            .clone()
            .expect("verified")
            .unwrap_or_else(|e| panic!("verification failed: {e}"));
        assert_eq!(event.subscription, "invoice");
        assert_eq!(
            event.is_delivered, None,
            "delivered bodies carry no isDelivered"
        );
        assert!(
            created
                .iter()
                .any(|c| Some(&c.id) == event.invoice_log().map(|l| &l.invoice.id))
        );
        // Python's json.dumps(sort_keys=True) bytes.
        let value: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(stark_client::python_json::to_string_sorted(&value), r.body);
        assert!(
            r.body.starts_with(r#"{"event": {"created": "#),
            "{}",
            &r.body[..60]
        );
        let keys: Vec<&String> = value["event"].as_object().unwrap().keys().collect();
        assert_eq!(
            keys.len(),
            5,
            "id, created, subscription, workspaceId, log: {keys:?}"
        );
    }
    assert_eq!(
        state.counters.webhook_posts,
        state.deliveries.len() as u64,
        "every POST counted"
    );
    let high = state.deliveries.iter().filter(|d| d.high_s).count();
    assert!(
        high > 0 && high < state.deliveries.len(),
        "both forms seen: {high} high-S of {}",
        state.deliveries.len()
    );
    assert!(state.attempts.is_empty());
    let credited = received
        .iter()
        .filter_map(|r| r.verified.as_ref().unwrap().as_ref().ok())
        .filter(|e| {
            e.invoice_log()
                .is_some_and(|l| l.log_type.as_str() == "credited")
        })
        .count();
    assert_eq!(credited, 6);
}

#[tokio::test]
async fn failed_deliveries_are_retried_on_stark_schedule_then_left_undelivered() {
    // 5 + 30 + 120 sandbox minutes take about three real seconds at this speed.
    let env = start(SandboxConfig {
        speed: 3_000.0,
        ..fast()
    })
    .await;
    let hook = env.invoice_hook(None).await;
    hook.set_status(503);
    let created = env
        .client
        .create_invoices(&[invoice(100, "retried")])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.attempts.len() == 4)
        .await
        .unwrap();
    let event = &state.events[0];
    assert_eq!(event.invoice_log().unwrap().invoice.id, created[0].id);
    assert_eq!(event.is_delivered, Some(false));
    assert!(
        state
            .attempts
            .iter()
            .all(|a| a.code == "badHttpStatus" && a.event_id == event.id)
    );
    let tries: Vec<u32> = state.deliveries.iter().map(|d| d.try_number).collect();
    assert_eq!(tries, [1, 2, 3, 4]);
    let at: Vec<time::OffsetDateTime> = state
        .attempts
        .iter()
        .map(|a| {
            time::OffsetDateTime::parse(&a.created, &time::format_description::well_known::Rfc3339)
                .unwrap()
        })
        .collect();
    for (gap, minutes) in at.windows(2).map(|w| w[1] - w[0]).zip([5, 30, 120]) {
        assert!(
            gap >= time::Duration::minutes(minutes),
            "{gap} < {minutes} min"
        );
        // Generous: an hour of sandbox time is 1.2 real seconds of slack on a busy machine.
        assert!(
            gap < time::Duration::minutes(minutes + 60),
            "{gap} is too long after {minutes} min"
        );
    }
    // Later: the schedule is used up. A barrier: a new event, delivered after a jump of a day,
    // proves the scheduler ran past every time a fifth try could have had.
    env.sandbox.advance(Duration::from_secs(86_400));
    hook.set_status(200);
    env.client
        .create_invoices(&[invoice(200, "barrier")])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.events.len() == 2 && s.events[1].is_delivered == Some(true)
        })
        .await
        .unwrap();
    assert_eq!(state.attempts.len(), 4);
    assert_eq!(state.event(&event.id).unwrap().is_delivered, Some(false));
    let undelivered = env
        .client
        .query_events(&stark_client::EventQuery {
            is_delivered: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(undelivered.len(), 1);
}

#[tokio::test]
async fn only_200_counts_and_attempt_codes_name_the_failure() {
    let env = start(SandboxConfig {
        delivery_timeout: Duration::from_millis(300),
        retry_schedule: vec![],
        ..fast()
    })
    .await;
    let created_201 = receiver(None).await;
    created_201.set_status(201);
    let slow = receiver(None).await;
    slow.set_delay(Duration::from_secs(2));
    // A port nobody listens on (bound then closed).
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    for url in [&created_201.url, &slow.url, &closed] {
        env.client
            .create_webhook(url, &["invoice".into()])
            .await
            .unwrap();
    }
    env.client
        .create_invoices(&[invoice(100, "codes")])
        .await
        .unwrap();
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| s.attempts.len() == 3)
        .await
        .unwrap();
    let mut codes: Vec<&str> = state.attempts.iter().map(|a| a.code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, ["badConnection", "badHttpStatus", "timeout"]);
    let bad_status = state
        .attempts
        .iter()
        .find(|a| a.code == "badHttpStatus")
        .unwrap();
    assert_eq!(bad_status.message, "HTTP POST request returned status 201");
    assert!(state.events.iter().all(|e| e.is_delivered == Some(false)));
    assert!(
        state
            .deliveries
            .iter()
            .any(|d| matches!(d.outcome, DeliveryOutcome::Timeout))
    );
}
