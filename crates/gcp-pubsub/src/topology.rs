//! The pipeline's topics and subscriptions, declared once here and applied idempotently.
//!
//! Each [`Flow`] is one topic with:
//! - a **push subscription** to the consuming service, with message ordering (one message
//!   per ordering key outstanding at a time, so two instances never work on one request or
//!   invoice at once; not on the emulator by default, see [`MessageOrdering`]), an
//!   exponential retry policy, a dead-letter policy, 7-day retention of
//!   *acked* messages (so an operator can seek back and replay) and no expiry;
//! - a **dead-letter topic** `<topic>-dead-letter` and a **pull subscription** of the same
//!   name on it, where messages that failed `max_delivery_attempts` times wait for an
//!   operator for 31 days, Pub/Sub's maximum (a dead-letter topic without a subscription
//!   silently drops what it gets).
//!
//! [`apply`] reads every resource, creates what is missing and updates only the fields
//! that differ, so it can run on every deploy: the second run reports everything
//! unchanged. It never deletes; [`delete_all`] exists for tests and local cleanup.
//!
//! Message ordering cannot be changed on an existing subscription (Pub/Sub rejects the
//! update). [`apply`] never re-creates a subscription to change it, because deleting one
//! drops its backlog, its replay history and its IAM bindings: it applies everything else
//! and then fails with [`Error::OrderingMismatch`], whose message tells the operator how
//! to migrate without losing messages (a snapshot, delete, apply, seek; `README.md`).
//!
//! In production the Pub/Sub service agent
//! (`service-PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com`) also needs
//! `roles/pubsub.publisher` on each dead-letter topic and `roles/pubsub.subscriber` on each
//! push subscription, and `roles/iam.serviceAccountTokenCreator` to mint OIDC tokens; that
//! is IAM, granted by the deploy scripts, not here.

use std::fmt;
use std::time::Duration;

use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::push_config::OidcToken;
use google_cloud_pubsub::model::{
    DeadLetterPolicy, ExpirationPolicy, PushConfig, RetryPolicy, Subscription,
};
use google_cloud_wkt::FieldMask;

use crate::error::{Error, Result, is_already_exists, is_not_found};
use crate::target::PubSubTarget;

/// The topic names, defined once next to the messages that travel on them.
pub use pipeline_domain::messages::{PAID_INVOICES, PENDING_INVOICES};
/// The invoice sender's push subscription on [`PENDING_INVOICES`].
pub const INVOICE_SENDER_SUBSCRIPTION: &str = "pending_invoices-invoice-sender";
/// The money sender's push subscription on [`PAID_INVOICES`].
pub const MONEY_SENDER_SUBSCRIPTION: &str = "paid_invoices-money-sender";
/// The suffix that turns a topic name into its dead-letter topic (and subscription) name.
pub const DEAD_LETTER_SUFFIX: &str = "-dead-letter";

/// The shortest message retention Pub/Sub accepts on a subscription.
pub const MIN_RETENTION: Duration = Duration::from_secs(10 * 60);
/// The longest message retention Pub/Sub accepts on a subscription: 31 days.
pub const MAX_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);
/// The longest the emulator (0.8.20) accepts: 7 days, Pub/Sub's limit before it became 31
/// days. Longer retentions are declared as this on the emulator, which otherwise rejects
/// the subscription (`message_retention_duration out of bounds`).
pub const EMULATOR_MAX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The dead-letter topic of `topic`, and the pull subscription on it (one name for both:
/// topics and subscriptions live in separate namespaces, and one name is easier to find).
pub fn dead_letter_name(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}

/// One topic, its push subscription and its dead-letter pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Short topic name, e.g. [`PENDING_INVOICES`].
    pub topic: String,
    /// Short name of the push subscription; names the consumer so that an operator
    /// seeking or inspecting it knows which service it feeds.
    pub subscription: String,
    /// Where Pub/Sub POSTs each message (the consuming service's push route).
    pub push_endpoint: String,
    /// OIDC audience for the push token. `None` lets Pub/Sub use the push endpoint URL;
    /// set it when the receiver checks a different audience (e.g. the bare Cloud Run URL).
    /// Only used when [`Delivery::push_service_account`] is set.
    pub audience: Option<String>,
}

impl Flow {
    /// A flow without an explicit OIDC audience.
    pub fn new(
        topic: impl Into<String>,
        subscription: impl Into<String>,
        push_endpoint: impl Into<String>,
    ) -> Self {
        Self {
            topic: topic.into(),
            subscription: subscription.into(),
            push_endpoint: push_endpoint.into(),
            audience: None,
        }
    }

    /// `<topic>-dead-letter`.
    pub fn dead_letter_topic(&self) -> String {
        dead_letter_name(&self.topic)
    }

    /// The pull subscription on the dead-letter topic; same name as that topic, since
    /// topics and subscriptions live in separate namespaces and one name is easier to find.
    pub fn dead_letter_subscription(&self) -> String {
        self.dead_letter_topic()
    }
}

