//! Domain and plumbing shared by the four pipeline services.
//!
//! # Layout
//! - [`taxid`]: CPF/CNPJ validation and formatting.
//! - [`messages`]: the versioned payloads of `pending_invoices` and `paid_invoices`.
//! - [`envelope`]: the Pub/Sub push envelope as an axum extractor.
//! - [`publisher`]: the `Publisher` trait (Pub/Sub in `gcp-pubsub`, in-process in [`bus`]).
//! - [`bus`]: an in-process bus with Pub/Sub's push, retry and dead-letter contract.
//! - [`locks`]: per-key async locks against concurrent duplicate deliveries.
//! - [`config`]: environment variables, read once, errors that name the variable.
//! - [`logging`]: Cloud Logging JSON lines with trace ids, or text in a terminal.
//! - [`serve`]: bind, `/healthz`, request tracing, graceful shutdown.
#![forbid(unsafe_code)]

pub mod bus;
pub mod config;
pub mod envelope;
pub mod locks;
pub mod logging;
pub mod messages;
pub mod publisher;
pub mod serve;
pub mod taxid;

/// Formats cents as `R$ 1.234,56` for humans (logs, tables). Never used for arithmetic.
pub fn format_brl(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let reais = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in reais.chars().enumerate() {
        if i > 0 && (reais.len() - i).is_multiple_of(3) {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{sign}R$ {grouped},{:02}", abs % 100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn brl_formatting() {
        assert_eq!(super::format_brl(123456), "R$ 1.234,56");
        assert_eq!(super::format_brl(5), "R$ 0,05");
        assert_eq!(super::format_brl(-100000000), "-R$ 1.000.000,00");
    }
}
