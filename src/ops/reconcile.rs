//! `reconcile`: compares what Stark credited with what we paid out, from Stark's own records,
//! so it finds what no log or dead-letter topic shows (a webhook Stark gave up on, a message
//! dropped by a bug). `--repair` republishes missing payouts to `paid_invoices`; money-sender
//! is idempotent, so a repair can never pay twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use pipeline_domain::audit::{Audit, AuditInput, InvoiceRecord, TransferRecord, audit};
use pipeline_domain::messages::{PAID_INVOICES, TopicMessage as _};
use pipeline_domain::receiver::Receiver;
use pipeline_service::publisher::Publisher;
use pipeline_service::records::{invoice_record, paid_invoice, transfer_record};
use serde::Serialize;
use stark_client::{Client, InvoiceLog, InvoiceLogQuery, InvoiceLogType, TransferQuery};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::exit::UsageError;
use super::output::{FindingJson, Format, FormatArg, instant, table, write_json, write_table};
use super::{date_of, parse_since};

/// `stark-pipeline reconcile` arguments.
///
/// Example: `stark-pipeline reconcile --since 24h --format json | jq '.findings[] | select(.problem)'`
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Check invoices credited since then: RFC 3339 or a duration back (`6h`, `2d`).
    #[arg(long)]
    pub since: String,
    /// Republish the missing payouts to `paid_invoices`.
    #[arg(long)]
    pub repair: bool,
    /// With `--repair`, leave invoices credited less than this long ago: their webhook and
    /// payout may still be on their way (`10m`, `1h`).
    #[arg(long, default_value = "10m", value_parser = pipeline_service::config::parse_duration)]
    pub grace: std::time::Duration,
    #[command(flatten)]
    pub output: FormatArg,
}

/// `reconcile --format json`.
#[derive(Debug, Serialize)]
struct ReconcileJson {
    since: String,
    ok: bool,
    findings: Vec<FindingJson>,
    repaired: Vec<RepairJson>,
    summary: SummaryJson,
}

/// One payout republished by `--repair`.
#[derive(Debug, Serialize)]
struct RepairJson {
    invoice_id: String,
    message_id: String,
    /// What the message claims is due, cents (money-sender pays Stark's figure).
    amount: i64,
}

#[derive(Debug, Serialize)]
struct SummaryJson {
    credited: usize,
    paid_out: usize,
    in_flight: usize,
    nothing_due: usize,
    problems: usize,
    repaired: usize,
}

/// What reconcile found: the one audit over Stark's records, and the credited logs of the
/// invoices a repair republishes.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// The audit.
    pub audit: Audit,
    /// The credited logs of the invoices with nothing paid and nothing in flight.
    pub missing: Vec<InvoiceLog>,
}

/// Reads Stark's records of invoices credited since `since` and of their payouts, and audits
/// them. Stark filters lists by date, so this asks from the start of `since`'s UTC day and keeps
/// only the credits at or after `since` itself.
pub async fn examine(
    stark: &Client,
    receiver: &Receiver,
    transfer_fee: i64,
    since: OffsetDateTime,
) -> anyhow::Result<Findings> {
    let after = Some(date_of(since));
    let logs = stark
        .query_invoice_logs(&InvoiceLogQuery {
            after: after.clone(),
            types: vec![InvoiceLogType::Credited],
            ..Default::default()
        })
        .await?;
    let mut credited: BTreeMap<String, InvoiceLog> = BTreeMap::new();
    for log in logs.into_iter().filter(|l| {
        l.log_type == InvoiceLogType::Credited
            && OffsetDateTime::parse(&l.created, &Rfc3339).is_ok_and(|at| at >= since)
    }) {
        credited.entry(log.invoice.id.clone()).or_insert(log);
    }
    let transfers: Vec<TransferRecord> = stark
        .query_transfers(&TransferQuery {
            after,
            ..Default::default()
        })
        .await?
        .iter()
        .map(transfer_record)
        .filter(|t| t.key.is_some())
        .collect();
    // Payouts whose invoice was credited before the window (or never): read those credits too,
    // so that an early credit is not mistaken for none.
    let outside: BTreeSet<String> = transfers
        .iter()
        .filter_map(|t| t.key.as_ref().map(|k| k.invoice_id().to_owned()))
        .filter(|id| !credited.contains_key(id))
        .collect();
    let mut earlier: BTreeMap<String, InvoiceLog> = BTreeMap::new();
    let outside: Vec<String> = outside.into_iter().collect();
    for chunk in outside.chunks(100) {
        for log in stark
            .query_invoice_logs(&InvoiceLogQuery {
                types: vec![InvoiceLogType::Credited],
                invoice_ids: chunk.to_vec(),
                ..Default::default()
            })
            .await?
        {
            earlier.entry(log.invoice.id.clone()).or_insert(log);
        }
    }
    let invoices: Vec<InvoiceRecord> = credited
        .values()
        .chain(earlier.values())
        .map(|log| invoice_record(&log.invoice, Some(log.invoice.amount)))
        .collect();
    let audit = audit(AuditInput {
        requested: None,
        invoices: &invoices,
        transfers: &transfers,
        receiver,
        transfer_fee,
    });
    let unpaid: BTreeSet<&str> = audit.unpaid_invoices().collect();
    let missing = credited
        .values()
        .filter(|log| unpaid.contains(log.invoice.id.as_str()))
        .cloned()
        .collect();
    Ok(Findings { audit, missing })
}

