//! Runs against the in-memory bus: the window, what is published, retries and failures.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration as StdDuration;

use futures::future::BoxFuture;
use invoice_spammer::{RunReport, SpammerError, Window, batch, run, run_slot};
use pipeline_domain::messages::{PENDING_INVOICES, PendingInvoice, TopicMessage as _};
use pipeline_service::publisher::{OutgoingMessage, PublishError, Publisher};
use pipeline_testkit::bus::MemoryBus;
use time::Duration;

fn published(bus: &MemoryBus) -> Vec<PendingInvoice> {
    bus.published(PENDING_INVOICES)
        .iter()
        .map(|m| PendingInvoice::from_payload(&m.data).expect("valid payload"))
        .collect()
}

#[tokio::test]
async fn publishes_the_slot_of_now_and_confirms_every_message() {
    let config = common::config("demo");
    let bus = MemoryBus::new();
    let now = common::START + Duration::hours(5) + Duration::minutes(59);
    let report = run(&config, &bus, now).await.unwrap();

    let expected = batch(&config, 5);
    let RunReport::Published {
        slot,
        invoices,
        total_cents,
    } = report
    else {
        panic!("expected a published report, got {report:?}");
    };
    assert_eq!(slot, 5);
    assert_eq!(invoices.len(), expected.len());
    assert_eq!(total_cents, expected.iter().map(|i| i.amount).sum::<i64>());
    let ids: Vec<&str> = invoices.iter().map(|p| p.request_id.as_str()).collect();
    let expected_ids: Vec<&str> = expected.iter().map(|i| i.request_id.as_str()).collect();
    assert_eq!(ids, expected_ids, "report in batch order");
    assert!(invoices.iter().all(|p| !p.message_id.is_empty()));

    let mut on_bus = published(&bus);
    on_bus.sort_by_key(|i| i.request_id.clone());
    let mut sorted = expected.clone();
    sorted.sort_by_key(|i| i.request_id.clone());
    assert_eq!(on_bus, sorted);
    for message in bus.published(PENDING_INVOICES) {
        assert_eq!(message.attributes["campaign"], "demo");
        assert_eq!(message.attributes["slot"], "5");
        assert_eq!(message.attributes["schemaVersion"], "1");
        assert!(message.attributes["requestId"].starts_with("demo-5-"));
    }
}

#[tokio::test]
async fn a_retried_run_republishes_exactly_the_same_requests() {
    let config = common::config("demo");
    let bus = MemoryBus::new();
    let now = common::START + Duration::hours(9);
    run(&config, &bus, now).await.unwrap();
    let first = published(&bus);
    // The retry happens later within the hour, from a fresh process (fresh config).
    run(&common::config("demo"), &bus, now + Duration::minutes(20))
        .await
        .unwrap();
    let all = published(&bus);
    assert_eq!(all.len(), first.len() * 2);
    let mut a = first.clone();
    let mut b = all[first.len()..].to_vec();
    a.sort_by_key(|i| i.request_id.clone());
    b.sort_by_key(|i| i.request_id.clone());
    assert_eq!(a, b);
    // And the explicit-slot path agrees with the clock path.
    let bus2 = MemoryBus::new();
    run_slot(&config, &bus2, 9).await.unwrap();
    let mut c = published(&bus2);
    c.sort_by_key(|i| i.request_id.clone());
    assert_eq!(a, c);
}

#[tokio::test]
async fn outside_the_window_nothing_is_published_and_it_is_ok() {
    let config = common::config("demo");
    let bus = MemoryBus::new();
    let cases = [
        (common::START - Duration::hours(3), Window::NotStarted),
        (common::START - Duration::nanoseconds(1), Window::NotStarted),
        (
            common::START - Duration::milliseconds(500),
            Window::NotStarted,
        ),
        (common::START + Duration::hours(24), Window::Ended),
        (common::START + Duration::days(40), Window::Ended),
    ];
    for (now, window) in cases {
        assert_eq!(config.window_at(now), window, "{now}");
        let report = run(&config, &bus, now).await.unwrap();
        assert_eq!(report, RunReport::OutsideWindow(window), "{now}");
    }
    let report = run_slot(&config, &bus, 24).await.unwrap();
    assert_eq!(report, RunReport::OutsideWindow(Window::Ended));
    assert!(bus.published(PENDING_INVOICES).is_empty());
}

