//! `status`: a campaign at a glance, from Stark (and Pub/Sub when configured).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use gcp_pubsub::{PubSubTarget, Topology};
use pipeline_domain::audit::{AuditInput, InvoiceRecord, TransferRecord, TransferState, audit};
use pipeline_domain::receiver::Receiver;
use pipeline_domain::vocab::CampaignTag;
use pipeline_service::records::{invoice_record, transfer_record};
use serde::Serialize;
use stark_client::{
    Client, InvoiceLogQuery, InvoiceLogType, InvoiceQuery, InvoiceStatus, TransferQuery,
};

use super::output::{FindingJson, Format, FormatArg, brl, table, write_json, write_table};

/// `stark-pipeline status` arguments.
///
/// Example: `stark-pipeline status --campaign black-friday --format json | jq .transfers`
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Campaign id (the spammer's `CAMPAIGN_ID`, which is read when the flag is absent).
    #[arg(long, env = "CAMPAIGN_ID")]
    pub campaign: String,
    #[command(flatten)]
    pub output: FormatArg,
}

/// `status --format json`.
#[derive(Debug, Serialize)]
struct StatusJson {
    campaign: String,
    healthy: bool,
    slots: SlotsJson,
    invoices: InvoicesJson,
    transfers: TransfersJson,
    problems: Vec<FindingJson>,
    /// `null` when Pub/Sub is not configured.
    dead_letters: Option<Vec<DeadLettersJson>>,
}

#[derive(Debug, Serialize)]
struct SlotsJson {
    run: usize,
    first: Option<u32>,
    last: Option<u32>,
}

#[derive(Debug, Serialize)]
struct InvoicesJson {
    issued: usize,
    paid: usize,
    credited: usize,
    /// Cents Stark credited, before its fees.
    credited_amount: i64,
}

#[derive(Debug, Serialize)]
struct TransfersJson {
    total: usize,
    success: usize,
    in_flight: usize,
    failed: usize,
    /// Cents of the transfers that reached `success`.
    paid_out_amount: i64,
}

#[derive(Debug, Serialize)]
struct DeadLettersJson {
    subscription: String,
    /// Messages seen by a peek (Cloud Monitoring's `num_undelivered_messages` is authoritative).
    waiting: usize,
}

