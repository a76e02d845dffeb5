//! Logs: one JSON object per line in Google Cloud Logging's format on Cloud Run, readable text in
//! a terminal.
//!
//! Cloud Logging reads `severity`, `message` and `logging.googleapis.com/trace` from each stdout
//! line; the trace ties every line of one request together in the console. The trace id comes
//! from the `X-Cloud-Trace-Context` header (see [`crate::serve`]), is recorded as the `trace_id`
//! field of the request span, and is copied onto every event inside that span. Each event also
//! carries a stable `event` name (e.g. `transfer_created`) for log-based metrics and alerts.

use std::fmt;
use std::io::{IsTerminal as _, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
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
            .with(CloudJsonLayer::new(project, writer))
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

/// Fields as they will be written: each value is rendered to JSON text once, when it is
/// recorded, so that an event only copies bytes from its spans. The trace id is kept apart: it
/// is written under Cloud Logging's own key, with the project prefix.
#[derive(Debug, Default)]
struct Fields {
    /// Field name and value as JSON text; a name recorded again replaces its value.
    pairs: Vec<(&'static str, String)>,
    trace_id: Option<String>,
}

/// Sets `name` to `value` in `pairs`, replacing an earlier value: each key is written once.
fn upsert<V>(pairs: &mut Vec<(&'static str, V)>, name: &'static str, value: V) {
    match pairs.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => pairs.push((name, value)),
    }
}

impl Fields {
    fn set(&mut self, name: &'static str, json: String) {
        upsert(&mut self.pairs, name, json);
    }

    fn set_str(&mut self, name: &'static str, value: &str) {
        if name == "trace_id" {
            self.trace_id = Some(value.to_owned());
        } else {
            self.set(name, json_string(value));
        }
    }
}

/// `value` as a JSON string literal (serde_json does the escaping).
fn json_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned())
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.set_str(field.name(), &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set_str(field.name(), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), value.to_string());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), value.to_string());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: serde_json writes those as `null`.
        let json = serde_json::to_string(&value).unwrap_or_else(|_| "null".to_owned());
        self.set(field.name(), json);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set_str(field.name(), &value.to_string());
    }
}

/// Keys the formatter writes itself; a field of the same name is dropped, so that no event
/// can forge its severity or its trace.
const RESERVED: [&str; 5] = [
    "severity",
    "time",
    "message",
    "target",
    "logging.googleapis.com/trace",
];

/// Writes every event as one Cloud Logging JSON line, and records span fields so that each
/// event inside a span repeats them (the request span's method, path, trace and message id).
///
/// A layer of its own rather than a `tracing_subscriber::fmt` formatter: the fmt layer also
/// renders every span's fields as text for its own formatters, boxes a writer per event and
/// formats through `fmt::Write`, which together cost more than the line itself on the
/// ingester's hot path (`BENCHMARKS.md` §2).
pub struct CloudJsonLayer<W> {
    project: Option<String>,
    make_writer: W,
}

impl<W> fmt::Debug for CloudJsonLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudJsonLayer")
            .field("project", &self.project)
            .finish_non_exhaustive()
    }
}

impl<W> CloudJsonLayer<W> {
    /// Lines go to `make_writer`; the trace key names `project` (`GOOGLE_CLOUD_PROJECT`) when
    /// set, as Cloud Logging wants.
    pub fn new(project: Option<String>, make_writer: W) -> Self {
        Self {
            project,
            make_writer,
        }
    }

