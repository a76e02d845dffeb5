//! `status`: a campaign at a glance, from Stark (and Pub/Sub when configured).
//!
//! What waits in the subscriptions comes from the best source the target has ([`Backlogs`]):
//! in production Cloud Monitoring's subscription metrics, which are Pub/Sub's own count
//! (authoritative, a few minutes late), for the dead-letter and the push subscriptions; on the
//! emulator, which has no metrics, a peek of the dead-letter subscriptions (best effort). Each
//! count says where it came from. A count that cannot be read is reported as unknown with its
//! error, the rest of the report is printed all the same, and the error is returned after it
//! so that the exit code says what happened (2 refused, 3 unreachable; see [`super::exit`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use gcp_pubsub::monitoring::{self, Monitoring, MonitoringError};
use gcp_pubsub::{PubSubTarget, Topology};
use pipeline_domain::audit::{AuditInput, InvoiceRecord, TransferRecord, TransferState, audit};
use pipeline_domain::receiver::Receiver;
use pipeline_domain::vocab::CampaignTag;
use pipeline_service::records::{invoice_record, transfer_record};
use serde::Serialize;
use stark_client::{
    Client, InvoiceLogQuery, InvoiceLogType, InvoiceQuery, InvoiceStatus, TransferQuery,
};

use super::output::{FindingJson, Format, FormatArg, brl, instant, table, write_json, write_table};

/// At most this many messages are counted by a peek (it holds what it counts until the end).
const PEEK_CAP: usize = 1000;

/// `stark-pipeline status` arguments.
///
/// Example: `stark-pipeline status --campaign black-friday --format json | jq .transfers`
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Campaign id (the spammer's `CAMPAIGN_ID`, which is read when the flag is absent).
    #[arg(long, env = "CAMPAIGN_ID")]
    pub campaign: String,
    #[command(flatten)]
    pub output: FormatArg,
}

/// `status --format json`.
#[derive(Debug, Serialize)]
struct StatusJson {
    campaign: String,
    healthy: bool,
    slots: SlotsJson,
    invoices: InvoicesJson,
    transfers: TransfersJson,
    problems: Vec<FindingJson>,
    /// The dead-letter subscriptions; `null` when Pub/Sub is not configured.
    dead_letters: Option<Vec<BacklogJson>>,
    /// The push subscriptions, from Cloud Monitoring only (a peek would take messages from
    /// their consumers); `null` otherwise.
    push_backlog: Option<Vec<BacklogJson>>,
}

#[derive(Debug, Serialize)]
struct SlotsJson {
    run: usize,
    first: Option<u32>,
    last: Option<u32>,
}

#[derive(Debug, Serialize)]
struct InvoicesJson {
    issued: usize,
    paid: usize,
    credited: usize,
    /// Cents Stark credited, before its fees.
    credited_amount: i64,
}

#[derive(Debug, Serialize)]
struct TransfersJson {
    total: usize,
    success: usize,
    in_flight: usize,
    failed: usize,
    /// Cents of the transfers that reached `success`.
    paid_out_amount: i64,
}

/// What waits in one subscription, and where that count came from.
#[derive(Debug, Serialize)]
struct BacklogJson {
    subscription: String,
    /// Messages waiting; `null` when they could not be counted (`error` says why).
    waiting: Option<u64>,
    source: Source,
    /// When Cloud Monitoring sampled the count (RFC 3339). `null` for a peek, and for Cloud
    /// Monitoring when it had no sample in the window: an idle subscription, counted as 0.
    sampled_at: Option<String>,
    /// How long the oldest unacknowledged message has waited (Cloud Monitoring only).
    oldest_unacked_age_seconds: Option<u64>,
    /// Why the count is unknown.
    error: Option<String>,
}

/// Where a count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Source {
    /// `num_undelivered_messages` and `oldest_unacked_message_age`: authoritative, sampled
    /// every minute and visible a few minutes later.
    CloudMonitoring,
    /// Pulled and given back: best effort, at most [`PEEK_CAP`].
    Peek,
}

