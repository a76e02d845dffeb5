//! `reconcile`: compares what Stark credited with what we paid out, from Stark's own records,
//! so it finds what no log or dead-letter topic shows (a webhook Stark gave up on, a message
//! dropped by a bug). `--repair` drains the dead letters whose cause is gone
//! ([`super::dead_letters`]), republishes missing payouts to `paid_invoices` and, with the
//! campaign configured, unissued requests to `pending_invoices`, and cancels later duplicate
//! invoices still `created`. Every repair goes through the idempotent consumers, so a repair
//! (or two running at once, or one racing a redelivery) can never issue or pay twice. The
//! scheduled reconciler job runs exactly this.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use invoice_spammer::SpammerConfig;
use pipeline_domain::audit::{Audit, AuditInput, Finding, InvoiceRecord, TransferRecord, audit};
use pipeline_domain::messages::{
    PAID_INVOICES, PENDING_INVOICES, PendingInvoice, TopicMessage as _,
};
use pipeline_domain::receiver::Receiver;
use pipeline_domain::vocab::CampaignTag;
use pipeline_service::publisher::Publisher;
use pipeline_service::records::{invoice_record, paid_invoice, transfer_record};
use serde::Serialize;
use stark_client::{
    Client, Invoice, InvoiceLog, InvoiceLogQuery, InvoiceLogType, InvoiceQuery, InvoiceStatus,
    TransferQuery,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::dead_letters::{self, Credits, DeadLetterSource, Drained, Republished};
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
    /// The campaign (`CAMPAIGN_*` in the environment, when set): its requests of past slots are
    /// checked too, and a repair republishes the unissued ones and cancels later duplicates
    /// still `created`.
    #[arg(skip)]
    pub campaign: Option<SpammerConfig>,
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
    /// Requests republished to `pending_invoices` by `--repair`.
    reissued: Vec<ReissueJson>,
    /// Later duplicate invoices canceled by `--repair`.
    canceled: Vec<String>,
    /// What `--repair` did with each dead letter (`resolved`, `republished` or `kept`).
    dead_letters: Vec<Drained>,
    summary: SummaryJson,
}

/// One invoice request republished by `--repair`.
#[derive(Debug, Serialize)]
struct ReissueJson {
    request_id: String,
    message_id: String,
}

/// One payout republished by `--repair`.
#[derive(Debug, Clone, Serialize)]
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

/// What reconcile found: the one audit over Stark's records, and what a repair acts on.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// The audit.
    pub audit: Audit,
    /// The credited logs of the invoices with nothing paid and nothing in flight.
    pub missing: Vec<InvoiceLog>,
    /// The campaign's requests of past slots without an invoice (republished by a repair).
    pub unissued: Vec<PendingInvoice>,
    /// Later invoices of a request that has two, still `created` (canceled by a repair; a
    /// paid duplicate stays reported for an operator).
    pub cancelable: Vec<String>,
    /// Every invoice Stark shows credited to us among those read.
    pub credited: BTreeSet<String>,
    /// Of those, the ones with nothing paid and nothing in flight.
    pub unpaid: BTreeSet<String>,
}

/// The campaign whose invoice requests reconcile also checks: the spammer's batches are a pure
/// function of its configuration, so every request of a slot that began before `until` must
/// have exactly one invoice.
#[derive(Debug, Clone, Copy)]
pub struct CampaignCheck<'a> {
    /// The spammer's configuration (`CAMPAIGN_*`).
    pub config: &'a SpammerConfig,
    /// Slots that began before this are checked.
    pub until: OffsetDateTime,
}

