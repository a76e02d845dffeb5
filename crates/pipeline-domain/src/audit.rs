//! What "exactly once" means, decided in one place.
//!
//! [`audit`] is a pure function from what was requested, issued, credited and transferred (and
//! the configured receiver) to a list of [`Finding`]s. `reconcile`, `status`, the local stack's
//! report and the end-to-end tests all call it, so the tests assert exactly the rule operators
//! run. Reading Stark (and turning its records into [`InvoiceRecord`] and [`TransferRecord`])
//! is the caller's business; nothing here does I/O.
//!
//! The rules, one function each:
//! - [`one_invoice_per_request`]: no request has two live (not canceled) invoices.
//! - [`every_request_issued`]: every requested invoice exists (when the requests are known).
//! - [`paid_out_exactly_once`]: every credited invoice with something due has exactly one live
//!   payout transfer, of [`payout_due`] (Stark's `amount − fee`, less the transfer fee), to the
//!   configured account.
//! - [`no_payout_without_credit`]: no transfer pays an invoice that Stark did not credit.
//!
//! Choices where the earlier audits disagreed, and why:
//! - A `failed` or `canceled` transfer is never a payout: it moved no money. It is reported
//!   ([`Finding::FailedTransfer`]) and, when nothing live replaced it, the invoice is
//!   [`Finding::PayoutFailed`] (a problem: money is owed).
//! - A `created` or `processing` transfer is a payout *in flight*: it counts against "paid
//!   twice" (Stark may still complete it), is reported as [`Finding::InFlight`], and is not a
//!   problem; only `success` counts as paid out. A run that must be final (the local report
//!   after settling) waits until nothing is in flight.
//! - Every generation of one invoice's payout key (`payout-<id>`, `payout-<id>-2`, …) is the
//!   same payout: two live generations are "paid twice".
//! - A payout made before a later reversal is correct for the amount credited then: a transfer
//!   between today's `amount − fee` and the credited `amount − fee` is
//!   [`Finding::ReversedAfterPayout`], reported, not a problem.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::receiver::{Account, Receiver, payout_due};
use crate::vocab::{PayoutKey, RequestTag};

/// An invoice as Stark shows it, reduced to what the audit needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InvoiceRecord {
    /// Stark's invoice id.
    pub id: String,
    /// Its request tag, if it has one.
    pub request: Option<RequestTag>,
    /// Its campaign slot, if tagged.
    pub slot: Option<u32>,
    /// The amount it was issued for, cents.
    pub nominal_amount: i64,
    /// Stark's current amount, cents: lowered by reversals, 0 when fully reversed.
    pub amount: i64,
    /// Stark's fee, cents.
    pub fee: i64,
    /// The amount when it was credited (the `credited` log's invoice), or `None` when Stark has
    /// not credited it.
    pub credited_amount: Option<i64>,
    /// Canceled at Stark (a canceled duplicate is not a duplicate).
    pub canceled: bool,
}

impl InvoiceRecord {
    /// What a payout owes today ([`payout_due`] of today's amount) for a credited invoice, else
    /// 0.
    pub fn due(&self, transfer_fee: i64) -> i64 {
        match self.credited_amount {
            Some(_) => payout_due(self.amount, self.fee, transfer_fee),
            None => 0,
        }
    }

    /// The most a payout could rightly have been: [`payout_due`] of the credited amount.
    fn due_at_credit(&self, transfer_fee: i64) -> i64 {
        self.credited_amount
            .map_or(0, |amount| payout_due(amount, self.fee, transfer_fee))
    }
}

/// A transfer's status, as far as the audit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferState {
    /// Accepted, not yet processing.
    Created,
    /// Being sent.
    Processing,
    /// The money arrived.
    Success,
    /// Stark could not send it; no money moved.
    Failed,
    /// Canceled before it was sent; no money moved.
    Canceled,
    /// A status this build does not know: treated as live, since it may still move money.
    Unknown,
}

impl TransferState {
    /// May move (or has moved) money.
    pub fn is_live(self) -> bool {
        !matches!(self, TransferState::Failed | TransferState::Canceled)
    }

