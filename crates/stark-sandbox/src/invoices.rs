//! `/v2/invoice`: create, list, get, update/cancel, payment, logs.

use serde_json::{Value, json};
use stark_client::{Description, Discount, Invoice, InvoiceLogType, InvoiceStatus, Split};
use time::OffsetDateTime;

use crate::clock::{DateOrTime, parse_date_or_time, timestamp};
use crate::error::ApiError;
use crate::query::{self, Query};
use crate::table::Ws;
use crate::validate::{Item, MAX_AMOUNT, batch};
use crate::world::{InvoiceRec, InvoiceUpdate, ReversalRefused, World};

/// Fields `POST /v2/invoice` accepts; any other is refused.
const FIELDS: &[&str] = &[
    "amount",
    "taxId",
    "name",
    "due",
    "expiration",
    "fine",
    "interest",
    "discounts",
    "descriptions",
    "tags",
    "rules",
    "splits",
];

/// Stark's defaults (docs/stark-api.md, "Invoices").
const DEFAULT_EXPIRATION: i64 = 5_097_600;
const DEFAULT_FINE: f64 = 2.0;
const DEFAULT_INTEREST: f64 = 1.0;
const DEFAULT_DUE_DAYS: i64 = 2;

/// An invoice item that passed every check.
struct Checked {
    amount: i64,
    tax_id: String,
    name: String,
    due: OffsetDateTime,
    expiration: i64,
    fine: f64,
    interest: f64,
    discounts: Vec<(f64, OffsetDateTime)>,
    descriptions: Vec<Description>,
    tags: Vec<String>,
    rules: Vec<stark_client::Rule>,
    splits: Vec<Split>,
}

fn percentage(item: &mut Item<'_>, key: &str, code: &str, default: f64) -> f64 {
    match item.get(key) {
        None => default,
        Some(v) => match v.as_f64().filter(|p| (0.0..=100.0).contains(p)) {
            Some(p) => p,
            None => {
                item.err(
                    code,
                    format!("{key} must be a percentage from 0 to 100; got {v}."),
                );
                default
            }
        },
    }
}

fn check(item: &mut Item<'_>, now: OffsetDateTime) -> Option<Checked> {
    item.only(FIELDS);
    let amount = item.amount(0);
    let tax_id = item.tax_id();
    let name = item.name();
    let due = match item.get("due") {
        None => now + time::Duration::days(DEFAULT_DUE_DAYS),
        Some(Value::String(s)) => match parse_date_or_time(s) {
            Some(d) => d.end(),
            None => {
                item.err(
                    "invalidDateTime",
                    format!("due {s:?} is not a date or datetime."),
                );
                now
            }
        },
        Some(other) => {
            item.err(
                "invalidDateTime",
                format!("due must be a string; got {other}."),
            );
            now
        }
    };
    let expiration = match item.get("expiration") {
        None => DEFAULT_EXPIRATION,
        Some(v) => match v.as_i64().filter(|e| (0..=MAX_AMOUNT).contains(e)) {
            Some(e) => e,
            None => {
                item.err(
                    "invalidExpiration",
                    format!("expiration must be a whole number of seconds; got {v}."),
                );
                DEFAULT_EXPIRATION
            }
        },
    };
    let fine = percentage(item, "fine", "invalidFine", DEFAULT_FINE);
    let interest = percentage(item, "interest", "invalidInterest", DEFAULT_INTEREST);
    let discounts = discounts(item, due);
    let descriptions = descriptions(item);
    let tags = item.tags();
    let rules = item.rules();
    let splits = splits(item);
    Some(Checked {
        amount: amount?,
        tax_id: tax_id?.to_string(),
        name: name?,
        due,
        expiration,
        fine,
        interest,
        discounts,
        descriptions,
        tags,
        rules,
        splits,
    })
}

