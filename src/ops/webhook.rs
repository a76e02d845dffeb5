//! `webhook register|list|delete`: the Stark Bank webhook that points at the ingester.

use std::io::Write;

use stark_client::Client;

use super::exit::UsageError;

/// `stark-pipeline webhook …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum WebhookCommand {
    /// Subscribe the ingester's URL to Stark events (does nothing if it already is).
    Register {
        /// The ingester's public URL, including `/webhook`.
        #[arg(long)]
        url: String,
        /// Event subscriptions.
        #[arg(long = "subscription", default_value = "invoice")]
        subscriptions: Vec<String>,
    },
    /// List the webhooks registered at Stark.
    List,
    /// Delete a webhook by id.
    Delete {
        /// Webhook id.
        id: String,
    },
}

/// Runs one webhook command.
pub async fn run(
    command: &WebhookCommand,
    stark: &Client,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    match command {
        WebhookCommand::Register { url, subscriptions } => {
            if !(url.starts_with("https://")
                || url.starts_with("http://127.0.0.1")
                || url.starts_with("http://localhost"))
            {
                return Err(UsageError(format!(
                    "Stark delivers webhooks over HTTPS only: {url:?} is not an https:// URL"
                ))
                .into());
            }
            let existing = stark.list_webhooks().await?;
            if let Some(found) = existing.iter().find(|w| &w.url == url) {
                let missing: Vec<&String> = subscriptions
                    .iter()
                    .filter(|s| !found.subscriptions.contains(s))
                    .collect();
                if missing.is_empty() {
                    writeln!(
                        out,
                        "webhook {} already sends {:?} to {url}; nothing to do",
                        found.id, found.subscriptions
                    )?;
                    return Ok(true);
                }
                anyhow::bail!(
                    "webhook {} already points at {url} without {missing:?}; delete it (webhook delete {}) and register again",
                    found.id,
                    found.id
                );
            }
            let created = stark.create_webhook(url, subscriptions).await?;
            writeln!(
                out,
                "registered webhook {}: {:?} → {}",
                created.id, created.subscriptions, created.url
            )?;
        }
        WebhookCommand::List => {
            let webhooks = stark.list_webhooks().await?;
            if webhooks.is_empty() {
                writeln!(out, "no webhooks registered")?;
            }
            for webhook in webhooks {
                writeln!(
                    out,
                    "{}  {:?}  {}",
                    webhook.id, webhook.subscriptions, webhook.url
                )?;
            }
        }
        WebhookCommand::Delete { id } => {
            let deleted = stark.delete_webhook(id).await?;
            writeln!(out, "deleted webhook {} ({})", deleted.id, deleted.url)?;
        }
    }
    Ok(true)
}
