//! `webhook register|list|delete`: the Stark Bank webhook that points at the ingester.

use std::io::Write;

use serde::Serialize;
use stark_client::{Client, Webhook};

use super::exit::UsageError;
use super::output::{Format, FormatArg, table, write_json, write_table};

/// `stark-pipeline webhook …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum WebhookCommand {
    /// Subscribe the ingester's URL to Stark events (does nothing if it already is).
    ///
    /// Example: `stark-pipeline webhook register --url https://ingester-abc-rj.a.run.app/webhook`
    Register {
        /// The ingester's public URL, including `/webhook`.
        #[arg(long)]
        url: String,
        /// Event subscriptions.
        #[arg(long = "subscription", default_value = "invoice")]
        subscriptions: Vec<String>,
    },
    /// List the webhooks registered at Stark.
    ///
    /// Example: `stark-pipeline webhook list --format json | jq -r '.webhooks[].url'`
    List {
        #[command(flatten)]
        output: FormatArg,
    },
    /// Delete a webhook by id.
    ///
    /// Example: `stark-pipeline webhook delete 5656565656565656`
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
                        "webhook {} already sends {} to {url}; nothing to do",
                        found.id,
                        found.subscriptions.join(", ")
                    )?;
                    return Ok(true);
                }
                return Err(UsageError(format!(
                    "webhook {} already points at {url} without {}; delete it (webhook delete {}) and register again",
                    found.id,
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    found.id
                ))
                .into());
            }
            let created = stark.create_webhook(url, subscriptions).await?;
            writeln!(
                out,
                "registered webhook {}: {} → {}",
                created.id,
                created.subscriptions.join(", "),
                created.url
            )?;
        }
        WebhookCommand::List { output } => {
            let webhooks = stark.list_webhooks().await?;
            match output.format {
                Format::Json => {
                    #[derive(Serialize)]
                    struct List<'a> {
                        webhooks: &'a [Webhook],
                    }
                    write_json(
                        out,
                        &List {
                            webhooks: &webhooks,
                        },
                    )?;
                }
                Format::Table if webhooks.is_empty() => writeln!(out, "no webhooks registered")?,
                Format::Table => {
                    let mut rows = table(["id", "subscriptions", "url"]);
                    for webhook in &webhooks {
                        rows.add_row([
                            webhook.id.as_str(),
                            &webhook.subscriptions.join(", "),
                            webhook.url.as_str(),
                        ]);
                    }
                    write_table(out, &mut rows)?;
                }
            }
        }
        WebhookCommand::Delete { id } => {
            let deleted = stark.delete_webhook(id).await?;
            writeln!(out, "deleted webhook {} ({})", deleted.id, deleted.url)?;
        }
    }
    Ok(true)
}
