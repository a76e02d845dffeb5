//! `events undelivered`: the events Stark could not deliver (webhooks it gave up on after its
//! retries). `--republish` feeds the credited ones to `paid_invoices` and marks them delivered;
//! `events resend` does the same for one event.
//! They are read through the signed, TLS-authenticated API, so they need no webhook signature.

use std::io::Write;

use pipeline_domain::messages::{PAID_INVOICES, TopicMessage as _};
use pipeline_service::publisher::Publisher;
use pipeline_service::records::paid_invoice;
use serde::Serialize;
use stark_client::{Client, Event, EventLog, EventQuery, InvoiceLog, InvoiceLogType};
use time::OffsetDateTime;

use super::exit::UsageError;
use super::output::{Format, FormatArg, rfc3339, table, write_json, write_table};
use super::{date_of, parse_since};

/// `stark-pipeline events …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EventsCommand {
    /// List events still marked undelivered.
    ///
    /// Example: `stark-pipeline events undelivered --since 6h --republish`
    Undelivered {
        /// Publish the credited-invoice ones to `paid_invoices`, then mark them delivered.
        #[arg(long)]
        republish: bool,
        /// Only events created on or after this date (`YYYY-MM-DD`).
        #[arg(long, conflicts_with = "since")]
        after: Option<String>,
        /// Only events created since then: RFC 3339 or a duration back (`90m`, `6h`, `2d`).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        output: FormatArg,
    },
    /// Republish one credited event to `paid_invoices`, then mark it delivered (money-sender
    /// pays each invoice once, however often it is resent).
    ///
    /// Example: `stark-pipeline events resend 5707045634662400`
    Resend {
        /// The event id (`events undelivered` lists them; `trace` shows an invoice's).
        event_id: String,
    },
}

/// One event in `events undelivered --format json`.
#[derive(Debug, Serialize)]
struct EventJson<'a> {
    id: &'a str,
    created: String,
    subscription: &'a str,
    workspace_id: Option<&'a str>,
    /// The invoice or transfer the event is about.
    resource_id: Option<&'a str>,
    /// The log's type: `credited`, `paid`, `success`, …
    log_type: Option<&'a str>,
    /// A credited invoice: what `--republish` feeds to `paid_invoices`.
    credited: bool,
    /// The Pub/Sub message id, when this run republished it.
    republished_message_id: Option<String>,
}

/// The totals of `events undelivered --format json`.
#[derive(Debug, Clone, Copy, Serialize)]
struct SummaryJson {
    undelivered: usize,
    credited: usize,
    republished: usize,
    credited_waiting: usize,
}

#[derive(Debug, Serialize)]
struct UndeliveredJson<'a> {
    events: Vec<EventJson<'a>>,
    summary: SummaryJson,
}

/// The credited invoice log an event carries, if it carries one.
fn credited_log(event: &Event) -> Option<&InvoiceLog> {
    match &event.log {
        EventLog::Invoice(log) if log.log_type == InvoiceLogType::Credited => Some(log),
        _ => None,
    }
}

/// The object an event is about and what happened to it.
fn about(event: &Event) -> (Option<&str>, Option<&str>) {
    match &event.log {
        EventLog::Invoice(log) => (Some(log.invoice.id.as_str()), Some(log.log_type.as_str())),
        EventLog::Transfer(log) => (Some(log.transfer.id.as_str()), Some(log.log_type.as_str())),
        EventLog::Other(_) => (None, None),
    }
}

/// Publishes a credited event's invoice to `paid_invoices`, then marks the event delivered
/// (only after the publish is confirmed: a crash in between republishes at most, and
/// money-sender never pays twice). Returns the message id.
async fn republish(
    stark: &Client,
    publisher: &dyn Publisher,
    event: &Event,
    log: &InvoiceLog,
) -> anyhow::Result<String> {
    let message_id = publisher
        .publish(PAID_INVOICES, paid_invoice(log, &event.id).to_message())
        .await?;
    stark.set_event_delivered(&event.id).await?;
    Ok(message_id)
}