    /// Lowercase name, as Stark spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Created => "created",
            TransferState::Processing => "processing",
            TransferState::Success => "success",
            TransferState::Failed => "failed",
            TransferState::Canceled => "canceled",
            TransferState::Unknown => "unknown",
        }
    }
}

/// A transfer as Stark shows it, reduced to what the audit needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    /// Stark's transfer id.
    pub id: String,
    /// Its payout key (`externalId`), if it has one.
    pub key: Option<PayoutKey>,
    /// Cents.
    pub amount: i64,
    /// Status.
    pub state: TransferState,
    /// Where it went.
    pub account: Account,
}

/// Everything the audit compares.
#[derive(Debug, Clone, Copy)]
pub struct AuditInput<'a> {
    /// The request ids that should each have one invoice, when known (the spammer's batches are
    /// deterministic, so the local stack and the reconciler know them; `None` skips
    /// [`every_request_issued`]).
    pub requested: Option<&'a [String]>,
    /// The invoices.
    pub invoices: &'a [InvoiceRecord],
    /// The transfers.
    pub transfers: &'a [TransferRecord],
    /// The configured payout account.
    pub receiver: &'a Receiver,
    /// The configured transfer fee, cents (see [`payout_due`]).
    pub transfer_fee: i64,
}

/// Which rule a finding belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// [`one_invoice_per_request`].
    OneInvoicePerRequest,
    /// [`every_request_issued`].
    EveryRequestIssued,
    /// [`paid_out_exactly_once`].
    PaidOutExactlyOnce,
    /// [`no_payout_without_credit`].
    NoPayoutWithoutCredit,
}

impl Rule {
    /// Every rule, in report order.
    pub const ALL: [Rule; 4] = [
        Rule::OneInvoicePerRequest,
        Rule::EveryRequestIssued,
        Rule::PaidOutExactlyOnce,
        Rule::NoPayoutWithoutCredit,
    ];

    /// What the rule says, for reports.
    pub fn title(self) -> &'static str {
        match self {
            Rule::OneInvoicePerRequest => "no duplicate invoice",
            Rule::EveryRequestIssued => "every requested invoice was issued",
            Rule::PaidOutExactlyOnce => {
                "every credited invoice paid out exactly once (amount − fee, configured account)"
            }
            Rule::NoPayoutWithoutCredit => "no transfer without a credited invoice",
        }
    }
}

/// One thing the audit found. [`Finding::is_problem`] tells what needs action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A request has more than one live invoice.
    DuplicateInvoice {
        /// The request id.
        request_id: String,
        /// Its invoices, oldest id first.
        invoices: Vec<String>,
    },
    /// A request has no invoice.
    NotIssued {
        /// The request id.
        request_id: String,
    },
    /// Credited, something is due, and no transfer was ever made.
    NotPaidOut {
        /// Invoice id.
        invoice: String,
        /// Cents due.
        due: i64,
    },
    /// Credited and due, but every payout transfer failed or was canceled.
    PayoutFailed {
        /// Invoice id.
        invoice: String,
        /// The failed transfers.
        transfers: Vec<String>,
    },
    /// More than one live payout transfer.
    PaidTwice {
        /// Invoice id.
        invoice: String,
        /// The live transfers.
        transfers: Vec<String>,
    },
    /// A payout of another amount than Stark's `amount − fee`.
    WrongAmount {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
        /// Cents due.
        expected: i64,
        /// Cents paid.
        paid: i64,
    },
    /// A payout to another account than the configured one.
    WrongReceiver {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
    },
    /// A payout transfer for an invoice Stark did not credit (or that is not among ours).
    PaidWithoutCredit {
        /// The invoice its key names.
        invoice: String,
        /// Transfer id.
        transfer: String,
    },
    /// A transfer that is no payout of ours (no payout key).
    StrayTransfer {
        /// Transfer id.
        transfer: String,
    },
    /// A payout still `created` or `processing` (not a problem).
    InFlight {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
    },
    /// A failed or canceled transfer that a live generation replaced (not a problem).
    FailedTransfer {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
        /// `failed` or `canceled`.
        state: TransferState,
    },
    /// Paid the credited amount, and Stark reversed part of it afterwards (not a problem).
    ReversedAfterPayout {
        /// Invoice id.
        invoice: String,
        /// Transfer id.
        transfer: String,
        /// Cents paid.
        paid: i64,
        /// Cents due today.
        due: i64,
    },
}