/// Reads Stark's records of invoices credited since `since` and of their payouts, and audits
/// them. Stark filters lists by date, so this asks from the start of `since`'s UTC day and keeps
/// only the credits at or after `since` itself.
pub async fn examine(
    stark: &Client,
    receiver: &Receiver,
    transfer_fee: i64,
    since: OffsetDateTime,
    campaign: Option<CampaignCheck<'_>>,
) -> anyhow::Result<Findings> {
    let after = Some(date_of(since));
    // A day's credits can be hundreds of thousands: they are read a page at a time and kept
    // as the audit's records; the whole log is read again below only for the few unpaid.
    let mut credited: BTreeMap<String, InvoiceRecord> = BTreeMap::new();
    stark
        .each_invoice_log(&credited_query(after.clone(), Vec::new()), |logs| {
            for log in logs.into_iter().filter(|l| is_credit_since(l, since)) {
                credited
                    .entry(log.invoice.id.clone())
                    .or_insert_with(|| credit_record(&log));
            }
        })
        .await?;
    // Read after the credits: a payout made meanwhile is then seen with its credit (or as
    // one credited before the window, below), never a credit without its payout.
    // A day's transfers are as many as its credits: kept only as the audit's records too.
    let mut transfers: Vec<TransferRecord> = Vec::new();
    stark
        .each_transfer(
            &TransferQuery {
                after: after.clone(),
                ..Default::default()
            },
            |page| transfers.extend(page.iter().map(transfer_record).filter(|t| t.key.is_some())),
        )
        .await?;
    // Payouts whose invoice was credited before the window (or never): read those credits too,
    // so that an early credit is not mistaken for none.
    let outside: BTreeSet<String> = transfers
        .iter()
        .filter_map(|t| t.key.as_ref().map(|k| k.invoice_id().to_owned()))
        .filter(|id| !credited.contains_key(id))
        .collect();
    let outside: Vec<String> = outside.into_iter().collect();
    let earlier: BTreeMap<String, InvoiceRecord> = first_credits(stark, None, &outside, None)
        .await?
        .into_iter()
        .map(|(id, log)| (id, credit_record(&log)))
        .collect();
    let credited_amount = |id: &str| {
        credited
            .get(id)
            .or_else(|| earlier.get(id))
            .and_then(|record| record.credited_amount)
    };
    // The campaign's invoices as Stark shows them now (every one, credited or not), and its
    // requests of past slots.
    let mut invoices: Vec<InvoiceRecord> = Vec::new();
    let mut issued: Vec<Issued> = Vec::new();
    let requests: Vec<PendingInvoice> = match campaign {
        None => Vec::new(),
        Some(check) => {
            let config = check.config;
            stark
                .each_invoice(
                    &InvoiceQuery {
                        tags: vec![CampaignTag::for_campaign(&config.campaign).to_string()],
                        ..Default::default()
                    },
                    |page| {
                        for invoice in page {
                            invoices.push(invoice_record(&invoice, credited_amount(&invoice.id)));
                            issued.push(Issued::of(invoice));
                        }
                    },
                )
                .await?;
            (0..config.hours)
                .filter(|slot| {
                    config.start + time::Duration::hours(i64::from(*slot)) <= check.until
                })
                .flat_map(|slot| invoice_spammer::batch(config, slot))
                .collect()
        }
    };
    let listed: BTreeSet<&str> = issued.iter().map(|i| i.id.as_str()).collect();
    invoices.extend(
        credited
            .values()
            .chain(earlier.values())
            .filter(|record| !listed.contains(record.id.as_str()))
            .cloned(),
    );
    let requested: Option<Vec<String>> =
        campaign.map(|_| requests.iter().map(|r| r.request_id.clone()).collect());
    let audit = audit(AuditInput {
        requested: requested.as_deref(),
        invoices: &invoices,
        transfers: &transfers,
        receiver,
        transfer_fee,
    });
    let unpaid: BTreeSet<String> = audit.unpaid_invoices().map(str::to_owned).collect();
    let unpaid_credits: Vec<String> = unpaid
        .iter()
        .filter(|id| credited.contains_key(*id))
        .cloned()
        .collect();
    let missing = first_credits(stark, after, &unpaid_credits, Some(since))
        .await?
        .into_values()
        .collect();
    let credited_ids = credited.keys().chain(earlier.keys()).cloned().collect();
    let unissued_ids: BTreeSet<&str> = audit.unissued_requests().collect();
    let unissued = requests
        .into_iter()
        .filter(|r| unissued_ids.contains(r.request_tag().request_id()))
        .collect();
    let cancelable = later_duplicates(&audit, &issued);
    Ok(Findings {
        audit,
        missing,
        unissued,
        cancelable,
        credited: credited_ids,
        unpaid,
    })
}

