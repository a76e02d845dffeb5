//! How long a publish takes to be confirmed, per batching setting, against the emulator.
//!
//! ```text
//! cargo run -p gcp-pubsub --example publish_latency [--release] [-- N]
//! ```
//!
//! Uses `PUBSUB_EMULATOR_HOST`/`PUBSUB_PROJECT_ID` when set, else starts an emulator. For each
//! batching setting it publishes `N` (default 300) messages one after the other (each awaited
//! before the next, like webhooks arriving one at a time), without and with an ordering key,
//! and then bursts (all published at once, awaited together). It prints p50/p99 of the
//! per-message confirmation time and each burst's wall time, plus the emulator's own answer
//! time for a bare REST publish as the floor. The numbers in README.md come from this.
//!
//! Not a test: timings on a shared machine are too noisy to assert on.

use std::time::{Duration, Instant};

use futures::future::join_all;
use gcp_pubsub::emulator::Emulator;
use gcp_pubsub::{Batching, GcpPublisher, PubSubTarget, PublisherOptions};
use pipeline_service::publisher::{OutgoingMessage, Publisher};

const TOPIC: &str = "latency";
const BURST: usize = 1000;
const SAME_KEY_BURST: usize = 200;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 300,
    };
    // Kept alive until the end when we started it.
    let mut _emulator = None;
    let target = match PubSubTarget::from_env() {
        Ok(target) if target.is_emulator() => target,
        _ => {
            let emulator = Emulator::start().await?;
            let target = emulator.target();
            _emulator = Some(emulator);
            target
        }
    };
    println!("{}; N = {n}", target.describe());
    let topic_path = target.topic_path(TOPIC);
    if let Err(e) = target
        .topic_admin()
        .await?
        .create_topic()
        .set_name(&topic_path)
        .send()
        .await
    {
        // An earlier run on a shared emulator already created it.
        println!("create topic: {e}");
    }

    rest_floor(&target, n).await?;

    let settings = [
        ("client default (10 ms, 100 msgs)", Batching::CLIENT_DEFAULT),
        ("LOW_LATENCY (0 ms, 100 msgs)", Batching::LOW_LATENCY),
        (
            "1 ms, 100 msgs",
            Batching {
                delay: Duration::from_millis(1),
                ..Batching::LOW_LATENCY
            },
        ),
        (
            "no batching (1 msg)",
            Batching {
                max_messages: 1,
                ..Batching::LOW_LATENCY
            },
        ),
    ];
    for (name, batching) in settings {
        let publisher = GcpPublisher::connect_with_options(
            target.clone(),
            PublisherOptions {
                batching,
                ..PublisherOptions::default()
            },
        )
        .await?;
        // Opens the channel and warms the emulator's JIT.
        for i in 0..50 {
            publisher.publish(TOPIC, message(i, None)).await?;
        }
        println!("\n{name}");
        let mut single = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            publisher.publish(TOPIC, message(i, None)).await?;
            single.push(started.elapsed());
        }
        report("  one at a time, no key", &mut single, None);
        let mut keyed = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            let key = format!("{name}-{i}");
            publisher.publish(TOPIC, message(i, Some(key))).await?;
            keyed.push(started.elapsed());
        }
        report("  one at a time, own key", &mut keyed, None);

        let (mut times, wall) = burst(&publisher, BURST, |_| None).await?;
        report(&format!("  burst {BURST}, no key"), &mut times, Some(wall));
        let (mut times, wall) = burst(&publisher, BURST, |i| Some(format!("{name}-b{i}"))).await?;
        report(
            &format!("  burst {BURST}, own keys"),
            &mut times,
            Some(wall),
        );
        let (mut times, wall) = burst(&publisher, SAME_KEY_BURST, |_| Some(name.into())).await?;
        report(
            &format!("  burst {SAME_KEY_BURST}, one key"),
            &mut times,
            Some(wall),
        );
    }
    Ok(())
}

fn message(i: usize, ordering_key: Option<String>) -> OutgoingMessage {
    OutgoingMessage {
        // About the size of a paid-invoice message.
        data: format!(r#"{{"invoice_id":"{i:016}","amount":123456,"tax_id":"012.345.678-90"}}"#)
            .into_bytes(),
        attributes: [("schema".to_owned(), "1".to_owned())].into(),
        ordering_key,
    }
}

/// Publishes `count` messages at once and waits for all; per-message times and wall time.
async fn burst(
    publisher: &GcpPublisher,
    count: usize,
    key: impl Fn(usize) -> Option<String>,
) -> Result<(Vec<Duration>, Duration), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let publishes = (0..count).map(|i| {
        let message = message(i, key(i));
        async move {
            publisher.publish(TOPIC, message).await?;
            Ok::<_, pipeline_service::publisher::PublishError>(started.elapsed())
        }
    });
    let times = join_all(publishes)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok((times, started.elapsed()))
}

/// The emulator's own answer time for a bare REST publish of one message: the floor.
async fn rest_floor(target: &PubSubTarget, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = target.endpoint().expect("an emulator target");
    let url = format!("{endpoint}/v1/{}:publish", target.topic_path(TOPIC));
    let http = reqwest::Client::new();
    let body = r#"{"messages":[{"data":"eyJ4IjoxfQ=="}]}"#;
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let started = Instant::now();
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        response.error_for_status()?.bytes().await?;
        if i >= 50 {
            times.push(started.elapsed());
        }
    }
    report("bare REST publish (the emulator's floor)", &mut times, None);
    Ok(())
}

fn report(what: &str, times: &mut [Duration], wall: Option<Duration>) {
    times.sort();
    let at = |q: f64| {
        let index = ((times.len() as f64 - 1.0) * q).round() as usize;
        times[index].as_secs_f64() * 1000.0
    };
    let wall = wall
        .map(|w| format!(", all done in {:.1} ms", w.as_secs_f64() * 1000.0))
        .unwrap_or_default();
    println!(
        "{what:<40} p50 {:>7.2} ms  p99 {:>7.2} ms{wall}",
        at(0.5),
        at(0.99)
    );
}