impl Finding {
    /// Whether someone (the reconciler or an operator) must act.
    pub fn is_problem(&self) -> bool {
        !matches!(
            self,
            Finding::InFlight { .. }
                | Finding::FailedTransfer { .. }
                | Finding::ReversedAfterPayout { .. }
        )
    }

    /// The rule it belongs to.
    pub fn rule(&self) -> Rule {
        match self {
            Finding::DuplicateInvoice { .. } => Rule::OneInvoicePerRequest,
            Finding::NotIssued { .. } => Rule::EveryRequestIssued,
            Finding::PaidWithoutCredit { .. } | Finding::StrayTransfer { .. } => {
                Rule::NoPayoutWithoutCredit
            }
            _ => Rule::PaidOutExactlyOnce,
        }
    }

    /// A stable snake_case name, for logs and JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Finding::DuplicateInvoice { .. } => "duplicate_invoice",
            Finding::NotIssued { .. } => "not_issued",
            Finding::NotPaidOut { .. } => "not_paid_out",
            Finding::PayoutFailed { .. } => "payout_failed",
            Finding::PaidTwice { .. } => "paid_twice",
            Finding::WrongAmount { .. } => "wrong_amount",
            Finding::WrongReceiver { .. } => "wrong_receiver",
            Finding::PaidWithoutCredit { .. } => "paid_without_credit",
            Finding::StrayTransfer { .. } => "stray_transfer",
            Finding::InFlight { .. } => "in_flight",
            Finding::FailedTransfer { .. } => "failed_transfer",
            Finding::ReversedAfterPayout { .. } => "reversed_after_payout",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::DuplicateInvoice {
                request_id,
                invoices,
            } => write!(
                f,
                "request {request_id}: {} invoices ({})",
                invoices.len(),
                invoices.join(", ")
            ),
            Finding::NotIssued { request_id } => write!(f, "request {request_id}: no invoice"),
            Finding::NotPaidOut { invoice, due } => {
                write!(
                    f,
                    "invoice {invoice}: credited but not paid out ({due} cents due)"
                )
            }
            Finding::PayoutFailed { invoice, transfers } => write!(
                f,
                "invoice {invoice}: every payout transfer failed ({})",
                transfers.join(", ")
            ),
            Finding::PaidTwice { invoice, transfers } => write!(
                f,
                "invoice {invoice}: paid out {} times ({})",
                transfers.len(),
                transfers.join(", ")
            ),
            Finding::WrongAmount {
                invoice,
                transfer,
                expected,
                paid,
            } => write!(
                f,
                "invoice {invoice}: transfer {transfer} paid {paid} cents, expected {expected}"
            ),
            Finding::WrongReceiver { invoice, transfer } => write!(
                f,
                "invoice {invoice}: transfer {transfer} went to another account"
            ),
            Finding::PaidWithoutCredit { invoice, transfer } => write!(
                f,
                "invoice {invoice}: transfer {transfer} but the invoice was never credited"
            ),
            Finding::StrayTransfer { transfer } => {
                write!(f, "transfer {transfer} has no payout key")
            }
            Finding::InFlight { invoice, transfer } => {
                write!(f, "invoice {invoice}: transfer {transfer} is in flight")
            }
            Finding::FailedTransfer {
                invoice,
                transfer,
                state,
            } => write!(
                f,
                "invoice {invoice}: transfer {transfer} {} (replaced)",
                state.as_str()
            ),
            Finding::ReversedAfterPayout {
                invoice,
                transfer,
                paid,
                due,
            } => write!(
                f,
                "invoice {invoice}: transfer {transfer} paid {paid} cents, reversed to {due} since"
            ),
        }
    }
}