/// Stark's `credited` logs since the start of day `after`.
fn credited_query(after: Option<String>, invoice_ids: Vec<String>) -> InvoiceLogQuery {
    InvoiceLogQuery {
        after,
        types: vec![InvoiceLogType::Credited],
        invoice_ids,
        ..Default::default()
    }
}

/// A `credited` log at or after `since` (Stark's date filter keeps the whole first day).
fn is_credit_since(log: &InvoiceLog, since: OffsetDateTime) -> bool {
    log.log_type == InvoiceLogType::Credited
        && OffsetDateTime::parse(&log.created, &Rfc3339).is_ok_and(|at| at >= since)
}

/// The first `credited` log of each invoice of `ids` (at or after `since`, when given), asked
/// 100 invoices at a time, the most a query takes.
async fn first_credits(
    stark: &Client,
    after: Option<String>,
    ids: &[String],
    since: Option<OffsetDateTime>,
) -> anyhow::Result<BTreeMap<String, InvoiceLog>> {
    let mut first: BTreeMap<String, InvoiceLog> = BTreeMap::new();
    for chunk in ids.chunks(100) {
        let logs = stark
            .query_invoice_logs(&credited_query(after.clone(), chunk.to_vec()))
            .await?;
        for log in logs.into_iter().filter(|l| match since {
            Some(since) => is_credit_since(l, since),
            None => l.log_type == InvoiceLogType::Credited,
        }) {
            first.entry(log.invoice.id.clone()).or_insert(log);
        }
    }
    Ok(first)
}

/// The audit's view of the invoice a `credited` log shows, credited for the amount it shows.
fn credit_record(log: &InvoiceLog) -> InvoiceRecord {
    invoice_record(&log.invoice, Some(log.invoice.amount))
}

/// What [`later_duplicates`] needs of each invoice listed.
struct Issued {
    id: String,
    created: String,
    still_created: bool,
}

impl Issued {
    fn of(invoice: Invoice) -> Issued {
        Issued {
            still_created: invoice.status == InvoiceStatus::Created,
            id: invoice.id,
            created: invoice.created.to_string(),
        }
    }
}

/// For each request with several live invoices, the ones after the first created that are still
/// `created` (nobody paid them yet, so cancelling them loses nothing).
fn later_duplicates(audit: &Audit, issued: &[Issued]) -> Vec<String> {
    let by_id: BTreeMap<&str, &Issued> = issued.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut cancelable = Vec::new();
    for finding in &audit.findings {
        let Finding::DuplicateInvoice { invoices, .. } = finding else {
            continue;
        };
        let mut found: Vec<&Issued> = invoices
            .iter()
            .filter_map(|id| by_id.get(id.as_str()).copied())
            .collect();
        found.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        cancelable.extend(
            found
                .iter()
                .skip(1)
                .filter(|i| i.still_created)
                .map(|i| i.id.clone()),
        );
    }
    cancelable
}

/// Where reconcile publishes and finds dead letters: `None` without Pub/Sub (a repair then
/// refuses to start).
#[derive(Debug, Clone, Copy)]
pub struct RepairBus<'a> {
    /// Publishes the repairs.
    pub publisher: &'a dyn Publisher,
    /// The dead letters a repair drains.
    pub dead_letters: &'a dyn DeadLetterSource,
}

/// What one reconcile run found and did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The start of the window.
    pub since: OffsetDateTime,
    /// What the audit found.
    pub findings: Findings,
    /// Payouts republished to `paid_invoices`.
    repaired: Vec<RepairJson>,
    /// Requests republished to `pending_invoices`: (request id, message id).
    reissued: Vec<(String, String)>,
    /// Later duplicates canceled.
    pub canceled: Vec<String>,
    /// What happened to each dead letter.
    pub drained: Vec<Drained>,
}