/// Where `status` reads what waits in the subscriptions.
#[derive(Debug)]
pub enum Backlogs {
    /// Pub/Sub is not configured: nothing is read.
    Unconfigured,
    /// The emulator, which has no metrics: a peek of the dead-letter subscriptions.
    Peek(PubSubTarget),
    /// Real Pub/Sub: Cloud Monitoring's metrics of the dead-letter and push subscriptions.
    CloudMonitoring(Monitoring),
    /// Real Pub/Sub, but no Monitoring reader could be built (no Application Default
    /// Credentials, an invalid `MONITORING_ENDPOINT`): every count is unknown with this error.
    Unavailable(MonitoringError),
}

impl Backlogs {
    /// The source for `target`: nothing without one, a peek on the emulator, Cloud Monitoring
    /// (with Application Default Credentials, at `monitoring_endpoint` when given) otherwise.
    pub fn for_target(target: Option<&PubSubTarget>, monitoring_endpoint: Option<&str>) -> Self {
        match target {
            None => Self::Unconfigured,
            Some(target) if target.is_emulator() => Self::Peek(target.clone()),
            Some(target) => match Monitoring::with_adc(&target.project, monitoring_endpoint) {
                Ok(reader) => Self::CloudMonitoring(reader),
                Err(err) => Self::Unavailable(err),
            },
        }
    }
}

/// The subscriptions' counts, and the first error met reading them.
struct Readings {
    dead_letters: Option<Vec<BacklogJson>>,
    push_backlog: Option<Vec<BacklogJson>>,
    error: Option<anyhow::Error>,
}

impl BacklogJson {
    fn unknown(subscription: String, source: Source, error: String) -> Self {
        Self {
            subscription,
            waiting: None,
            source,
            sampled_at: None,
            oldest_unacked_age_seconds: None,
            error: Some(error),
        }
    }
}

/// Reads every count `backlogs` can give; a failed count is unknown, never 0.
async fn read_backlogs(backlogs: Backlogs) -> Readings {
    let flows = Topology::pipeline("", "").flows;
    let dead: Vec<String> = flows.iter().map(|f| f.dead_letter_subscription()).collect();
    let push: Vec<String> = flows.iter().map(|f| f.subscription.clone()).collect();
    match backlogs {
        Backlogs::Unconfigured => Readings {
            dead_letters: None,
            push_backlog: None,
            error: None,
        },
        Backlogs::Peek(target) => {
            let mut error = None;
            let mut counts = Vec::new();
            for subscription in dead {
                match gcp_pubsub::ops::count_undelivered(&target, &subscription, PEEK_CAP).await {
                    Ok(waiting) => counts.push(BacklogJson {
                        subscription,
                        waiting: Some(waiting as u64),
                        source: Source::Peek,
                        sampled_at: None,
                        oldest_unacked_age_seconds: None,
                        error: None,
                    }),
                    Err(err) => {
                        counts.push(BacklogJson::unknown(
                            subscription.clone(),
                            Source::Peek,
                            err.to_string(),
                        ));
                        error.get_or_insert_with(|| {
                            anyhow::Error::new(err)
                                .context(format!("cannot count the messages in {subscription}"))
                        });
                    }
                }
            }
            Readings {
                dead_letters: Some(counts),
                push_backlog: None,
                error,
            }
        }
        Backlogs::CloudMonitoring(reader) => {
            let read = |names: Vec<String>| {
                let reader = &reader;
                futures::future::join_all(names.into_iter().map(move |subscription| async move {
                    let reading = reader.backlog(&subscription).await;
                    (subscription, reading)
                }))
            };
            let (dead, push) = futures::join!(read(dead), read(push));
            let mut error = None;
            let mut convert =
                |readings: Vec<(String, Result<monitoring::Backlog, MonitoringError>)>| {
                    readings
                        .into_iter()
                        .map(|(subscription, reading)| match reading {
                            Ok(backlog) => BacklogJson {
                                subscription,
                                waiting: Some(backlog.undelivered),
                                source: Source::CloudMonitoring,
                                sampled_at: backlog.sampled_at.map(instant),
                                oldest_unacked_age_seconds: backlog
                                    .oldest_unacked_age
                                    .map(|age| age.as_secs()),
                                error: None,
                            },
                            Err(err) => {
                                let json = BacklogJson::unknown(
                                    subscription.clone(),
                                    Source::CloudMonitoring,
                                    err.to_string(),
                                );
                                error.get_or_insert_with(|| {
                                    anyhow::Error::new(err).context(format!(
                                        "cannot count the messages in {subscription}"
                                    ))
                                });
                                json
                            }
                        })
                        .collect::<Vec<_>>()
                };
            let dead_letters = convert(dead);
            let push_backlog = convert(push);
            Readings {
                dead_letters: Some(dead_letters),
                push_backlog: Some(push_backlog),
                error,
            }
        }
        Backlogs::Unavailable(err) => {
            let text = err.to_string();
            let unknown = |names: Vec<String>| {
                names
                    .into_iter()
                    .map(|s| BacklogJson::unknown(s, Source::CloudMonitoring, text.clone()))
                    .collect()
            };
            Readings {
                dead_letters: Some(unknown(dead)),
                push_backlog: Some(unknown(push)),
                error: Some(
                    anyhow::Error::new(err)
                        .context("cannot count the messages in the subscriptions"),
                ),
            }
        }
    }
}