/// Counts for reports and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Requests (known requests, or distinct request tags among the invoices).
    pub requests: usize,
    /// Invoices.
    pub issued: usize,
    /// Invoices Stark credited.
    pub credited: usize,
    /// Credited invoices with nothing due (fee ≥ amount, or fully reversed).
    pub nothing_due: usize,
    /// Credited invoices paid out exactly once with a `success` transfer.
    pub paid_out: usize,
    /// Credited invoices whose one payout is still in flight.
    pub in_flight: usize,
    /// Credited invoices reversed (partly or fully) after being credited.
    pub reversed: usize,
    /// Transfers.
    pub transfers: usize,
    /// Transfers that failed or were canceled.
    pub failed_transfers: usize,
}

/// The audit's result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Audit {
    /// Everything found, problems and information.
    pub findings: Vec<Finding>,
    /// Counts.
    pub summary: Summary,
}

impl Audit {
    /// The findings that need action.
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.is_problem())
    }

    /// True when nothing needs action.
    pub fn ok(&self) -> bool {
        self.problems().next().is_none()
    }

    /// The problems under `rule`.
    pub fn problems_of(&self, rule: Rule) -> impl Iterator<Item = &Finding> {
        self.problems().filter(move |f| f.rule() == rule)
    }

    /// Credited invoices with nothing paid and nothing in flight: what a repair republishes.
    pub fn unpaid_invoices(&self) -> impl Iterator<Item = &str> {
        self.findings.iter().filter_map(|f| match f {
            Finding::NotPaidOut { invoice, .. } | Finding::PayoutFailed { invoice, .. } => {
                Some(invoice.as_str())
            }
            _ => None,
        })
    }

    /// Requests without an invoice.
    pub fn unissued_requests(&self) -> impl Iterator<Item = &str> {
        self.findings.iter().filter_map(|f| match f {
            Finding::NotIssued { request_id } => Some(request_id.as_str()),
            _ => None,
        })
    }
}

/// Runs every rule.
pub fn audit(input: AuditInput<'_>) -> Audit {
    let mut findings = one_invoice_per_request(input);
    findings.extend(every_request_issued(input));
    let (payouts, mut summary) = paid_out_exactly_once(input);
    findings.extend(payouts);
    findings.extend(no_payout_without_credit(input));
    summary.requests = match input.requested {
        Some(requested) => requested.len(),
        None => input
            .invoices
            .iter()
            .filter_map(|i| i.request.as_ref())
            .collect::<BTreeSet<_>>()
            .len(),
    };
    summary.issued = input.invoices.len();
    summary.transfers = input.transfers.len();
    summary.failed_transfers = input
        .transfers
        .iter()
        .filter(|t| !t.state.is_live())
        .count();
    Audit { findings, summary }
}

/// No request has two live invoices. A canceled one does not count: cancelling the later
/// duplicates is how a duplicate is repaired.
pub fn one_invoice_per_request(input: AuditInput<'_>) -> Vec<Finding> {
    let mut by_request: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for invoice in input.invoices.iter().filter(|i| !i.canceled) {
        if let Some(request) = &invoice.request {
            by_request
                .entry(request.request_id())
                .or_default()
                .push(&invoice.id);
        }
    }
    by_request
        .into_iter()
        .filter(|(_, invoices)| invoices.len() > 1)
        .map(|(request_id, mut invoices)| {
            invoices.sort_unstable();
            Finding::DuplicateInvoice {
                request_id: request_id.to_owned(),
                invoices: invoices.into_iter().map(str::to_owned).collect(),
            }
        })
        .collect()
}

/// Every requested invoice exists (skipped when the requests are not known).
pub fn every_request_issued(input: AuditInput<'_>) -> Vec<Finding> {
    let Some(requested) = input.requested else {
        return Vec::new();
    };
    let issued: BTreeSet<&str> = input
        .invoices
        .iter()
        .filter_map(|i| i.request.as_ref().map(RequestTag::request_id))
        .collect();
    requested
        .iter()
        .map(|r| RequestTag::for_request(r))
        .filter(|tag| !issued.contains(tag.request_id()))
        .map(|tag| Finding::NotIssued {
            request_id: tag.request_id().to_owned(),
        })
        .collect()
}

