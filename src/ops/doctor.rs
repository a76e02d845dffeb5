//! `doctor`: what this shell's configuration resolves to, and whether it works.
//!
//! Most first-day failures are configuration: the wrong access id for the key, a base URL
//! typo, a clock far enough off that Stark refuses the signature, topics never provisioned,
//! the webhook pointing at last week's URL, the workspace check left off. `doctor` shows what
//! the CLI resolved (the key only by its public fingerprint) and checks each of those, with
//! the fix. Exit 0 when every check passes, 1 when one fails, 3 when Stark or Pub/Sub cannot
//! be reached (so a script can tell "fix it" from "retry").

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use gcp_pubsub::{PubSubTarget, Topology};
use pipeline_service::config::Env;
use serde::Serialize;
use sha2::Digest as _;
use stark_client::{Client, Environment, PublicKey};

use super::Context;
use super::exit::{Exit, is_credentials_error, pubsub_exit, stark_exit};
use super::output::{Format, FormatArg, instant, table, write_json, write_table};

/// How long one Pub/Sub check may take before it counts as unreachable (the admin clients
/// retry on their own, for longer than a person waits).
const PUBSUB_TIMEOUT: Duration = Duration::from_secs(15);

/// `stark-pipeline doctor` arguments.
///
/// Example: `stark-pipeline doctor --ingester-url https://webhook-ingester-abc-rj.a.run.app/webhook`
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// The ingester's public URL, including `/webhook`: Stark's webhook must point there.
    #[arg(long, env = "INGESTER_URL")]
    pub ingester_url: Option<String>,
    #[command(flatten)]
    pub output: FormatArg,
}

/// What the configuration resolved to. Secrets appear only as a public fingerprint.
#[derive(Debug, Serialize)]
pub struct Resolved {
    /// The `.env` that was loaded, if any.
    pub dotenv: Option<String>,
    /// Stark's base URL (`null` when `STARK_ENVIRONMENT` is missing or invalid).
    pub stark_base_url: Option<String>,
    /// `sandbox`, `production` or `custom`.
    pub stark_environment: Option<String>,
    /// `STARK_ACCESS_ID`.
    pub access_id: Option<String>,
    /// Which variable holds the private key.
    pub private_key_source: Option<&'static str>,
    /// `sha256:<hex>` of the public key's DER (SubjectPublicKeyInfo): compare with the public
    /// key registered at Stark (`openssl pkey -pubin -in public-key.pem -outform DER | sha256sum`).
    pub public_key_fingerprint: Option<String>,
    /// Why the Stark client could not be built, when it could not.
    pub stark_error: Option<String>,
    /// Where Pub/Sub is, or why it is not configured.
    pub pubsub: String,
    /// The account every payout goes to, or why it is invalid.
    pub payout_account: String,
    /// `PAYOUT_TRANSFER_FEE_CENTS`, cents.
    pub transfer_fee: Option<i64>,
    /// `STARK_WORKSPACE_ID`.
    pub workspace_id: Option<String>,
    /// The URL the webhook check expects.
    pub ingester_url: Option<String>,
    /// This host's clock, which signs every request (Stark refuses a skewed one).
    pub local_time: String,
}

/// One check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It works.
    Pass,
    /// It does not; `fix` says what to do.
    Fail,
}

/// One check.
#[derive(Debug, Serialize)]
pub struct Check {
    /// Stable name: `stark_credentials`, `pubsub_topology`, `stark_webhook`, `workspace_id`.
    pub name: &'static str,
    /// PASS or FAIL.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about a failure.
    pub fix: Option<String>,
    /// The failure is that Stark or Pub/Sub could not be reached.
    #[serde(skip)]
    pub unreachable: bool,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
            unreachable: false,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
            unreachable: false,
        }
    }

    fn unreachable(mut self) -> Self {
        self.unreachable = true;
        self
    }
}

#[derive(Debug, Serialize)]
struct DoctorJson<'a> {
    ok: bool,
    configuration: &'a Resolved,
    checks: &'a [Check],
}

