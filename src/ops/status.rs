//! `status`: a campaign at a glance, from Stark (and Pub/Sub when configured).

use std::collections::BTreeSet;
use std::io::Write;

use gcp_pubsub::{PubSubTarget, Topology};
use stark_client::{
    Client, InvoiceLogQuery, InvoiceLogType, InvoiceQuery, InvoiceStatus, TransferQuery,
    TransferStatus,
};

/// `stark-pipeline status` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Campaign id (the spammer's `CAMPAIGN_ID`).
    #[arg(long)]
    pub campaign: String,
}

/// Runs `status`; `Ok(true)` when nothing waits in a dead-letter subscription.
pub async fn run(
    args: &StatusArgs,
    stark: &Client,
    pubsub: Option<&PubSubTarget>,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let invoices = stark
        .query_invoices(&InvoiceQuery {
            tags: vec![format!("campaign:{}", args.campaign)],
            ..Default::default()
        })
        .await?;
    let slots: BTreeSet<u32> = invoices
        .iter()
        .filter_map(|i| {
            i.tags
                .iter()
                .find_map(|t| t.strip_prefix("slot:"))
                .and_then(|s| s.parse().ok())
        })
        .collect();
    let paid = invoices
        .iter()
        .filter(|i| i.status == InvoiceStatus::Paid)
        .count();
    let mut credited = 0;
    for chunk in invoices.chunks(100) {
        let logs = stark
            .query_invoice_logs(&InvoiceLogQuery {
                types: vec![InvoiceLogType::Credited],
                invoice_ids: chunk.iter().map(|i| i.id.clone()).collect(),
                ..Default::default()
            })
            .await?;
        credited += logs
            .iter()
            .map(|l| l.invoice.id.as_str())
            .collect::<BTreeSet<_>>()
            .len();
    }
    let first = invoices
        .iter()
        .map(|i| i.created.as_str())
        .min()
        .unwrap_or("");
    let ids: BTreeSet<String> = invoices
        .iter()
        .map(|i| format!("payout-{}", i.id))
        .collect();
    let transfers = if invoices.is_empty() {
        Vec::new()
    } else {
        stark
            .query_transfers(&TransferQuery {
                after: first.get(..10).map(str::to_owned),
                ..Default::default()
            })
            .await?
    };
    let ours: Vec<_> = transfers
        .iter()
        .filter(|t| t.external_id.as_ref().is_some_and(|k| ids.contains(k)))
        .collect();
    let count = |status: TransferStatus| ours.iter().filter(|t| t.status == status).count();
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
        "  invoices: {} issued, {paid} paid, {credited} credited",
        invoices.len()
    )?;
    writeln!(
        out,
        "  transfers: {} ({} success, {} in flight, {} failed)",
        ours.len(),
        count(TransferStatus::Success),
        count(TransferStatus::Created) + count(TransferStatus::Processing),
        count(TransferStatus::Failed)
    )?;
    let mut healthy = true;
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