/// Every credited invoice with something due has exactly one live payout of Stark's
/// `amount − fee` to the configured account. Returns the findings and the payout counts.
pub fn paid_out_exactly_once(input: AuditInput<'_>) -> (Vec<Finding>, Summary) {
    let mut by_invoice: BTreeMap<&str, Vec<&TransferRecord>> = BTreeMap::new();
    for transfer in input.transfers {
        if let Some(key) = &transfer.key {
            by_invoice
                .entry(key.invoice_id())
                .or_default()
                .push(transfer);
        }
    }
    let mut findings = Vec::new();
    let mut summary = Summary::default();
    for invoice in input.invoices {
        let Some(credited_amount) = invoice.credited_amount else {
            continue;
        };
        summary.credited += 1;
        summary.reversed += usize::from(invoice.amount < credited_amount);
        let transfers = by_invoice.remove(invoice.id.as_str()).unwrap_or_default();
        let (live, dead): (Vec<&TransferRecord>, Vec<&TransferRecord>) =
            transfers.into_iter().partition(|t| t.state.is_live());
        let id = || invoice.id.clone();
        let due = invoice.due(input.transfer_fee);
        match live.as_slice() {
            [] if due == 0 => summary.nothing_due += 1,
            [] if dead.is_empty() => findings.push(Finding::NotPaidOut { invoice: id(), due }),
            [] => findings.push(Finding::PayoutFailed {
                invoice: id(),
                transfers: dead.iter().map(|t| t.id.clone()).collect(),
            }),
            [one] => {
                for failed in &dead {
                    findings.push(Finding::FailedTransfer {
                        invoice: id(),
                        transfer: failed.id.clone(),
                        state: failed.state,
                    });
                }
                if one.amount != due
                    && !(one.amount > due
                        && one.amount <= invoice.due_at_credit(input.transfer_fee))
                {
                    findings.push(Finding::WrongAmount {
                        invoice: id(),
                        transfer: one.id.clone(),
                        expected: due,
                        paid: one.amount,
                    });
                } else if !input.receiver.matches(&one.account) {
                    findings.push(Finding::WrongReceiver {
                        invoice: id(),
                        transfer: one.id.clone(),
                    });
                } else {
                    if one.amount != due {
                        findings.push(Finding::ReversedAfterPayout {
                            invoice: id(),
                            transfer: one.id.clone(),
                            paid: one.amount,
                            due,
                        });
                    }
                    if one.state == TransferState::Success {
                        summary.paid_out += 1;
                    } else {
                        summary.in_flight += 1;
                        findings.push(Finding::InFlight {
                            invoice: id(),
                            transfer: one.id.clone(),
                        });
                    }
                }
            }
            many => findings.push(Finding::PaidTwice {
                invoice: id(),
                transfers: many.iter().map(|t| t.id.clone()).collect(),
            }),
        }
    }
    (findings, summary)
}

