//! Logs: one JSON object per line in Google Cloud Logging's format on Cloud Run, readable text in
//! a terminal.
//!
//! Cloud Logging reads `severity`, `message` and `logging.googleapis.com/trace` from each stdout
//! line; the trace ties every line of one request together in the console. The trace id comes
//! from the `X-Cloud-Trace-Context` header (see [`crate::serve`]), is recorded as the `trace_id`
//! field of the request span, and is copied onto every event inside that span. Each event also
//! carries a stable `event` name (e.g. `transfer_created`) for log-based metrics and alerts.

use std::fmt;
use std::io::IsTerminal as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Cloud Logging JSON lines.
    Json,
    /// Human-readable lines.
    Text,
}

impl LogFormat {
    /// `LOG_FORMAT=json|text`, else text on a terminal and JSON otherwise (Cloud Run).
    pub fn from_env() -> Self {
        match std::env::var("LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            Ok("text") => LogFormat::Text,
            _ if std::io::stdout().is_terminal() => LogFormat::Text,
            _ => LogFormat::Json,
        }
    }
}

/// Installs the global subscriber writing to stdout (what Cloud Run collects). `RUST_LOG`
/// filters (default `info`). Safe to call twice (the second call does nothing), which tests rely
/// on.
pub fn init(format: LogFormat) {
    init_with(format, "info", false);
}

/// Like [`init`], with another default filter, and optionally writing to stderr (for commands
/// whose stdout is their output, such as a dry run printing JSON or the local stack's report).
pub fn init_with(format: LogFormat, default_filter: &str, to_stderr: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let project = std::env::var("GOOGLE_CLOUD_PROJECT")
        .ok()
        .filter(|p| !p.is_empty());
    let writer = move || -> Box<dyn std::io::Write> {
        if to_stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    };
    let result = match format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(SpanFieldsLayer)
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(CloudJson { project })
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_ansi(colour(to_stderr))
                    .with_writer(writer),
            )
            .try_init(),
    };
    let _ = result;
}

/// Colour only on a terminal, and never with `NO_COLOR` set (no-color.org): escape codes in a
/// file or a pipe are noise, and they tear a progress line.
fn colour(to_stderr: bool) -> bool {
    let terminal = if to_stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The fields recorded on a span, kept so that every event inside it can repeat them.
#[derive(Debug, Default)]
struct SpanFields(Map<String, Value>);

/// Records span fields into the span's extensions.
#[derive(Debug)]
pub struct SpanFieldsLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanFieldsLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut visitor = JsonVisitor::default();
        attrs.record(&mut visitor);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(visitor.0));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        let mut visitor = JsonVisitor::default();
        values.record(&mut visitor);
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            fields.0.extend(visitor.0);
        }
    }
}

#[derive(Default)]
struct JsonVisitor(Map<String, Value>);

impl Visit for JsonVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

/// Formats events as Cloud Logging JSON.
#[derive(Debug)]
struct CloudJson {
    project: Option<String>,
}

fn severity(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "ERROR",
        tracing::Level::WARN => "WARNING",
        tracing::Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

impl<S, N> FormatEvent<S, N> for CloudJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert("severity".into(), severity(event.metadata().level()).into());
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        line.insert("time".into(), now.into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (key, value) in &fields.0 {
                        line.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        let mut visitor = JsonVisitor::default();
        event.record(&mut visitor);
        let message = visitor
            .0
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        line.extend(visitor.0);
        line.insert("message".into(), message);
        line.insert("target".into(), event.metadata().target().into());
        if let Some(Value::String(trace)) = line.remove("trace_id") {
            let full = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace}"),
                None => trace,
            };
            line.insert("logging.googleapis.com/trace".into(), full.into());
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Extracts the trace id from `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`, accepting only
/// 32 hex digits so that a forged header cannot inject text into the logs.
pub fn trace_id_from_header(header: &str) -> Option<String> {
    let trace = header.split('/').next()?.trim();
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| trace.to_ascii_lowercase())
}

/// A log sink for tests: what a subscriber wrote, readable afterwards.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Buffer {
    /// Everything written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[cfg(test)]
impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_severity_message_event_and_trace() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(SpanFieldsLayer).with(
            tracing_subscriber::fmt::layer()
                .event_format(CloudJson {
                    project: Some("proj".into()),
                })
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                trace_id = "0af7651916cd43dd8448eb211c80319c",
                path = "/push"
            );
            let _entered = span.enter();
            tracing::warn!(event = "transfer_retry", invoice_id = "42", "retrying");
        });
        let text = buffer.text();
        let line: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "retrying");
        assert_eq!(line["event"], "transfer_retry");
        assert_eq!(line["invoice_id"], "42");
        assert_eq!(line["path"], "/push");
        assert_eq!(
            line["logging.googleapis.com/trace"],
            "projects/proj/traces/0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn trace_header_is_validated() {
        assert_eq!(
            trace_id_from_header("0AF7651916CD43DD8448EB211C80319C/123;o=1").as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id_from_header("\"},{\"injected/1"), None);
        assert_eq!(trace_id_from_header(""), None);
    }
}
