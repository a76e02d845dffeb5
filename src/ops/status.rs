//! `status`: a campaign at a glance, from Stark (and Pub/Sub when configured).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use gcp_pubsub::{PubSubTarget, Topology};
use pipeline_domain::audit::{AuditInput, InvoiceRecord, TransferRecord, TransferState, audit};
use pipeline_domain::receiver::Receiver;
use pipeline_domain::vocab::CampaignTag;
use pipeline_service::records::{invoice_record, transfer_record};
use stark_client::{
    Client, InvoiceLogQuery, InvoiceLogType, InvoiceQuery, InvoiceStatus, TransferQuery,
};

/// `stark-pipeline status` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Campaign id (the spammer's `CAMPAIGN_ID`).
    #[arg(long)]
    pub campaign: String,
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
    let count = |state: TransferState| transfers.iter().filter(|t| t.state == state).count();
    let summary = audit.summary;
    writeln!(out, "campaign {}", args.campaign)?;
    writeln!(
        out,
        "  slots run: {}{}",
        slots.len(),
        match (slots.first(), slots.last()) {
            (Some(a), Some(b)) => format!(" (hours {a}..={b})"),
            _ => String::new(),
        }
    )?;
    writeln!(
        out,
        "  invoices: {} issued, {paid} paid, {} credited",
        summary.issued, summary.credited
    )?;
    writeln!(
        out,
        "  transfers: {} ({} success, {} in flight, {} failed)",
        transfers.len(),
        count(TransferState::Success),
        count(TransferState::Created) + count(TransferState::Processing),
        count(TransferState::Failed) + count(TransferState::Canceled)
    )?;
    let problems: Vec<String> = audit.problems().map(ToString::to_string).collect();
    writeln!(out, "  audit: {} problem(s)", problems.len())?;
    for problem in &problems {
        writeln!(out, "    {problem}")?;
    }
    let mut healthy = problems.is_empty();
    match pubsub {
        None => writeln!(
            out,
            "  dead letters: unknown (set PUBSUB_PROJECT_ID to check)"
        )?,
        Some(target) => {
            for flow in Topology::pipeline("", "").flows {
                let name = flow.dead_letter_subscription();
                let waiting = gcp_pubsub::ops::count_undelivered(target, &name, 1000).await?;
                healthy &= waiting == 0;
                writeln!(
                    out,
                    "  dead letters in {name}: {waiting} (a peek; Cloud Monitoring's num_undelivered_messages is authoritative)"
                )?;
            }
        }
    }
    Ok(healthy)
}