/// How messages are delivered and retried; shared by all flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Service account whose OIDC token Pub/Sub attaches to each push, so that a private
    /// Cloud Run service can authenticate the caller. `None` sends no token (emulator,
    /// public endpoints).
    pub push_service_account: Option<String>,
    /// Attempts before a message is dead-lettered. Pub/Sub accepts 5 to 100; the default
    /// is 100, so that with the default backoff a message keeps being retried for about
    /// 16 hours (10 s, 20 s, ... then every 600 s) and an outage of Stark or of a consumer
    /// heals by itself instead of filling the dead-letter subscription.
    pub max_delivery_attempts: i32,
    /// Whether subscriptions get a retry policy (`min_backoff`..`max_backoff`). Always in
    /// production. The local stack turns it off on the emulator, whose retry-policy
    /// bookkeeping loses messages now and then (README.md, "The emulator, as observed");
    /// without one the emulator retries a failed push after about a second, and the
    /// dead-letter policy still bounds the attempts.
    pub retry_policy: bool,
    /// First delay after a failed push; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest delay between two attempts (Pub/Sub caps it at 600 s).
    pub max_backoff: Duration,
    /// How long Pub/Sub waits for a push answer (and a pull ack) before retrying.
    /// It must exceed the slowest handler, which calls Stark Bank.
    pub ack_deadline: Duration,
    /// How long the push subscriptions keep messages, acked ones included, for seeking
    /// back (replays). Pub/Sub accepts [`MIN_RETENTION`]..=[`MAX_RETENTION`]; the default
    /// is 7 days.
    pub retention: Duration,
    /// How long the dead-letter pull subscriptions keep messages: the time an operator has
    /// to look at a dead letter before Pub/Sub discards it. Default [`MAX_RETENTION`]
    /// (31 days); on the emulator at most [`EMULATOR_MAX_RETENTION`].
    pub dead_letter_retention: Duration,
    /// Where the push subscriptions get message ordering
    /// ([`MessageOrdering::ExceptOnEmulator`] by default).
    pub message_ordering: MessageOrdering,
}

/// Where the push subscriptions are declared with message ordering.
///
/// Ordering is fixed when a subscription is created; [`apply`] reports a subscription that
/// differs ([`Error::OrderingMismatch`]) instead of re-creating it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MessageOrdering {
    /// Ordered on real Pub/Sub, unordered on the emulator. The emulator (0.8.20) cannot
    /// dead-letter from an ordered subscription: the attempt throws a
    /// `NullPointerException` in the subscription's push thread, the message is not
    /// dead-lettered and the subscription never pushes anything again (`README.md`). The
    /// local stack needs dead letters more than it needs ordering.
    #[default]
    ExceptOnEmulator,
    /// Ordered everywhere: for tests of ordering on the emulator, which must then never
    /// reach `max_delivery_attempts`.
    Always,
    /// Never ordered.
    Never,
}

impl MessageOrdering {
    /// Whether push subscriptions on `target` are ordered.
    pub fn enabled_on(self, target: &PubSubTarget) -> bool {
        match self {
            Self::ExceptOnEmulator => !target.is_emulator(),
            Self::Always => true,
            Self::Never => false,
        }
    }
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            push_service_account: None,
            max_delivery_attempts: 100,
            retry_policy: true,
            min_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(600),
            ack_deadline: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 60 * 60),
            dead_letter_retention: MAX_RETENTION,
            message_ordering: MessageOrdering::default(),
        }
    }
}

/// Everything [`apply`] creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// One entry per topic.
    pub flows: Vec<Flow>,
    /// Retry, dead-letter, retention and authentication settings.
    pub delivery: Delivery,
}

impl Topology {
    /// The pipeline: `pending_invoices` pushed to the invoice sender and `paid_invoices`
    /// pushed to the money sender, with default [`Delivery`].
    pub fn pipeline(
        invoice_sender_push_url: impl Into<String>,
        money_sender_push_url: impl Into<String>,
    ) -> Self {
        Self {
            flows: vec![
                Flow::new(
                    PENDING_INVOICES,
                    INVOICE_SENDER_SUBSCRIPTION,
                    invoice_sender_push_url,
                ),
                Flow::new(
                    PAID_INVOICES,
                    MONEY_SENDER_SUBSCRIPTION,
                    money_sender_push_url,
                ),
            ],
            delivery: Delivery::default(),
        }
    }