/// `sha256:<hex>` of a public key's SubjectPublicKeyInfo DER.
pub fn fingerprint(key: &PublicKey) -> String {
    let pem = key.to_pem();
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap_or_default();
    let digest = sha2::Sha256::digest(&der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Reads what the configuration resolves to.
pub fn resolve(context: &Context, dotenv: Option<&Path>, ingester_url: Option<&str>) -> Resolved {
    let env = &context.env;
    let environment = |client: Option<&Client>| -> Option<Environment> {
        match client {
            Some(client) => Some(client.config().environment.clone()),
            None => env
                .optional("STARK_ENVIRONMENT")
                .and_then(|e| Environment::parse(e).ok()),
        }
    };
    let client = context.stark.as_ref();
    let environment = environment(client);
    let stark_error = match client {
        Some(_) => None,
        None => pipeline_service::config::stark_client(env)
            .err()
            .map(|e| e.to_string()),
    };
    let key_source = [
        "STARK_PRIVATE_KEY_FILE",
        "STARK_PRIVATE_KEY_PEM",
        "STARK_PRIVATE_KEY_BASE64",
    ]
    .into_iter()
    .find(|name| env.optional(name).is_some() || env.secret(name).is_some());
    let payout = money_sender::receiver_from_env(env);
    Resolved {
        dotenv: dotenv.map(|p| p.display().to_string()),
        stark_base_url: environment.as_ref().map(|e| e.base_url().to_owned()),
        stark_environment: environment.as_ref().map(|e| {
            match e {
                Environment::Sandbox => "sandbox",
                Environment::Production => "production",
                Environment::Custom(_) => "custom",
            }
            .to_owned()
        }),
        access_id: client
            .map(|c| c.config().access_id.to_string())
            .or_else(|| env.optional("STARK_ACCESS_ID").map(str::to_owned)),
        private_key_source: key_source,
        public_key_fingerprint: client.map(|c| fingerprint(&c.config().private_key.public_key())),
        stark_error,
        pubsub: match context.pubsub() {
            Ok(target) => target.describe(),
            Err(err) => format!("not configured ({err})"),
        },
        payout_account: match payout {
            Ok(r) => format!(
                "{} {}, bank {} branch {} account {} ({})",
                r.name, r.tax_id, r.bank_code, r.branch_code, r.account_number, r.account_type
            ),
            Err(err) => format!("invalid: {err}"),
        },
        transfer_fee: money_sender::transfer_fee_from_env(env).ok(),
        workspace_id: env.optional("STARK_WORKSPACE_ID").map(str::to_owned),
        ingester_url: ingester_url.map(str::to_owned),
        local_time: instant(time::OffsetDateTime::now_utc()),
    }
}

/// Checks a signed `GET /v2/public-key`: the access id, the key and the clock together.
async fn check_credentials(context: &Context, resolved: &Resolved) -> Check {
    const NAME: &str = "stark_credentials";
    let Some(client) = &context.stark else {
        return Check::fail(
            NAME,
            resolved
                .stark_error
                .clone()
                .unwrap_or_else(|| "Stark is not configured".into()),
            "set STARK_ACCESS_ID, STARK_ENVIRONMENT and one of STARK_PRIVATE_KEY_FILE, STARK_PRIVATE_KEY_PEM, STARK_PRIVATE_KEY_BASE64 (see .env.example)",
        );
    };
    match client.list_public_keys(1).await {
        Ok(_) => Check::pass(
            NAME,
            format!(
                "Stark accepted a request signed as {} at {}",
                client.config().access_id,
                client.config().environment.base_url()
            ),
        ),
        Err(err) if is_credentials_error(&err) => Check::fail(
            NAME,
            format!("Stark refused the signature: {err}"),
            format!(
                "check that STARK_ACCESS_ID is the project whose public key (fingerprint {}) is registered at Stark, that STARK_ENVIRONMENT is where that project lives, and that this host's clock is right (it reads {}; Stark refuses a skewed Access-Time)",
                resolved.public_key_fingerprint.as_deref().unwrap_or("?"),
                resolved.local_time
            ),
        ),
        Err(err) if stark_exit(&err) == Exit::Unreachable => Check::fail(
            NAME,
            format!("Stark is unreachable: {err}"),
            format!(
                "check STARK_ENVIRONMENT ({}) and this host's network access to it, then run doctor again",
                client.config().environment.base_url()
            ),
        )
        .unreachable(),
        Err(err) => Check::fail(
            NAME,
            format!("Stark answered an error: {err}"),
            "check STARK_ENVIRONMENT and STARK_ACCESS_ID",
        ),
    }
}

/// Whether one topic or subscription exists: `Ok(false)` when Pub/Sub says it does not.
async fn exists(target: &PubSubTarget, kind: &str, name: &str) -> Result<bool, gcp_pubsub::Error> {
    let found = match kind {
        "topic" => {
            let admin = target.topic_admin().await?;
            admin
                .get_topic()
                .set_topic(target.topic_path(name))
                .send()
                .await
                .map(|_| ())
                .map_err(|source| gcp_pubsub::Error::Rpc {
                    action: "get topic",
                    resource: target.topic_path(name),
                    source,
                })
        }
        _ => gcp_pubsub::ops::subscription_retention(target, name)
            .await
            .map(|_| ()),
    };
    match found {
        Ok(()) => Ok(true),
        Err(gcp_pubsub::Error::Rpc { source, .. })
            if source.http_status_code() == Some(404)
                || source
                    .status()
                    .is_some_and(|s| s.code == google_cloud_gax::error::rpc::Code::NotFound) =>
        {
            Ok(false)
        }
        Err(err) => Err(err),
    }
}

/// Checks that every topic and subscription of the topology exists.
async fn check_topology(context: &Context) -> Check {
    const NAME: &str = "pubsub_topology";
    let target = match context.pubsub() {
        Ok(target) => target,
        Err(err) => {
            return Check::fail(
                NAME,
                err.to_string(),
                "set PUBSUB_PROJECT_ID (and PUBSUB_EMULATOR_HOST for the emulator)",
            );
        }
    };
    let topology = Topology::pipeline("", "");
    let mut wanted = Vec::new();
    for flow in &topology.flows {
        wanted.push(("topic", flow.topic.clone()));
        wanted.push(("topic", flow.dead_letter_topic()));
        wanted.push(("subscription", flow.subscription.clone()));
        wanted.push(("subscription", flow.dead_letter_subscription()));
    }
    let mut missing = Vec::new();
    for (kind, name) in &wanted {
        match tokio::time::timeout(PUBSUB_TIMEOUT, exists(target, kind, name)).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => missing.push(format!("{kind} {name}")),
            Ok(Err(err)) => {
                let check = Check::fail(
                    NAME,
                    format!("cannot read {kind} {name}: {err}"),
                    "check PUBSUB_PROJECT_ID, the credentials (gcloud auth application-default login) and the network",
                );
                return if pubsub_exit(&err) == Exit::Unreachable {
                    check.unreachable()
                } else {
                    check
                };
            }
            Err(_) => {
                return Check::fail(
                    NAME,
                    format!(
                        "Pub/Sub ({}) did not answer within {} s",
                        target.describe(),
                        PUBSUB_TIMEOUT.as_secs()
                    ),
                    "check PUBSUB_EMULATOR_HOST or the network, then run doctor again",
                )
                .unreachable();
            }
        }
    }
    if missing.is_empty() {
        Check::pass(
            NAME,
            format!(
                "{} topics and subscriptions present in {}",
                wanted.len(),
                target.describe()
            ),
        )
    } else {
        Check::fail(
            NAME,
            format!("missing in {}: {}", target.describe(), missing.join(", ")),
            "stark-pipeline provision --invoice-sender-url https://…/push --money-sender-url https://…/push (idempotent)",
        )
    }
}

/// Checks that Stark's webhook points at the ingester with the `invoice` subscription.
async fn check_webhook(
    context: &Context,
    ingester_url: Option<&str>,
    stark_reachable: bool,
) -> Check {
    const NAME: &str = "stark_webhook";
    let Some(client) = context.stark.as_ref().filter(|_| stark_reachable) else {
        return Check::fail(
            NAME,
            "not checked: Stark is not reachable with this configuration",
            "fix stark_credentials first",
        );
    };
    let webhooks = match client.list_webhooks().await {
        Ok(webhooks) => webhooks,
        Err(err) => {
            let check = Check::fail(
                NAME,
                format!("cannot list webhooks: {err}"),
                "run doctor again",
            );
            return if stark_exit(&err) == Exit::Unreachable {
                check.unreachable()
            } else {
                check
            };
        }
    };
    let registered = || {
        if webhooks.is_empty() {
            "no webhook is registered".to_owned()
        } else {
            format!(
                "registered: {}",
                webhooks
                    .iter()
                    .map(|w| format!("{} ({})", w.url, w.subscriptions.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    };
    let Some(url) = ingester_url else {
        return Check::fail(
            NAME,
            format!("no ingester URL to compare with; {}", registered()),
            "pass --ingester-url https://…/webhook or set INGESTER_URL",
        );
    };
    match webhooks.iter().find(|w| w.url == url) {
        Some(w) if w.subscriptions.iter().any(|s| s == "invoice") => Check::pass(
            NAME,
            format!(
                "webhook {} sends {} to {url}",
                w.id,
                w.subscriptions.join(", ")
            ),
        ),
        Some(w) => Check::fail(
            NAME,
            format!(
                "webhook {} points at {url} without the invoice subscription ({})",
                w.id,
                w.subscriptions.join(", ")
            ),
            format!(
                "stark-pipeline webhook delete {} && stark-pipeline webhook register --url {url}",
                w.id
            ),
        ),
        None => Check::fail(
            NAME,
            format!("no webhook points at {url}; {}", registered()),
            format!("stark-pipeline webhook register --url {url}"),
        ),
    }
}

/// Checks that the ingester will refuse other workspaces' events.
fn check_workspace(env: &Env) -> Check {
    const NAME: &str = "workspace_id";
    match env.optional("STARK_WORKSPACE_ID") {
        Some(id) => Check::pass(
            NAME,
            format!("STARK_WORKSPACE_ID={id}: the ingester refuses other workspaces' events"),
        ),
        None => Check::fail(
            NAME,
            "STARK_WORKSPACE_ID is not set: the ingester would accept any workspace's events",
            "set STARK_WORKSPACE_ID to the workspaceId of any of our events (stark-pipeline events undelivered --format json | jq -r '.events[0].workspace_id') or from Stark's web banking",
        ),
    }
}

/// Runs `doctor`.
pub async fn run(
    args: &DoctorArgs,
    context: &Context,
    dotenv: Option<&Path>,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let ingester_url = args
        .ingester_url
        .as_deref()
        .filter(|u| !u.trim().is_empty());
    let resolved = resolve(context, dotenv, ingester_url);
    let credentials = check_credentials(context, &resolved).await;
    let stark_ok = credentials.status == Status::Pass;
    let checks = vec![
        credentials,
        check_topology(context).await,
        check_webhook(context, ingester_url, stark_ok).await,
        check_workspace(&context.env),
    ];
    let exit = if checks.iter().any(|c| c.unreachable) {
        Exit::Unreachable
    } else {
        Exit::healthy(checks.iter().all(|c| c.status == Status::Pass))
    };
    match args.output.format {
        Format::Json => write_json(
            out,
            &DoctorJson {
                ok: exit == Exit::Ok,
                configuration: &resolved,
                checks: &checks,
            },
        )?,
        Format::Table => {
            let none = || "(not set)".to_owned();
            let mut rows = table(["setting", "value"]);
            let r = &resolved;
            rows.add_row([
                ".env".to_owned(),
                r.dotenv.clone().unwrap_or_else(|| "(none loaded)".into()),
            ]);
            rows.add_row([
                "Stark base URL".to_owned(),
                match (&r.stark_base_url, &r.stark_environment) {
                    (Some(url), Some(env)) => format!("{url} ({env})"),
                    _ => none(),
                },
            ]);
            rows.add_row([
                "Stark access id".to_owned(),
                r.access_id.clone().unwrap_or_else(none),
            ]);
            rows.add_row([
                "private key".to_owned(),
                match (r.private_key_source, &r.public_key_fingerprint) {
                    (Some(source), Some(fp)) => format!("from {source}, public key {fp}"),
                    (Some(source), None) => format!("from {source} (unusable)"),
                    _ => none(),
                },
            ]);
            if let Some(err) = &r.stark_error {
                rows.add_row(["Stark configuration".to_owned(), err.clone()]);
            }
            rows.add_row(["Pub/Sub".to_owned(), r.pubsub.clone()]);
            rows.add_row(["payout account".to_owned(), r.payout_account.clone()]);
            rows.add_row([
                "transfer fee".to_owned(),
                r.transfer_fee
                    .map(|f| format!("{f} cents"))
                    .unwrap_or_else(|| "invalid PAYOUT_TRANSFER_FEE_CENTS".into()),
            ]);
            rows.add_row([
                "workspace id".to_owned(),
                r.workspace_id.clone().unwrap_or_else(none),
            ]);
            rows.add_row([
                "ingester URL".to_owned(),
                r.ingester_url.clone().unwrap_or_else(none),
            ]);
            rows.add_row(["local time".to_owned(), r.local_time.clone()]);
            write_table(out, &mut rows)?;
            writeln!(out)?;
            for check in &checks {
                let status = match check.status {
                    Status::Pass => "PASS",
                    Status::Fail => "FAIL",
                };
                writeln!(out, "{status} {}: {}", check.name, check.detail)?;
                if let Some(fix) = &check.fix {
                    writeln!(out, "     fix: {fix}")?;
                }
            }
        }
    }
    Ok(exit)
}