impl Outcome {
    /// Problems the audit found.
    pub fn problems(&self) -> usize {
        self.findings.audit.problems().count()
    }

    /// Dead letters left for an operator.
    pub fn kept(&self) -> usize {
        self.letters(None, |action| action == "kept")
    }

    /// Dead letters of `topic` (of both topics with `None`) that no longer wait: republished,
    /// or resolved and acked.
    pub fn letters_drained(&self, topic: Option<&str>) -> usize {
        self.letters(topic, |action| action != "kept")
    }

    /// Payouts republished (dead letters included).
    pub fn payouts_republished(&self) -> usize {
        self.repaired.len() + self.republished_letters(PAID_INVOICES)
    }

    /// Requests republished (dead letters included).
    pub fn requests_republished(&self) -> usize {
        self.reissued.len() + self.republished_letters(PENDING_INVOICES)
    }

    fn republished_letters(&self, topic: &str) -> usize {
        self.letters(Some(topic), |action| action == "republished")
    }

    /// Drained letters of `topic` (any topic with `None`) whose action passes `action`.
    fn letters(&self, topic: Option<&str>, action: impl Fn(&str) -> bool) -> usize {
        self.drained
            .iter()
            .filter(|d| topic.is_none_or(|t| d.topic == t) && action(d.action))
            .count()
    }

    /// Whether all was well: no problem found, no dead letter kept.
    pub fn ok(&self) -> bool {
        self.problems() == 0 && self.kept() == 0
    }
}

/// Runs `reconcile` and prints its outcome; `Ok(true)` when all was well.
pub async fn run(
    args: &ReconcileArgs,
    stark: &Client,
    bus: Option<RepairBus<'_>>,
    receiver: &Receiver,
    transfer_fee: i64,
    now: OffsetDateTime,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let outcome = reconcile(args, stark, bus, receiver, transfer_fee, now).await?;
    render(args, &outcome, out)?;
    Ok(outcome.ok())
}

