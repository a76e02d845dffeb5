//! What the local stack shows: progress, the per-hour table, and the exactly-once checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use money_sender::Receiver;
use pipeline_common::format_brl;
use stark_client::{Invoice, InvoiceLogType, Transfer, TransferStatus};
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

/// True when nothing more will happen: every expected invoice exists, each one either was
/// credited and its payout settled, or is older than `lifecycle` (it will not be paid), and
/// every payout that exists has settled.
pub fn settled(state: &SandboxState, expected: usize, lifecycle: Duration) -> bool {
    let payouts_made = unpaid_credited(state).is_empty();
    let transfers_done = state.transfers.iter().all(|t| {
        matches!(
            t.status,
            TransferStatus::Success | TransferStatus::Failed | TransferStatus::Canceled
        )
    });
    state.invoices.len() >= expected
        && settled_invoices(state, lifecycle)
        && payouts_made
        && transfers_done
}

/// Credited invoices with something to pay out (amount above the fee) and no payout transfer.
fn unpaid_credited(state: &SandboxState) -> Vec<&Invoice> {
    let credited = invoices_with_log(state, InvoiceLogType::Credited);
    let payouts: HashSet<&str> = state
        .transfers
        .iter()
        .filter_map(|t| t.external_id.as_deref())
        .collect();
    state
        .invoices
        .iter()
        .filter(|i| credited.contains(i.id.as_str()) && i.amount - i.fee > 0)
        .filter(|i| !payouts.contains(pipeline_common::messages::payout_key(&i.id).as_str()))
        .collect()
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
    unpaid_credited(state)
        .into_iter()
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
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check holds.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Builds the table and runs the checks.
    pub fn build(
        state: &SandboxState,
        expected: usize,
        receiver: &Receiver,
        dead_letters: Vec<(String, usize)>,
    ) -> Self {
        let credited = invoices_with_log(state, InvoiceLogType::Credited);
        let mut payouts: HashMap<&str, Vec<&Transfer>> = HashMap::new();
        for transfer in &state.transfers {
            payouts
                .entry(transfer.external_id.as_deref().unwrap_or(""))
                .or_default()
                .push(transfer);
        }
        let mut rows: BTreeMap<u32, HourRow> = BTreeMap::new();
        for invoice in &state.invoices {
            let slot = tag_value(invoice, "slot:")
                .and_then(|s| s.parse().ok())
                .unwrap_or(u32::MAX);
            let row = rows.entry(slot).or_insert_with(|| HourRow {
                slot,
                ..Default::default()
            });
            row.issued += 1;
            row.issued_cents += invoice.nominal_amount;
            if credited.contains(invoice.id.as_str()) {
                row.credited += 1;
                row.credited_cents += invoice.amount;
                row.fees_cents += invoice.fee;
            }
            for transfer in payouts
                .get(pipeline_common::messages::payout_key(&invoice.id).as_str())
                .into_iter()
                .flatten()
            {
                row.transferred += 1;
                row.transferred_cents += transfer.amount;
            }
        }

        let mut checks = Vec::new();
        // 1. Every request made exactly one invoice.
        let mut by_request: HashMap<&str, usize> = HashMap::new();
        for invoice in &state.invoices {
            *by_request
                .entry(tag_value(invoice, "request:").unwrap_or("<no request tag>"))
                .or_default() += 1;
        }
        let duplicates: Vec<String> = by_request
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(r, n)| format!("{r} ×{n}"))
            .collect();
        checks.push(Check {
            name: "no duplicate invoice",
            ok: duplicates.is_empty(),
            detail: if duplicates.is_empty() {
                format!("{} requests, one invoice each", by_request.len())
            } else {
                format!("duplicated requests: {}", duplicates.join(", "))
            },
        });
        checks.push(Check {
            name: "every requested invoice was issued",
            ok: by_request.len() == expected,
            detail: format!(
                "{} of {expected} requests have an invoice",
                by_request.len()
            ),
        });
        // 2. Every credited invoice paid out exactly once, amount - fee, to the receiver.
        let mut problems = Vec::new();
        let mut paid_out = 0;
        for invoice in state
            .invoices
            .iter()
            .filter(|i| credited.contains(i.id.as_str()))
        {
            let due = invoice.amount - invoice.fee;
            let found = payouts
                .get(pipeline_common::messages::payout_key(&invoice.id).as_str())
                .cloned()
                .unwrap_or_default();
            match (due > 0, found.as_slice()) {
                (false, []) => {}
                (false, _) => problems.push(format!(
                    "invoice {}: amount ≤ fee but {} transfer(s)",
                    invoice.id,
                    found.len()
                )),
                (true, []) => {
                    problems.push(format!("invoice {}: credited but not paid out", invoice.id))
                }
                (true, [one]) => {
                    if one.amount != due {
                        problems.push(format!(
                            "invoice {}: paid {} instead of {due}",
                            invoice.id, one.amount
                        ));
                    } else if !receiver.matches(one) {
                        problems.push(format!("invoice {}: paid to another account", invoice.id));
                    } else if one.status != TransferStatus::Success {
                        problems.push(format!(
                            "invoice {}: transfer {} is {}",
                            invoice.id,
                            one.id,
                            one.status.as_str()
                        ));
                    } else {
                        paid_out += 1;
                    }
                }
                (true, many) => problems.push(format!(
                    "invoice {}: paid out {} times",
                    invoice.id,
                    many.len()
                )),
            }
        }
        checks.push(Check {
            name: "every credited invoice paid out exactly once (amount − fee, configured account)",
            ok: problems.is_empty(),
            detail: if problems.is_empty() {
                format!("{} credited, {paid_out} paid out", credited.len())
            } else {
                problems.join("; ")
            },
        });
        // 3. No transfer that does not belong to a credited invoice.
        let strays: Vec<&str> = state
            .transfers
            .iter()
            .filter(|t| {
                t.external_id
                    .as_deref()
                    .and_then(|k| k.strip_prefix("payout-"))
                    .is_none_or(|id| !credited.contains(id))
            })
            .map(|t| t.id.as_str())
            .collect();
        checks.push(Check {
            name: "no transfer without a credited invoice",
            ok: strays.is_empty(),
            detail: if strays.is_empty() {
                format!("{} transfers", state.transfers.len())
            } else {
                format!("stray transfers: {}", strays.join(", "))
            },
        });
        // 4. Nothing parked in a dead-letter subscription.
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
        }
    }
}

fn tag_value<'a>(invoice: &'a Invoice, prefix: &str) -> Option<&'a str> {
    invoice.tags.iter().find_map(|t| t.strip_prefix(prefix))
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
