//! The in-process bus honours the push contract of a Pub/Sub push subscription.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use pipeline_service::envelope::PushEnvelope;
use pipeline_service::publisher::{OutgoingMessage, Publisher};
use pipeline_testkit::bus::{MAX_OUTSTANDING_PUSHES, MemoryBus, RetryPolicy};

/// Polls `condition` every 10 ms until it holds or `deadline` passes.
async fn eventually(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fast_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_delivery_attempts: attempts,
        ack_deadline: Duration::from_secs(2),
    }
}

/// An endpoint that records envelopes and answers `status_for(nth call)`.
async fn endpoint(
    status_for: impl Fn(usize) -> StatusCode + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<PushEnvelope>>>) {
    let seen: Arc<Mutex<Vec<PushEnvelope>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let status_for = Arc::new(status_for);
    let app = {
        let seen = seen.clone();
        Router::new().route(
            "/push",
            post(move |envelope: PushEnvelope| {
                let seen = seen.clone();
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let status = status_for(n);
                async move {
                    seen.lock().unwrap().push(envelope);
                    status
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/push"), seen)
}

fn message(text: &str) -> OutgoingMessage {
    OutgoingMessage {
        data: text.as_bytes().to_vec(),
        attributes: BTreeMap::from([("invoiceId".to_owned(), "42".to_owned())]),
        ordering_key: None,
    }
}

#[tokio::test]
async fn delivers_as_a_push_envelope_and_acks_on_2xx() {
    let (url, seen) = endpoint(|_| StatusCode::OK).await;
    let bus = MemoryBus::new();
    bus.subscribe("paid_invoices", "money-sender", &url, fast_policy(5));
    let id = bus
        .publish("paid_invoices", message("hello"))
        .await
        .unwrap();
    eventually("ack", Duration::from_secs(5), || {
        bus.stats("money-sender").unwrap().acked == 1
    })
    .await;
    let envelopes = seen.lock().unwrap().clone();
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0].message_id, id);
    assert_eq!(envelopes[0].data, b"hello");
    assert_eq!(envelopes[0].attributes["invoiceId"], "42");
    assert_eq!(envelopes[0].delivery_attempt, Some(1));
    assert!(
        envelopes[0]
            .subscription
            .ends_with("/subscriptions/money-sender")
    );
    assert!(!envelopes[0].publish_time.is_empty());
}

#[tokio::test]
async fn a_burst_is_pushed_with_bounded_concurrency() {
    let (in_flight, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = {
        let (in_flight, peak) = (in_flight.clone(), peak.clone());
        Router::new().route(
            "/push",
            post(move || {
                let (in_flight, peak) = (in_flight.clone(), peak.clone());
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/push", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let bus = MemoryBus::new();
    bus.subscribe("t", "s", &url, fast_policy(5));
    let burst = 4 * MAX_OUTSTANDING_PUSHES;
    for n in 0..burst {
        bus.publish("t", message(&n.to_string())).await.unwrap();
    }
    eventually("every message acked", Duration::from_secs(20), || {
        bus.stats("s").unwrap().acked == burst
    })
    .await;
    let peak = peak.load(Ordering::SeqCst);
    assert!(
        peak <= MAX_OUTSTANDING_PUSHES,
        "{peak} POSTs in flight at once"
    );
    assert!(peak > 1, "deliveries still overlap: {peak}");
    assert_eq!(bus.stats("s").unwrap().attempts, burst as u64);
}

#[tokio::test]
async fn retries_with_backoff_then_succeeds() {
    let (url, seen) = endpoint(|n| {
        if n < 2 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    })
    .await;
    let bus = MemoryBus::new();
    bus.subscribe("t", "s", &url, fast_policy(5));
    bus.publish("t", message("x")).await.unwrap();
    eventually("ack after retries", Duration::from_secs(5), || {
        bus.stats("s").unwrap().acked == 1
    })
    .await;
    let attempts: Vec<Option<u32>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.delivery_attempt)
        .collect();
    assert_eq!(attempts, vec![Some(1), Some(2), Some(3)]);
    assert!(bus.dead_letters("s").is_empty());
}

#[tokio::test]
async fn dead_letters_after_max_attempts_without_touching_other_messages() {
    let (bad_url, bad_seen) = endpoint(|_| StatusCode::UNPROCESSABLE_ENTITY).await;
    let (good_url, _) = endpoint(|_| StatusCode::OK).await;
    let bus = MemoryBus::new();
    bus.subscribe("t", "bad", &bad_url, fast_policy(4));
    bus.subscribe("t", "good", &good_url, fast_policy(4));
    bus.publish("t", message("poison")).await.unwrap();
    eventually("dead letter", Duration::from_secs(5), || {
        bus.stats("bad").unwrap().dead_lettered == 1
    })
    .await;
    assert_eq!(bad_seen.lock().unwrap().len(), 4);
    assert_eq!(bus.dead_letters("bad")[0].data, b"poison");
    eventually(
        "ack on the other subscription",
        Duration::from_secs(5),
        || bus.stats("good").unwrap().acked == 1,
    )
    .await;
}

#[tokio::test]
async fn seek_redelivers_acked_messages() {
    let (url, seen) = endpoint(|_| StatusCode::OK).await;
    let bus = MemoryBus::new();
    bus.subscribe("t", "s", &url, fast_policy(5));
    let start = SystemTime::now();
    for i in 0..3 {
        bus.publish("t", message(&i.to_string())).await.unwrap();
    }
    eventually("3 acks", Duration::from_secs(5), || {
        bus.stats("s").unwrap().acked == 3
    })
    .await;
    assert_eq!(bus.seek("s", start), 3);
    eventually("6 deliveries", Duration::from_secs(5), || {
        seen.lock().unwrap().len() == 6
    })
    .await;
    eventually("acked again", Duration::from_secs(5), || {
        bus.stats("s").unwrap().acked == 3
    })
    .await;
    assert_eq!(
        bus.seek("s", SystemTime::now() + Duration::from_secs(60)),
        0
    );
}

#[tokio::test]
async fn failing_publishes_report_the_topic() {
    let bus = MemoryBus::new();
    bus.set_fail_publishes(true);
    let err = bus
        .publish("paid_invoices", message("x"))
        .await
        .unwrap_err();
    assert_eq!(err.topic, "paid_invoices");
    assert!(bus.published("paid_invoices").is_empty());
}

#[tokio::test]
async fn kept_messages_come_back_whole_from_published_deliveries_and_dead_letters() {
    let (url, seen) = endpoint(|_| StatusCode::UNPROCESSABLE_ENTITY).await;
    let bus = MemoryBus::new();
    bus.subscribe("t", "s", &url, fast_policy(2));
    let sent = OutgoingMessage {
        data: br#"{"invoiceId":"7"}"#.to_vec(),
        attributes: BTreeMap::from([
            ("schemaVersion".to_owned(), "1".to_owned()),
            ("invoiceId".to_owned(), "7".to_owned()),
            ("campaign".to_owned(), "demo".to_owned()),
        ]),
        ordering_key: Some("7".to_owned()),
    };
    let first = bus.publish("t", sent.clone()).await.unwrap();
    let second = bus.publish("t", message("plain")).await.unwrap();
    assert_ne!(first, second);
    let published = bus.published("t");
    assert_eq!(published.len(), 2);
    let kept = &published[0];
    assert_eq!(
        (&kept.message_id, kept.topic.as_str(), &kept.data),
        (&first, "t", &sent.data)
    );
    assert_eq!(kept.attributes, sent.attributes);
    assert_eq!(kept.ordering_key.as_deref(), Some("7"));
    assert_eq!(published[1].message_id, second);
    assert_eq!(published[1].ordering_key, None);
    eventually("2 dead letters", Duration::from_secs(5), || {
        bus.stats("s").unwrap().dead_lettered == 2
    })
    .await;
    let letter = bus
        .dead_letters("s")
        .into_iter()
        .find(|m| m.message_id == first)
        .expect("the first message is dead-lettered");
    assert_eq!(&letter, kept, "a dead letter is the message as published");
    let envelope = seen
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.message_id == first)
        .cloned()
        .expect("the first message was pushed");
    assert_eq!(envelope.attributes, sent.attributes);
    assert_eq!(envelope.data, sent.data);
}