/// Runs `status` against `pubsub`, choosing the counts' source with [`Backlogs::for_target`]
/// (`MONITORING_ENDPOINT` from the environment overrides Cloud Monitoring's endpoint).
pub async fn run(
    args: &StatusArgs,
    stark: &Client,
    pubsub: Option<&PubSubTarget>,
    receiver: &Receiver,
    transfer_fee: i64,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let endpoint = std::env::var(monitoring::ENDPOINT_VAR).ok();
    let backlogs = Backlogs::for_target(pubsub, endpoint.as_deref());
    run_with(args, stark, backlogs, receiver, transfer_fee, out).await
}

/// Runs `status` with the counts from `backlogs`. `Ok(true)` when the audit finds no problem
/// and every dead-letter subscription is known to be empty. When a count could not be read,
/// the report is written first and then its error returned, so the exit code follows the
/// contract (refused: 2, unreachable: 3).
pub async fn run_with(
    args: &StatusArgs,
    stark: &Client,
    backlogs: Backlogs,
    receiver: &Receiver,
    transfer_fee: i64,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let invoices = stark
        .query_invoices(&InvoiceQuery {
            tags: vec![CampaignTag::for_campaign(&args.campaign).to_string()],
            ..Default::default()
        })
        .await?;
    let mut credited: BTreeMap<String, i64> = BTreeMap::new();
    for chunk in invoices.chunks(100) {
        let logs = stark
            .query_invoice_logs(&InvoiceLogQuery {
                types: vec![InvoiceLogType::Credited],
                invoice_ids: chunk.iter().map(|i| i.id.clone()).collect(),
                ..Default::default()
            })
            .await?;
        for log in logs {
            credited
                .entry(log.invoice.id.clone())
                .or_insert(log.invoice.amount);
        }
    }
    let first = invoices.iter().map(|i| &*i.created).min().unwrap_or("");
    let ours: BTreeSet<&str> = invoices.iter().map(|i| i.id.as_str()).collect();
    let transfers: Vec<TransferRecord> = if invoices.is_empty() {
        Vec::new()
    } else {
        stark
            .query_transfers(&TransferQuery {
                after: first.get(..10).map(str::to_owned),
                ..Default::default()
            })
            .await?
            .iter()
            .map(transfer_record)
            .filter(|t| {
                t.key
                    .as_ref()
                    .is_some_and(|k| ours.contains(k.invoice_id()))
            })
            .collect()
    };
    let records: Vec<InvoiceRecord> = invoices
        .iter()
        .map(|i| invoice_record(i, credited.get(&i.id).copied()))
        .collect();
    let audit = audit(AuditInput {
        requested: None,
        invoices: &records,
        transfers: &transfers,
        receiver,
        transfer_fee,
    });
    let slots: BTreeSet<u32> = records.iter().filter_map(|r| r.slot).collect();
    let paid = invoices
        .iter()
        .filter(|i| i.status == InvoiceStatus::Paid)
        .count();
    let count = |states: &[TransferState]| {
        transfers
            .iter()
            .filter(|t| states.contains(&t.state))
            .count()
    };
    let summary = audit.summary;
    let problems: Vec<FindingJson> = audit.problems().map(Into::into).collect();
    let window = match &backlogs {
        Backlogs::CloudMonitoring(reader) => reader.window(),
        _ => monitoring::DEFAULT_WINDOW,
    };
    let readings = read_backlogs(backlogs).await;
    let healthy = problems.is_empty()
        && readings
            .dead_letters
            .iter()
            .flatten()
            .all(|d| d.waiting == Some(0));
    let report = StatusJson {
        campaign: args.campaign.clone(),
        healthy,
        slots: SlotsJson {
            run: slots.len(),
            first: slots.first().copied(),
            last: slots.last().copied(),
        },
        invoices: InvoicesJson {
            issued: summary.issued,
            paid,
            credited: summary.credited,
            credited_amount: credited.values().sum(),
        },
        transfers: TransfersJson {
            total: transfers.len(),
            success: count(&[TransferState::Success]),
            in_flight: count(&[TransferState::Created, TransferState::Processing]),
            failed: count(&[TransferState::Failed, TransferState::Canceled]),
            paid_out_amount: transfers
                .iter()
                .filter(|t| t.state == TransferState::Success)
                .map(|t| t.amount)
                .sum(),
        },
        problems,
        dead_letters: readings.dead_letters,
        push_backlog: readings.push_backlog,
    };
    match args.output.format {
        Format::Json => write_json(out, &report)?,
        Format::Table => write_status_table(&report, window, out)?,
    }
    match readings.error {
        Some(err) => Err(err),
        None => Ok(healthy),
    }
}

