//! Reversals: the payer gets back part or all of a credited invoice.
//!
//! At Stark a paid invoice can only have its `amount` lowered, and lowering it is a reversal:
//! the difference goes back to the payer, leaves the workspace's balance, gets a ledger
//! transaction id, and the invoice gets a `reversed` log (and event). `amount = 0` reverses it
//! fully. The SDKs and docs list no `reversed` invoice **status** (only `created`, `paid`,
//! `canceled`, `overdue`, `expired`), and `reversed` only as a log type, so a fully reversed
//! invoice stays `paid` with `amount` 0; its logs tell what happened. The fee is not refunded.
//!
//! Reversals come from a PATCH, from `SandboxHandle::reverse_invoice`, or by themselves at
//! `SandboxConfig::reversal_rate` some time after the credit (a payer's refund claim).

use std::sync::Arc;

use rand::RngExt as _;
use stark_client::{Invoice, InvoiceLogType, InvoiceStatus};
use time::OffsetDateTime;

use super::{Job, World};
use crate::clock::timestamp;
use crate::table::Ws;

/// Why an invoice cannot be reversed (by that much).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReversalRefused {
    /// No such invoice (in that workspace).
    #[error("invoice {0} not found")]
    NotFound(String),
    /// Not paid and credited: there is nothing to give back yet.
    #[error("invoice {id} is {status} and not credited; only credited invoices can be reversed")]
    NotCredited {
        /// The invoice.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// Zero, negative, or more than what is left of the amount.
    #[error("cannot reverse {cents} cents of invoice {id}: {left} cents are left to reverse")]
    BadAmount {
        /// The invoice.
        id: String,
        /// What was asked.
        cents: i64,
        /// Its current amount.
        left: i64,
    },
}

impl World {
    /// Gives `cents` of a credited invoice back to its payer: the amount drops by `cents`, so
    /// does the balance of the invoice's workspace, and a `reversed` log (and event) is written.
    /// `ws` limits it to one workspace's invoices (an API call); `None` is the admin's reach.
    pub fn reverse_invoice(
        &mut self,
        ws: Option<Ws>,
        id: &str,
        cents: i64,
        now: OffsetDateTime,
    ) -> Result<Invoice, ReversalRefused> {
        let transaction_id = self.ids.transaction_id();
        let row = match ws {
            Some(ws) => self.invoices.get_mut_in(id, ws),
            None => self.invoices.get_mut(id),
        }
        .ok_or_else(|| ReversalRefused::NotFound(id.to_owned()))?;
        let owner = row.ws;
        let rec = &mut row.item;
        if rec.invoice.status != InvoiceStatus::Paid || !rec.credited {
            return Err(ReversalRefused::NotCredited {
                id: id.to_owned(),
                status: rec.invoice.status.as_str(),
            });
        }
        let left = rec.invoice.amount;
        if !(1..=left).contains(&cents) {
            return Err(ReversalRefused::BadAmount {
                id: id.to_owned(),
                cents,
                left,
            });
        }
        let invoice = Arc::make_mut(&mut rec.invoice);
        invoice.amount -= cents;
        // "All but the first are reversals" (the SDK's doc of transactionIds).
        invoice.transaction_ids.push(transaction_id);
        invoice.updated = timestamp(now);
        self.counters.entry(owner.0).or_default().reversals += 1;
        if !rec.reversed {
            rec.reversed = true;
            self.counters.entry(owner.0).or_default().invoices_reversed += 1;
            self.reversed_invoices.push(id.to_owned());
        }
        let invoice = Invoice::clone(&rec.invoice);
        self.move_balance(owner, -cents, now);
        self.write_invoice_log(id, InvoiceLogType::Reversed, now);
        Ok(invoice)
    }

    /// After a credit: rolls whether the payer will claw it back, fully or in part, and when.
    /// Every roll draws the same numbers whatever the outcome, so that one invoice's reversal
    /// does not move the dice of the next.
    pub(super) fn maybe_schedule_reversal(&mut self, id: &str, amount: i64, now: OffsetDateTime) {
        let reversed = self.reversal_rng.random_bool(self.settings.reversal_rate);
        let full = self
            .reversal_rng
            .random_bool(self.settings.full_reversal_share);
        let part: u64 = self.reversal_rng.random();
        let after = self.reversal_rng.random_range(0.0..=1.0f64);
        if !reversed || amount <= 0 {
            return;
        }
        // A partial reversal returns 1 to amount − 1 cents (an amount of 1 can only be fully
        // reversed).
        let cents = if full || amount == 1 {
            amount
        } else {
            1 + (part % (amount - 1).unsigned_abs()) as i64
        };
        let at = now + self.settings.reversal_delay.mul_f64(after);
        self.schedule(at, Job::ReverseInvoice(id.to_owned(), cents));
    }

    /// A scheduled reversal; by then a PATCH may have lowered the amount, so it takes at most
    /// what is left, and nothing from a fully reversed invoice.
    pub(super) fn scheduled_reversal(&mut self, id: &str, cents: i64, now: OffsetDateTime) {
        let left = self.invoices.get(id).map_or(0, |r| r.item.invoice.amount);
        if left > 0 {
            // Refusals here (not credited) cannot happen: the job is queued after the credit.
            let _ = self.reverse_invoice(None, id, cents.min(left), now);
        }
    }
}
