//! What the local stack shows: progress, the per-hour table, and the exactly-once checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use pipeline_domain::audit::{
    Audit, AuditInput, Finding, InvoiceRecord, Rule, TransferRecord, audit,
};
use pipeline_domain::format_brl;
use pipeline_domain::receiver::Receiver;
use pipeline_service::records::{invoice_record, transfer_record};
use stark_client::{InvoiceLogType, TransferStatus};
use stark_sandbox::SandboxState;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Counters shown while the campaign runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Invoices created at Stark.
    pub issued: usize,
    /// Invoices with a `paid` log.
    pub paid: usize,
    /// Invoices with a `credited` log.
    pub credited: usize,
    /// Transfers created.
    pub transfers: usize,
    /// Transfers that reached `success`.
    pub transfers_done: usize,
}

impl Progress {
    /// Counts from a sandbox snapshot.
    pub fn of(state: &SandboxState) -> Self {
        Progress {
            issued: state.invoices.len(),
            paid: invoices_with_log(state, InvoiceLogType::Paid).len(),
            credited: invoices_with_log(state, InvoiceLogType::Credited).len(),
            transfers: state.transfers.len(),
            transfers_done: state
                .transfers
                .iter()
                .filter(|t| t.status == TransferStatus::Success)
                .count(),
        }
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invoices issued {} · paid {} · credited {} · transfers {} ({} settled)",
            self.issued, self.paid, self.credited, self.transfers, self.transfers_done
        )
    }
}

fn invoices_with_log(state: &SandboxState, log_type: InvoiceLogType) -> HashSet<&str> {
    state
        .invoice_logs
        .iter()
        .filter(|l| l.log_type == log_type)
        .map(|l| l.invoice.id.as_str())
        .collect()
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// The audit's records of a sandbox snapshot: every invoice with the amount its `credited` log
/// shows (if any), and every transfer.
pub fn records(state: &SandboxState) -> (Vec<InvoiceRecord>, Vec<TransferRecord>) {
    let mut credited: HashMap<&str, i64> = HashMap::new();
    for log in state
        .invoice_logs
        .iter()
        .filter(|l| l.log_type == InvoiceLogType::Credited)
    {
        credited
            .entry(log.invoice.id.as_str())
            .or_insert(log.invoice.amount);
    }
    let invoices = state
        .invoices
        .iter()
        .map(|i| invoice_record(i, credited.get(i.id.as_str()).copied()))
        .collect();
    let transfers = state.transfers.iter().map(transfer_record).collect();
    (invoices, transfers)
}

/// The one audit over a sandbox snapshot.
pub fn audit_state(
    state: &SandboxState,
    requested: Option<&[String]>,
    receiver: &Receiver,
) -> Audit {
    let (invoices, transfers) = records(state);
    audit(AuditInput {
        requested,
        invoices: &invoices,
        transfers: &transfers,
        receiver,
    })
}

/// True when nothing more will happen: every expected invoice exists, each one either was
/// credited and its payout settled, or is older than `lifecycle` (it will not be paid), and
/// every payout that exists has settled.
pub fn settled(state: &SandboxState, expected: usize, lifecycle: Duration) -> bool {
    let audit = audit_state(state, None, &Receiver::default());
    let transfers_done = state.transfers.iter().all(|t| {
        matches!(
            t.status,
            TransferStatus::Success | TransferStatus::Failed | TransferStatus::Canceled
        )
    });
    state.invoices.len() >= expected
        && settled_invoices(state, lifecycle)
        && audit.unpaid_invoices().next().is_none()
        && transfers_done
}

/// True when every invoice is either credited or older than `lifecycle` (it will not be paid).
pub fn settled_invoices(state: &SandboxState, lifecycle: Duration) -> bool {
    let Some(now) = parse_time(&state.now) else {
        return false;
    };
    let credited = invoices_with_log(state, InvoiceLogType::Credited);
    state.invoices.iter().all(|invoice| {
        credited.contains(invoice.id.as_str())
            || parse_time(&invoice.created).is_some_and(|created| now - created > lifecycle)
    })
}

/// For each credited invoice still without a payout, what became of its `credited` event: every
/// webhook POST the sandbox made for it and how it ended. Tells a lost webhook (Stark gave up
/// delivering) from a message lost after the ingester accepted it (delivered, no transfer).
pub fn missing_payouts(state: &SandboxState) -> Vec<String> {
    let audit = audit_state(state, None, &Receiver::default());
    let unpaid: HashSet<&str> = audit.unpaid_invoices().collect();
    state
        .invoices
        .iter()
        .filter(|i| unpaid.contains(i.id.as_str()))
        .map(|invoice| {
            let events: Vec<String> = state
                .events
                .iter()
                .filter(|e| {
                    e.invoice_log().is_some_and(|l| {
                        l.invoice.id == invoice.id && l.log_type == InvoiceLogType::Credited
                    })
                })
                .map(|event| {
                    let tries: Vec<String> = state
                        .deliveries
                        .iter()
                        .filter(|d| d.event_id == event.id)
                        .map(|d| format!("try {} at {}: {:?}", d.try_number, d.at, d.outcome))
                        .collect();
                    format!(
                        "event {} created {} delivered={:?} [{}]",
                        event.id,
                        event.created,
                        event.is_delivered,
                        tries.join("; ")
                    )
                })
                .collect();
            format!(
                "invoice {} ({}): {}",
                invoice.id,
                invoice.created,
                if events.is_empty() {
                    "no credited event".to_owned()
                } else {
                    events.join(", ")
                }
            )
        })
        .collect()
}

/// One line of the per-hour table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourRow {
    /// Campaign slot.
    pub slot: u32,
    /// Invoices issued.
    pub issued: usize,
    /// Their nominal amounts, cents.
    pub issued_cents: i64,
    /// Invoices credited.
    pub credited: usize,
    /// Credited amounts, cents.
    pub credited_cents: i64,
    /// Stark fees on them, cents.
    pub fees_cents: i64,
    /// Payout transfers.
    pub transferred: usize,
    /// Payout amounts, cents.
    pub transferred_cents: i64,
}