/// `status` for people: one row per measure, then notes on where the counts came from, then
/// the problems.
fn write_status_table(
    report: &StatusJson,
    window: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut rows = table(["campaign", &report.campaign]);
    let slots = match (report.slots.first, report.slots.last) {
        (Some(a), Some(b)) => format!("{} (hours {a}..={b})", report.slots.run),
        _ => "0".to_owned(),
    };
    let i = &report.invoices;
    let t = &report.transfers;
    rows.add_row(["slots run", &slots]);
    rows.add_row([
        "invoices",
        &format!(
            "{} issued, {} paid, {} credited ({})",
            i.issued,
            i.paid,
            i.credited,
            brl(i.credited_amount)
        ),
    ]);
    rows.add_row([
        "transfers",
        &format!(
            "{} ({} success, {} in flight, {} failed; {} paid out)",
            t.total,
            t.success,
            t.in_flight,
            t.failed,
            brl(t.paid_out_amount)
        ),
    ]);
    rows.add_row(["audit", &format!("{} problem(s)", report.problems.len())]);
    match &report.dead_letters {
        None => {
            rows.add_row(["dead letters", "unknown (set PUBSUB_PROJECT_ID to check)"]);
        }
        Some(counts) => {
            for count in counts {
                rows.add_row([
                    format!("dead letters in {}", count.subscription),
                    describe_count(count, window),
                ]);
            }
        }
    }
    for count in report.push_backlog.iter().flatten() {
        rows.add_row([
            format!("waiting in {}", count.subscription),
            describe_count(count, window),
        ]);
    }
    write_table(out, &mut rows)?;
    let counts: Vec<&BacklogJson> = report
        .dead_letters
        .iter()
        .chain(&report.push_backlog)
        .flatten()
        .collect();
    if counts.iter().any(|c| c.source == Source::CloudMonitoring) {
        writeln!(
            out,
            "NOTE counts from Cloud Monitoring (num_undelivered_messages, \
             oldest_unacked_message_age): authoritative, but sampled every minute and shown up \
             to a few minutes later, so a message that arrived since is not counted yet"
        )?;
    }
    if counts.iter().any(|c| c.source == Source::Peek) {
        writeln!(
            out,
            "NOTE counts from a peek (the emulator has no metrics): best effort, at most \
             {PEEK_CAP} per subscription"
        )?;
    }
    for problem in &report.problems {
        writeln!(out, "PROBLEM {}", problem.message)?;
    }
    Ok(())
}

