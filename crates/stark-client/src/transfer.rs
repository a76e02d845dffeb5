//! Transfers (Pix or TED): `/v2/transfer`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::Client;
use crate::error::Error;
use crate::invoice::{Rule, check_batch};
use crate::page::{MAX_PAGE, Page, check_id, push_list, push_opt};

/// Transfer status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferStatus {
    /// Accepted.
    Created,
    /// Being sent.
    Processing,
    /// Delivered.
    Success,
    /// Refused by the receiving bank or by Stark (e.g. insufficient balance).
    Failed,
    /// A scheduled transfer that was canceled.
    Canceled,
    /// Any other status.
    #[serde(other)]
    Unknown,
}

impl TransferStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Processing => "processing",
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Unknown => "unknown",
        }
    }
}

/// The fields accepted by `POST /v2/transfer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NewTransfer {
    /// Cents, > 0.
    pub amount: i64,
    /// Receiver name.
    pub name: String,
    /// Receiver CPF or CNPJ.
    pub tax_id: String,
    /// 8-digit ISPB (Pix) or 1–3 digit bank code (TED).
    pub bank_code: String,
    /// Branch, `-` before a check digit.
    pub branch_code: String,
    /// Account, `-` before the check digit.
    pub account_number: String,
    /// `checking`, `savings`, `salary` or `payment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<String>,
    /// Unique among all our transfers: Stark refuses a repeat, which makes retries safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Date or datetime; default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<String>,
    /// Bank statement description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Description shown to the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_description: Option<String>,
    /// Tags; Stark lowercases them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Rules such as `resendingLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A transfer as Stark returns it.
///
/// What never changes after creation (the receiver, schedule, description, tags, `created`) is
/// shared (`Arc`), as in [`crate::Invoice`]: each log's copy repeats only status, fee and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// 16-digit id.
    pub id: String,
    /// Cents.
    pub amount: i64,
    /// Receiver name.
    pub name: Arc<str>,
    /// Receiver tax id.
    pub tax_id: Arc<str>,
    /// Receiver bank.
    pub bank_code: Arc<str>,
    /// Receiver branch.
    pub branch_code: Arc<str>,
    /// Receiver account.
    pub account_number: Arc<str>,
    /// Receiver account type.
    #[serde(default)]
    pub account_type: Arc<str>,
    /// Our idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Scheduled date/time.
    #[serde(default)]
    pub scheduled: Arc<str>,
    /// Statement description.
    #[serde(default)]
    pub description: Arc<str>,
    /// Receiver-facing description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_description: Option<String>,
    /// Lowercased tags.
    #[serde(default)]
    pub tags: Arc<[String]>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Stark's fee in cents.
    #[serde(default)]
    pub fee: i64,
    /// Status.
    pub status: TransferStatus,
    /// Ledger transactions (a second one is a chargeback).
    #[serde(default)]
    pub transaction_ids: Vec<String>,
    /// Creation time.
    pub created: Arc<str>,
    /// Last update time.
    #[serde(default)]
    pub updated: String,
}

/// One change of a transfer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferLog {
    /// Log id.
    pub id: String,
    /// When it happened.
    pub created: String,
    /// `created`, `processing`, `sending`, `success`, `failed`, `canceled`…
    #[serde(rename = "type")]
    pub log_type: String,
    /// Errors attached by Stark.
    #[serde(default)]
    pub errors: Vec<Value>,
    /// The transfer after the change, in an [`Arc`] for the same reason as
    /// [`crate::InvoiceLog::invoice`].
    pub transfer: Arc<Transfer>,
}

/// Filters of `GET /v2/transfer`.
#[derive(Debug, Clone, Default)]
pub struct TransferQuery {
    /// Maximum number in total (`None`: all).
    pub limit: Option<usize>,
    /// Created on or after this date.
    pub after: Option<String>,
    /// Created on or before this date.
    pub before: Option<String>,
    /// Only this status.
    pub status: Option<TransferStatus>,
    /// Any of these tags.
    pub tags: Vec<String>,
    /// Only these ids.
    pub ids: Vec<String>,
}

impl TransferQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        push_opt(&mut pairs, "after", self.after.as_deref());
        push_opt(&mut pairs, "before", self.before.as_deref());
        push_opt(
            &mut pairs,
            "status",
            self.status.map(TransferStatus::as_str),
        );
        push_list(&mut pairs, "tags", &self.tags);
        push_list(&mut pairs, "ids", &self.ids);
        pairs
    }
}

impl Client {
    /// `POST /v2/transfer` with 1 to 100 transfers. Never retried: on an unknown outcome, look
    /// the transfer up by its tag or `externalId`.
    pub async fn create_transfers(
        &self,
        transfers: &[NewTransfer],
    ) -> Result<Vec<Transfer>, Error> {
        check_batch("transfer", transfers.len())?;
        let body: CreatedTransfers = self
            .post("transfer", &json!({ "transfers": transfers }))
            .await?;
        Ok(body.transfers)
    }

    /// All transfers matching `query`, following cursors.
    pub async fn query_transfers(&self, query: &TransferQuery) -> Result<Vec<Transfer>, Error> {
        self.collect("transfer", "transfers", &query.pairs(), query.limit)
            .await
    }

    /// The transfers matching `query`, a page at a time, without keeping them.
    pub async fn each_transfer(
        &self,
        query: &TransferQuery,
        visit: impl FnMut(Vec<Transfer>),
    ) -> Result<(), Error> {
        self.for_each_page("transfer", "transfers", &query.pairs(), query.limit, visit)
            .await
    }

    /// One page of transfers.
    pub async fn page_transfers(
        &self,
        query: &TransferQuery,
        cursor: Option<&str>,
    ) -> Result<Page<Transfer>, Error> {
        let limit = query.limit.unwrap_or(MAX_PAGE);
        self.page("transfer", "transfers", &query.pairs(), cursor, limit)
            .await
    }

    /// `GET /v2/transfer/{id}`.
    pub async fn get_transfer(&self, id: &str) -> Result<Transfer, Error> {
        check_id("transfer", id)?;
        let body: OneTransfer = self.get(&format!("transfer/{id}"), &[]).await?;
        Ok(body.transfer)
    }
}

#[derive(Deserialize)]
struct CreatedTransfers {
    transfers: Vec<Transfer>,
}

#[derive(Deserialize)]
struct OneTransfer {
    transfer: Transfer,
}