    /// The flow for `topic`, if declared.
    pub fn flow(&self, topic: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.topic == topic)
    }

    /// Checks the declaration against Pub/Sub's limits, so that a bad value fails before
    /// half the resources are created.
    pub fn validate(&self) -> Result<()> {
        let invalid = |msg: String| Err(Error::InvalidTopology(msg));
        let d = &self.delivery;
        if self.flows.is_empty() {
            return invalid("no flows declared".into());
        }
        if !(5..=100).contains(&d.max_delivery_attempts) {
            return invalid(format!(
                "max_delivery_attempts {} is outside 5..=100",
                d.max_delivery_attempts
            ));
        }
        if d.min_backoff > d.max_backoff || d.max_backoff > Duration::from_secs(600) {
            return invalid(format!(
                "backoff {:?}..{:?} must satisfy min <= max <= 600s",
                d.min_backoff, d.max_backoff
            ));
        }
        if !(10..=600).contains(&d.ack_deadline.as_secs()) {
            return invalid(format!(
                "ack_deadline {:?} is outside 10s..=600s",
                d.ack_deadline
            ));
        }
        for (what, retention) in [
            ("retention", d.retention),
            ("dead_letter_retention", d.dead_letter_retention),
        ] {
            if !(MIN_RETENTION..=MAX_RETENTION).contains(&retention) {
                return invalid(format!("{what} {retention:?} is outside 10min..=31days"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for flow in &self.flows {
            for name in [&flow.topic, &flow.subscription] {
                if !valid_resource_id(name) {
                    return invalid(format!("{name:?} is not a valid Pub/Sub resource id"));
                }
            }
            if !(flow.push_endpoint.starts_with("https://")
                || flow.push_endpoint.starts_with("http://"))
            {
                return invalid(format!(
                    "push endpoint {:?} of {} must be an http(s) URL",
                    flow.push_endpoint, flow.subscription
                ));
            }
            for name in [
                format!("topic {}", flow.topic),
                format!("topic {}", flow.dead_letter_topic()),
                format!("subscription {}", flow.subscription),
                format!("subscription {}", flow.dead_letter_subscription()),
            ] {
                if !names.insert(name.clone()) {
                    return invalid(format!("{name} is declared twice"));
                }
            }
        }
        Ok(())
    }

    /// The push subscription `flow` should have: ordered, retried, dead-lettered.
    pub fn push_subscription(&self, flow: &Flow, target: &PubSubTarget) -> Subscription {
        let d = &self.delivery;
        let mut push = PushConfig::new().set_push_endpoint(&flow.push_endpoint);
        if let Some(email) = &d.push_service_account {
            push = push.set_oidc_token(
                OidcToken::new()
                    .set_service_account_email(email)
                    .set_audience(flow.audience.clone().unwrap_or_default()),
            );
        }
        self.retained_subscription(
            target.subscription_path(&flow.subscription),
            target.topic_path(&flow.topic),
            retention_for(target, d.retention),
        )
        .set_push_config(push)
        // Pub/Sub then pushes one message per ordering key at a time and the next only
        // once it is acked (or dead-lettered); other keys are unaffected.
        .set_enable_message_ordering(d.message_ordering.enabled_on(target))
        .set_dead_letter_policy(
            DeadLetterPolicy::new()
                .set_dead_letter_topic(target.topic_path(&flow.dead_letter_topic()))
                .set_max_delivery_attempts(d.max_delivery_attempts),
        )
    }

    /// The pull subscription on `flow`'s dead-letter topic. Unordered: an operator reads
    /// dead letters in bulk, and ordering would hand out one message per key at a time.
    pub fn dead_letter_subscription(&self, flow: &Flow, target: &PubSubTarget) -> Subscription {
        self.retained_subscription(
            target.subscription_path(&flow.dead_letter_subscription()),
            target.topic_path(&flow.dead_letter_topic()),
            retention_for(target, self.delivery.dead_letter_retention),
        )
    }

    /// What both kinds of subscription share: retention of acked messages, never expire,
    /// and a retry policy unless turned off (without one, and without a dead-letter policy,
    /// the emulator retries every second forever).
    fn retained_subscription(
        &self,
        name: String,
        topic: String,
        retention: Duration,
    ) -> Subscription {
        let d = &self.delivery;
        let subscription = Subscription::new()
            .set_name(name)
            .set_topic(topic)
            .set_ack_deadline_seconds(i32::try_from(d.ack_deadline.as_secs()).unwrap_or(600))
            .set_retain_acked_messages(true)
            .set_message_retention_duration(proto_duration(retention))
            // An ExpirationPolicy without ttl means "never expire"; without any policy
            // Pub/Sub deletes a subscription after 31 idle days, and a quiet pipeline
            // would lose its subscriptions.
            .set_expiration_policy(ExpirationPolicy::new());
        if !d.retry_policy {
            return subscription;
        }
        subscription.set_retry_policy(
            RetryPolicy::new()
                .set_minimum_backoff(proto_duration(d.min_backoff))
                .set_maximum_backoff(proto_duration(d.max_backoff)),
        )
    }
}

/// The retention declared on `target`: as asked, except capped at
/// [`EMULATOR_MAX_RETENTION`] on the emulator, which rejects anything longer.
fn retention_for(target: &PubSubTarget, retention: Duration) -> Duration {
    if target.is_emulator() {
        retention.min(EMULATOR_MAX_RETENTION)
    } else {
        retention
    }
}

/// Kind of resource in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A topic.
    Topic,
    /// A subscription.
    Subscription,
}

/// What happened to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It did not exist and was created.
    Created,
    /// It existed with different settings; these fields (update-mask paths) were changed.
    Updated(Vec<&'static str>),
    /// It already matched the declaration.
    Unchanged,
    /// It was deleted ([`delete_all`]).
    Deleted,
    /// It did not exist ([`delete_all`]).
    Absent,
}

/// One resource's line in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceChange {
    /// Topic or subscription.
    pub kind: ResourceKind,
    /// Full resource name.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What [`apply`] or [`delete_all`] did, resource by resource, in the order it did it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// One entry per resource touched.
    pub changes: Vec<ResourceChange>,
}

impl ApplyReport {
    fn push(&mut self, kind: ResourceKind, name: String, outcome: Outcome) {
        tracing::info!(?kind, %name, ?outcome, "pub/sub resource");
        self.changes.push(ResourceChange {
            kind,
            name,
            outcome,
        });
    }

    fn names_where(&self, pred: impl Fn(&Outcome) -> bool) -> Vec<&str> {
        self.changes
            .iter()
            .filter(|c| pred(&c.outcome))
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Resources created.
    pub fn created(&self) -> Vec<&str> {
        self.names_where(|o| *o == Outcome::Created)
    }

    /// Resources updated.
    pub fn updated(&self) -> Vec<&str> {
        self.names_where(|o| matches!(o, Outcome::Updated(_)))
    }

    /// Resources that already matched.
    pub fn unchanged(&self) -> Vec<&str> {
        self.names_where(|o| *o == Outcome::Unchanged)
    }

    /// Resources deleted.
    pub fn deleted(&self) -> Vec<&str> {
        self.names_where(|o| *o == Outcome::Deleted)
    }

    /// Whether nothing was created, updated or deleted.
    pub fn is_noop(&self) -> bool {
        self.changes
            .iter()
            .all(|c| matches!(c.outcome, Outcome::Unchanged | Outcome::Absent))
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            let kind = match c.kind {
                ResourceKind::Topic => "topic",
                ResourceKind::Subscription => "subscription",
            };
            match &c.outcome {
                Outcome::Updated(fields) => {
                    writeln!(f, "updated    {kind} {} ({})", c.name, fields.join(", "))?
                }
                other => writeln!(
                    f,
                    "{:<10} {kind} {}",
                    format!("{other:?}").to_lowercase(),
                    c.name
                )?,
            }
        }
        Ok(())
    }
}

/// Creates what is missing and updates what differs; never deletes.
///
/// Safe to run concurrently with itself: a resource created in between is reported as
/// unchanged. Fails on the first RPC error, leaving what was already done in place (a re-run
/// continues from there). A subscription whose message ordering differs from the
/// declaration cannot be fixed by an update: everything else is still applied, and then
/// [`Error::OrderingMismatch`] names each such subscription and the migration steps.
pub async fn apply(topology: &Topology, target: &PubSubTarget) -> Result<ApplyReport> {
    topology.validate()?;
    let topics = target.topic_admin().await?;
    let subscriptions = target.subscription_admin().await?;
    let mut report = ApplyReport::default();
    let mut mismatches = Vec::new();
    for flow in &topology.flows {
        // Dead-letter topic before the push subscription: a dead-letter policy naming a
        // missing topic is rejected.
        for topic in [flow.topic.clone(), flow.dead_letter_topic()] {
            let name = target.topic_path(&topic);
            let outcome = ensure_topic(&topics, &name).await?;
            report.push(ResourceKind::Topic, name, outcome);
        }
        for desired in [
            topology.dead_letter_subscription(flow, target),
            topology.push_subscription(flow, target),
        ] {
            let name = desired.name.clone();
            let (outcome, mismatch) = ensure_subscription(&subscriptions, desired).await?;
            report.push(ResourceKind::Subscription, name, outcome);
            mismatches.extend(mismatch);
        }
    }
    if !mismatches.is_empty() {
        for mismatch in &mismatches {
            tracing::error!(
                subscription = %mismatch.subscription,
                declared = mismatch.declared,
                "message ordering differs and cannot be updated"
            );
        }
        return Err(Error::OrderingMismatch { mismatches, report });
    }
    Ok(report)
}

/// A subscription whose message ordering differs from the declaration. Pub/Sub fixes
/// `enable_message_ordering` at creation; see [`Error::OrderingMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderingMismatch {
    /// The subscription's full name.
    pub subscription: String,
    /// Whether the topology declares ordering on (the subscription has the opposite).
    pub declared: bool,
}

