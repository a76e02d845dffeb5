//! The message bus of the local stack: the real Pub/Sub emulator when it is installed, or the
//! in-process bus with the same push contract.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use gcp_pubsub::emulator::Emulator;
use gcp_pubsub::{GcpPublisher, PubSubTarget, Topology};
use pipeline_domain::messages::{PAID_INVOICES, PENDING_INVOICES};
use pipeline_service::publisher::SharedPublisher;
use pipeline_testkit::bus::{MemoryBus, RetryPolicy};

/// Which bus to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BusChoice {
    /// The emulator when `gcloud` and its Pub/Sub emulator are installed, else in-process.
    Auto,
    /// Google's Pub/Sub emulator (fails if it is not installed).
    Emulator,
    /// The in-process bus.
    Memory,
}

/// Delivery settings shared by both backends, short enough for a compressed campaign. (The
/// emulator ignores the backoffs: see [`Bus::wire`].)
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts before dead-lettering.
    pub max_delivery_attempts: u32,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Message ordering on the push subscriptions even on the emulator, where it breaks
    /// dead-lettering (see gcp-pubsub's README): for runs that need two deliveries of one key
    /// never to be outstanding at once (several instances) and dead-letter nothing.
    pub ordering: bool,
}

/// A running bus.
#[derive(Debug)]
pub enum Bus {
    /// The in-process bus.
    Memory(MemoryBus),
    /// The emulator, with a publisher connected to it (boxed: it is much larger than the
    /// in-process bus).
    Emulator(Box<EmulatorBus>),
}

/// The emulator side of [`Bus`].
#[derive(Debug)]
pub struct EmulatorBus {
    /// The emulator process group we started (stopped when dropped), or `None` when an
    /// emulator was already running at `PUBSUB_EMULATOR_HOST` (as `scripts/test.sh` does).
    emulator: Option<Emulator>,
    /// Where it is.
    target: PubSubTarget,
    /// A publisher connected to it.
    publisher: Arc<GcpPublisher>,
    /// The applied topology (set by [`Bus::wire`]).
    topology: Option<Topology>,
    /// Dead letters drained so far, per subscription. A peek gives messages back and they
    /// return only after the retry backoff, so a second peek soon after can miss them; dead
    /// letters are therefore read with an ack and counted here. Acked dead letters stay
    /// retained, and seekable, for 7 days.
    drained: std::sync::Mutex<std::collections::BTreeMap<String, usize>>,
}

/// Subscription names, the same on both backends as in production.
pub use gcp_pubsub::topology::{
    INVOICE_SENDER_SUBSCRIPTION as SENDER_SUBSCRIPTION,
    MONEY_SENDER_SUBSCRIPTION as MONEY_SUBSCRIPTION,
};

impl Bus {
    /// Starts the chosen bus.
    pub async fn start(choice: BusChoice) -> anyhow::Result<Self> {
        let use_emulator = match choice {
            BusChoice::Emulator => true,
            BusChoice::Memory => false,
            BusChoice::Auto => {
                std::env::var_os(gcp_pubsub::EMULATOR_HOST_VAR).is_some_and(|h| !h.is_empty())
                    || Emulator::available()
            }
        };
        if !use_emulator {
            return Ok(Bus::Memory(MemoryBus::new()));
        }
        let (emulator, target) = match std::env::var(gcp_pubsub::EMULATOR_HOST_VAR)
            .ok()
            .filter(|h| !h.is_empty())
        {
            // A shared emulator: a project of our own keeps our topics apart from other runs.
            Some(host) => (None, PubSubTarget::emulator(unique_project(), host)),
            None => {
                let emulator = Emulator::start()
                    .await
                    .context("starting the Pub/Sub emulator")?;
                let target = emulator.target();
                (Some(emulator), target)
            }
        };
        let publisher = GcpPublisher::connect(target.clone())
            .await
            .context("connecting to the Pub/Sub emulator")?;
        Ok(Bus::Emulator(Box::new(EmulatorBus {
            emulator,
            target,
            publisher: Arc::new(publisher),
            topology: None,
            drained: Default::default(),
        })))
    }

    /// A human name for logs.
    pub fn describe(&self) -> String {
        match self {
            Bus::Memory(_) => "in-process bus".into(),
            Bus::Emulator(bus) => format!("Pub/Sub emulator ({})", bus.target.describe()),
        }
    }

    /// The publisher services and the spammer use.
    pub fn publisher(&self) -> SharedPublisher {
        match self {
            Bus::Memory(bus) => Arc::new(bus.clone()),
            Bus::Emulator(bus) => bus.publisher.clone(),
        }
    }

