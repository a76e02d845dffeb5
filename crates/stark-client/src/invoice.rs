//! Invoices (Pix dynamic QR charges): `/v2/invoice`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Error;
use crate::page::{MAX_PAGE, Page, check_id, push_list, push_opt};

/// Invoice status.
///
/// Stark has no status for a reversed invoice: the SDKs and docs list only these five, and a
/// reversal (a `PATCH` lowering a paid invoice's `amount`) leaves it `paid` with `amount`
/// lowered, down to 0 when fully reversed, plus a `reversed` log. So "fully reversed" is
/// `Paid` with `amount == 0`, not a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    /// Issued, not paid.
    Created,
    /// Paid by the payer; still `paid` after a partial or full reversal (see above).
    Paid,
    /// Canceled by us or by Stark.
    Canceled,
    /// Past due: fine and interest apply.
    Overdue,
    /// Past expiration: can no longer be paid.
    Expired,
    /// A status this client does not know (Stark may add some).
    #[serde(other)]
    Unknown,
}

impl InvoiceStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Created => "created",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Canceled => "canceled",
            InvoiceStatus::Overdue => "overdue",
            InvoiceStatus::Expired => "expired",
            InvoiceStatus::Unknown => "unknown",
        }
    }
}

/// A discount for early payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Discount {
    /// Percentage in (0, 100).
    pub percentage: f64,
    /// Date or datetime until which it applies.
    pub due: String,
}

/// A key/value shown to the payer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Label.
    pub key: String,
    /// Optional value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A rule, e.g. `{"key": "allowedTaxIds", "value": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Rule name.
    pub key: String,
    /// Rule value (a list, a number…).
    pub value: Value,
}

/// A split of the received amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Split {
    /// Cents.
    pub amount: i64,
    /// Receiver id.
    pub receiver_id: String,
}

/// The fields accepted by `POST /v2/invoice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NewInvoice {
    /// Cents; 0 accepts any amount.
    pub amount: i64,
    /// Payer CPF or CNPJ, formatted or not.
    pub tax_id: String,
    /// Payer name.
    pub name: String,
    /// ISO datetime (immediate charge) or date (scheduled charge); default now + 2 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// Seconds after `due` until the charge expires; default 59 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<i64>,
    /// Fine percentage after `due`; default 2.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine: Option<f64>,
    /// Monthly interest percentage; default 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest: Option<f64>,
    /// Up to 5 discounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discounts: Vec<Discount>,
    /// Up to 15 descriptions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub descriptions: Vec<Description>,
    /// Tags; Stark lowercases them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Rules such as `allowedTaxIds`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Splits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<Split>,
}

/// An invoice as Stark returns it.
///
/// The fields that never change after creation and carry the most text (payer, tags,
/// descriptions, brcode, URLs, `created`) are shared (`Arc`): every log holds a copy of the
/// invoice as it was, and a copy then repeats only what changed (status, amounts, `updated`).
/// In the local sandbox, which keeps every log, that halved what each invoice version costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    /// 16-digit id.
    pub id: String,
    /// Current amount in cents: after payment, what was paid
    /// (`nominalAmount - discountAmount + fineAmount + interestAmount`).
    pub amount: i64,
    /// Amount at issue, in cents.
    #[serde(default)]
    pub nominal_amount: i64,
    /// Fine charged, in cents.
    #[serde(default)]
    pub fine_amount: i64,
    /// Interest charged, in cents.
    #[serde(default)]
    pub interest_amount: i64,
    /// Discount given, in cents.
    #[serde(default)]
    pub discount_amount: i64,
    /// Stark's fee in cents, known once credited.
    #[serde(default)]
    pub fee: i64,
    /// Status.
    pub status: InvoiceStatus,
    /// Payer tax id, formatted.
    pub tax_id: Arc<str>,
    /// Payer name.
    pub name: Arc<str>,
    /// Due datetime or date.
    #[serde(default)]
    pub due: String,
    /// Expiration in seconds after `due`.
    #[serde(default)]
    pub expiration: i64,
    /// Fine percentage.
    #[serde(default)]
    pub fine: f64,
    /// Monthly interest percentage.
    #[serde(default)]
    pub interest: f64,
    /// Discounts.
    #[serde(default)]
    pub discounts: Vec<Discount>,
    /// Descriptions.
    #[serde(default)]
    pub descriptions: Arc<[Description]>,
    /// Lowercased tags.
    #[serde(default)]
    pub tags: Arc<[String]>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Splits.
    #[serde(default)]
    pub splits: Vec<Split>,
    /// Pix EMV string.
    #[serde(default)]
    pub brcode: Arc<str>,
    /// PDF URL.
    #[serde(default)]
    pub pdf: Arc<str>,
    /// Payment page URL.
    #[serde(default)]
    pub link: Arc<str>,
    /// Ledger transactions, filled when credited.
    #[serde(default)]
    pub transaction_ids: Vec<String>,
    /// Creation time (`YYYY-MM-DDTHH:MM:SS.ffffff+00:00`).
    pub created: Arc<str>,
    /// Last update time.
    #[serde(default)]
    pub updated: String,
}