/// Up to 5 `{percentage, due}`; percentages in (0, 100), strictly decreasing as dates increase,
/// no date after the invoice's due.
fn discounts(item: &mut Item<'_>, due: OffsetDateTime) -> Vec<(f64, OffsetDateTime)> {
    let Some(value) = item.get("discounts") else {
        return Vec::new();
    };
    let Some(list) = value.as_array().filter(|l| l.len() <= 5) else {
        item.err(
            "invalidDiscount",
            "discounts must be a list of at most 5 items.",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in list {
        let Some(obj) = d
            .as_object()
            .filter(|o| o.keys().all(|k| k == "percentage" || k == "due"))
        else {
            item.err(
                "invalidDiscount",
                "each discount must be {\"percentage\": number, \"due\": date}.",
            );
            continue;
        };
        let pct = obj
            .get("percentage")
            .and_then(Value::as_f64)
            .filter(|p| *p > 0.0 && *p < 100.0);
        let date = obj
            .get("due")
            .and_then(Value::as_str)
            .and_then(parse_date_or_time)
            .map(DateOrTime::end);
        match (pct, date) {
            (None, _) => item.err(
                "invalidDiscount",
                "discount percentage must be between 0 and 100.",
            ),
            (_, None) => item.err(
                "invalidDiscountDate",
                "discount due must be a date or datetime.",
            ),
            (Some(_), Some(d)) if d > due => item.err(
                "invalidDiscountDate",
                "a discount due cannot be after the invoice due.",
            ),
            (Some(p), Some(d)) => out.push((p, d)),
        }
    }
    out.sort_by_key(|(_, d)| *d);
    if out.windows(2).any(|w| w[0].1 == w[1].1 || w[0].0 <= w[1].0) {
        item.err(
            "invalidDiscount",
            "discount percentages must decrease as their dates increase, without repeats.",
        );
    }
    out
}

/// Up to 15 `{key, value?}`.
fn descriptions(item: &mut Item<'_>) -> Vec<Description> {
    let Some(value) = item.get("descriptions") else {
        return Vec::new();
    };
    let Some(list) = value.as_array().filter(|l| l.len() <= 15) else {
        item.err(
            "invalidDescription",
            "descriptions must be a list of at most 15 items.",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in list {
        let ok = d.as_object().filter(|o| {
            o.keys().all(|k| k == "key" || k == "value")
                && o.get("key")
                    .and_then(Value::as_str)
                    .is_some_and(|k| !k.is_empty())
                && o.get("value").is_none_or(Value::is_string)
        });
        match ok {
            Some(o) => out.push(Description {
                key: o["key"].as_str().unwrap_or_default().to_owned(),
                value: o.get("value").and_then(Value::as_str).map(str::to_owned),
            }),
            None => item.err(
                "invalidDescription",
                "each description must be {\"key\": string, \"value\": string}.",
            ),
        }
    }
    out
}

/// `[{amount, receiverId}]`.
fn splits(item: &mut Item<'_>) -> Vec<Split> {
    let Some(value) = item.get("splits") else {
        return Vec::new();
    };
    match serde_json::from_value::<Vec<Split>>(value.clone()) {
        Ok(splits) if splits.iter().all(|s| s.amount > 0) => splits,
        _ => {
            item.err(
                "invalidSplit",
                "splits must be a list of {\"amount\": cents, \"receiverId\": string}.",
            );
            Vec::new()
        }
    }
}

/// A Pix "copia e cola" EMV string pointing at a sandbox URL, with a valid CRC so that BR Code
/// parsers accept it.
fn brcode(token: &str, amount: i64) -> String {
    fn tlv(tag: &str, value: &str) -> String {
        format!("{tag}{:02}{value}", value.len())
    }
    let account = tlv("00", "br.gov.bcb.pix")
        + &tlv("25", &format!("brcode-h.sandbox.starkinfra.com/v2/{token}"));
    let mut payload = String::new();
    payload += &tlv("00", "01");
    payload += &tlv("01", "12");
    payload += &tlv("26", &account);
    payload += &tlv("52", "0000");
    payload += &tlv("53", "986");
    if amount > 0 {
        payload += &tlv("54", &format!("{}.{:02}", amount / 100, amount % 100));
    }
    payload += &tlv("58", "BR");
    payload += &tlv("59", "Stark Bank S.A.");
    payload += &tlv("60", "Sao Paulo");
    payload += &tlv("62", &tlv("05", "***"));
    payload += "6304";
    let crc = payload.bytes().fold(0xFFFFu16, |mut crc, byte| {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    });
    format!("{payload}{crc:04X}")
}

/// Stark's answer for an invoice id it does not know (400, not 404).
fn invoice_not_found(id: &str) -> ApiError {
    ApiError::bad("invalidInvoice", format!("Invoice {id} not found."))
}

fn parse_status(text: &str) -> Result<InvoiceStatus, ApiError> {
    serde_json::from_value::<InvoiceStatus>(Value::String(text.to_owned()))
        .ok()
        .filter(|s| s.as_str() == text)
        .ok_or_else(|| ApiError::bad("invalidStatus", format!("Unknown invoice status {text:?}.")))
}

impl World {
    /// `POST /v2/invoice`: all items valid, or nothing created.
    pub fn create_invoices(
        &mut self,
        ws: Ws,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let items = batch(body, "invoices")?;
        let mut errors = Vec::new();
        let mut checked = Vec::new();
        for (i, value) in items.iter().enumerate() {
            let before = errors.len();
            let Some(mut item) = Item::new(i, value, &mut errors) else {
                continue;
            };
            let result = check(&mut item, now);
            if errors.len() == before
                && let Some(c) = result
            {
                checked.push(c);
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::many(errors));
        }
        let mut created = Vec::new();
        for c in checked {
            let id = self.next_id();
            let token = self.hex32();
            let root = self.root_url().to_owned();
            let invoice = Invoice {
                id,
                amount: c.amount,
                nominal_amount: c.amount,
                fine_amount: 0,
                interest_amount: 0,
                discount_amount: 0,
                fee: 0,
                status: InvoiceStatus::Created,
                tax_id: c.tax_id.into(),
                name: c.name.into(),
                due: timestamp(c.due),
                expiration: c.expiration,
                fine: c.fine,
                interest: c.interest,
                discounts: c
                    .discounts
                    .iter()
                    .map(|(percentage, due)| Discount {
                        percentage: *percentage,
                        due: timestamp(*due),
                    })
                    .collect(),
                descriptions: c.descriptions.into(),
                tags: c.tags.into(),
                rules: c.rules,
                splits: c.splits,
                brcode: brcode(&token, c.amount).into(),
                pdf: format!("{root}/v2/invoice/{token}.pdf").into(),
                link: format!("{root}/invoicelink/{token}").into(),
                transaction_ids: Vec::new(),
                created: timestamp(now).into(),
                updated: timestamp(now),
            };
            let rec = InvoiceRec {
                invoice: invoice.into(),
                due_at: c.due,
                discounts: c.discounts,
                payment: None,
                credited: false,
                reversed: false,
            };
            created.push(self.add_invoice(ws, rec, now));
        }
        Ok(json!({ "invoices": created, "message": "Invoice(s) successfully created" }))
    }

    /// `GET /v2/invoice`: `status`, `tags` (any of), `ids`, and the common list parameters.
    pub fn list_invoices(&self, ws: Ws, q: &Query, now: OffsetDateTime) -> Result<Value, ApiError> {
        let params = query::list_params(q)?;
        let status = q.get("status").map(|s| parse_status(s)).transpose()?;
        let tags = query::tags(q);
        let ids = query::list(q, "ids");
        let (items, cursor) = self.invoices_page(ws, now, &params, &tags, |r| {
            let inv = &r.invoice;
            status.is_none_or(|s| inv.status == s)
                && query::any_tag(&inv.tags, &tags)
                && (ids.is_empty() || ids.contains(&inv.id))
        });
        let invoices: Vec<&Invoice> = items.into_iter().map(|r| &*r.invoice).collect();
        Ok(json!({ "cursor": cursor, "invoices": invoices }))
    }

    fn invoice_rec(&self, ws: Ws, id: &str) -> Result<&InvoiceRec, ApiError> {
        self.invoice(ws, id).ok_or_else(|| invoice_not_found(id))
    }

    /// `GET /v2/invoice/{id}`.
    pub fn get_invoice(&self, ws: Ws, id: &str) -> Result<Value, ApiError> {
        Ok(json!({ "invoice": self.invoice_rec(ws, id)?.invoice }))
    }

    /// `GET /v2/invoice/{id}/payment`: who paid, once paid.
    pub fn get_invoice_payment(&self, ws: Ws, id: &str) -> Result<Value, ApiError> {
        let rec = self.invoice_rec(ws, id)?;
        let payment = rec.payment.as_ref().ok_or_else(|| {
            ApiError::bad("invalidPayment", format!("Invoice {id} has not been paid."))
        })?;
        Ok(json!({ "payment": payment }))
    }

    /// `PATCH /v2/invoice/{id}`: `{"status": "canceled"}`, or new `amount`/`due`/`expiration`
    /// while unpaid; once paid, only a lower `amount`, which reverses the difference.
    pub fn patch_invoice(
        &mut self,
        ws: Ws,
        id: &str,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let status = self.invoice_rec(ws, id)?.invoice.status;
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad("invalidJson", format!("The body is not valid JSON: {e}"))
        })?;
        let obj = value
            .as_object()
            .filter(|o| {
                !o.is_empty()
                    && o.keys()
                        .all(|k| ["status", "amount", "due", "expiration"].contains(&k.as_str()))
            })
            .ok_or_else(|| {
                ApiError::bad(
                    "invalidJson",
                    "The body must hold status, amount, due or expiration.",
                )
            })?;
        if status == InvoiceStatus::Paid {
            return self.reverse_by_patch(ws, id, obj, now);
        }
        let open = matches!(status, InvoiceStatus::Created | InvoiceStatus::Overdue);
        if !open {
            return Err(ApiError::bad(
                "invalidOperation",
                format!(
                    "Invoice {id} is {}; only created, overdue or paid invoices can change.",
                    status.as_str()
                ),
            ));
        }
        if let Some(s) = obj.get("status") {
            if s != "canceled" || obj.len() > 1 {
                return Err(ApiError::bad(
                    "invalidStatus",
                    "status can only be set to \"canceled\", alone.",
                ));
            }
            self.cancel_invoice(id, now);
            return self.get_invoice(ws, id);
        }
        let amount = match obj.get("amount") {
            None => None,
            Some(v) => Some(
                v.as_i64()
                    .filter(|a| (0..=MAX_AMOUNT).contains(a))
                    .ok_or_else(|| {
                        ApiError::bad("invalidAmount", format!("amount must be cents; got {v}."))
                    })?,
            ),
        };
        let due = match obj.get("due") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(parse_date_or_time)
                    .map(DateOrTime::end)
                    .ok_or_else(|| {
                        ApiError::bad(
                            "invalidDateTime",
                            format!("due must be a date or datetime; got {v}."),
                        )
                    })?,
            ),
        };
        let expiration = match obj.get("expiration") {
            None => None,
            Some(v) => Some(v.as_i64().filter(|e| *e >= 0).ok_or_else(|| {
                ApiError::bad(
                    "invalidExpiration",
                    format!("expiration must be seconds; got {v}."),
                )
            })?),
        };
        let update = InvoiceUpdate {
            amount,
            due,
            expiration,
        };
        if !self.update_invoice(id, update, now) {
            return Err(invoice_not_found(id));
        }
        self.get_invoice(ws, id)
    }

    /// A PATCH of a paid invoice: Stark allows only lowering `amount`, which gives the difference
    /// back to the payer (a reversal; `amount: 0` reverses it fully).
    fn reverse_by_patch(
        &mut self,
        ws: Ws,
        id: &str,
        obj: &serde_json::Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let refuse = |message: String| Err(ApiError::bad("invalidOperation", message));
        let (Some(amount), 1) = (obj.get("amount"), obj.len()) else {
            return refuse(format!(
                "Invoice {id} is paid; only its amount can be lowered (a reversal)."
            ));
        };
        let current = self.invoice_rec(ws, id)?.invoice.amount;
        let new = amount
            .as_i64()
            .filter(|a| (0..current).contains(a))
            .ok_or_else(|| {
                ApiError::bad(
                    "invalidAmount",
                    format!(
                        "amount of paid invoice {id} can only be lowered, from {current} cents to 0 or more; got {amount}."
                    ),
                )
            })?;
        match self.reverse_invoice(Some(ws), id, current - new, now) {
            Ok(invoice) => Ok(json!({ "invoice": invoice })),
            Err(ReversalRefused::NotFound(_)) => Err(invoice_not_found(id)),
            Err(other) => refuse(other.to_string()),
        }
    }

    /// `GET /v2/invoice/log`: `types`, `invoiceIds`, and the common list parameters.
    pub fn list_invoice_logs(
        &self,
        ws: Ws,
        q: &Query,
        now: OffsetDateTime,
    ) -> Result<Value, ApiError> {
        let params = query::list_params(q)?;
        let mut types = Vec::new();
        for t in query::list(q, "types") {
            let parsed = serde_json::from_value::<InvoiceLogType>(Value::String(t.clone()))
                .ok()
                .filter(|p| p.as_str() == t)
                .ok_or_else(|| {
                    ApiError::bad(
                        "invalidInvoiceLog",
                        format!("Unknown invoice log type {t:?}."),
                    )
                })?;
            types.push(parsed);
        }
        let ids = query::list(q, "invoiceIds");
        let (logs, cursor) = self.invoice_logs_page(ws, now, &params, &ids, |l| {
            (types.is_empty() || types.contains(&l.log_type))
                && (ids.is_empty() || ids.contains(&l.invoice.id))
        });
        Ok(json!({ "cursor": cursor, "logs": logs }))
    }

    /// `GET /v2/invoice/log/{id}`.
    pub fn get_invoice_log(&self, ws: Ws, id: &str) -> Result<Value, ApiError> {
        let log = self.find_invoice_log(ws, id).ok_or_else(|| {
            ApiError::bad("invalidInvoiceLog", format!("Invoice log {id} not found."))
        })?;
        Ok(json!({ "log": log }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brcode_has_a_valid_crc() {
        let code = brcode("ea93", 12345);
        assert!(code.starts_with("000201010212"));
        assert!(code.contains("5406123.45"));
        // CRC16/CCITT-FALSE of the whole string including its own tag must be re-computable.
        let (payload, crc) = code.split_at(code.len() - 4);
        let again = brcode("ea93", 12345);
        assert_eq!(&again[..again.len() - 4], payload);
        assert_eq!(crc.len(), 4);
        assert!(crc.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
