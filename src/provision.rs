//! `provision`: applies the Pub/Sub topology (topics, push subscriptions with retry policy and
//! OIDC, dead-letter topics with pull subscriptions, 7-day retention of acked messages) to a
//! project, idempotently. The same code provisions the emulator in the local stack.

use std::time::Duration;

use anyhow::Context as _;
use gcp_pubsub::{PubSubTarget, Topology};

/// `stark-pipeline provision` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    /// Google Cloud project id (default: `PUBSUB_PROJECT_ID`, then `GOOGLE_CLOUD_PROJECT`).
    /// `PUBSUB_EMULATOR_HOST` selects the emulator.
    #[arg(long)]
    pub project: Option<String>,
    /// Push endpoint of invoice-sender (its Cloud Run URL + `/push`).
    #[arg(long)]
    pub invoice_sender_url: String,
    /// Push endpoint of money-sender (its Cloud Run URL + `/push`).
    #[arg(long)]
    pub money_sender_url: String,
    /// Service account whose OIDC token Pub/Sub attaches to each push (needed for private
    /// Cloud Run services).
    #[arg(long)]
    pub push_service_account: Option<String>,
    /// OIDC audience for invoice-sender pushes (default: the push URL).
    #[arg(long)]
    pub audience_invoice_sender: Option<String>,
    /// OIDC audience for money-sender pushes (default: the push URL).
    #[arg(long)]
    pub audience_money_sender: Option<String>,
    /// Delivery attempts before a message goes to the dead-letter topic (5 to 100).
    #[arg(long, default_value_t = 100)]
    pub max_delivery_attempts: i32,
    /// First retry backoff, seconds.
    #[arg(long, default_value_t = 10)]
    pub min_backoff_seconds: u64,
    /// Longest retry backoff, seconds (at most 600).
    #[arg(long, default_value_t = 600)]
    pub max_backoff_seconds: u64,
    /// Print what would be applied and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl ProvisionArgs {
    /// The declared topology.
    pub fn topology(&self) -> anyhow::Result<Topology> {
        let mut topology = Topology::pipeline(
            self.invoice_sender_url.clone(),
            self.money_sender_url.clone(),
        );
        topology.delivery.push_service_account = self.push_service_account.clone();
        topology.delivery.max_delivery_attempts = self.max_delivery_attempts;
        topology.delivery.min_backoff = Duration::from_secs(self.min_backoff_seconds);
        topology.delivery.max_backoff = Duration::from_secs(self.max_backoff_seconds);
        for flow in &mut topology.flows {
            flow.audience = if flow.push_endpoint == self.invoice_sender_url {
                self.audience_invoice_sender.clone()
            } else {
                self.audience_money_sender.clone()
            };
        }
        topology.validate().context("invalid topology")?;
        Ok(topology)
    }
}

/// Runs `provision`.
pub async fn run(args: &ProvisionArgs) -> anyhow::Result<()> {
    let topology = args.topology()?;
    let target = match &args.project {
        Some(project) => match std::env::var(gcp_pubsub::EMULATOR_HOST_VAR)
            .ok()
            .filter(|h| !h.is_empty())
        {
            Some(host) => PubSubTarget::emulator(project.clone(), host),
            None => PubSubTarget::cloud(project.clone()),
        },
        None => PubSubTarget::from_env().context("no --project given")?,
    };
    println!("Pub/Sub topology for {}:", target.describe());
    for flow in &topology.flows {
        println!(
            "  topic {} → push subscription {} → {} (OIDC: {}, audience: {})",
            flow.topic,
            flow.subscription,
            flow.push_endpoint,
            topology
                .delivery
                .push_service_account
                .as_deref()
                .unwrap_or("none"),
            flow.audience.as_deref().unwrap_or("the push URL"),
        );
        println!(
            "    dead letters after {} attempts → topic {} → pull subscription {}",
            topology.delivery.max_delivery_attempts,
            flow.dead_letter_topic(),
            flow.dead_letter_subscription()
        );
    }
    println!(
        "  retry backoff {:?}..{:?}, retention {} days with acked messages retained",
        topology.delivery.min_backoff,
        topology.delivery.max_backoff,
        topology.delivery.retention.as_secs() / 86_400
    );
    if args.dry_run {
        println!("dry run: nothing changed");
        return Ok(());
    }
    let report = gcp_pubsub::apply(&topology, &target).await?;
    println!("created: {:?}", report.created());
    println!("updated: {:?}", report.updated());
    println!("unchanged: {:?}", report.unchanged());
    Ok(())
}