/// Runs `status`; `Ok(true)` when the audit finds no problem and nothing waits in a
/// dead-letter subscription.
pub async fn run(
    args: &StatusArgs,
    stark: &Client,
    pubsub: Option<&PubSubTarget>,
    receiver: &Receiver,
    transfer_fee: i64,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let invoices = stark
        .query_invoices(&InvoiceQuery {
            tags: vec![CampaignTag::for_campaign(&args.campaign).to_string()],
            ..Default::default()
        })
        .await?;
    let mut credited: BTreeMap<String, i64> = BTreeMap::new();
    for chunk in invoices.chunks(100) {
        let logs = stark
            .query_invoice_logs(&InvoiceLogQuery {
                types: vec![InvoiceLogType::Credited],
                invoice_ids: chunk.iter().map(|i| i.id.clone()).collect(),
                ..Default::default()
            })
            .await?;
        for log in logs {
            credited
                .entry(log.invoice.id.clone())
                .or_insert(log.invoice.amount);
        }
    }
    let first = invoices
        .iter()
        .map(|i| i.created.as_str())
        .min()
        .unwrap_or("");
    let ours: BTreeSet<&str> = invoices.iter().map(|i| i.id.as_str()).collect();
    let transfers: Vec<TransferRecord> = if invoices.is_empty() {
        Vec::new()
    } else {
        stark
            .query_transfers(&TransferQuery {
                after: first.get(..10).map(str::to_owned),
                ..Default::default()
            })
            .await?
            .iter()
            .map(transfer_record)
            .filter(|t| {
                t.key
                    .as_ref()
                    .is_some_and(|k| ours.contains(k.invoice_id()))
            })
            .collect()
    };
    let records: Vec<InvoiceRecord> = invoices
        .iter()
        .map(|i| invoice_record(i, credited.get(&i.id).copied()))
        .collect();
    let audit = audit(AuditInput {
        requested: None,
        invoices: &records,
        transfers: &transfers,
        receiver,
        transfer_fee,
    });
    let slots: BTreeSet<u32> = records.iter().filter_map(|r| r.slot).collect();
    let paid = invoices
        .iter()
        .filter(|i| i.status == InvoiceStatus::Paid)
        .count();
    let count = |states: &[TransferState]| {
        transfers
            .iter()
            .filter(|t| states.contains(&t.state))
            .count()
    };
    let summary = audit.summary;
    let problems: Vec<FindingJson> = audit.problems().map(Into::into).collect();
    let mut healthy = problems.is_empty();
    let dead_letters = match pubsub {
        None => None,
        Some(target) => {
            let mut counts = Vec::new();
            for flow in Topology::pipeline("", "").flows {
                let subscription = flow.dead_letter_subscription();
                let waiting =
                    gcp_pubsub::ops::count_undelivered(target, &subscription, 1000).await?;
                healthy &= waiting == 0;
                counts.push(DeadLettersJson {
                    subscription,
                    waiting,
                });
            }
            Some(counts)
        }
    };
    let report = StatusJson {
        campaign: args.campaign.clone(),
        healthy,
        slots: SlotsJson {
            run: slots.len(),
            first: slots.first().copied(),
            last: slots.last().copied(),
        },
        invoices: InvoicesJson {
            issued: summary.issued,
            paid,
            credited: summary.credited,
            credited_amount: credited.values().sum(),
        },
        transfers: TransfersJson {
            total: transfers.len(),
            success: count(&[TransferState::Success]),
            in_flight: count(&[TransferState::Created, TransferState::Processing]),
            failed: count(&[TransferState::Failed, TransferState::Canceled]),
            paid_out_amount: transfers
                .iter()
                .filter(|t| t.state == TransferState::Success)
                .map(|t| t.amount)
                .sum(),
        },
        problems,
        dead_letters,
    };
    match args.output.format {
        Format::Json => write_json(out, &report)?,
        Format::Table => write_status_table(&report, out)?,
    }
    Ok(healthy)
}

/// `status` for people: one row per measure, then the problems.
fn write_status_table(report: &StatusJson, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut rows = table(["campaign", &report.campaign]);
    let slots = match (report.slots.first, report.slots.last) {
        (Some(a), Some(b)) => format!("{} (hours {a}..={b})", report.slots.run),
        _ => "0".to_owned(),
    };
    let i = &report.invoices;
    let t = &report.transfers;
    rows.add_row(["slots run", &slots]);
    rows.add_row([
        "invoices",
        &format!(
            "{} issued, {} paid, {} credited ({})",
            i.issued,
            i.paid,
            i.credited,
            brl(i.credited_amount)
        ),
    ]);
    rows.add_row([
        "transfers",
        &format!(
            "{} ({} success, {} in flight, {} failed; {} paid out)",
            t.total,
            t.success,
            t.in_flight,
            t.failed,
            brl(t.paid_out_amount)
        ),
    ]);
    rows.add_row(["audit", &format!("{} problem(s)", report.problems.len())]);
    match &report.dead_letters {
        None => {
            rows.add_row(["dead letters", "unknown (set PUBSUB_PROJECT_ID to check)"]);
        }
        Some(counts) => {
            for count in counts {
                rows.add_row([
                    format!("dead letters in {}", count.subscription),
                    format!("{} (a peek)", count.waiting),
                ]);
            }
        }
    }
    write_table(out, &mut rows)?;
    for problem in &report.problems {
        writeln!(out, "PROBLEM {}", problem.message)?;
    }
    Ok(())
}