/// No transfer pays an invoice Stark did not credit, and every transfer is a payout.
pub fn no_payout_without_credit(input: AuditInput<'_>) -> Vec<Finding> {
    let credited: BTreeSet<&str> = input
        .invoices
        .iter()
        .filter(|i| i.credited_amount.is_some())
        .map(|i| i.id.as_str())
        .collect();
    input
        .transfers
        .iter()
        .filter_map(|t| match &t.key {
            None => Some(Finding::StrayTransfer {
                transfer: t.id.clone(),
            }),
            Some(key) if !credited.contains(key.invoice_id()) => Some(Finding::PaidWithoutCredit {
                invoice: key.invoice_id().to_owned(),
                transfer: t.id.clone(),
            }),
            Some(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(id: &str, request: &str, amount: i64, credited: bool) -> InvoiceRecord {
        InvoiceRecord {
            id: id.into(),
            request: Some(RequestTag::for_request(request)),
            slot: Some(0),
            nominal_amount: amount,
            amount,
            fee: 50,
            credited_amount: credited.then_some(amount),
            canceled: false,
        }
    }

    fn transfer(id: &str, key: &str, amount: i64, state: TransferState) -> TransferRecord {
        TransferRecord {
            id: id.into(),
            key: PayoutKey::parse(key),
            amount,
            state,
            account: Account::from(&Receiver::default()),
        }
    }

    fn run(
        requested: Option<&[String]>,
        invoices: &[InvoiceRecord],
        transfers: &[TransferRecord],
    ) -> Audit {
        audit(AuditInput {
            requested,
            invoices,
            transfers,
            receiver: &Receiver::default(),
            transfer_fee: 0,
        })
    }

    fn kinds(audit: &Audit) -> Vec<&'static str> {
        audit.findings.iter().map(Finding::kind).collect()
    }

    #[test]
    fn a_clean_campaign_has_no_findings() {
        let requested = ["r-0".to_owned(), "r-1".to_owned()];
        let invoices = [
            invoice("1", "r-0", 1000, true),
            invoice("2", "r-1", 30, true),
        ];
        let transfers = [transfer("t1", "payout-1", 950, TransferState::Success)];
        let audit = run(Some(&requested), &invoices, &transfers);
        assert_eq!(audit.findings, []);
        assert!(audit.ok());
        let s = audit.summary;
        assert_eq!((s.requests, s.issued, s.credited), (2, 2, 2));
        assert_eq!((s.paid_out, s.nothing_due, s.in_flight), (1, 1, 0));
    }

    #[test]
    fn the_transfer_fee_comes_out_of_the_payout() {
        let invoices = [invoice("1", "r", 1000, true)];
        let audit_with = |amount, transfer_fee| {
            audit(AuditInput {
                requested: None,
                invoices: &invoices,
                transfers: &[transfer("t1", "payout-1", amount, TransferState::Success)],
                receiver: &Receiver::default(),
                transfer_fee,
            })
        };
        assert!(audit_with(900, 50).ok(), "1000 − 50 fee − 50 transfer fee");
        assert_eq!(kinds(&audit_with(950, 50)), ["wrong_amount"]);
        assert_eq!(kinds(&audit_with(900, 0)), ["wrong_amount"]);
    }

    #[test]
    fn duplicates_and_missing_requests() {
        let requested = ["r-0".to_owned(), "R-1".to_owned()];
        let mut canceled = invoice("3", "r-0", 1000, false);
        canceled.canceled = true;
        let invoices = [
            invoice("2", "r-0", 1000, false),
            invoice("1", "r-0", 1000, false),
            canceled,
        ];
        let audit = run(Some(&requested), &invoices, &[]);
        assert_eq!(
            audit.findings,
            [
                Finding::DuplicateInvoice {
                    request_id: "r-0".into(),
                    invoices: vec!["1".into(), "2".into()]
                },
                Finding::NotIssued {
                    request_id: "r-1".into()
                }
            ]
        );
        assert_eq!(audit.unissued_requests().collect::<Vec<_>>(), ["r-1"]);
        // Unknown requests: the rule is skipped, duplicates still found.
        assert_eq!(kinds(&run(None, &invoices, &[])), ["duplicate_invoice"]);
    }

    #[test]
    fn a_failed_transfer_is_never_a_payout() {
        // The old local report counted failed transfers as payouts; the old reconcile did not.
        let invoices = [invoice("1", "r", 1000, true)];
        let failed = [transfer("t1", "payout-1", 950, TransferState::Failed)];
        let audit = run(None, &invoices, &failed);
        assert_eq!(kinds(&audit), ["payout_failed"]);
        assert_eq!(audit.unpaid_invoices().collect::<Vec<_>>(), ["1"]);
        assert_eq!(audit.summary.failed_transfers, 1);

        // Replaced by a second generation: paid once, the failure reported as information.
        let replaced = [
            failed[0].clone(),
            transfer("t2", "payout-1-2", 950, TransferState::Success),
        ];
        let audit = run(None, &invoices, &replaced);
        assert_eq!(kinds(&audit), ["failed_transfer"]);
        assert!(audit.ok());
        assert_eq!(audit.summary.paid_out, 1);
    }

    #[test]
    fn processing_is_in_flight_and_counts_against_paid_twice() {
        // The old reconcile accepted `processing` silently; the old report failed on it.
        let invoices = [invoice("1", "r", 1000, true)];
        let one = [transfer("t1", "payout-1", 950, TransferState::Processing)];
        let audit = run(None, &invoices, &one);
        assert_eq!(kinds(&audit), ["in_flight"]);
        assert!(audit.ok());
        assert_eq!((audit.summary.in_flight, audit.summary.paid_out), (1, 0));

        let two = [
            one[0].clone(),
            transfer("t2", "payout-1-2", 950, TransferState::Success),
        ];
        let audit = run(None, &invoices, &two);
        assert_eq!(
            audit.findings,
            [Finding::PaidTwice {
                invoice: "1".into(),
                transfers: vec!["t1".into(), "t2".into()]
            }]
        );
        assert_eq!(
            audit.unpaid_invoices().count(),
            0,
            "never repaired by paying again"
        );
    }

    #[test]
    fn not_paid_wrong_amount_and_wrong_receiver() {
        let invoices = [
            invoice("1", "a", 1000, true),
            invoice("2", "b", 1000, true),
            invoice("3", "c", 1000, true),
        ];
        let mut elsewhere = transfer("t3", "payout-3", 950, TransferState::Success);
        elsewhere.account.account_number = "999".into();
        let transfers = [
            transfer("t2", "payout-2", 100_000, TransferState::Success),
            elsewhere,
        ];
        let audit = run(None, &invoices, &transfers);
        assert_eq!(
            audit.findings,
            [
                Finding::NotPaidOut {
                    invoice: "1".into(),
                    due: 950
                },
                Finding::WrongAmount {
                    invoice: "2".into(),
                    transfer: "t2".into(),
                    expected: 950,
                    paid: 100_000
                },
                Finding::WrongReceiver {
                    invoice: "3".into(),
                    transfer: "t3".into()
                },
            ]
        );
    }

    #[test]
    fn reversals_before_and_after_the_payout() {
        // Partly reversed before the payout: today's amount − fee is due.
        let mut partial = invoice("1", "a", 1000, true);
        partial.amount = 600;
        let paid_today = [transfer("t1", "payout-1", 550, TransferState::Success)];
        let audit = run(None, std::slice::from_ref(&partial), &paid_today);
        assert_eq!(audit.findings, []);
        assert_eq!(audit.summary.reversed, 1);

        // Reversed after a payout of the credited amount: reported, not a problem.
        let paid_before = [transfer("t1", "payout-1", 950, TransferState::Success)];
        let audit = run(None, std::slice::from_ref(&partial), &paid_before);
        assert_eq!(kinds(&audit), ["reversed_after_payout"]);
        assert!(audit.ok());

        // More than the credited amount is wrong whatever happened since.
        let too_much = [transfer("t1", "payout-1", 951, TransferState::Success)];
        assert_eq!(kinds(&run(None, &[partial], &too_much)), ["wrong_amount"]);

        // Fully reversed and never paid: nothing due, nothing to find.
        let mut full = invoice("2", "b", 1000, true);
        full.amount = 0;
        let audit = run(None, &[full], &[]);
        assert_eq!(audit.findings, []);
        assert_eq!(audit.summary.nothing_due, 1);
    }

    #[test]
    fn transfers_without_a_credit_or_a_key() {
        let invoices = [invoice("1", "a", 1000, false)];
        let mut stray = transfer("t9", "payout-1", 10, TransferState::Success);
        stray.key = None;
        let transfers = [
            transfer("t1", "payout-1", 950, TransferState::Success),
            transfer("t2", "payout-77", 950, TransferState::Failed),
            stray,
        ];
        let audit = run(None, &invoices, &transfers);
        assert_eq!(
            kinds(&audit),
            [
                "paid_without_credit",
                "paid_without_credit",
                "stray_transfer"
            ]
        );
        assert!(
            audit
                .problems_of(Rule::NoPayoutWithoutCredit)
                .all(|f| f.rule() == Rule::NoPayoutWithoutCredit)
        );
        assert_eq!(audit.problems_of(Rule::PaidOutExactlyOnce).count(), 0);
    }
}
