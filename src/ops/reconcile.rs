//! `reconcile`: compares what Stark credited with what we paid out, from Stark's own records,
//! so it finds what no log or dead-letter topic shows (a webhook Stark gave up on, a message
//! dropped by a bug). `--repair` republishes missing payouts to `paid_invoices`; money-sender
//! is idempotent, so a repair can never pay twice.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use money_sender::Receiver;
use pipeline_common::messages::{PAID_INVOICES, PaidInvoice, TopicMessage as _};
use pipeline_common::publisher::Publisher;
use stark_client::{
    Client, InvoiceLog, InvoiceLogQuery, InvoiceLogType, Transfer, TransferQuery, TransferStatus,
};
use time::OffsetDateTime;

use super::{date_of, parse_since};

/// `stark-pipeline reconcile` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// Check invoices credited since then: RFC 3339 or a duration back (`6h`, `2d`).
    #[arg(long)]
    pub since: String,
    /// Republish the missing payouts to `paid_invoices`.
    #[arg(long)]
    pub repair: bool,
}

/// One discrepancy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Credited, no payout transfer.
    NotPaidOut {
        /// Invoice id.
        invoice: String,
    },
    /// The payout transfer failed or was canceled.
    PayoutFailed {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
    },
    /// More than one live payout transfer.
    PaidTwice {
        /// Invoice id.
        invoice: String,
        /// Transfer ids.
        transfers: Vec<String>,
    },
    /// Amount other than `amount - fee`.
    WrongAmount {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
        /// Expected cents.
        expected: i64,
        /// Paid cents.
        paid: i64,
    },
    /// Paid to another account than the configured receiver.
    WrongReceiver {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
    },
    /// A payout transfer for an invoice that Stark never credited.
    NotCredited {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NotPaidOut { invoice } => {
                write!(f, "invoice {invoice}: credited but not paid out")
            }
            Problem::PayoutFailed { invoice, transfer } => write!(
                f,
                "invoice {invoice}: payout transfer {transfer} failed; needs an operator"
            ),
            Problem::PaidTwice { invoice, transfers } => write!(
                f,
                "invoice {invoice}: paid out {} times ({})",
                transfers.len(),
                transfers.join(", ")
            ),
            Problem::WrongAmount {
                invoice,
                transfer,
                expected,
                paid,
            } => {
                write!(
                    f,
                    "invoice {invoice}: transfer {transfer} paid {paid} cents, expected {expected}"
                )
            }
            Problem::WrongReceiver { invoice, transfer } => write!(
                f,
                "invoice {invoice}: transfer {transfer} went to another account"
            ),
            Problem::NotCredited { invoice, transfer } => write!(
                f,
                "invoice {invoice}: transfer {transfer} but the invoice was never credited"
            ),
        }
    }
}

/// What reconcile found.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Credited invoices examined.
    pub credited: usize,
    /// Paid out exactly once, correctly.
    pub correct: usize,
    /// Everything else.
    pub problems: Vec<Problem>,
    /// The credited logs of invoices not paid out, for `--repair`.
    pub missing: Vec<InvoiceLog>,
}

/// Reads Stark's records and compares.
pub async fn examine(
    stark: &Client,
    receiver: &Receiver,
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
    for log in logs
        .into_iter()
        .filter(|l| l.log_type == InvoiceLogType::Credited)
    {
        credited.entry(log.invoice.id.clone()).or_insert(log);
    }
    let transfers = stark
        .query_transfers(&TransferQuery {
            after,
            ..Default::default()
        })
        .await?;
    let mut payouts: HashMap<String, Vec<Transfer>> = HashMap::new();
    for transfer in transfers {
        if let Some(invoice) = transfer
            .external_id
            .as_deref()
            .and_then(|k| k.strip_prefix("payout-"))
        {
            payouts
                .entry(invoice.to_owned())
                .or_default()
                .push(transfer);
        }
    }
    let mut findings = Findings {
        credited: credited.len(),
        ..Default::default()
    };
    for (invoice, log) in &credited {
        let expected = log.invoice.amount - log.invoice.fee;
        let all = payouts.remove(invoice).unwrap_or_default();
        if expected <= 0 {
            findings.correct += usize::from(all.is_empty());
            continue;
        }
        let (live, dead): (Vec<&Transfer>, Vec<&Transfer>) = all
            .iter()
            .partition(|t| !matches!(t.status, TransferStatus::Failed | TransferStatus::Canceled));
        match live.as_slice() {
            [] => match dead.first() {
                Some(failed) => findings.problems.push(Problem::PayoutFailed {
                    invoice: invoice.clone(),
                    transfer: failed.id.clone(),
                }),
                None => {
                    findings.problems.push(Problem::NotPaidOut {
                        invoice: invoice.clone(),
                    });
                    findings.missing.push(log.clone());
                }
            },
            [one] if one.amount != expected => findings.problems.push(Problem::WrongAmount {
                invoice: invoice.clone(),
                transfer: one.id.clone(),
                expected,
                paid: one.amount,
            }),
            [one] if !receiver.matches(one) => findings.problems.push(Problem::WrongReceiver {
                invoice: invoice.clone(),
                transfer: one.id.clone(),
            }),
            [_] => findings.correct += 1,
            many => findings.problems.push(Problem::PaidTwice {
                invoice: invoice.clone(),
                transfers: many.iter().map(|t| t.id.clone()).collect(),
            }),
        }
    }
    // Payouts whose credit is not in the window: credited before `since`, or never.
    for (invoice, transfers) in payouts {
        let earlier = stark
            .query_invoice_logs(&InvoiceLogQuery {
                types: vec![InvoiceLogType::Credited],
                invoice_ids: vec![invoice.clone()],
                ..Default::default()
            })
            .await?;
        if earlier.is_empty() {
            for transfer in transfers {
                findings.problems.push(Problem::NotCredited {
                    invoice: invoice.clone(),
                    transfer: transfer.id,
                });
            }
        }
    }
    Ok(findings)
}

/// Runs `reconcile`; `Ok(true)` when all was well.
pub async fn run(
    args: &ReconcileArgs,
    stark: &Client,
    publisher: Option<&dyn Publisher>,
    receiver: &Receiver,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let since = parse_since(&args.since, now)?;
    let findings = examine(stark, receiver, since).await?;
    for problem in &findings.problems {
        writeln!(out, "PROBLEM {problem}")?;
    }
    let mut repaired = 0;
    if args.repair && !findings.missing.is_empty() {
        let publisher = publisher
            .ok_or_else(|| anyhow::anyhow!("--repair needs Pub/Sub: set PUBSUB_PROJECT_ID"))?;
        for log in &findings.missing {
            let message = PaidInvoice::from_credited_log(log, &format!("reconcile-{}", log.id));
            let id = publisher
                .publish(PAID_INVOICES, message.to_message())
                .await?;
            writeln!(
                out,
                "REPAIR invoice {}: republished to {PAID_INVOICES} as message {id} ({} cents)",
                log.invoice.id,
                message.payout()
            )?;
            repaired += 1;
        }
    }
    writeln!(
        out,
        "summary: {} credited since {}, {} paid out correctly, {} problem(s){}",
        findings.credited,
        date_of(since),
        findings.correct,
        findings.problems.len(),
        if args.repair {
            format!(", {repaired} republished (run reconcile again to confirm)")
        } else {
            String::new()
        }
    )?;
    Ok(findings.problems.is_empty())
}
