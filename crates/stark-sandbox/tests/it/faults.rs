//! Every fault, and that the same seed repeats it.

use std::time::{Duration, Instant};

use stark_sandbox::{FaultConfig, SandboxConfig, SandboxState};

use crate::common::*;

/// The faults of a run as (request number, kind), the part that must repeat.
fn fault_kinds(state: &SandboxState) -> Vec<(u64, String)> {
    state
        .faults
        .iter()
        .map(|f| (f.request, f.kind.clone()))
        .collect()
}

/// Position (creation order) of the events a webhook fault hit.
fn faulted_events(state: &SandboxState, kind: &str) -> Vec<usize> {
    state
        .faults
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| {
            state
                .events
                .iter()
                .position(|e| e.id == f.detail)
                .expect("a known event")
        })
        .collect()
}

async fn plain_requests(
    faults: FaultConfig,
    n: usize,
) -> (Vec<u16>, Vec<(u64, String)>, Vec<Duration>) {
    let env = start(fast()).await;
    env.sandbox.set_faults(faults).unwrap();
    let mut statuses = Vec::new();
    let mut took = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        statuses.push(
            raw(&env, "GET", "/v2/invoice?limit=1", "", None)
                .await
                .status(),
        );
        took.push(started.elapsed());
    }
    let state = env.sandbox.state();
    assert_eq!(state.requests, n as u64);
    (statuses, fault_kinds(&state), took)
}