/// One count for the table: the number and where it came from, or why it is unknown.
fn describe_count(count: &BacklogJson, window: Duration) -> String {
    let Some(waiting) = count.waiting else {
        return format!(
            "unknown: {}",
            count.error.as_deref().unwrap_or("not counted")
        );
    };
    match (count.source, &count.sampled_at) {
        (Source::Peek, _) => format!("{waiting} (a peek, best effort)"),
        (Source::CloudMonitoring, None) => format!(
            "{waiting} (Cloud Monitoring: no sample in the last {}, an idle subscription)",
            humantime::format_duration(window)
        ),
        (Source::CloudMonitoring, Some(at)) => {
            let oldest = match count.oldest_unacked_age_seconds {
                Some(age) if waiting > 0 => format!(
                    ", the oldest for {}",
                    humantime::format_duration(Duration::from_secs(age))
                ),
                _ => String::new(),
            };
            format!("{waiting}{oldest} (Cloud Monitoring, sampled {at})")
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::Query;
    use axum::http::StatusCode;
    use gcp_pubsub::monitoring::{OLDEST_UNACKED_AGE_METRIC, UNDELIVERED_METRIC};
    use gcp_pubsub::topology::{INVOICE_SENDER_SUBSCRIPTION, MONEY_SENDER_SUBSCRIPTION};
    use stark_sandbox::SandboxConfig;

    use super::super::exit::{Exit, classify};
    use super::*;

    const SAMPLED: &str = "2026-11-27T10:41:00Z";

    fn args(format: Format) -> StatusArgs {
        StatusArgs {
            campaign: "black-friday".into(),
            output: FormatArg { format },
        }
    }

    /// The quoted value after `key = "` in a Monitoring filter.
    fn quoted_after(filter: &str, key: &str) -> String {
        let start = filter
            .find(&format!("{key} = \""))
            .expect("the key is in the filter")
            + key.len()
            + 4;
        let rest = &filter[start..];
        rest[..rest.find('"').expect("a closing quote")].to_owned()
    }

    /// A fake Cloud Monitoring: `answer(metric, subscription)` gives each request's status and
    /// body; a filter without the metric or the subscription is answered 400.
    async fn fake_monitoring(
        answer: impl Fn(&str, &str) -> (u16, String) + Clone + Send + Sync + 'static,
    ) -> Monitoring {
        let handler = move |Query(query): Query<Vec<(String, String)>>| {
            let answer = answer.clone();
            async move {
                let filter = query
                    .iter()
                    .find(|(k, _)| k == "filter")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                if !filter.contains("metric.type = ")
                    || !filter.contains("resource.labels.subscription_id = ")
                {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("unexpected filter {filter}"),
                    );
                }
                let (status, body) = answer(
                    &quoted_after(&filter, "metric.type"),
                    &quoted_after(&filter, "resource.labels.subscription_id"),
                );
                (StatusCode::from_u16(status).unwrap(), body)
            }
        };
        let app = axum::Router::new().route(
            "/v3/projects/pipeline-prod/timeSeries",
            axum::routing::get(handler),
        );
        let url = pipeline_testkit::spawn(app).await;
        Monitoring::unauthenticated("pipeline-prod", &url).unwrap()
    }

    /// One point of `value`, as Monitoring's JSON writes it (int64 as a string).
    fn one_point(subscription: &str, value: u64) -> String {
        serde_json::json!({"timeSeries": [{
            "resource": {"type": "pubsub_subscription",
                         "labels": {"project_id": "pipeline-prod", "subscription_id": subscription}},
            "points": [{"interval": {"startTime": SAMPLED, "endTime": SAMPLED},
                        "value": {"int64Value": value.to_string()}}]
        }]})
        .to_string()
    }

    /// What the fake holds: 2 dead letters on paid_invoices, the oldest an hour old; nothing
    /// reported for pending_invoices' dead letters (idle); 5 requests waiting for
    /// invoice-sender; money-sender's subscription empty.
    fn production(metric: &str, subscription: &str) -> (u16, String) {
        let age = metric == OLDEST_UNACKED_AGE_METRIC;
        let body = match subscription {
            "paid_invoices-dead-letter" => one_point(subscription, if age { 3600 } else { 2 }),
            INVOICE_SENDER_SUBSCRIPTION => one_point(subscription, if age { 42 } else { 5 }),
            MONEY_SENDER_SUBSCRIPTION => one_point(subscription, 0),
            _ => "{}".to_owned(),
        };
        assert!(metric == UNDELIVERED_METRIC || age, "{metric}");
        (200, body)
    }

    async fn status(backlogs: Backlogs, format: Format) -> (anyhow::Result<bool>, String) {
        let stark = pipeline_testkit::stark(SandboxConfig::default()).await;
        let mut out = Vec::new();
        let result = run_with(
            &args(format),
            &stark.client,
            backlogs,
            &Receiver::default(),
            0,
            &mut out,
        )
        .await;
        (result, String::from_utf8(out).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn production_counts_come_from_cloud_monitoring_with_their_sample() {
        let reader = fake_monitoring(production).await;
        let (result, out) = status(Backlogs::CloudMonitoring(reader), Format::Json).await;
        assert!(!result.unwrap(), "two dead letters wait: not healthy");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["healthy"], false, "{json}");
        assert_eq!(json["invoices"]["issued"], 0, "the rest is there: {json}");
        let dead = json["dead_letters"].as_array().unwrap();
        assert_eq!(dead.len(), 2, "{json}");
        let by_name = |list: &[serde_json::Value], name: &str| {
            list.iter()
                .find(|d| d["subscription"] == name)
                .unwrap_or_else(|| panic!("{name} in {json}"))
                .clone()
        };
        assert_eq!(
            by_name(dead, "paid_invoices-dead-letter"),
            serde_json::json!({"subscription": "paid_invoices-dead-letter", "waiting": 2,
                "source": "cloud_monitoring", "sampled_at": SAMPLED,
                "oldest_unacked_age_seconds": 3600, "error": null})
        );
        assert_eq!(
            by_name(dead, "pending_invoices-dead-letter"),
            serde_json::json!({"subscription": "pending_invoices-dead-letter", "waiting": 0,
                "source": "cloud_monitoring", "sampled_at": null,
                "oldest_unacked_age_seconds": null, "error": null}),
            "no sample: 0, and no sample time"
        );
        let push = json["push_backlog"].as_array().unwrap();
        assert_eq!(push.len(), 2, "{json}");
        let sender = by_name(push, INVOICE_SENDER_SUBSCRIPTION);
        assert_eq!(sender["waiting"], 5, "{json}");
        assert_eq!(sender["oldest_unacked_age_seconds"], 42, "{json}");
        assert_eq!(by_name(push, MONEY_SENDER_SUBSCRIPTION)["waiting"], 0);

        let reader = fake_monitoring(production).await;
        let (result, table) = status(Backlogs::CloudMonitoring(reader), Format::Table).await;
        assert!(!result.unwrap());
        for expected in [
            "dead letters in paid_invoices-dead-letter",
            &format!("2, the oldest for 1h (Cloud Monitoring, sampled {SAMPLED})"),
            "0 (Cloud Monitoring: no sample in the last 10m, an idle subscription)",
            &format!("waiting in {INVOICE_SENDER_SUBSCRIPTION}"),
            "5, the oldest for 42s (Cloud Monitoring",
            &format!("0 (Cloud Monitoring, sampled {SAMPLED})"),
            "NOTE counts from Cloud Monitoring",
            "a few minutes later",
        ] {
            assert!(table.contains(expected), "{expected:?} not in\n{table}");
        }
        assert!(!table.contains("peek"), "{table}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn monitoring_refused_still_prints_the_report_and_exits_2_naming_the_role() {
        let forbidden = |_: &str, _: &str| {
            (
                403,
                r#"{"error": {"code": 403, "message": "Permission monitoring.timeSeries.list denied", "status": "PERMISSION_DENIED"}}"#
                    .to_owned(),
            )
        };
        let (result, out) = status(
            Backlogs::CloudMonitoring(fake_monitoring(forbidden).await),
            Format::Json,
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(classify(&err), Exit::Usage, "{err:#}");
        assert!(
            format!("{err:#}").contains("roles/monitoring.viewer"),
            "{err:#}"
        );
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["healthy"], false, "{json}");
        assert_eq!(json["transfers"]["total"], 0, "the rest is there: {json}");
        for entry in json["dead_letters"]
            .as_array()
            .unwrap()
            .iter()
            .chain(json["push_backlog"].as_array().unwrap())
        {
            assert_eq!(entry["waiting"], serde_json::Value::Null, "{json}");
            assert_eq!(entry["source"], "cloud_monitoring", "{json}");
            let error = entry["error"].as_str().unwrap();
            assert!(error.contains("roles/monitoring.viewer"), "{error}");
        }

        let (result, table) = status(
            Backlogs::CloudMonitoring(fake_monitoring(forbidden).await),
            Format::Table,
        )
        .await;
        assert!(result.is_err());
        assert!(table.contains("0 problem(s)"), "{table}");
        assert!(
            table.contains("unknown: Cloud Monitoring refused to read"),
            "{table}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn monitoring_failing_exits_3_and_one_bad_count_leaves_the_others() {
        let flaky = |metric: &str, subscription: &str| match subscription {
            "paid_invoices-dead-letter" => (503, "backend unavailable".to_owned()),
            _ => production(metric, subscription),
        };
        let (result, out) = status(
            Backlogs::CloudMonitoring(fake_monitoring(flaky).await),
            Format::Json,
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(classify(&err), Exit::Unreachable, "{err:#}");
        assert!(
            format!("{err:#}").contains("paid_invoices-dead-letter"),
            "{err:#}"
        );
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let dead = json["dead_letters"].as_array().unwrap();
        let paid = dead
            .iter()
            .find(|d| d["subscription"] == "paid_invoices-dead-letter")
            .unwrap();
        assert_eq!(paid["waiting"], serde_json::Value::Null, "{json}");
        assert!(
            paid["error"].as_str().unwrap().contains("HTTP 503"),
            "{json}"
        );
        let pending = dead
            .iter()
            .find(|d| d["subscription"] == "pending_invoices-dead-letter")
            .unwrap();
        assert_eq!(pending["waiting"], 0, "{json}");

        let garbage = |_: &str, _: &str| (200, "<html>not json</html>".to_owned());
        let (result, _) = status(
            Backlogs::CloudMonitoring(fake_monitoring(garbage).await),
            Format::Json,
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(classify(&err), Exit::Unreachable, "{err:#}");
        assert!(format!("{err:#}").contains("malformed"), "{err:#}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_monitoring_reader_every_count_is_unknown() {
        let unavailable = Backlogs::Unavailable(MonitoringError::Credentials {
            reason: "no ADC file".into(),
        });
        let (result, out) = status(unavailable, Format::Json).await;
        assert_eq!(classify(&result.unwrap_err()), Exit::Usage);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["dead_letters"].as_array().unwrap().len(), 2, "{json}");
        assert!(
            json["dead_letters"][0]["error"]
                .as_str()
                .unwrap()
                .contains("application-default login"),
            "{json}"
        );
        assert_eq!(json["push_backlog"][0]["waiting"], serde_json::Value::Null);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_pubsub_nothing_is_counted_and_the_keys_are_null() {
        let (result, out) = status(Backlogs::Unconfigured, Format::Json).await;
        assert!(
            result.unwrap(),
            "an empty campaign and nothing to count: healthy"
        );
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["dead_letters"], serde_json::Value::Null);
        assert_eq!(json["push_backlog"], serde_json::Value::Null);
        let (_, table) = status(Backlogs::Unconfigured, Format::Table).await;
        assert!(
            table.contains("unknown (set PUBSUB_PROJECT_ID to check)"),
            "{table}"
        );
        assert!(!table.contains("NOTE"), "{table}");
    }

    #[test]
    fn the_source_follows_the_target() {
        assert!(matches!(
            Backlogs::for_target(None, None),
            Backlogs::Unconfigured
        ));
        let emulator = PubSubTarget::emulator("local", "127.0.0.1:8085");
        assert!(matches!(
            Backlogs::for_target(Some(&emulator), Some("http://ignored")),
            Backlogs::Peek(_)
        ));
        let cloud = PubSubTarget::cloud("pipeline-prod");
        match Backlogs::for_target(Some(&cloud), Some("monitoring.googleapis.com")) {
            Backlogs::Unavailable(err) => {
                assert!(err.to_string().contains("MONITORING_ENDPOINT"), "{err}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_peek_and_an_unknown_count_say_so() {
        let peek = BacklogJson {
            subscription: "paid_invoices-dead-letter".into(),
            waiting: Some(3),
            source: Source::Peek,
            sampled_at: None,
            oldest_unacked_age_seconds: None,
            error: None,
        };
        let window = monitoring::DEFAULT_WINDOW;
        assert_eq!(describe_count(&peek, window), "3 (a peek, best effort)");
        let unknown = BacklogJson::unknown(
            "paid_invoices-dead-letter".into(),
            Source::Peek,
            "pulling failed".into(),
        );
        assert_eq!(describe_count(&unknown, window), "unknown: pulling failed");
    }
}