impl OrderingMismatch {
    /// The gcloud steps that re-create the subscription as declared without losing a
    /// message: a snapshot keeps the backlog and everything published after it, so messages
    /// published while the subscription does not exist are delivered after the seek.
    /// Consumers are idempotent, so the redeliveries this causes are harmless.
    pub fn migration_steps(&self) -> Vec<String> {
        let sub = &self.subscription;
        let snapshot = match sub.split_once("/subscriptions/") {
            Some((project, short)) => format!("{project}/snapshots/{short}-reorder"),
            None => format!("{sub}-reorder"),
        };
        vec![
            format!("gcloud pubsub snapshots create {snapshot} --subscription={sub}"),
            format!("gcloud pubsub subscriptions delete {sub}"),
            "run provision again (it creates the subscription as declared)".to_owned(),
            format!("gcloud pubsub subscriptions seek {sub} --snapshot={snapshot}"),
            format!("gcloud pubsub snapshots delete {snapshot}"),
            "grant the Pub/Sub service agent roles/pubsub.subscriber on the new subscription \
             again (deleting it dropped its IAM bindings)"
                .to_owned(),
        ]
    }
}

impl fmt::Display for OrderingMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (has, declared) = if self.declared {
            ("off", "on")
        } else {
            ("on", "off")
        };
        write!(
            f,
            "{} has message ordering {has}, the topology declares it {declared}; to migrate \
             (acked messages from before the snapshot can then no longer be replayed):",
            self.subscription
        )?;
        for (i, step) in self.migration_steps().iter().enumerate() {
            write!(f, " {}. {step};", i + 1)?;
        }
        Ok(())
    }
}

