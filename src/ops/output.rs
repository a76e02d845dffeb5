//! How the reporting commands print: `--format table` (the default, for people) or
//! `--format json` (for scripts), as gcloud spells it.
//!
//! The JSON is a stable interface, documented in the README: snake_case keys, amounts in
//! integer cents, times in RFC 3339 (UTC), ids as strings. Tables go through `comfy-table`,
//! borderless like gcloud's, with values formatted for reading: no Rust `Debug` output.

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets};
use pipeline_domain::audit::Finding;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `--format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document on stdout (see the README for its fields).
    Json,
}

/// The `--format` flag, flattened into each reporting command.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct FormatArg {
    /// Output format: `table` for people, `json` for scripts (stable keys, cents, RFC 3339).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// A borderless table with upper-case headers, as gcloud prints lists.
pub fn table<I, S>(headers: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.into_iter().map(|h| h.as_ref().to_uppercase()));
    table
}

/// Writes a table: columns start at the left margin, two spaces apart, and lines carry no
/// trailing spaces, so that output compares and greps cleanly.
pub fn write_table(out: &mut dyn Write, table: &mut Table) -> std::io::Result<()> {
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A Stark timestamp (`2026-11-27T12:00:00.123456+00:00`) in RFC 3339, UTC; a time that does
/// not parse is passed through as Stark wrote it rather than dropped.
pub fn rfc3339(stark_time: &str) -> String {
    OffsetDateTime::parse(stark_time, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok())
        .unwrap_or_else(|| stark_time.to_owned())
}

/// An instant in RFC 3339, UTC.
pub fn instant(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

/// Cents for people: `R$ 1.234,56` (the domain's one formatter).
pub use pipeline_domain::money::format_brl as brl;

/// One audit finding in JSON: its stable `kind`, whether it needs action, the objects it
/// names, the amounts it states (cents) and the sentence the table shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FindingJson {
    /// `Finding::kind()`: `not_paid_out`, `paid_twice`, `in_flight`, …
    pub kind: &'static str,
    /// Whether someone must act (`false` for information such as `in_flight`).
    pub problem: bool,
    /// The invoice it is about, when it is about one.
    pub invoice_id: Option<String>,
    /// The request it is about, when it is about one.
    pub request_id: Option<String>,
    /// The transfers it names.
    pub transfer_ids: Vec<String>,
    /// Cents due, when the finding says.
    pub due: Option<i64>,
    /// Cents paid, when the finding says.
    pub paid: Option<i64>,
    /// The finding as a sentence.
    pub message: String,
}

impl From<&Finding> for FindingJson {
    fn from(finding: &Finding) -> Self {
        let mut json = FindingJson {
            kind: finding.kind(),
            problem: finding.is_problem(),
            invoice_id: None,
            request_id: None,
            transfer_ids: Vec::new(),
            due: None,
            paid: None,
            message: finding.to_string(),
        };
        match finding {
            Finding::DuplicateInvoice {
                request_id,
                invoices,
            } => {
                json.request_id = Some(request_id.clone());
                json.invoice_id = invoices.first().cloned();
            }
            Finding::NotIssued { request_id } => json.request_id = Some(request_id.clone()),
            Finding::NotPaidOut { invoice, due } => {
                json.invoice_id = Some(invoice.clone());
                json.due = Some(*due);
            }
            Finding::PayoutFailed { invoice, transfers }
            | Finding::PaidTwice { invoice, transfers } => {
                json.invoice_id = Some(invoice.clone());
                json.transfer_ids.clone_from(transfers);
            }
            Finding::WrongAmount {
                invoice,
                transfer,
                expected,
                paid,
            } => {
                json.invoice_id = Some(invoice.clone());
                json.transfer_ids = vec![transfer.clone()];
                json.due = Some(*expected);
                json.paid = Some(*paid);
            }
            Finding::ReversedAfterPayout {
                invoice,
                transfer,
                paid,
                due,
            } => {
                json.invoice_id = Some(invoice.clone());
                json.transfer_ids = vec![transfer.clone()];
                json.due = Some(*due);
                json.paid = Some(*paid);
            }
            Finding::WrongReceiver { invoice, transfer }
            | Finding::PaidWithoutCredit { invoice, transfer }
            | Finding::InFlight { invoice, transfer }
            | Finding::FailedTransfer {
                invoice, transfer, ..
            } => {
                json.invoice_id = Some(invoice.clone());
                json.transfer_ids = vec![transfer.clone()];
            }
            Finding::StrayTransfer { transfer } => json.transfer_ids = vec![transfer.clone()],
        }
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_times_are_formatted_for_people_and_scripts() {
        assert_eq!(
            rfc3339("2026-11-27T09:00:00.123456-03:00"),
            "2026-11-27T12:00:00.123456Z"
        );
        assert_eq!(rfc3339("soon"), "soon");
        let finding = FindingJson::from(&Finding::NotPaidOut {
            invoice: "42".into(),
            due: 950,
        });
        let json = serde_json::to_value(&finding).unwrap();
        assert_eq!(json["kind"], "not_paid_out");
        assert_eq!(json["invoice_id"], "42");
        assert_eq!(json["due"], 950);
        assert_eq!(json["problem"], true);
    }

    #[test]
    fn tables_have_no_trailing_spaces() {
        let mut t = table(["id", "url"]);
        t.add_row(["1", "https://a"]);
        t.add_row(["22", "b"]);
        let mut out = Vec::new();
        write_table(&mut out, &mut t).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().all(|l| !l.ends_with(' ')), "{text:?}");
        assert_eq!(text, "ID  URL\n1   https://a\n22  b\n");
    }
}