/// One reconcile run (with `args.repair`, the repair too), without printing: what the
/// scheduled reconciler of the local stack runs. Logs one `reconcile_summary` line.
pub async fn reconcile(
    args: &ReconcileArgs,
    stark: &Client,
    bus: Option<RepairBus<'_>>,
    receiver: &Receiver,
    transfer_fee: i64,
    now: OffsetDateTime,
) -> anyhow::Result<Outcome> {
    let since = parse_since(&args.since, now)?;
    // Credited moments ago, or a slot that just began: the pipeline is probably still at it;
    // a repair would only add a redundant (harmless) message.
    let settled_before = now - args.grace;
    let campaign = args.campaign.as_ref().map(|config| CampaignCheck {
        config,
        until: settled_before,
    });
    let findings = examine(stark, receiver, transfer_fee, since, campaign).await?;
    let bus = match (args.repair, bus) {
        (false, _) => None,
        (true, Some(bus)) => Some(bus),
        (true, None) => {
            return Err(UsageError("--repair needs Pub/Sub: set PUBSUB_PROJECT_ID".into()).into());
        }
    };
    // Dead letters first: what they republish is not published again below.
    let (drained, republished) = match bus {
        None => (Vec::new(), Republished::default()),
        Some(bus) => {
            let credits = Credits {
                credited: &findings.credited,
                unpaid: &findings.unpaid,
            };
            dead_letters::drain(bus.dead_letters, bus.publisher, stark, credits).await?
        }
    };
    let mut repaired = Vec::new();
    let due_for_repair: Vec<&InvoiceLog> = findings
        .missing
        .iter()
        .filter(|log| {
            OffsetDateTime::parse(&log.created, &Rfc3339).is_ok_and(|at| at <= settled_before)
        })
        .filter(|log| !republished.invoices.contains(&log.invoice.id))
        .collect();
    if let Some(RepairBus { publisher, .. }) = bus {
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
    let mut reissued = Vec::new();
    let mut canceled = Vec::new();
    if let Some(RepairBus { publisher, .. }) = bus {
        // invoice-sender looks each request's tag up before creating: never a second one.
        for request in findings
            .unissued
            .iter()
            .filter(|r| !republished.requests.contains(&r.request_id))
        {
            let message_id = publisher
                .publish(PENDING_INVOICES, request.to_message())
                .await?;
            reissued.push((request.request_id.clone(), message_id));
        }
        for id in &findings.cancelable {
            // Another reconciler may have canceled it, or a payer paid it meanwhile: Stark
            // refuses, and the next run's audit shows what stands.
            match stark.cancel_invoice(id).await {
                Ok(_) => canceled.push(id.clone()),
                Err(err) => tracing::warn!(
                    event = "duplicate_cancel_failed",
                    invoice_id = %id,
                    error = %err,
                    "could not cancel a later duplicate; the next run looks again"
                ),
            }
        }
    }
    let outcome = Outcome {
        since,
        findings,
        repaired,
        reissued,
        canceled,
        drained,
    };
    let summary = outcome.findings.audit.summary;
    // One line per run, for a log-based metric and an alert on repeated problems.
    tracing::info!(
        event = "reconcile_summary",
        since = %instant(since),
        credited = summary.credited,
        paid_out = summary.paid_out,
        in_flight = summary.in_flight,
        nothing_due = summary.nothing_due,
        problems = outcome.problems(),
        repaired = outcome.repaired.len(),
        reissued = outcome.reissued.len(),
        canceled = outcome.canceled.len(),
        dead_letters_drained = outcome.letters_drained(None),
        dead_letters_kept = outcome.kept(),
        repair = args.repair,
        "reconcile finished"
    );
    Ok(outcome)
}

/// Prints `outcome` as `args.output` says.
fn render(args: &ReconcileArgs, outcome: &Outcome, out: &mut dyn Write) -> anyhow::Result<()> {
    let Outcome {
        since,
        findings,
        repaired,
        reissued,
        canceled,
        drained,
    } = outcome;
    let since = *since;
    let summary = findings.audit.summary;
    let problems = outcome.problems();
    match args.output.format {
        Format::Json => write_json(
            out,
            &ReconcileJson {
                since: instant(since),
                ok: outcome.ok(),
                findings: findings.audit.findings.iter().map(Into::into).collect(),
                summary: SummaryJson {
                    credited: summary.credited,
                    paid_out: summary.paid_out,
                    in_flight: summary.in_flight,
                    nothing_due: summary.nothing_due,
                    problems,
                    repaired: repaired.len(),
                },
                repaired: repaired.clone(),
                reissued: reissued
                    .iter()
                    .map(|(request_id, message_id)| ReissueJson {
                        request_id: request_id.clone(),
                        message_id: message_id.clone(),
                    })
                    .collect(),
                canceled: canceled.clone(),
                dead_letters: drained.clone(),
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
            for repair in repaired {
                writeln!(
                    out,
                    "REPAIR invoice {}: republished to {PAID_INVOICES} as message {} ({} cents)",
                    repair.invoice_id, repair.message_id, repair.amount
                )?;
            }
            for (request, message_id) in reissued {
                writeln!(
                    out,
                    "REPAIR request {request}: republished to {PENDING_INVOICES} as message {message_id}"
                )?;
            }
            for id in canceled {
                writeln!(
                    out,
                    "REPAIR invoice {id}: canceled, a later duplicate still created"
                )?;
            }
            for letter in drained {
                let level = if letter.action == "kept" {
                    "KEPT"
                } else {
                    "DRAINED"
                };
                writeln!(
                    out,
                    "{level} dead letter {} of {}: {} ({})",
                    letter.message_id, letter.topic, letter.action, letter.reason
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
                        outcome.payouts_republished() + outcome.requests_republished()
                    )
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(())
}