#[tokio::test]
async fn server_errors_and_dropped_connections_repeat_for_a_seed() {
    let faults = FaultConfig {
        seed: 42,
        server_error_rate: 0.25,
        drop_rate: 0.2,
        ..Default::default()
    };
    let (first, kinds, _) = plain_requests(faults.clone(), 40).await;
    let (second, kinds_again, _) = plain_requests(faults.clone(), 40).await;
    assert_eq!(first, second);
    assert_eq!(kinds, kinds_again);
    assert!(
        first.contains(&500) && first.contains(&0) && first.contains(&200),
        "{first:?}"
    );
    for (i, status) in first.iter().enumerate() {
        let kind = kinds
            .iter()
            .find(|(r, _)| *r == i as u64 + 1)
            .map(|(_, k)| k.as_str());
        match status {
            0 => assert_eq!(kind, Some("drop")),
            500 => assert_eq!(kind, Some("serverError")),
            _ => assert_eq!(kind, None),
        }
    }
    let (other_seed, _, _) = plain_requests(FaultConfig { seed: 43, ..faults }, 40).await;
    assert_ne!(first, other_seed);
    // Faults changed at runtime through the HTTP route too.
    let env = start(fast()).await;
    let http = reqwest::Client::new();
    let set = http
        .post(format!("{}/_sandbox/faults", env.sandbox.root_url()))
        .body(r#"{"seed": 1, "serverErrorRate": 1.0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(env.sandbox.faults().server_error_rate, 1.0);
    assert_eq!(
        raw(&env, "GET", "/v2/invoice", "", None).await.status(),
        500
    );
    let refused = http
        .post(format!("{}/_sandbox/faults", env.sandbox.root_url()))
        .body(r#"{"dropRate": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn slow_answers_repeat_for_a_seed() {
    let faults = FaultConfig {
        seed: 7,
        slow_rate: 0.3,
        slow_delay_ms: 150,
        ..Default::default()
    };
    let (statuses, kinds, took) = plain_requests(faults.clone(), 20).await;
    let (_, kinds_again, _) = plain_requests(faults, 20).await;
    assert_eq!(kinds, kinds_again);
    assert!(statuses.iter().all(|s| *s == 200));
    assert!(!kinds.is_empty() && kinds.len() < 20, "{kinds:?}");
    for (request, kind) in &kinds {
        assert_eq!(kind, "slow");
        assert!(took[*request as usize - 1] >= Duration::from_millis(150));
    }
}

async fn lost_answers(faults: FaultConfig) -> (Vec<u16>, Vec<(u64, String)>) {
    let env = start(fast()).await;
    env.sandbox.set_faults(faults).unwrap();
    let mut statuses = Vec::new();
    for i in 0..16 {
        let body = serde_json::json!({"invoices": [{"amount": 100 + i, "taxId": "012.345.678-90", "name": "Ana", "tags": [format!("req-{i}")]}]});
        statuses.push(
            raw(&env, "POST", "/v2/invoice", &body.to_string(), None)
                .await
                .status(),
        );
    }
    let state = env.sandbox.state();
    assert_eq!(
        state.invoices.len(),
        16,
        "every create was applied, answered or not"
    );
    (statuses, fault_kinds(&state))
}

#[tokio::test]
async fn applied_but_lost_answers_repeat_for_a_seed_and_creates_did_happen() {
    let faults = FaultConfig {
        seed: 3,
        lost_answer_rate: 0.5,
        ..Default::default()
    };
    let (first, kinds) = lost_answers(faults.clone()).await;
    assert_eq!((first.clone(), kinds.clone()), lost_answers(faults).await);
    assert!(
        first.contains(&200) && first.contains(&500) && first.contains(&0),
        "{first:?}"
    );
    assert!(
        kinds
            .iter()
            .all(|(_, k)| k == "lostAnswer500" || k == "lostAnswerDrop")
    );

    // Through stark-client: the error says the transfer may exist; it does, and retrying
    // with the same externalId is refused, which is what makes a retry safe.
    let env = start(stark_sandbox::SandboxConfig {
        initial_balance: 1_000_000,
        ..fast()
    })
    .await;
    env.sandbox
        .set_faults(FaultConfig {
            seed: 3,
            lost_answer_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    let err = env
        .client
        .create_transfers(&[transfer(1_000, "7-7", Some("payout-1"))])
        .await
        .unwrap_err();
    assert!(err.may_have_happened(), "{err}");
    env.sandbox.set_faults(FaultConfig::default()).unwrap();
    let state = env.sandbox.state();
    assert_eq!(state.transfers.len(), 1);
    assert_eq!(state.transfers[0].external_id.as_deref(), Some("payout-1"));
    let retry = env
        .client
        .create_transfers(&[transfer(1_000, "7-7", Some("payout-1"))])
        .await
        .unwrap_err();
    assert!(retry.has_code("invalidExternalId"));
    env.past_listing_lag();
    let found = env
        .client
        .query_transfers(&stark_client::TransferQuery {
            tags: vec!["payout".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

/// Creates `n` invoices one at a time with a webhook subscribed, waiting after each until its
/// event has been delivered, so that webhook faults meet events in a fixed order.
async fn webhook_run(faults: FaultConfig, n: usize, verify: bool) -> (SandboxState, Receiver) {
    let env = start(fast()).await;
    let hook = env.invoice_hook(verify.then(|| env.client.clone())).await;
    env.sandbox.set_faults(faults).unwrap();
    for i in 0..n {
        env.client
            .create_invoices(&[invoice(100 + i as i64, "w")])
            .await
            .unwrap();
        env.sandbox
            .wait_for(DEADLINE, |s| {
                s.events.len() == i + 1 && s.events[i].is_delivered == Some(true)
            })
            .await
            .unwrap();
    }
    // Duplicates go out right after their original; wait for them too.
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.deliveries.len()
                == n + s
                    .faults
                    .iter()
                    .filter(|f| f.kind == "duplicateDelivery")
                    .count()
        })
        .await
        .unwrap();
    (state, hook)
}

#[tokio::test]
async fn duplicate_deliveries_repeat_for_a_seed() {
    let faults = FaultConfig {
        seed: 11,
        duplicate_delivery_rate: 0.4,
        ..Default::default()
    };
    let (state, hook) = webhook_run(faults.clone(), 12, false).await;
    let duplicated = faulted_events(&state, "duplicateDelivery");
    assert!(
        !duplicated.is_empty() && duplicated.len() < 12,
        "{duplicated:?}"
    );
    assert_eq!(hook.received().len(), 12 + duplicated.len());
    let ids = hook.event_ids();
    for index in &duplicated {
        let id = &state.events[*index].id;
        assert_eq!(
            ids.iter().filter(|e| *e == id).count(),
            2,
            "event {index} arrived twice"
        );
    }
    let (again, _) = webhook_run(faults, 12, false).await;
    assert_eq!(duplicated, faulted_events(&again, "duplicateDelivery"));
}

#[tokio::test]
async fn rotated_keys_repeat_for_a_seed_and_receivers_still_verify() {
    let faults = FaultConfig {
        seed: 5,
        key_rotation_rate: 0.4,
        ..Default::default()
    };
    let (state, hook) = webhook_run(faults.clone(), 8, true).await;
    let rotated = faulted_events(&state, "keyRotation");
    assert!(!rotated.is_empty() && rotated.len() < 8, "{rotated:?}");
    assert_eq!(
        state.public_keys.len(),
        1 + rotated.len(),
        "older keys stay listed"
    );
    for r in hook.received() {
        r.verified
            .unwrap()
            .expect("stark-client refetches the rotated key and verifies");
    }
    let (again, _) = webhook_run(faults, 8, true).await;
    assert_eq!(rotated, faulted_events(&again, "keyRotation"));
}

async fn out_of_order_run(faults: FaultConfig) -> (Vec<usize>, Vec<usize>) {
    let env = start(fast()).await;
    let hook = env.invoice_hook(None).await;
    env.sandbox.set_faults(faults).unwrap();
    for i in 0..10 {
        env.client
            .create_invoices(&[invoice(100 + i, "o")])
            .await
            .unwrap();
    }
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            s.events.len() == 10 && s.events.iter().all(|e| e.is_delivered == Some(true))
        })
        .await
        .unwrap();
    let held = faulted_events(&state, "outOfOrder");
    let arrival: Vec<usize> = hook
        .event_ids()
        .iter()
        .map(|id| state.events.iter().position(|e| &e.id == id).unwrap())
        .collect();
    (held, arrival)
}

#[tokio::test]
async fn out_of_order_deliveries_repeat_for_a_seed() {
    let faults = FaultConfig {
        seed: 9,
        out_of_order_rate: 0.3,
        out_of_order_delay_secs: 600,
        ..Default::default()
    };
    let (held, arrival) = out_of_order_run(faults.clone()).await;
    assert!(!held.is_empty() && held.len() < 10, "{held:?}");
    // Every held event was overtaken by an event created after it (unless it was the last).
    for h in held.iter().filter(|h| **h < 9) {
        let pos = arrival.iter().position(|a| a == h).unwrap();
        assert!(
            arrival[..pos].iter().any(|a| a > h),
            "event {h} was not overtaken: {arrival:?}"
        );
    }
    let (held_again, _) = out_of_order_run(faults).await;
    assert_eq!(held, held_again);
}

#[tokio::test]
async fn timeouts_and_rate_limits_repeat_for_a_seed_and_do_nothing() {
    let faults = FaultConfig {
        seed: 13,
        timeout_rate: 0.25,
        rate_limit_rate: 0.25,
        retry_after_secs: 7,
        ..Default::default()
    };
    let (first, kinds, _) = plain_requests(faults.clone(), 40).await;
    let (second, kinds_again, _) = plain_requests(faults.clone(), 40).await;
    assert_eq!((&first, &kinds), (&second, &kinds_again));
    assert!(
        first.contains(&408) && first.contains(&429) && first.contains(&200),
        "{first:?}"
    );
    for (i, status) in first.iter().enumerate() {
        let kind = kinds
            .iter()
            .find(|(r, _)| *r == i as u64 + 1)
            .map(|(_, k)| k.as_str());
        match status {
            408 => assert_eq!(kind, Some("timeout")),
            429 => assert_eq!(kind, Some("rateLimit")),
            _ => assert_eq!(kind, None, "request {}", i + 1),
        }
    }
    // Their own streams: switching them on does not move the 500s of the same seed.
    let with_errors = FaultConfig {
        server_error_rate: 0.3,
        ..faults.clone()
    };
    let errors_only = FaultConfig {
        seed: 13,
        server_error_rate: 0.3,
        ..Default::default()
    };
    let (mixed, _, _) = plain_requests(with_errors, 40).await;
    let (alone, _, _) = plain_requests(errors_only, 40).await;
    let fives = |v: &[u16]| v.iter().map(|s| *s == 500).collect::<Vec<_>>();
    assert_eq!(fives(&mixed), fives(&alone));

    // The answers: Stark's error shape, a Retry-After on 429, and nothing created.
    let env = start(fast()).await;
    let body = serde_json::json!({"invoices": [{"amount": 100, "taxId": "012.345.678-90", "name": "Ana"}]}).to_string();
    env.sandbox
        .set_faults(FaultConfig {
            rate_limit_rate: 1.0,
            retry_after_secs: 7,
            ..Default::default()
        })
        .unwrap();
    let (status, headers, json) = raw_with_headers(&env, "POST", "/v2/invoice", &body).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(json["errors"][0]["code"], "tooManyRequests");
    assert!(
        json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("7 seconds")
    );
    env.sandbox
        .set_faults(FaultConfig {
            timeout_rate: 1.0,
            ..Default::default()
        })
        .unwrap();
    let (status, headers, json) = raw_with_headers(&env, "POST", "/v2/invoice", &body).await;
    assert_eq!(status, 408);
    assert!(headers.get("retry-after").is_none());
    assert_eq!(json["errors"][0]["code"], "requestTimeout");
    let state = env.sandbox.state();
    assert!(state.invoices.is_empty(), "a faulted request does nothing");
    assert_eq!(
        fault_kinds(&state),
        [(1, "rateLimit".to_owned()), (2, "timeout".to_owned())]
    );
    // Settable over HTTP too.
    let set = reqwest::Client::new()
        .post(format!("{}/_sandbox/faults", env.sandbox.root_url()))
        .body(r#"{"timeoutRate": 0.5, "rateLimitRate": 0.5, "retryAfterSecs": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(env.sandbox.faults().retry_after_secs, 3);
}

#[tokio::test]
async fn an_outage_answers_503_and_holds_webhooks_until_it_ends() {
    let env = start(SandboxConfig {
        pay_probability: 1.0,
        ..fast()
    })
    .await;
    let hook = env.invoice_hook(None).await;
    let created = env
        .client
        .create_invoices(&[invoice(10_000, "outage")])
        .await
        .unwrap();
    // The `created` event arrives; then Stark goes down for an hour of sandbox time.
    env.sandbox
        .wait_for(Duration::from_secs(10), |s| !s.deliveries.is_empty())
        .await
        .unwrap();
    let before = hook.received().len();
    env.sandbox
        .schedule_outage(env.sandbox.now(), Duration::from_secs(3600));
    let answer = raw(&env, "GET", "/v2/invoice?limit=1", "", None).await;
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.first_code(), "serviceUnavailable");
    // The invoice is paid meanwhile, but no webhook goes out while Stark is down …
    env.sandbox.advance(Duration::from_secs(600));
    let id = created[0].id.clone();
    env.sandbox
        .wait_for(Duration::from_secs(10), move |s| {
            s.invoice_log_types(&id).contains(&"credited")
        })
        .await
        .unwrap();
    assert_eq!(hook.received().len(), before, "held back during the outage");
    // … and every one is delivered once it is over.
    env.sandbox.advance(Duration::from_secs(3600));
    env.sandbox
        .wait_for(Duration::from_secs(10), |s| {
            s.deliveries
                .iter()
                .filter(|d| d.outcome == stark_sandbox::DeliveryOutcome::Delivered)
                .count()
                >= 3
        })
        .await
        .unwrap();
    assert!(hook.received().len() >= 3, "created, paid, credited");
    assert_eq!(
        raw(&env, "GET", "/v2/invoice?limit=1", "", None)
            .await
            .status(),
        200
    );
    let outages = env
        .sandbox
        .state()
        .faults
        .iter()
        .filter(|f| f.kind == "outage")
        .count();
    assert_eq!(outages, 1);
}

#[tokio::test]
async fn lost_webhooks_are_never_posted_and_leave_failed_attempts() {
    let env = start(fast()).await;
    let hook = env.invoice_hook(None).await;
    env.sandbox
        .set_faults(FaultConfig {
            seed: 3,
            lost_webhook_rate: 0.5,
            ..Default::default()
        })
        .unwrap();
    for i in 0..12 {
        env.client
            .create_invoices(&[invoice(100 + i, "l")])
            .await
            .unwrap();
    }
    // Every event is settled one way or the other: delivered, or lost with its attempts.
    let state = env
        .sandbox
        .wait_for(DEADLINE, |s| {
            let lost = s.faults.iter().filter(|f| f.kind == "lostWebhook").count();
            s.events.len() == 12
                && s.events
                    .iter()
                    .filter(|e| e.is_delivered == Some(true))
                    .count()
                    + lost
                    == 12
        })
        .await
        .unwrap();
    let lost = faulted_events(&state, "lostWebhook");
    assert!(!lost.is_empty() && lost.len() < 12, "{lost:?}");
    let received = hook.event_ids();
    for index in &lost {
        let event = &state.events[*index];
        assert_eq!(event.is_delivered, Some(false));
        assert!(!received.contains(&event.id), "a lost webhook was posted");
        let attempts = state
            .attempts
            .iter()
            .filter(|a| a.event_id == event.id)
            .count();
        assert!(attempts >= 1, "no failed attempt recorded for {}", event.id);
    }
    assert_eq!(received.len(), 12 - lost.len());
}