    /// Creates the push subscriptions to the two consumers.
    pub async fn wire(
        &mut self,
        sender_push_url: &str,
        money_push_url: &str,
        settings: &DeliverySettings,
    ) -> anyhow::Result<()> {
        match self {
            Bus::Memory(bus) => {
                let policy = RetryPolicy {
                    min_backoff: settings.min_backoff,
                    max_backoff: settings.max_backoff,
                    max_delivery_attempts: settings.max_delivery_attempts,
                    ack_deadline: Duration::from_secs(30),
                };
                bus.subscribe(
                    PENDING_INVOICES,
                    SENDER_SUBSCRIPTION,
                    sender_push_url,
                    policy.clone(),
                );
                bus.subscribe(PAID_INVOICES, MONEY_SUBSCRIPTION, money_push_url, policy);
            }
            Bus::Emulator(bus) => {
                let mut declared = Topology::pipeline(sender_push_url, money_push_url);
                declared.delivery.max_delivery_attempts =
                    i32::try_from(settings.max_delivery_attempts)
                        .context("max delivery attempts")?;
                // No retry policy on the emulator: its retry-policy bookkeeping loses a
                // failed message now and then (never redelivered, never dead-lettered; see
                // gcp-pubsub's README). Without one it retries a failed push after about a
                // second, and the dead-letter policy still bounds the attempts.
                declared.delivery.retry_policy = false;
                declared.delivery.min_backoff = settings.min_backoff;
                declared.delivery.max_backoff = settings.max_backoff;
                declared.delivery.ack_deadline = Duration::from_secs(30);
                if settings.ordering {
                    declared.delivery.message_ordering = gcp_pubsub::MessageOrdering::Always;
                }
                gcp_pubsub::apply(&declared, &bus.target)
                    .await
                    .context("provisioning the emulator")?;
                bus.topology = Some(declared);
            }
        }
        Ok(())
    }

    /// Messages that reached the dead-letter subscriptions so far (`(subscription, count)`).
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<(String, usize)>> {
        match self {
            Bus::Memory(bus) => Ok([SENDER_SUBSCRIPTION, MONEY_SUBSCRIPTION]
                .iter()
                .map(|name| {
                    (
                        format!("{name} (dead letters)"),
                        bus.dead_letters(name).len(),
                    )
                })
                .collect()),
            Bus::Emulator(bus) => {
                let topology = bus.topology.as_ref().context("the bus is not wired")?;
                // Each read waits for an idle period; read both subscriptions at once.
                let reads = topology.flows.iter().map(|flow| async move {
                    let name = flow.dead_letter_subscription();
                    let pulled =
                        gcp_pubsub::ops::pull_dead_letters(&bus.target, &name, 1000).await?;
                    for message in &pulled {
                        tracing::warn!(
                            event = "dead_letter_drained",
                            subscription = %name,
                            message_id = %message.message_id,
                            "dead letter read and acknowledged"
                        );
                    }
                    anyhow::Ok((name, pulled.len()))
                });
                let pulled = futures::future::try_join_all(reads).await?;
                let mut drained = bus.drained.lock().expect("dead-letter counts");
                let out = pulled
                    .into_iter()
                    .map(|(name, count)| {
                        let total = drained.entry(name.clone()).or_default();
                        *total += count;
                        (name, *total)
                    })
                    .collect();
                Ok(out)
            }
        }
    }

    /// Seeks `subscription` back to `since`: every message published after it is delivered
    /// again.
    pub async fn seek(&self, subscription: &str, since: SystemTime) -> anyhow::Result<()> {
        match self {
            Bus::Memory(bus) => {
                bus.seek(subscription, since);
                Ok(())
            }
            Bus::Emulator(bus) => {
                gcp_pubsub::ops::seek_to_time(&bus.target, subscription, since.into()).await?;
                Ok(())
            }
        }
    }

    /// The Pub/Sub target, when the bus is the emulator (operator commands take it).
    pub fn target(&self) -> Option<&PubSubTarget> {
        match self {
            Bus::Memory(_) => None,
            Bus::Emulator(bus) => Some(&bus.target),
        }
    }

    /// Stops the emulator, if any (also done on drop).
    pub fn stop(self) {
        if let Bus::Emulator(bus) = self
            && let Some(emulator) = bus.emulator
        {
            emulator.stop();
        }
    }
}

/// A project id no other run uses, so that runs can share one emulator.
fn unique_project() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "local-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A repair drains the local bus's dead letters as it drains Pub/Sub's: the emulator's
/// dead-letter subscriptions, or the in-process bus's dead-letter lists.
impl crate::ops::dead_letters::DeadLetterSource for Bus {
    fn lease<'a>(
        &'a self,
        topic: &'a str,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<crate::ops::dead_letters::DeadLetterLease>>
    {
        use crate::ops::dead_letters::{DeadLetter, DeadLetterLease, PubSubDeadLetters};
        Box::pin(async move {
            match self {
                Bus::Emulator(bus) => {
                    let source = PubSubDeadLetters {
                        // The emulator answers a unary pull at once: a short idle suffices.
                        idle: Duration::from_millis(500),
                        ..PubSubDeadLetters::new(bus.target.clone())
                    };
                    source.lease(topic).await
                }
                Bus::Memory(bus) => {
                    let subscription = match topic {
                        PAID_INVOICES => MONEY_SUBSCRIPTION,
                        PENDING_INVOICES => SENDER_SUBSCRIPTION,
                        other => anyhow::bail!("no dead letters for topic {other}"),
                    };
                    let letters = bus
                        .dead_letters(subscription)
                        .into_iter()
                        .map(|m| DeadLetter {
                            message_id: m.message_id,
                            data: m.data,
                        })
                        .collect();
                    let bus = bus.clone();
                    Ok(DeadLetterLease::new(
                        letters,
                        Box::new(move |acked| {
                            bus.remove_dead_letters(subscription, |id| acked.contains(id));
                            Box::pin(async { Ok(()) })
                        }),
                    ))
                }
            }
        })
    }
}
