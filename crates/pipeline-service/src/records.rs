//! Stark's records turned into the domain's: the `paid_invoices` message of a credited log, and
//! the invoice and transfer records the audit compares. One conversion each, so that the
//! ingester, the operator commands and the local report read Stark the same way.

use pipeline_domain::audit::{InvoiceRecord, TransferRecord, TransferState};
use pipeline_domain::messages::{PaidInvoice, SCHEMA_VERSION};
use pipeline_domain::receiver::Account;
use pipeline_domain::vocab::{PayoutKey, RequestTag, SlotTag};
use stark_client::{Invoice, InvoiceLog, InvoiceStatus, Transfer, TransferStatus};

/// The message for a credited invoice log, as the ingester publishes it (and as the operator
/// commands republish it). `event_id` is for tracing only; money-sender reads the invoice back
/// from Stark before paying, so the numbers here are a hint.
pub fn paid_invoice(log: &InvoiceLog, event_id: &str) -> PaidInvoice {
    PaidInvoice {
        schema_version: SCHEMA_VERSION,
        event_id: event_id.to_owned(),
        invoice_id: log.invoice.id.clone(),
        amount: log.invoice.amount,
        fee: log.invoice.fee,
        payer_name: log.invoice.name.to_string(),
        payer_tax_id: log.invoice.tax_id.to_string(),
        credited_at: log.created.clone(),
        tags: log.invoice.tags.to_vec(),
    }
}

/// The audit's view of `invoice`. `credited_amount` is the amount of its `credited` log's
/// invoice (what was credited), or `None` when Stark shows no credit.
pub fn invoice_record(invoice: &Invoice, credited_amount: Option<i64>) -> InvoiceRecord {
    InvoiceRecord {
        id: invoice.id.clone(),
        request: RequestTag::find(&invoice.tags),
        slot: SlotTag::find(&invoice.tags).map(|s| s.0),
        nominal_amount: invoice.nominal_amount,
        amount: invoice.amount,
        fee: invoice.fee,
        credited_amount,
        canceled: invoice.status == InvoiceStatus::Canceled,
    }
}

/// The audit's view of `transfer`.
pub fn transfer_record(transfer: &Transfer) -> TransferRecord {
    TransferRecord {
        id: transfer.id.clone(),
        key: transfer.external_id.as_deref().and_then(PayoutKey::parse),
        amount: transfer.amount,
        state: transfer_state(transfer.status),
        account: Account {
            bank_code: transfer.bank_code.to_string(),
            branch_code: transfer.branch_code.to_string(),
            account_number: transfer.account_number.to_string(),
            tax_id: transfer.tax_id.to_string(),
        },
    }
}

/// Stark's transfer status as the domain's.
pub fn transfer_state(status: TransferStatus) -> TransferState {
    match status {
        TransferStatus::Created => TransferState::Created,
        TransferStatus::Processing => TransferState::Processing,
        TransferStatus::Success => TransferState::Success,
        TransferStatus::Failed => TransferState::Failed,
        TransferStatus::Canceled => TransferState::Canceled,
        TransferStatus::Unknown => TransferState::Unknown,
    }
}