/// Invoice log type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceLogType {
    /// Issued.
    Created,
    /// Payment received.
    Paid,
    /// Money reached our balance (net of `fee`): the only log that pays out.
    Credited,
    /// Canceled.
    Canceled,
    /// Due date passed unpaid.
    Overdue,
    /// Expiration passed unpaid.
    Expired,
    /// A reversal completed.
    Reversed,
    /// Amount, due or expiration changed.
    Updated,
    /// Voided.
    Voided,
    /// Reversal in progress.
    Reversing,
    /// Any other type.
    #[serde(other)]
    Unknown,
}

impl InvoiceLogType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Paid => "paid",
            Self::Credited => "credited",
            Self::Canceled => "canceled",
            Self::Overdue => "overdue",
            Self::Expired => "expired",
            Self::Reversed => "reversed",
            Self::Updated => "updated",
            Self::Voided => "voided",
            Self::Reversing => "reversing",
            Self::Unknown => "unknown",
        }
    }
}

/// One change of an invoice, with its full snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceLog {
    /// Log id.
    pub id: String,
    /// When it happened.
    pub created: String,
    /// What happened.
    #[serde(rename = "type")]
    pub log_type: InvoiceLogType,
    /// Errors attached by Stark (usually empty).
    #[serde(default)]
    pub errors: Vec<Value>,
    /// The invoice after the change. In an [`Arc`] so that a holder of an invoice and all its
    /// logs (the local sandbox keeps a whole campaign) can share the versions that did not
    /// change instead of copying the invoice into every log.
    pub invoice: Arc<Invoice>,
}

/// `GET /v2/invoice/{id}/payment`: who paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoicePayment {
    /// Cents paid.
    pub amount: i64,
    /// Payer name.
    pub name: Arc<str>,
    /// Payer tax id.
    pub tax_id: Arc<str>,
    /// Payer bank (ISPB).
    pub bank_code: String,
    /// Payer branch.
    pub branch_code: String,
    /// Payer account.
    pub account_number: String,
    /// Payer account type.
    pub account_type: String,
    /// Pix end-to-end id.
    pub end_to_end_id: String,
    /// e.g. `pix`.
    pub method: String,
}

/// Filters of `GET /v2/invoice`.
#[derive(Debug, Clone, Default)]
pub struct InvoiceQuery {
    /// Maximum number of invoices to return in total (`None`: all).
    pub limit: Option<usize>,
    /// Created on or after this date (`YYYY-MM-DD`).
    pub after: Option<String>,
    /// Created on or before this date (`YYYY-MM-DD`).
    pub before: Option<String>,
    /// Only this status.
    pub status: Option<InvoiceStatus>,
    /// Any of these tags.
    pub tags: Vec<String>,
    /// Only these ids.
    pub ids: Vec<String>,
}

impl InvoiceQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push_opt(&mut pairs, "after", self.after.as_deref());
        push_opt(&mut pairs, "before", self.before.as_deref());
        push_opt(&mut pairs, "status", self.status.map(InvoiceStatus::as_str));
        push_list(&mut pairs, "tags", &self.tags);
        push_list(&mut pairs, "ids", &self.ids);
        pairs
    }
}

/// Filters of `GET /v2/invoice/log`.
#[derive(Debug, Clone, Default)]
pub struct InvoiceLogQuery {
    /// Maximum number of logs in total (`None`: all).
    pub limit: Option<usize>,
    /// Created on or after this date.
    pub after: Option<String>,
    /// Created on or before this date.
    pub before: Option<String>,
    /// Only these types.
    pub types: Vec<InvoiceLogType>,
    /// Only logs of these invoices.
    pub invoice_ids: Vec<String>,
}

impl InvoiceLogQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push_opt(&mut pairs, "after", self.after.as_deref());
        push_opt(&mut pairs, "before", self.before.as_deref());
        let types: Vec<String> = self.types.iter().map(|t| t.as_str().to_owned()).collect();
        push_list(&mut pairs, "types", &types);
        push_list(&mut pairs, "invoiceIds", &self.invoice_ids);
        pairs
    }
}

