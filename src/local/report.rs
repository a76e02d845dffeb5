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

use super::reconciler::ReconcilerStats;
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

impl From<stark_sandbox::Counters> for Progress {
    /// From the sandbox's counters of our workspace (cheap, unlike a snapshot).
    fn from(c: stark_sandbox::Counters) -> Self {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Progress {
            issued: count(c.invoices_issued),
            paid: count(c.invoices_paid),
            credited: count(c.invoices_credited),
            transfers: count(c.transfers_created),
            transfers_done: count(c.transfers_settled),
        }
    }
}

/// Our workspace's invoices (the sandbox also holds a foreign workspace's, which attacks us).
fn ours(state: &SandboxState) -> impl Iterator<Item = &stark_client::Invoice> {
    state.invoices_in(&state.workspace_id)
}

/// Our workspace's transfers.
fn our_transfers(state: &SandboxState) -> impl Iterator<Item = &stark_client::Transfer> {
    state.transfers_in(&state.workspace_id)
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

/// Our invoices with a log of `log_type`.
fn invoices_with_log(state: &SandboxState, log_type: InvoiceLogType) -> HashSet<&str> {
    state
        .invoice_logs
        .iter()
        .filter(|l| l.log_type == log_type)
        .filter(|l| state.invoice_workspace(&l.invoice.id) == Some(state.workspace_id.as_str()))
        .map(|l| l.invoice.id.as_str())
        .collect()
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// The audit's records of our workspace in a sandbox snapshot: every invoice with the amount
/// its `credited` log shows (if any), and every transfer.
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
    let invoices = ours(state)
        .map(|i| invoice_record(i, credited.get(i.id.as_str()).copied()))
        .collect();
    let transfers = our_transfers(state).map(transfer_record).collect();
    (invoices, transfers)
}

/// The one audit over a sandbox snapshot.
pub fn audit_state(
    state: &SandboxState,
    requested: Option<&[String]>,
    receiver: &Receiver,
    transfer_fee: i64,
) -> Audit {
    let (invoices, transfers) = records(state);
    audit(AuditInput {
        requested,
        invoices: &invoices,
        transfers: &transfers,
        receiver,
        transfer_fee,
    })
}

/// Money our workspace lost to reversals: what Stark took back from the balance beyond what the
/// invoice still leaves there. Per credited invoice, the balance keeps today's `amount − fee`
/// and gives its payout and transfer fee; when that goes below zero (a reversal after the
/// payout, or a full reversal, since Stark keeps its fee) the difference is lost. Nobody pays it
/// back, so the local stack's "treasury" deposits it, as an account holder would, and the
/// report says how much; without it the last payouts of a campaign would wait for money that
/// never comes. An invoice still waiting for its payout loses nothing yet. Only reversed
/// invoices can lose anything, so `state` may be `SandboxHandle::reversed_state` (those and
/// their payouts) instead of the whole sandbox.
pub fn clawbacks(state: &SandboxState, transfer_fee: i64) -> i64 {
    let (invoices, transfers) = records(state);
    let mut spent: HashMap<&str, i64> = HashMap::new();
    for transfer in transfers.iter().filter(|t| t.state.is_live()) {
        if let Some(key) = &transfer.key {
            *spent.entry(key.invoice_id()).or_default() += transfer.amount + transfer_fee;
        }
    }
    invoices
        .iter()
        .filter(|i| i.credited_amount.is_some())
        .filter_map(|invoice| {
            let spent = spent.get(invoice.id.as_str()).copied();
            if spent.is_none() && invoice.due(transfer_fee) > 0 {
                return None;
            }
            let kept = invoice.amount - invoice.fee - spent.unwrap_or(0);
            Some((-kept).max(0))
        })
        .sum()
}

/// True when nothing more will happen: every expected invoice exists, each one either was
/// credited and its payout settled, or is older than `lifecycle` (it will not be paid), and
/// every payout that exists has settled.
pub fn settled(
    state: &SandboxState,
    expected: usize,
    lifecycle: Duration,
    transfer_fee: i64,
) -> bool {
    let audit = audit_state(state, None, &Receiver::default(), transfer_fee);
    let transfers_done = our_transfers(state).all(|t| {
        matches!(
            t.status,
            TransferStatus::Success | TransferStatus::Failed | TransferStatus::Canceled
        )
    });
    ours(state).count() >= expected
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
    ours(state).all(|invoice| {
        credited.contains(invoice.id.as_str())
            || parse_time(&invoice.created).is_some_and(|created| now - created > lifecycle)
    })
}

/// For each credited invoice still without a payout, what became of its `credited` event: every
/// webhook POST the sandbox made for it and how it ended. Tells a lost webhook (Stark gave up
/// delivering) from a message lost after the ingester accepted it (delivered, no transfer).
pub fn missing_payouts(state: &SandboxState, transfer_fee: i64) -> Vec<String> {
    let audit = audit_state(state, None, &Receiver::default(), transfer_fee);
    let unpaid: HashSet<&str> = audit.unpaid_invoices().collect();
    // Indexed once: a campaign that falls behind can leave thousands unpaid among hundreds of
    // thousands of events, and a scan per invoice made this report take hours.
    let mut credited_events: HashMap<&str, Vec<&stark_client::Event>> = HashMap::new();
    for event in &state.events {
        if let Some(log) = event.invoice_log()
            && log.log_type == InvoiceLogType::Credited
            && unpaid.contains(log.invoice.id.as_str())
        {
            credited_events
                .entry(log.invoice.id.as_str())
                .or_default()
                .push(event);
        }
    }
    let wanted: HashSet<&str> = credited_events
        .values()
        .flatten()
        .map(|e| e.id.as_str())
        .collect();
    let mut tries_of: HashMap<&str, Vec<String>> = HashMap::new();
    for d in state
        .deliveries
        .iter()
        .filter(|d| wanted.contains(d.event_id.as_str()))
    {
        tries_of
            .entry(d.event_id.as_str())
            .or_default()
            .push(format!("try {} at {}: {:?}", d.try_number, d.at, d.outcome));
    }
    ours(state)
        .filter(|i| unpaid.contains(i.id.as_str()))
        .map(|invoice| {
            let events: Vec<String> = credited_events
                .get(invoice.id.as_str())
                .into_iter()
                .flatten()
                .map(|event| {
                    let tries = tries_of.get(event.id.as_str()).cloned().unwrap_or_default();
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

/// What another workspace's events did to us: Stark signs every workspace's events with the
/// one key, so a foreign workspace that registers our ingester as its webhook sends validly
/// signed `credited` events of invoices that are not ours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Foreign {
    /// Credited invoices of other workspaces.
    pub credited: usize,
    /// Deliveries of other workspaces' events that our ingester refused (non-2xx).
    pub refused: usize,
    /// Deliveries of other workspaces' events that our ingester accepted.
    pub accepted: usize,
}

impl Foreign {
    /// Counts from a sandbox snapshot.
    pub fn of(state: &SandboxState) -> Self {
        let ours = Some(state.workspace_id.as_str());
        let foreign_events: HashSet<&str> = state
            .events
            .iter()
            .filter(|e| e.workspace_id.as_deref() != ours)
            .map(|e| e.id.as_str())
            .collect();
        let mut foreign = Foreign {
            credited: state
                .invoice_logs
                .iter()
                .filter(|l| l.log_type == InvoiceLogType::Credited)
                .filter(|l| state.invoice_workspace(&l.invoice.id) != ours)
                .count(),
            ..Default::default()
        };
        for delivery in state
            .deliveries
            .iter()
            .filter(|d| foreign_events.contains(d.event_id.as_str()))
        {
            if delivery.outcome == stark_sandbox::DeliveryOutcome::Delivered {
                foreign.accepted += 1;
            } else {
                foreign.refused += 1;
            }
        }
        foreign
    }
}

/// The end-of-campaign report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Per-hour rows.
    pub rows: Vec<HourRow>,
    /// What the foreign workspace's events did.
    pub foreign: Foreign,
    /// Cents deposited to cover what reversals took ([`clawbacks`]).
    pub clawbacks_covered: i64,
    /// The checks: one per audit rule, then the dead letters.
    pub checks: Vec<Check>,
    /// The audit the checks come from.
    pub audit: Audit,
    /// What the scheduled reconcilers did (`None`: none ran).
    pub reconciler: Option<ReconcilerStats>,
    /// Credit → payout latency.
    pub latency: Option<Latency>,
    /// What our workspace cost Stark: its counters at the end.
    pub load: stark_sandbox::Counters,
}

/// Everything a report is built from.
#[derive(Debug, Clone, Copy)]
pub struct ReportInput<'a> {
    /// The sandbox at the end.
    pub state: &'a SandboxState,
    /// The request ids the campaign published.
    pub requested: &'a [String],
    /// The payout account.
    pub receiver: &'a Receiver,
    /// Stark's fee per transfer, cents.
    pub transfer_fee: i64,
    /// Cents deposited to cover reversals.
    pub clawbacks_covered: i64,
    /// Dead letters left, per subscription.
    pub dead_letters: &'a [(String, usize)],
    /// What the scheduled reconcilers did, if any ran.
    pub reconciler: Option<ReconcilerStats>,
    /// Campaign seconds per real second (to show latencies in real time too).
    pub speed: f64,
    /// Our workspace's sandbox counters at the end (`SandboxHandle::workspace_counters`):
    /// the requests and webhook POSTs the campaign cost.
    pub load: stark_sandbox::Counters,
}

/// How long after Stark credited an invoice its payout transfer was created (what the
/// pipeline controls; Stark settles the transfer afterwards), over every paid-out invoice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Payouts measured.
    pub count: usize,
    /// Median, campaign time.
    pub p50: Duration,
    /// 99th percentile, campaign time.
    pub p99: Duration,
    /// Campaign seconds per real second.
    pub speed: f64,
}

impl Latency {
    /// From the credited logs and the first payout transfer of each invoice in `state`.
    pub fn of(state: &SandboxState, speed: f64) -> Option<Self> {
        let mut credited: HashMap<&str, OffsetDateTime> = HashMap::new();
        for log in state
            .invoice_logs
            .iter()
            .filter(|l| l.log_type == InvoiceLogType::Credited)
        {
            if let Some(at) = parse_time(&log.created) {
                credited.entry(log.invoice.id.as_str()).or_insert(at);
            }
        }
        let mut first_payout: HashMap<String, OffsetDateTime> = HashMap::new();
        for transfer in our_transfers(state) {
            let record = transfer_record(transfer);
            let (Some(key), Some(at)) = (record.key, parse_time(&transfer.created)) else {
                continue;
            };
            let entry = first_payout
                .entry(key.invoice_id().to_owned())
                .or_insert(at);
            *entry = (*entry).min(at);
        }
        let mut waits: Vec<Duration> = first_payout
            .iter()
            .filter_map(|(invoice, paid)| {
                let credit = credited.get(invoice.as_str())?;
                Duration::try_from(*paid - *credit).ok()
            })
            .collect();
        if waits.is_empty() {
            return None;
        }
        waits.sort();
        let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
        Some(Latency {
            count: waits.len(),
            p50: at(0.5),
            p99: at(0.99),
            speed,
        })
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Campaign time to the second, real time to the millisecond.
        let campaign = |d: Duration| humantime::format_duration(Duration::from_secs(d.as_secs()));
        let real = |d: Duration| {
            let real = d.div_f64(self.speed);
            humantime::format_duration(Duration::from_millis(
                u64::try_from(real.as_millis()).unwrap_or(u64::MAX),
            ))
        };
        write!(
            f,
            "credit → payout: p50 {} (real {}), p99 {} (real {}) over {} payouts",
            campaign(self.p50),
            real(self.p50),
            campaign(self.p99),
            real(self.p99),
            self.count
        )
    }
}

impl Report {
    /// Whether every check holds.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// Builds the table and runs the audit over the final state.
    pub fn build(input: ReportInput<'_>) -> Self {
        let ReportInput {
            state,
            requested,
            receiver,
            transfer_fee,
            clawbacks_covered,
            dead_letters,
            reconciler,
            speed,
            load,
        } = input;
        let (invoices, transfers) = records(state);
        let audit = audit(AuditInput {
            requested: Some(requested),
            invoices: &invoices,
            transfers: &transfers,
            receiver,
            transfer_fee,
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
        let drained = reconciler.map_or(0, |r| r.dead_letters_drained());
        checks.push(Check {
            name: "dead-letter subscriptions are empty",
            ok: parked.is_empty(),
            detail: match (parked.is_empty(), drained) {
                (true, 0) => format!("{} checked", dead_letters.len()),
                (true, n) => format!(
                    "{} checked; the reconciler drained {n} dead letters",
                    dead_letters.len()
                ),
                (false, _) => parked.join(", "),
            },
        });
        Report {
            rows: rows.into_values().collect(),
            foreign: Foreign::of(state),
            clawbacks_covered,
            checks,
            audit,
            reconciler,
            latency: Latency::of(state, speed),
            load,
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
        let summary = self.audit.summary;
        writeln!(
            f,
            "reversed after credit: {} invoices ({} with nothing left to pay); deposited to cover reversals: {}; transfers failed: {}",
            summary.reversed,
            summary.nothing_due,
            format_brl(self.clawbacks_covered),
            summary.failed_transfers
        )?;
        writeln!(
            f,
            "another workspace: {} credited invoices, {} webhook deliveries refused, {} accepted",
            self.foreign.credited, self.foreign.refused, self.foreign.accepted
        )?;
        if let Some(latency) = &self.latency {
            writeln!(f, "{latency}")?;
        }
        // Each request is a signature and a verification and a round trip, each webhook POST
        // too: what sets the stack's CPU per invoice.
        let per_invoice = |n: u64| n as f64 / (total.issued.max(1) as f64);
        writeln!(
            f,
            "Stark load: {} authenticated requests ({:.1} per invoice), {} webhook POSTs ({:.1} per invoice)",
            self.load.requests,
            per_invoice(self.load.requests),
            self.load.webhook_posts,
            per_invoice(self.load.webhook_posts)
        )?;
        if let Some(r) = &self.reconciler {
            writeln!(
                f,
                "scheduled reconciler: {} runs ({} failed); republished {} payouts and {} invoice requests; canceled {} duplicates; drained {} dead letters",
                r.runs,
                r.failed,
                r.payouts_republished,
                r.requests_republished,
                r.canceled,
                r.dead_letters_drained()
            )?;
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stark_client::NewInvoice;
    use stark_sandbox::{Sandbox, SandboxConfig};

    use super::*;

    #[tokio::test]
    async fn missing_payouts_names_each_unpaid_invoice_with_its_own_credited_event() {
        let sandbox = Sandbox::start(SandboxConfig {
            speed: 600.0,
            pay_probability: 1.0,
            pay_delay: Duration::from_secs(60),
            retry_schedule: Vec::new(),
            delivery_timeout: Duration::from_secs(2),
            ..Default::default()
        })
        .await
        .unwrap();
        let (project, key) = sandbox.new_project();
        let client = sandbox.client(&project, key).unwrap();
        // Nothing listens there: every delivery fails, so no payout is ever made.
        client
            .create_webhook("http://127.0.0.1:9/hook", &["invoice".into()])
            .await
            .unwrap();
        let new = |amount| NewInvoice {
            amount,
            tax_id: "012.345.678-90".into(),
            name: "Ana Souza".into(),
            ..Default::default()
        };
        let created = client
            .create_invoices(&[new(1_000), new(2_000), new(3_000)])
            .await
            .unwrap();
        let state = sandbox
            .wait_for(Duration::from_secs(20), |s| {
                s.deliveries.len() == 9 && s.counters.invoices_credited == 3
            })
            .await
            .unwrap();
        let lines = missing_payouts(&state, 50);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for invoice in &created {
            let credited = state
                .events
                .iter()
                .find(|e| {
                    e.invoice_log().is_some_and(|l| {
                        l.invoice.id == invoice.id && l.log_type == InvoiceLogType::Credited
                    })
                })
                .expect("a credited event");
            let line = lines
                .iter()
                .find(|l| l.starts_with(&format!("invoice {} ", invoice.id)))
                .unwrap_or_else(|| panic!("{} missing from {lines:#?}", invoice.id));
            assert!(line.contains(&format!("event {} ", credited.id)), "{line}");
            assert_eq!(line.matches("event ").count(), 1, "only its own: {line}");
            assert!(
                line.contains("try 1 at ") && line.contains("BadConnection"),
                "{line}"
            );
        }
        sandbox.shutdown().await;
    }
}