/// Deletes every subscription and topic of the topology (for tests and local cleanup).
/// Missing resources are reported as [`Outcome::Absent`], not errors.
pub async fn delete_all(topology: &Topology, target: &PubSubTarget) -> Result<ApplyReport> {
    let topics = target.topic_admin().await?;
    let subscriptions = target.subscription_admin().await?;
    let mut report = ApplyReport::default();
    // Subscriptions first: deleting a topic leaves its subscriptions orphaned
    // (attached to `_deleted-topic_`), not deleted.
    for flow in &topology.flows {
        for sub in [flow.subscription.clone(), flow.dead_letter_subscription()] {
            let name = target.subscription_path(&sub);
            let outcome = match subscriptions
                .delete_subscription()
                .set_subscription(&name)
                .send()
                .await
            {
                Ok(()) => Outcome::Deleted,
                Err(e) if is_not_found(&e) => Outcome::Absent,
                Err(e) => return Err(Error::rpc("delete subscription", name)(e)),
            };
            report.push(ResourceKind::Subscription, name, outcome);
        }
    }
    for flow in &topology.flows {
        for topic in [flow.topic.clone(), flow.dead_letter_topic()] {
            let name = target.topic_path(&topic);
            let outcome = match topics.delete_topic().set_topic(&name).send().await {
                Ok(()) => Outcome::Deleted,
                Err(e) if is_not_found(&e) => Outcome::Absent,
                Err(e) => return Err(Error::rpc("delete topic", name)(e)),
            };
            report.push(ResourceKind::Topic, name, outcome);
        }
    }
    Ok(report)
}

async fn ensure_topic(admin: &TopicAdmin, name: &str) -> Result<Outcome> {
    match admin.get_topic().set_topic(name).send().await {
        Ok(_) => return Ok(Outcome::Unchanged),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::rpc("get topic", name)(e)),
    }
    match admin.create_topic().set_name(name).send().await {
        Ok(_) => Ok(Outcome::Created),
        Err(e) if is_already_exists(&e) => Ok(Outcome::Unchanged),
        Err(e) => Err(Error::rpc("create topic", name)(e)),
    }
}

/// Creates or updates one subscription; also returns its ordering mismatch, if any, which
/// no update can fix.
async fn ensure_subscription(
    admin: &SubscriptionAdmin,
    desired: Subscription,
) -> Result<(Outcome, Option<OrderingMismatch>)> {
    let name = desired.name.clone();
    let actual = match admin
        .get_subscription()
        .set_subscription(&name)
        .send()
        .await
    {
        Ok(actual) => actual,
        Err(e) if is_not_found(&e) => {
            return match admin
                .create_subscription()
                .with_request(desired)
                .send()
                .await
            {
                Ok(_) => Ok((Outcome::Created, None)),
                Err(e) if is_already_exists(&e) => Ok((Outcome::Unchanged, None)),
                Err(e) => Err(Error::rpc("create subscription", name)(e)),
            };
        }
        Err(e) => return Err(Error::rpc("get subscription", name)(e)),
    };
    if actual.topic != desired.topic {
        return Err(Error::TopicMismatch {
            subscription: name,
            expected: desired.topic,
            actual: actual.topic,
        });
    }
    let mismatch = ordering_mismatch(&desired, &actual);
    let fields = differing_fields(&desired, &actual);
    if fields.is_empty() {
        return Ok((Outcome::Unchanged, mismatch));
    }
    admin
        .update_subscription()
        .set_subscription(desired)
        .set_update_mask(FieldMask::default().set_paths(fields.iter().copied()))
        .send()
        .await
        .map_err(Error::rpc("update subscription", name))?;
    Ok((Outcome::Updated(fields), mismatch))
}