#[test]
fn slot_boundaries() {
    let mut config = common::config("demo");
    assert_eq!(config.window_at(common::START), Window::Slot(0));
    assert_eq!(
        config.window_at(common::START + Duration::hours(1) - Duration::nanoseconds(1)),
        Window::Slot(0)
    );
    assert_eq!(
        config.window_at(common::START + Duration::hours(1)),
        Window::Slot(1)
    );
    assert_eq!(
        config.window_at(common::START + Duration::hours(24) - Duration::nanoseconds(1)),
        Window::Slot(23)
    );
    // The same instant written with another offset is the same slot.
    let brt = (common::START + Duration::hours(2)).to_offset(time::macros::offset!(-3));
    assert_eq!(config.window_at(brt), Window::Slot(2));
    config.hours = 3;
    assert_eq!(
        config.window_at(common::START + Duration::hours(3)),
        Window::Ended
    );
    assert_eq!(config.window_of_slot(2), Window::Slot(2));
    assert_eq!(config.window_of_slot(3), Window::Ended);
}

#[tokio::test]
async fn a_failed_publish_fails_the_run() {
    let config = common::config("demo");
    let bus = MemoryBus::new();
    bus.set_fail_publishes(true);
    let error = run(&config, &bus, common::START).await.unwrap_err();
    let total = batch(&config, 0).len();
    let SpammerError::Publish {
        campaign,
        slot,
        failed,
        total: reported_total,
        first,
    } = &error;
    assert_eq!((campaign.as_str(), *slot), ("demo", 0));
    assert_eq!((*failed, *reported_total), (total, total));
    assert_eq!(first.topic, PENDING_INVOICES);
    assert!(error.to_string().contains("slot 0"), "{error}");
    assert!(bus.published(PENDING_INVOICES).is_empty());

    // Once the bus recovers, the retry succeeds with the same batch.
    bus.set_fail_publishes(false);
    assert!(matches!(
        run(&config, &bus, common::START).await,
        Ok(RunReport::Published { slot: 0, .. })
    ));
}

/// Fails the publish of one request id, succeeds for the others.
#[derive(Debug)]
struct FailOne {
    inner: MemoryBus,
    request_id: String,
}

impl Publisher for FailOne {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        if message.attributes["requestId"] == self.request_id {
            return Box::pin(async move {
                Err(PublishError {
                    topic: topic.to_owned(),
                    reason: "deadline exceeded".into(),
                })
            });
        }
        self.inner.publish(topic, message)
    }
}

#[tokio::test]
async fn one_failure_among_many_still_fails_the_run_and_the_rest_are_published() {
    let config = common::config("demo");
    let publisher = FailOne {
        inner: MemoryBus::new(),
        request_id: "demo-3-2".into(),
    };
    let error = run_slot(&config, &publisher, 3).await.unwrap_err();
    let SpammerError::Publish {
        failed,
        total,
        first,
        ..
    } = &error;
    assert_eq!(*failed, 1);
    assert_eq!(*total, batch(&config, 3).len());
    assert_eq!(first.reason, "deadline exceeded");
    assert_eq!(publisher.inner.published(PENDING_INVOICES).len(), total - 1);
}

/// Records the highest number of publishes in flight at once.
#[derive(Debug, Default)]
struct SlowCounting {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    done: AtomicUsize,
}

impl Publisher for SlowCounting {
    fn publish<'a>(
        &'a self,
        _topic: &'a str,
        _message: OutgoingMessage,
    ) -> BoxFuture<'a, Result<String, PublishError>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(StdDuration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(self.done.fetch_add(1, Ordering::SeqCst).to_string())
        })
    }
}

#[tokio::test]
async fn publishes_concurrently_within_the_bound_and_waits_for_all() {
    let mut config = common::config("demo");
    config.publish_concurrency = 3;
    let publisher = Arc::new(SlowCounting::default());
    let report = run_slot(&config, publisher.as_ref(), 4).await.unwrap();
    let count = batch(&config, 4).len();
    assert!(matches!(report, RunReport::Published { ref invoices, .. } if invoices.len() == count));
    assert_eq!(
        publisher.done.load(Ordering::SeqCst),
        count,
        "every publish awaited"
    );
    assert_eq!(publisher.in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(publisher.max_in_flight.load(Ordering::SeqCst), 3);
}
