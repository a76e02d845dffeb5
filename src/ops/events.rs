//! `events undelivered`: the events Stark could not deliver (webhooks it gave up on after its
//! retries). `--republish` feeds the credited ones to `paid_invoices` and marks them delivered.
//! They are read through the signed, TLS-authenticated API, so they need no webhook signature.

use std::io::Write;

use pipeline_domain::messages::{PAID_INVOICES, TopicMessage as _};
use pipeline_service::publisher::Publisher;
use pipeline_service::records::paid_invoice;
use stark_client::{Client, EventLog, EventQuery, InvoiceLogType};

/// `stark-pipeline events …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EventsCommand {
    /// List events still marked undelivered.
    Undelivered {
        /// Publish the credited-invoice ones to `paid_invoices`, then mark them delivered.
        #[arg(long)]
        republish: bool,
        /// Only events created on or after this date (`YYYY-MM-DD`).
        #[arg(long)]
        after: Option<String>,
    },
}

/// Runs `events undelivered`; `Ok(true)` when no credited event is left unhandled.
pub async fn run(
    command: &EventsCommand,
    stark: &Client,
    publisher: Option<&dyn Publisher>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let EventsCommand::Undelivered { republish, after } = command;
    let events = stark
        .query_events(&EventQuery {
            is_delivered: Some(false),
            after: after.clone(),
            ..Default::default()
        })
        .await?;
    let mut pending_credits = 0;
    for event in &events {
        let credited = match &event.log {
            EventLog::Invoice(log) if log.log_type == InvoiceLogType::Credited => Some(log),
            _ => None,
        };
        let what = match &event.log {
            EventLog::Invoice(log) => {
                format!("invoice {} {}", log.invoice.id, log.log_type.as_str())
            }
            EventLog::Transfer(log) => format!("transfer {} {}", log.transfer.id, log.log_type),
            EventLog::Other(_) => event.subscription.clone(),
        };
        writeln!(out, "{}  {}  {what}", event.id, event.created)?;
        let Some(log) = credited else { continue };
        if !republish {
            pending_credits += 1;
            continue;
        }
        let publisher = publisher
            .ok_or_else(|| anyhow::anyhow!("--republish needs Pub/Sub: set PUBSUB_PROJECT_ID"))?;
        let message_id = publisher
            .publish(PAID_INVOICES, paid_invoice(log, &event.id).to_message())
            .await?;
        // Marked only after the publish is confirmed: a crash in between republishes at most.
        stark.set_event_delivered(&event.id).await?;
        writeln!(
            out,
            "  republished as message {message_id} and marked delivered"
        )?;
    }
    writeln!(
        out,
        "summary: {} undelivered event(s); {} credited invoice(s) {}",
        events.len(),
        if *republish {
            events.iter().filter(|e| matches!(&e.log, EventLog::Invoice(l) if l.log_type == InvoiceLogType::Credited)).count()
        } else {
            pending_credits
        },
        if *republish {
            "republished"
        } else {
            "waiting (use --republish)"
        }
    )?;
    Ok(pending_credits == 0)
}