/// Runs `reconcile`; `Ok(true)` when all was well.
pub async fn run(
    args: &ReconcileArgs,
    stark: &Client,
    publisher: Option<&dyn Publisher>,
    receiver: &Receiver,
    transfer_fee: i64,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let since = parse_since(&args.since, now)?;
    let findings = examine(stark, receiver, transfer_fee, since).await?;
    let mut repaired = Vec::new();
    // Credited moments ago: the pipeline is probably still paying it; a repair would only add
    // a redundant (harmless) message.
    let settled_before = now - args.grace;
    let due_for_repair: Vec<&InvoiceLog> = findings
        .missing
        .iter()
        .filter(|log| {
            OffsetDateTime::parse(&log.created, &Rfc3339).is_ok_and(|at| at <= settled_before)
        })
        .collect();
    if args.repair && !due_for_repair.is_empty() {
        let publisher = publisher
            .ok_or_else(|| UsageError("--repair needs Pub/Sub: set PUBSUB_PROJECT_ID".into()))?;
        for log in due_for_repair {
            let message = paid_invoice(log, &format!("reconcile-{}", log.id));
            let message_id = publisher
                .publish(PAID_INVOICES, message.to_message())
                .await?;
            repaired.push(RepairJson {
                invoice_id: log.invoice.id.clone(),
                message_id,
                amount: message.claimed_payout(),
            });
        }
    }
    let summary = findings.audit.summary;
    let problems = findings.audit.problems().count();
    // One line per run, for a log-based metric and an alert on repeated problems.
    tracing::info!(
        event = "reconcile_summary",
        since = %instant(since),
        credited = summary.credited,
        paid_out = summary.paid_out,
        in_flight = summary.in_flight,
        nothing_due = summary.nothing_due,
        problems,
        repaired = repaired.len(),
        repair = args.repair,
        "reconcile finished"
    );
    match args.output.format {
        Format::Json => write_json(
            out,
            &ReconcileJson {
                since: instant(since),
                ok: problems == 0,
                findings: findings.audit.findings.iter().map(Into::into).collect(),
                summary: SummaryJson {
                    credited: summary.credited,
                    paid_out: summary.paid_out,
                    in_flight: summary.in_flight,
                    nothing_due: summary.nothing_due,
                    problems,
                    repaired: repaired.len(),
                },
                repaired,
            },
        )?,
        Format::Table => {
            if !findings.audit.findings.is_empty() {
                let mut rows = table(["level", "kind", "finding"]);
                for finding in &findings.audit.findings {
                    let level = if finding.is_problem() {
                        "PROBLEM"
                    } else {
                        "NOTE"
                    };
                    rows.add_row([level, finding.kind(), &finding.to_string()]);
                }
                write_table(out, &mut rows)?;
            }
            for repair in &repaired {
                writeln!(
                    out,
                    "REPAIR invoice {}: republished to {PAID_INVOICES} as message {} ({} cents)",
                    repair.invoice_id, repair.message_id, repair.amount
                )?;
            }
            writeln!(
                out,
                "summary: {} credited since {}, {} paid out correctly, {} in flight, {} with nothing due, {problems} problem(s){}",
                summary.credited,
                instant(since),
                summary.paid_out,
                summary.in_flight,
                summary.nothing_due,
                if args.repair {
                    format!(
                        ", {} republished (run reconcile again to confirm)",
                        repaired.len()
                    )
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(problems == 0)
}