/// Runs an `events` command; `Ok(true)` when no credited event is left unhandled.
pub async fn run(
    command: &EventsCommand,
    stark: &Client,
    publisher: Option<&dyn Publisher>,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    match command {
        EventsCommand::Undelivered {
            republish: wanted,
            after,
            since,
            output,
        } => {
            let since = since.as_deref().map(|s| parse_since(s, now)).transpose()?;
            undelivered(
                stark,
                publisher.filter(|_| *wanted),
                *wanted,
                after.clone().or_else(|| since.map(date_of)),
                since,
                output.format,
                out,
            )
            .await
        }
        EventsCommand::Resend { event_id } => {
            let publisher = publisher
                .ok_or_else(|| UsageError("resend needs Pub/Sub: set PUBSUB_PROJECT_ID".into()))?;
            let event = stark.get_event(event_id).await?;
            let Some(log) = credited_log(&event) else {
                let (_, log_type) = about(&event);
                return Err(UsageError(format!(
                    "event {event_id} is a {} {} event, not an invoice credited one: only credited invoices are paid out",
                    event.subscription,
                    log_type.unwrap_or("(unknown)")
                ))
                .into());
            };
            let message_id = republish(stark, publisher, &event, log).await?;
            writeln!(
                out,
                "republished event {event_id} (invoice {} credited) to {PAID_INVOICES} as message {message_id}; marked delivered",
                log.invoice.id
            )?;
            Ok(true)
        }
    }
}

/// `events undelivered`.
async fn undelivered(
    stark: &Client,
    publisher: Option<&dyn Publisher>,
    republish_wanted: bool,
    after: Option<String>,
    since: Option<OffsetDateTime>,
    format: Format,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    if republish_wanted && publisher.is_none() {
        return Err(UsageError("--republish needs Pub/Sub: set PUBSUB_PROJECT_ID".into()).into());
    }
    let events: Vec<Event> = stark
        .query_events(&EventQuery {
            is_delivered: Some(false),
            after,
            ..Default::default()
        })
        .await?
        .into_iter()
        // Stark filters by date; `--since` is an instant.
        .filter(|e| {
            since.is_none_or(|since| {
                OffsetDateTime::parse(&e.created, &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|at| at >= since)
            })
        })
        .collect();
    let mut republished: Vec<Option<String>> = Vec::with_capacity(events.len());
    // Republished one by one, each marked delivered only after its publish was confirmed.
    for event in &events {
        let message_id = match (credited_log(event), publisher) {
            (Some(log), Some(publisher)) => Some(republish(stark, publisher, event, log).await?),
            _ => None,
        };
        republished.push(message_id);
    }
    let credited = events.iter().filter(|e| credited_log(e).is_some()).count();
    let done = republished.iter().flatten().count();
    let summary = SummaryJson {
        undelivered: events.len(),
        credited,
        republished: done,
        credited_waiting: credited - done,
    };
    match format {
        Format::Json => {
            let events = events
                .iter()
                .zip(&republished)
                .map(|(event, message_id)| {
                    let (resource_id, log_type) = about(event);
                    EventJson {
                        id: &event.id,
                        created: rfc3339(&event.created),
                        subscription: &event.subscription,
                        workspace_id: event.workspace_id.as_deref(),
                        resource_id,
                        log_type,
                        credited: credited_log(event).is_some(),
                        republished_message_id: message_id.clone(),
                    }
                })
                .collect();
            write_json(out, &UndeliveredJson { events, summary })?;
        }
        Format::Table => {
            if !events.is_empty() {
                let mut rows = table(["event", "created", "subscription", "log", "id", "action"]);
                for (event, message_id) in events.iter().zip(&republished) {
                    let (resource_id, log_type) = about(event);
                    let action = match (credited_log(event), message_id) {
                        (Some(_), Some(id)) => {
                            format!("republished as message {id}, marked delivered")
                        }
                        (Some(_), None) => "waiting (use --republish)".to_owned(),
                        (None, _) => String::new(),
                    };
                    rows.add_row([
                        event.id.clone(),
                        rfc3339(&event.created),
                        event.subscription.clone(),
                        log_type.unwrap_or("").to_owned(),
                        resource_id.unwrap_or("").to_owned(),
                        action,
                    ]);
                }
                write_table(out, &mut rows)?;
            }
            writeln!(
                out,
                "summary: {} undelivered event(s); {} credited invoice(s) {}",
                summary.undelivered,
                if republish_wanted {
                    summary.republished
                } else {
                    summary.credited_waiting
                },
                if republish_wanted {
                    "republished"
                } else {
                    "waiting (use --republish)"
                }
            )?;
        }
    }
    Ok(summary.credited_waiting == 0)
}