    /// The line of `event` inside `spans` (root first), newline included.
    fn line<'a>(&self, event: &Event<'_>, spans: impl Iterator<Item = &'a Fields>) -> Vec<u8> {
        let mut own = Fields::default();
        event.record(&mut own);
        let mut all: Vec<&Fields> = spans.collect();
        all.push(&own);
        let mut trace = None;
        let mut pairs: Vec<(&'static str, &str)> = Vec::with_capacity(16);
        for fields in all {
            for (name, json) in &fields.pairs {
                upsert(&mut pairs, name, json.as_str());
            }
            trace = fields.trace_id.as_deref().or(trace);
        }
        let metadata = event.metadata();
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"severity\":\"");
        out.extend_from_slice(severity(metadata.level()).as_bytes());
        out.extend_from_slice(b"\",\"time\":\"");
        let now = time::OffsetDateTime::now_utc();
        let _ = now.format_into(&mut out, &time::format_description::well_known::Rfc3339);
        out.extend_from_slice(b"\",\"message\":");
        let message = pairs.iter().find(|(n, _)| *n == "message").map(|(_, v)| *v);
        out.extend_from_slice(message.unwrap_or("\"\"").as_bytes());
        out.extend_from_slice(b",\"target\":");
        out.extend_from_slice(json_string(metadata.target()).as_bytes());
        if let Some(trace) = trace {
            let full = match &self.project {
                Some(project) => format!("projects/{project}/traces/{trace}"),
                None => trace.to_owned(),
            };
            out.extend_from_slice(b",\"logging.googleapis.com/trace\":");
            out.extend_from_slice(json_string(&full).as_bytes());
        }
        for (name, json) in pairs.iter().filter(|(n, _)| !RESERVED.contains(n)) {
            out.push(b',');
            out.extend_from_slice(json_string(name).as_bytes());
            out.push(b':');
            out.extend_from_slice(json.as_bytes());
        }
        out.extend_from_slice(b"}\n");
        out
    }
}

impl<S, W> Layer<S> for CloudJsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let spans: Vec<_> = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().collect())
            .unwrap_or_default();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        let line = self.line(event, extensions.iter().filter_map(|e| e.get::<Fields>()));
        drop(extensions);
        // One write per line, so that lines of concurrent requests never interleave. A
        // failed write is lost: nowhere else to report it.
        let _ = self
            .make_writer
            .make_writer_for(event.metadata())
            .write_all(&line);
    }
}

fn severity(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::ERROR => "ERROR",
        tracing::Level::WARN => "WARNING",
        tracing::Level::INFO => "INFO",
        _ => "DEBUG",
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
    use serde_json::Value;

    #[test]
    fn json_lines_carry_severity_message_event_and_trace() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(CloudJsonLayer::new(Some("proj".into()), move || {
                writer.clone()
            }));
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

    /// Lines written by `emit` under a JSON subscriber without a project.
    fn lines_of(emit: impl FnOnce()) -> Vec<String> {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(CloudJsonLayer::new(None, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, emit);
        buffer.text().lines().map(str::to_owned).collect()
    }

    /// Every key once: an event's field replaces its span's, a later record replaces an earlier
    /// one, and fields named like the formatter's own keys never forge severity or trace.
    #[test]
    fn each_key_is_written_once_and_reserved_keys_cannot_be_forged() {
        let lines = lines_of(|| {
            let outer = tracing::info_span!(
                "request",
                path = "/outer",
                invoice_id = tracing::field::Empty
            );
            let _outer = outer.enter();
            outer.record("invoice_id", "1");
            outer.record("invoice_id", "2");
            let inner = tracing::info_span!("webhook", path = "/inner", trace_id = "abc");
            let _inner = inner.enter();
            tracing::info!(
                path = "/event",
                severity = "ERROR",
                target = "forged",
                count = 3u64,
                ratio = f64::NAN,
                ok = true,
                "done \"quoted\"\n"
            );
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        for key in [
            "severity",
            "path",
            "target",
            "message",
            "invoice_id",
            "count",
        ] {
            assert_eq!(
                line.matches(&format!("\"{key}\":")).count(),
                1,
                "{key} in {line}"
            );
        }
        let value: Value = serde_json::from_str(line).unwrap();
        assert_eq!(value["severity"], "INFO");
        assert_eq!(value["path"], "/event");
        assert_eq!(value["invoice_id"], "2");
        assert_eq!(value["target"], module_path!());
        assert_eq!(value["message"], "done \"quoted\"\n");
        assert_eq!(value["count"], 3);
        assert_eq!(value["ratio"], Value::Null);
        assert_eq!(value["ok"], true);
        assert_eq!(value["logging.googleapis.com/trace"], "abc");
        assert!(value.get("trace_id").is_none(), "{line}");
        assert!(value["time"].as_str().unwrap().ends_with('Z'), "{line}");
    }

    #[test]
    fn an_event_outside_any_span_has_only_its_own_fields() {
        let lines = lines_of(|| tracing::warn!(event = "alone", "no span"));
        let value: Value = serde_json::from_str(&lines[0]).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert_eq!(value["severity"], "WARNING");
        assert_eq!(value["event"], "alone");
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