/// `Some` when `actual`'s message ordering is not the declared one. Kept out of
/// [`differing_fields`] because it is not updatable: putting it in an update mask makes
/// Pub/Sub (and the emulator) reject the whole update as `INVALID_ARGUMENT`.
pub fn ordering_mismatch(
    desired: &Subscription,
    actual: &Subscription,
) -> Option<OrderingMismatch> {
    (desired.enable_message_ordering != actual.enable_message_ordering).then(|| OrderingMismatch {
        subscription: desired.name.clone(),
        declared: desired.enable_message_ordering,
    })
}

/// The update-mask paths of the updatable fields this crate manages that differ between the
/// declaration and the server's copy (message ordering is not updatable: see
/// [`ordering_mismatch`]).
///
/// Only managed fields are compared, and each is normalised the way the servers echo it:
/// real Pub/Sub adds `x-goog-version` push attributes, the emulator returns an empty
/// `pushConfig` for pull subscriptions, and "never expire" comes back either as an empty
/// policy or as no policy at all.
pub fn differing_fields(desired: &Subscription, actual: &Subscription) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if push_summary(desired.push_config.as_ref()) != push_summary(actual.push_config.as_ref()) {
        fields.push("push_config");
    }
    if desired.ack_deadline_seconds != actual.ack_deadline_seconds {
        fields.push("ack_deadline_seconds");
    }
    if desired.retain_acked_messages != actual.retain_acked_messages {
        fields.push("retain_acked_messages");
    }
    if desired.message_retention_duration != actual.message_retention_duration {
        fields.push("message_retention_duration");
    }
    let ttl = |s: &Subscription| s.expiration_policy.as_ref().and_then(|p| p.ttl);
    if ttl(desired) != ttl(actual) {
        fields.push("expiration_policy");
    }
    let retry = |s: &Subscription| {
        s.retry_policy
            .as_ref()
            .map(|r| (r.minimum_backoff, r.maximum_backoff))
    };
    if retry(desired) != retry(actual) {
        fields.push("retry_policy");
    }
    let dead_letter = |s: &Subscription| {
        s.dead_letter_policy
            .as_ref()
            .map(|p| (p.dead_letter_topic.clone(), p.max_delivery_attempts))
    };
    if dead_letter(desired) != dead_letter(actual) {
        fields.push("dead_letter_policy");
    }
    fields
}

/// `(endpoint, oidc (email, audience))`, or `None` for a pull subscription.
fn push_summary(push: Option<&PushConfig>) -> Option<(String, Option<(String, String)>)> {
    let push = push.filter(|p| !p.push_endpoint.is_empty())?;
    let oidc = push
        .oidc_token()
        .map(|t| (t.service_account_email.clone(), t.audience.clone()));
    Some((push.push_endpoint.clone(), oidc))
}

/// A std duration as a protobuf duration (saturating; our durations are minutes to days).
pub(crate) fn proto_duration(d: Duration) -> google_cloud_wkt::Duration {
    google_cloud_wkt::Duration::clamp(
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        i32::try_from(d.subsec_nanos()).unwrap_or(0),
    )
}

