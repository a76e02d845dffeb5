//! `trace <invoice-id | request-id>`: one invoice's way through the pipeline, from Stark's own
//! records: its logs, every event about it with each failed delivery attempt, every generation
//! of its payout transfer with their logs, the credit → payout latency, a verdict with the next
//! command to run, and the Cloud Logging filter for the services' lines about it.
//!
//! The verdict reads Stark, never our logs: it is what money-sender itself would decide.

use std::io::Write;
use std::time::Duration;

use pipeline_domain::receiver::payout_due;
use pipeline_domain::vocab::{InvoiceTag, PayoutKey, RequestTag};
use serde::Serialize;
use stark_client::{
    Client, Event, EventAttemptQuery, EventQuery, Invoice, InvoiceLogQuery, InvoiceLogType,
    InvoiceQuery, InvoiceStatus, Transfer, TransferLog, TransferQuery, TransferStatus,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::exit::UsageError;
use super::output::{Format, FormatArg, rfc3339, table, write_json, write_table};

/// `stark-pipeline trace` arguments.
///
/// Example: `stark-pipeline trace black-friday-3-7` or `stark-pipeline trace 5155165527080960 --format json | jq -r .verdict`
#[derive(Debug, Clone, clap::Args)]
pub struct TraceArgs {
    /// A Stark invoice id (digits), or the request id the spammer gave it (`<campaign>-<slot>-<n>`).
    pub id: String,
    #[command(flatten)]
    pub output: FormatArg,
}

/// One line of the timeline.
#[derive(Debug, Clone, Serialize)]
struct Entry {
    at: String,
    /// `invoice`, `event`, `attempt` or `transfer`.
    source: &'static str,
    /// The object's id.
    id: String,
    /// What happened: a log type, an attempt's code, a transfer status.
    what: String,
    detail: String,
}

#[derive(Debug, Serialize)]
struct TransferJson {
    id: String,
    external_id: Option<String>,
    generation: Option<u32>,
    status: &'static str,
    amount: i64,
    created: String,
}

#[derive(Debug, Serialize)]
struct TraceJson {
    invoice_id: Option<String>,
    request_id: Option<String>,
    status: Option<&'static str>,
    amount: Option<i64>,
    fee: Option<i64>,
    credited_at: Option<String>,
    transfers: Vec<TransferJson>,
    /// Seconds from the credit to the first successful payout.
    credit_to_payout_seconds: Option<f64>,
    timeline: Vec<Entry>,
    verdict: String,
    next: String,
    logging_filter: String,
}

/// Runs `trace`; `Ok(true)` unless the payout failed or is owed and not on its way.
pub async fn run(
    args: &TraceArgs,
    stark: &Client,
    transfer_fee: i64,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let id = args.id.trim();
    if id.is_empty() {
        return Err(UsageError("trace needs an invoice id or a request id".into()).into());
    }
    let by_id = id.bytes().all(|b| b.is_ascii_digit());
    let invoice = if by_id {
        match stark.get_invoice(id).await {
            Ok(invoice) => Some(invoice),
            // Stark answers 400 for an id outside our workspace.
            Err(err) if err.kind() == stark_client::ErrorKind::Rejected => None,
            Err(err) => return Err(err.into()),
        }
    } else {
        let tag = RequestTag::for_request(id).to_string();
        let mut found = stark
            .query_invoices(&InvoiceQuery {
                tags: vec![tag.clone()],
                ..Default::default()
            })
            .await?;
        // A canceled duplicate is not the request's invoice.
        found.sort_by_key(|i| i.status == InvoiceStatus::Canceled);
        match found.into_iter().next() {
            Some(invoice) => Some(invoice),
            None => {
                return Err(UsageError(format!(
                    "no invoice carries the tag {tag}: the request was never issued (check invoice-sender's logs and the pending_invoices dead letters), or it is not a request id"
                ))
                .into());
            }
        }
    };
    let report = match invoice {
        None => TraceJson {
            invoice_id: Some(id.to_owned()),
            request_id: None,
            status: None,
            amount: None,
            fee: None,
            credited_at: None,
            transfers: Vec::new(),
            credit_to_payout_seconds: None,
            timeline: Vec::new(),
            verdict: "refused: not ours".into(),
            next: "nothing to do: Stark does not show this invoice to our credentials, so money-sender never pays it".into(),
            logging_filter: logging_filter(Some(id), None),
        },
        Some(invoice) => trace_invoice(stark, invoice, transfer_fee).await?,
    };
    match args.output.format {
        Format::Json => write_json(out, &report)?,
        Format::Table => write_trace(&report, out)?,
    }
    Ok(
        !report.verdict.starts_with("payout failed")
            && report.verdict != "credited, payout pending",
    )
}

/// Reads everything about `invoice` and decides.
async fn trace_invoice(
    stark: &Client,
    invoice: Invoice,
    transfer_fee: i64,
) -> anyhow::Result<TraceJson> {
    let request = RequestTag::find(&invoice.tags);
    let mut timeline = Vec::new();
    let logs = stark
        .query_invoice_logs(&InvoiceLogQuery {
            invoice_ids: vec![invoice.id.clone()],
            ..Default::default()
        })
        .await?;
    for log in &logs {
        timeline.push(Entry {
            at: rfc3339(&log.created),
            source: "invoice",
            id: log.id.clone(),
            what: log.log_type.as_str().to_owned(),
            detail: format!(
                "amount {} cents, fee {} cents",
                log.invoice.amount, log.invoice.fee
            ),
        });
    }
    let credited = logs
        .iter()
        .filter(|l| l.log_type == InvoiceLogType::Credited)
        .min_by(|a, b| a.created.cmp(&b.created));
    // Events cannot be filtered by invoice; those since the invoice's day are read and kept.
    let events: Vec<Event> = stark
        .query_events(&EventQuery {
            after: invoice.created.get(..10).map(str::to_owned),
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|e| e.invoice_log().is_some_and(|l| l.invoice.id == invoice.id))
        .collect();
    let mut undelivered_credit = None;
    for event in &events {
        let log_type = event.invoice_log().map_or("", |l| l.log_type.as_str());
        let delivered = match event.is_delivered {
            Some(true) => "delivered",
            Some(false) => "undelivered",
            None => "delivery unknown",
        };
        if event.is_delivered == Some(false) && log_type == "credited" {
            undelivered_credit = Some(event.id.clone());
        }
        timeline.push(Entry {
            at: rfc3339(&event.created),
            source: "event",
            id: event.id.clone(),
            what: log_type.to_owned(),
            detail: delivered.to_owned(),
        });
        let attempts = stark
            .query_event_attempts(&EventAttemptQuery {
                event_ids: vec![event.id.clone()],
                ..Default::default()
            })
            .await?;
        for attempt in attempts {
            timeline.push(Entry {
                at: rfc3339(&attempt.created),
                source: "attempt",
                id: attempt.id,
                what: attempt.code,
                detail: format!(
                    "event {} to webhook {}: {}",
                    event.id, attempt.webhook_id, attempt.message
                ),
            });
        }
    }
    let mut transfers: Vec<Transfer> = stark
        .query_transfers(&TransferQuery {
            tags: vec![InvoiceTag::for_invoice(&invoice.id).to_string()],
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|t| {
            t.external_id
                .as_deref()
                .and_then(PayoutKey::parse)
                .is_some_and(|k| k.invoice_id() == invoice.id)
        })
        .collect();
    transfers.sort_by_key(|t| t.external_id.as_deref().and_then(PayoutKey::parse));
    let transfer_logs: Vec<TransferLog> = if transfers.is_empty() {
        Vec::new()
    } else {
        let ids = transfers
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join(",");
        stark
            .collect("transfer/log", "logs", &[("transferIds", ids)], None)
            .await?
    };
    for log in &transfer_logs {
        let errors = log
            .errors
            .iter()
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; ");
        timeline.push(Entry {
            at: rfc3339(&log.created),
            source: "transfer",
            id: log.transfer.id.clone(),
            what: log.log_type.clone(),
            detail: format!(
                "{} {} cents{}",
                log.transfer
                    .external_id
                    .as_deref()
                    .unwrap_or("(no payout key)"),
                log.transfer.amount,
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(": {errors}")
                }
            ),
        });
    }
    timeline.sort_by(|a, b| a.at.cmp(&b.at));

    let paid_at = transfer_logs
        .iter()
        .filter(|l| l.log_type == "success")
        .map(|l| l.created.as_str())
        .min();
    let latency = match (credited, paid_at) {
        (Some(credit), Some(paid)) => {
            let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).ok();
            parse(paid)
                .zip(parse(&credit.created))
                .map(|(p, c)| (p - c).as_seconds_f64())
        }
        _ => None,
    };
    let credited_at = credited.map(|c| rfc3339(&c.created));
    let since = credited_at
        .as_deref()
        .or(Some(&*invoice.created))
        .and_then(|t| t.get(..10))
        .unwrap_or("1d")
        .to_owned();
    let (verdict, next) = if request.is_none() {
        (
            "refused: not ours".to_owned(),
            "nothing to do: it has no request tag of ours, so money-sender never pays it"
                .to_owned(),
        )
    } else if credited.is_none() {
        match invoice.status {
            InvoiceStatus::Canceled | InvoiceStatus::Expired => (
                "nothing due".to_owned(),
                format!(
                    "nothing to do: the invoice is {} and was never credited",
                    invoice.status.as_str()
                ),
            ),
            _ => (
                "waiting for payment".to_owned(),
                format!(
                    "nothing to do until the payer pays; stark-pipeline trace {} later",
                    invoice.id
                ),
            ),
        }
    } else if payout_due(invoice.amount, invoice.fee, transfer_fee) <= 0 {
        (
            "nothing due".to_owned(),
            "nothing to do: Stark's fees (or a reversal) leave nothing to pay out".to_owned(),
        )
    } else if transfers
        .iter()
        .any(|t| t.status == TransferStatus::Success)
    {
        (
            "paid out".to_owned(),
            format!(
                "nothing to do; stark-pipeline reconcile --since {since} confirms the whole day"
            ),
        )
    } else if transfers
        .iter()
        .any(|t| !matches!(t.status, TransferStatus::Failed | TransferStatus::Canceled))
    {
        (
            "credited, payout pending".to_owned(),
            format!(
                "the transfer is on its way (money-sender acks once it succeeds); stark-pipeline trace {} again in a few minutes",
                invoice.id
            ),
        )
    } else if let Some(last) = transfers.last() {
        let reason = transfer_logs
            .iter()
            .filter(|l| l.transfer.id == last.id && !l.errors.is_empty())
            .flat_map(|l| l.errors.iter())
            .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
            .next()
            .unwrap_or_else(|| format!("transfer {} {}", last.id, last.status.as_str()));
        (
            format!("payout failed: {reason}"),
            format!(
                "fix the cause (the balance, the receiver's account), then stark-pipeline reconcile --since {since} --repair: money-sender makes the next generation of the payout"
            ),
        )
    } else {
        let next = match &undelivered_credit {
            Some(event) => format!(
                "Stark could not deliver its credited event: stark-pipeline events resend {event}"
            ),
            None => format!("stark-pipeline reconcile --since {since} --repair"),
        };
        ("credited, payout pending".to_owned(), next)
    };
    Ok(TraceJson {
        invoice_id: Some(invoice.id.clone()),
        request_id: request.as_ref().map(|r| r.request_id().to_owned()),
        status: Some(invoice.status.as_str()),
        amount: Some(invoice.amount),
        fee: Some(invoice.fee),
        credited_at,
        transfers: transfers
            .iter()
            .map(|t| TransferJson {
                id: t.id.clone(),
                external_id: t.external_id.clone(),
                generation: t
                    .external_id
                    .as_deref()
                    .and_then(PayoutKey::parse)
                    .map(|k| k.generation()),
                status: t.status.as_str(),
                amount: t.amount,
                created: rfc3339(&t.created),
            })
            .collect(),
        credit_to_payout_seconds: latency,
        timeline,
        verdict,
        next,
        logging_filter: logging_filter(
            Some(&invoice.id),
            request.as_ref().map(RequestTag::request_id),
        ),
    })
}

/// The Cloud Logging query for the services' lines about this invoice and its request (they
/// log `invoice_id` and `request_id` as JSON fields).
fn logging_filter(invoice_id: Option<&str>, request_id: Option<&str>) -> String {
    let mut terms = Vec::new();
    if let Some(id) = invoice_id {
        terms.push(format!("jsonPayload.invoice_id=\"{id}\""));
    }
    if let Some(id) = request_id {
        terms.push(format!("jsonPayload.request_id=\"{id}\""));
    }
    format!(
        "resource.type=\"cloud_run_revision\" AND ({})",
        terms.join(" OR ")
    )
}

fn write_trace(report: &TraceJson, out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(
        out,
        "invoice {}{}{}",
        report.invoice_id.as_deref().unwrap_or("?"),
        report
            .request_id
            .as_deref()
            .map(|r| format!(" (request {r})"))
            .unwrap_or_default(),
        match (report.status, report.amount, report.fee) {
            (Some(status), Some(amount), Some(fee)) =>
                format!(": {status}, amount {amount} cents, fee {fee} cents"),
            _ => String::new(),
        }
    )?;
    if !report.timeline.is_empty() {
        let mut rows = table(["time", "source", "id", "what", "detail"]);
        for entry in &report.timeline {
            rows.add_row([
                entry.at.as_str(),
                entry.source,
                entry.id.as_str(),
                entry.what.as_str(),
                entry.detail.as_str(),
            ]);
        }
        write_table(out, &mut rows)?;
    }
    if let Some(seconds) = report.credit_to_payout_seconds {
        writeln!(
            out,
            "credit → payout: {}",
            humantime::format_duration(Duration::from_secs(seconds.max(0.0).round() as u64))
        )?;
    }
    writeln!(out, "verdict: {}", report.verdict)?;
    writeln!(out, "next: {}", report.next)?;
    writeln!(out, "logs: gcloud logging read '{}'", report.logging_filter)?;
    Ok(())
}