/// One verified property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What is checked.
    pub name: &'static str,
    /// Whether it holds.
    pub ok: bool,
    /// The evidence, or what is wrong.
    pub detail: String,
}

/// The end-of-campaign report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per-hour rows.
    pub rows: Vec<HourRow>,
    /// The checks: one per audit rule, then the dead letters.
    pub checks: Vec<Check>,
    /// The audit the checks come from.
    pub audit: Audit,
}

impl Report {
    /// Whether every check holds.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Builds the table and runs the audit over `state`; `requested` are the request ids the
    /// campaign published.
    pub fn build(
        state: &SandboxState,
        requested: &[String],
        receiver: &Receiver,
        dead_letters: Vec<(String, usize)>,
    ) -> Self {
        let (invoices, transfers) = records(state);
        let audit = audit(AuditInput {
            requested: Some(requested),
            invoices: &invoices,
            transfers: &transfers,
            receiver,
        });
        let mut payouts: HashMap<&str, Vec<&TransferRecord>> = HashMap::new();
        for transfer in transfers.iter().filter(|t| t.state.is_live()) {
            if let Some(key) = &transfer.key {
                payouts.entry(key.invoice_id()).or_default().push(transfer);
            }
        }
        let mut rows: BTreeMap<u32, HourRow> = BTreeMap::new();
        for invoice in &invoices {
            let slot = invoice.slot.unwrap_or(u32::MAX);
            let row = rows.entry(slot).or_insert_with(|| HourRow {
                slot,
                ..Default::default()
            });
            row.issued += 1;
            row.issued_cents += invoice.nominal_amount;
            if invoice.credited_amount.is_some() {
                row.credited += 1;
                row.credited_cents += invoice.amount;
                row.fees_cents += invoice.fee;
            }
            for transfer in payouts.get(invoice.id.as_str()).into_iter().flatten() {
                row.transferred += 1;
                row.transferred_cents += transfer.amount;
            }
        }

        let summary = audit.summary;
        let mut checks: Vec<Check> = Rule::ALL
            .into_iter()
            .map(|rule| {
                let problems: Vec<String> =
                    audit.problems_of(rule).map(Finding::to_string).collect();
                let evidence = match rule {
                    Rule::OneInvoicePerRequest => {
                        format!("{} requests, one invoice each", summary.requests)
                    }
                    Rule::EveryRequestIssued => format!(
                        "{} of {} requests have an invoice",
                        summary.requests - audit.unissued_requests().count(),
                        summary.requests
                    ),
                    Rule::PaidOutExactlyOnce => format!(
                        "{} credited, {} paid out, {} in flight, {} with nothing due",
                        summary.credited, summary.paid_out, summary.in_flight, summary.nothing_due
                    ),
                    Rule::NoPayoutWithoutCredit => format!(
                        "{} transfers ({} failed)",
                        summary.transfers, summary.failed_transfers
                    ),
                };
                Check {
                    name: rule.title(),
                    ok: problems.is_empty(),
                    detail: if problems.is_empty() {
                        evidence
                    } else {
                        problems.join("; ")
                    },
                }
            })
            .collect();
        let parked: Vec<String> = dead_letters
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        checks.push(Check {
            name: "dead-letter subscriptions are empty",
            ok: parked.is_empty(),
            detail: if parked.is_empty() {
                format!("{} checked", dead_letters.len())
            } else {
                parked.join(", ")
            },
        });
        Report {
            rows: rows.into_values().collect(),
            checks,
            audit,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>4} {:>7} {:>16} {:>9} {:>16} {:>11} {:>12} {:>16}",
            "hour",
            "issued",
            "issued",
            "credited",
            "credited",
            "fees",
            "transferred",
            "transferred"
        )?;
        let mut total = HourRow::default();
        for row in &self.rows {
            write_row(f, &row.slot.to_string(), row)?;
            total.issued += row.issued;
            total.issued_cents += row.issued_cents;
            total.credited += row.credited;
            total.credited_cents += row.credited_cents;
            total.fees_cents += row.fees_cents;
            total.transferred += row.transferred;
            total.transferred_cents += row.transferred_cents;
        }
        write_row(f, "all", &total)?;
        writeln!(f)?;
        for check in &self.checks {
            writeln!(
                f,
                "{} {}: {}",
                if check.ok { "PASS" } else { "FAIL" },
                check.name,
                check.detail
            )?;
        }
        Ok(())
    }
}

fn write_row(f: &mut fmt::Formatter<'_>, label: &str, row: &HourRow) -> fmt::Result {
    writeln!(
        f,
        "{:>4} {:>7} {:>16} {:>9} {:>16} {:>11} {:>12} {:>16}",
        label,
        row.issued,
        format_brl(row.issued_cents),
        row.credited,
        format_brl(row.credited_cents),
        format_brl(row.fees_cents),
        row.transferred,
        format_brl(row.transferred_cents)
    )
}