/// Checks the batch size Stark enforces, before anything is sent.
pub(crate) fn check_batch(kind: &str, len: usize) -> Result<(), Error> {
    if len == 0 || len > MAX_PAGE {
        return Err(Error::InvalidRequest(format!(
            "{kind} batches hold 1 to {MAX_PAGE} items, got {len}"
        )));
    }
    Ok(())
}

impl Client {
    /// `POST /v2/invoice` with 1 to 100 invoices. Stark creates all or none.
    pub async fn create_invoices(&self, invoices: &[NewInvoice]) -> Result<Vec<Invoice>, Error> {
        check_batch("invoice", invoices.len())?;
        let body: CreatedInvoices = self
            .post("invoice", &json!({ "invoices": invoices }))
            .await?;
        Ok(body.invoices)
    }

    /// All invoices matching `query`, following cursors.
    pub async fn query_invoices(&self, query: &InvoiceQuery) -> Result<Vec<Invoice>, Error> {
        self.collect("invoice", "invoices", &query.pairs(), query.limit)
            .await
    }

    /// The invoices matching `query`, a page at a time, without keeping them.
    pub async fn each_invoice(
        &self,
        query: &InvoiceQuery,
        visit: impl FnMut(Vec<Invoice>),
    ) -> Result<(), Error> {
        self.for_each_page("invoice", "invoices", &query.pairs(), query.limit, visit)
            .await
    }

    /// One page of invoices matching `query`.
    pub async fn page_invoices(
        &self,
        query: &InvoiceQuery,
        cursor: Option<&str>,
    ) -> Result<Page<Invoice>, Error> {
        let limit = query.limit.unwrap_or(MAX_PAGE);
        self.page("invoice", "invoices", &query.pairs(), cursor, limit)
            .await
    }

    /// `GET /v2/invoice/{id}`.
    pub async fn get_invoice(&self, id: &str) -> Result<Invoice, Error> {
        check_id("invoice", id)?;
        let body: OneInvoice = self.get(&format!("invoice/{id}"), &[]).await?;
        Ok(body.invoice)
    }

    /// `PATCH /v2/invoice/{id}` with `{"status": "canceled"}`, as the Python SDK's
    /// `invoice.update(id, status="canceled")` sends it: the charge can no longer be paid.
    /// Stark refuses (400) an invoice that is already paid or canceled. Sent once, like every
    /// write; after an error that [`Error::may_have_happened`], read the invoice back.
    pub async fn cancel_invoice(&self, id: &str) -> Result<Invoice, Error> {
        check_id("invoice", id)?;
        let body: OneInvoice = self
            .patch(&format!("invoice/{id}"), &json!({ "status": "canceled" }))
            .await?;
        Ok(body.invoice)
    }

    /// `GET /v2/invoice/{id}/payment`.
    pub async fn get_invoice_payment(&self, id: &str) -> Result<InvoicePayment, Error> {
        check_id("invoice", id)?;
        let body: OnePayment = self.get(&format!("invoice/{id}/payment"), &[]).await?;
        Ok(body.payment)
    }

    /// All invoice logs matching `query`, following cursors.
    pub async fn query_invoice_logs(
        &self,
        query: &InvoiceLogQuery,
    ) -> Result<Vec<InvoiceLog>, Error> {
        self.collect("invoice/log", "logs", &query.pairs(), query.limit)
            .await
    }

    /// The invoice logs matching `query`, a page at a time, without keeping them.
    pub async fn each_invoice_log(
        &self,
        query: &InvoiceLogQuery,
        visit: impl FnMut(Vec<InvoiceLog>),
    ) -> Result<(), Error> {
        self.for_each_page("invoice/log", "logs", &query.pairs(), query.limit, visit)
            .await
    }

    /// `GET /v2/invoice/log/{id}`.
    pub async fn get_invoice_log(&self, id: &str) -> Result<InvoiceLog, Error> {
        check_id("invoice log", id)?;
        let body: OneLog = self.get(&format!("invoice/log/{id}"), &[]).await?;
        Ok(body.log)
    }
}

#[derive(Deserialize)]
struct CreatedInvoices {
    invoices: Vec<Invoice>,
}

#[derive(Deserialize)]
struct OneInvoice {
    invoice: Invoice,
}

#[derive(Deserialize)]
struct OnePayment {
    payment: InvoicePayment,
}

#[derive(Deserialize)]
struct OneLog {
    log: InvoiceLog,
}