/// Pub/Sub's id rule: starts with a letter, 3 to 255 of `[A-Za-z0-9-_.~+%]`, not `goog*`.
fn valid_resource_id(id: &str) -> bool {
    (3..=255).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.starts_with("goog")
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~+%".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology::pipeline("https://sender.example/push", "https://money.example/push")
    }

    #[test]
    fn pipeline_declares_both_topics_with_dead_letters() {
        let t = topology();
        t.validate().unwrap();
        let pending = t.flow(PENDING_INVOICES).unwrap();
        assert_eq!(pending.dead_letter_topic(), "pending_invoices-dead-letter");
        assert!(t.flow(PAID_INVOICES).is_some());
    }

    #[test]
    fn push_subscription_carries_every_policy() {
        let mut t = topology();
        t.delivery.push_service_account = Some("pusher@p.iam.gserviceaccount.com".into());
        let target = PubSubTarget::cloud("p");
        let sub = t.push_subscription(&t.flows[1], &target);
        assert_eq!(
            sub.name,
            "projects/p/subscriptions/paid_invoices-money-sender"
        );
        assert_eq!(sub.topic, "projects/p/topics/paid_invoices");
        assert!(sub.retain_acked_messages);
        assert_eq!(
            sub.message_retention_duration.as_ref().unwrap().seconds(),
            604_800
        );
        let dl = sub.dead_letter_policy.as_ref().unwrap();
        assert_eq!(
            dl.dead_letter_topic,
            "projects/p/topics/paid_invoices-dead-letter"
        );
        assert_eq!(dl.max_delivery_attempts, 100);
        assert!(sub.enable_message_ordering);
        let oidc = sub.push_config.as_ref().unwrap().oidc_token().unwrap();
        assert_eq!(
            oidc.service_account_email,
            "pusher@p.iam.gserviceaccount.com"
        );
        assert!(sub.retry_policy.is_some());
        assert!(sub.expiration_policy.as_ref().unwrap().ttl.is_none());
    }

    #[test]
    fn production_defaults_heal_for_hours_and_keep_dead_letters_31_days() {
        let t = topology();
        t.validate().unwrap();
        let target = PubSubTarget::cloud("p");
        let seconds = |s: &Subscription| s.message_retention_duration.as_ref().unwrap().seconds();
        for flow in &t.flows {
            let push = t.push_subscription(flow, &target);
            assert!(push.enable_message_ordering, "{}", push.name);
            assert!(push.retain_acked_messages);
            assert_eq!(seconds(&push), 7 * 86_400, "push keeps 7 days for replays");
            let dead_letter = push.dead_letter_policy.as_ref().unwrap();
            assert_eq!(dead_letter.max_delivery_attempts, 100);
            let retry = push.retry_policy.as_ref().unwrap();
            assert_eq!(retry.minimum_backoff.as_ref().unwrap().seconds(), 10);
            assert_eq!(retry.maximum_backoff.as_ref().unwrap().seconds(), 600);

            let pull = t.dead_letter_subscription(flow, &target);
            assert!(!pull.enable_message_ordering, "{}", pull.name);
            assert!(pull.retain_acked_messages);
            assert_eq!(seconds(&pull), 31 * 86_400, "dead letters wait 31 days");
            assert!(pull.dead_letter_policy.is_none());
        }
    }

    #[test]
    fn the_emulator_gets_at_most_seven_days_of_retention() {
        let mut t = topology();
        t.delivery.retention = Duration::from_secs(86_400);
        let target = PubSubTarget::emulator("p", "127.0.0.1:8085");
        let seconds = |s: &Subscription| s.message_retention_duration.as_ref().unwrap().seconds();
        let flow = &t.flows[0];
        assert_eq!(
            seconds(&t.dead_letter_subscription(flow, &target)),
            7 * 86_400
        );
        // Shorter retentions are declared as they are.
        assert_eq!(seconds(&t.push_subscription(flow, &target)), 86_400);
    }

    #[test]
    fn ordering_is_on_in_production_and_off_on_the_emulator_unless_asked() {
        let mut t = topology();
        let cloud = PubSubTarget::cloud("p");
        let emulator = PubSubTarget::emulator("p", "127.0.0.1:8085");
        let ordered = |t: &Topology, target: &PubSubTarget| {
            t.flows
                .iter()
                .map(|flow| t.push_subscription(flow, target).enable_message_ordering)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            t.delivery.message_ordering,
            MessageOrdering::ExceptOnEmulator
        );
        assert_eq!(ordered(&t, &cloud), vec![true, true]);
        assert_eq!(ordered(&t, &emulator), vec![false, false]);
        t.delivery.message_ordering = MessageOrdering::Always;
        assert_eq!(ordered(&t, &emulator), vec![true, true]);
        t.delivery.message_ordering = MessageOrdering::Never;
        assert_eq!(ordered(&t, &cloud), vec![false, false]);
    }

    #[test]
    fn retention_is_validated_against_pubsub_limits() {
        let mut t = topology();
        t.delivery.retention = MAX_RETENTION;
        t.delivery.dead_letter_retention = MIN_RETENTION;
        t.validate().unwrap();
        for (retention, dead_letter_retention) in [
            (MAX_RETENTION + Duration::from_secs(1), MAX_RETENTION),
            (MIN_RETENTION - Duration::from_secs(1), MAX_RETENTION),
            (MAX_RETENTION, MAX_RETENTION + Duration::from_secs(1)),
            (MAX_RETENTION, Duration::from_secs(60)),
        ] {
            t.delivery.retention = retention;
            t.delivery.dead_letter_retention = dead_letter_retention;
            let err = t.validate().unwrap_err().to_string();
            assert!(err.contains("outside 10min..=31days"), "{err}");
        }
    }

    #[test]
    fn ordering_is_a_mismatch_never_an_update() {
        let t = topology();
        let target = PubSubTarget::cloud("p");
        let desired = t.push_subscription(&t.flows[0], &target);
        let mut unordered = desired.clone();
        unordered.enable_message_ordering = false;
        assert!(differing_fields(&desired, &unordered).is_empty());
        let mismatch = ordering_mismatch(&desired, &unordered).unwrap();
        assert_eq!(
            mismatch.subscription,
            "projects/p/subscriptions/pending_invoices-invoice-sender"
        );
        assert!(mismatch.declared);
        assert!(ordering_mismatch(&desired, &desired).is_none());

        let text = mismatch.to_string();
        for expected in [
            "has message ordering off, the topology declares it on",
            "gcloud pubsub snapshots create projects/p/snapshots/pending_invoices-invoice-sender-reorder \
             --subscription=projects/p/subscriptions/pending_invoices-invoice-sender",
            "gcloud pubsub subscriptions delete projects/p/subscriptions/pending_invoices-invoice-sender",
            "gcloud pubsub subscriptions seek projects/p/subscriptions/pending_invoices-invoice-sender \
             --snapshot=projects/p/snapshots/pending_invoices-invoice-sender-reorder",
            "roles/pubsub.subscriber",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from: {text}");
        }
    }

    #[test]
    fn retry_policy_can_be_left_out_and_its_presence_is_a_difference() {
        let with = topology();
        let mut without = topology();
        without.delivery.retry_policy = false;
        let target = PubSubTarget::cloud("p");
        let flow = &with.flows[0];
        let bare = without.push_subscription(flow, &target);
        assert!(bare.retry_policy.is_none());
        // Everything else is still declared.
        assert!(bare.dead_letter_policy.is_some());
        let dead_letters = without.dead_letter_subscription(flow, &target);
        assert!(dead_letters.retry_policy.is_none());
        let full = with.push_subscription(flow, &target);
        assert_eq!(differing_fields(&bare, &full), vec!["retry_policy"]);
        assert_eq!(differing_fields(&full, &bare), vec!["retry_policy"]);
    }

    #[test]
    fn identical_subscriptions_do_not_differ_and_server_echo_is_normalised() {
        let t = topology();
        let target = PubSubTarget::cloud("p");
        let desired = t.push_subscription(&t.flows[0], &target);
        assert!(differing_fields(&desired, &desired).is_empty());

        // What real Pub/Sub echoes: an extra push attribute, no expiration policy.
        let mut echoed = desired.clone();
        echoed.push_config = echoed
            .push_config
            .map(|p| p.set_attributes([("x-goog-version", "v1")]));
        echoed.expiration_policy = None;
        assert!(differing_fields(&desired, &echoed).is_empty());

        let pull = t.dead_letter_subscription(&t.flows[0], &target);
        let mut pull_echo = pull.clone();
        pull_echo.push_config = Some(PushConfig::new());
        assert!(differing_fields(&pull, &pull_echo).is_empty());
    }

    #[test]
    fn changed_endpoint_and_attempts_are_detected() {
        let t = topology();
        let target = PubSubTarget::cloud("p");
        let actual = t.push_subscription(&t.flows[0], &target);
        let mut changed = t.clone();
        changed.flows[0].push_endpoint = "https://elsewhere.example/push".into();
        changed.delivery.max_delivery_attempts = 7;
        let desired = changed.push_subscription(&changed.flows[0], &target);
        assert_eq!(
            differing_fields(&desired, &actual),
            vec!["push_config", "dead_letter_policy"]
        );
    }

    #[test]
    fn validation_rejects_out_of_range_settings() {
        let mut t = topology();
        t.delivery.max_delivery_attempts = 3;
        assert!(matches!(t.validate(), Err(Error::InvalidTopology(_))));

        let mut t = topology();
        t.delivery.min_backoff = Duration::from_secs(20);
        t.delivery.max_backoff = Duration::from_secs(10);
        assert!(t.validate().is_err());

        let mut t = topology();
        t.flows[1].topic = PENDING_INVOICES.into();
        let err = t.validate().unwrap_err().to_string();
        assert!(err.contains("declared twice"), "{err}");

        let mut t = topology();
        t.flows[0].push_endpoint = "sender:8080".into();
        assert!(t.validate().is_err());

        assert!(!valid_resource_id("ab"));
        assert!(!valid_resource_id("goog-x"));
        assert!(valid_resource_id("pending_invoices-dead-letter"));
    }

    #[test]
    fn report_summarises_outcomes() {
        let mut r = ApplyReport::default();
        r.push(
            ResourceKind::Topic,
            "projects/p/topics/a".into(),
            Outcome::Unchanged,
        );
        assert!(r.is_noop());
        r.push(
            ResourceKind::Subscription,
            "projects/p/subscriptions/s".into(),
            Outcome::Updated(vec!["push_config"]),
        );
        assert!(!r.is_noop());
        assert_eq!(r.updated(), vec!["projects/p/subscriptions/s"]);
        let text = r.to_string();
        assert!(
            text.contains("unchanged  topic projects/p/topics/a"),
            "{text}"
        );
        assert!(
            text.contains("updated    subscription projects/p/subscriptions/s (push_config)"),
            "{text}"
        );
    }
}
