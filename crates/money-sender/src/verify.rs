//! Stark's own record decides what is owed: a message on `paid_invoices` is only a hint.
//!
//! Stark signs every workspace's events with one key per environment, so a validly signed
//! `credited` event (and the message the ingester made of it) proves that Stark sent it, not
//! that the invoice is ours, nor that its numbers are today's. Before any transfer this module
//! reads the invoice back with our own credentials and decides, from that record alone:
//!
//! | Stark's record | decision |
//! |---|---|
//! | unknown id (Stark answers 400: another workspace's invoice looks exactly like this) | refused: not ours |
//! | no request tag of ours | refused: not ours |
//! | never paid (`created`, `overdue`, `expired`, `canceled`) | refused: never credited |
//! | paid, `credited` log not visible yet (Stark's lists lag) | wait (retry) |
//! | credited, then fully reversed (amount 0) | nothing to pay (`payout_skipped_reversed`) |
//! | credited, nothing left after the fees | nothing to pay |
//! | credited | pay [`payout_due`] of today's amount (a partial reversal has lowered it) |

use pipeline_domain::messages::PaidInvoice;
use pipeline_domain::receiver::payout_due;
use pipeline_domain::vocab::RequestTag;
use stark_client::{Client, Invoice, InvoiceLogQuery, InvoiceLogType, InvoiceStatus};

/// What Stark's record says about one invoice.
#[derive(Debug, Clone)]
pub(crate) enum Owed {
    /// Pay this many cents.
    Pay {
        /// [`payout_due`] of today's amount.
        due: i64,
        /// The invoice as Stark shows it now.
        invoice: Box<Invoice>,
    },
    /// Credited, and reversed down to nothing left to pay.
    Reversed {
        /// The amount that was credited.
        credited: i64,
    },
    /// Credited, but the fees take it all.
    NothingDue {
        /// Stark's amount.
        amount: i64,
        /// Stark's fee.
        fee: i64,
    },
}

/// Why nothing may be paid for this message, now or later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    /// Stark does not know the id in our workspace.
    #[error("invoice {0} does not exist in our workspace (Stark refused to show it)")]
    Unknown(String),
    /// The invoice exists but carries no request tag of ours.
    #[error("invoice {0} carries no request tag of ours")]
    Untagged(String),
    /// The invoice was never paid.
    #[error("invoice {id} was never credited (status {status})")]
    NeverCredited {
        /// Invoice id.
        id: String,
        /// Its status.
        status: &'static str,
    },
}

/// Why the answer is not known yet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unsure {
    /// Stark could not be read.
    #[error("reading the invoice from Stark failed: {0}")]
    Stark(#[source] stark_client::Error),
    /// Paid, but the `credited` log is not listed yet.
    #[error("invoice {0} is paid but its credit is not visible yet")]
    CreditNotVisible(String),
}

/// Either a refusal (never pay) or not knowing yet (retry).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotOwed {
    /// Never pay.
    #[error(transparent)]
    Refused(Refusal),
    /// Retry later.
    #[error(transparent)]
    Unsure(Unsure),
}

/// Reads `message`'s invoice from Stark and decides what it owes, `transfer_fee` being what
/// Stark charges for the payout transfer. The GET and the log query are retried by the client
/// like every GET.
pub(crate) async fn owed(
    stark: &Client,
    message: &PaidInvoice,
    transfer_fee: i64,
) -> Result<Owed, NotOwed> {
    let id = &message.invoice_id;
    let invoice = match stark.get_invoice(id).await {
        Ok(invoice) => invoice,
        // Stark answers 400 for an id it does not show to us: unknown, or another workspace's.
        Err(err) if err.kind() == stark_client::ErrorKind::Rejected => {
            return Err(NotOwed::Refused(Refusal::Unknown(id.clone())));
        }
        Err(err) => return Err(NotOwed::Unsure(Unsure::Stark(err))),
    };
    if invoice.id != *id {
        return Err(NotOwed::Refused(Refusal::Unknown(id.clone())));
    }
    if RequestTag::find(&invoice.tags).is_none() {
        return Err(NotOwed::Refused(Refusal::Untagged(id.clone())));
    }
    if invoice.status != InvoiceStatus::Paid {
        return Err(NotOwed::Refused(Refusal::NeverCredited {
            id: id.clone(),
            status: invoice.status.as_str(),
        }));
    }
    let credits = stark
        .query_invoice_logs(&InvoiceLogQuery {
            types: vec![InvoiceLogType::Credited],
            invoice_ids: vec![id.clone()],
            ..Default::default()
        })
        .await
        .map_err(|e| NotOwed::Unsure(Unsure::Stark(e)))?;
    let Some(credit) = credits
        .iter()
        .find(|l| l.log_type == InvoiceLogType::Credited && l.invoice.id == *id)
    else {
        return Err(NotOwed::Unsure(Unsure::CreditNotVisible(id.clone())));
    };
    let due = payout_due(invoice.amount, invoice.fee, transfer_fee);
    if due > 0 {
        return Ok(Owed::Pay {
            due,
            invoice: Box::new(invoice),
        });
    }
    if invoice.amount < credit.invoice.amount {
        return Ok(Owed::Reversed {
            credited: credit.invoice.amount,
        });
    }
    Ok(Owed::NothingDue {
        amount: invoice.amount,
        fee: invoice.fee,
    })
}
