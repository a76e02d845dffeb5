//! Side by side: our `webhook-ingester` release binary against the seed's webhook (a minimal
//! Flask app calling the official Stark Bank Python SDK's `starkbank.event.parse`, under
//! gunicorn with one worker), driven by the same load generator with the same signed body, in
//! one run, so that the ratios do not depend on what else the machine did that day.
//!
//! # Setup
//! - **Cores.** This process pins itself, and so everything it starts except the servers (the
//!   Pub/Sub emulator, `wrk`, the local Stark), to `--generator-cpu` (0); each server runs under
//!   `taskset -c --server-cpu` (1). The two servers never run load at the same time: each
//!   measurement targets one, the other sits idle on the same core.
//! - **Stark.** A `stark-sandbox` in this process, whose webhook signing key is generated here,
//!   so that the body can be signed with the very key the sandbox serves at
//!   `GET /v2/public-key`. Each server has its own registered project and fetches the key once
//!   (both SDKs cache it); after that Stark is not involved.
//! - **Ours** publishes every credited invoice to `paid_invoices` on the Pub/Sub emulator and
//!   answers 200 only once the emulator confirmed the publish, exactly as in production (env
//!   from `Config::from_env`, JSON logs to `/dev/null`). The topic exists and has no
//!   subscription during the measurement (Pub/Sub then confirms and drops, which costs the
//!   publisher the same; a subscription would also make the emulator's memory grow).
//! - **The seed's** (`crates/bench/seed/app.py`) only parses and prints, as the seed did.
//! - **Checks before measuring**, so that a fast wrong answer cannot pass: ours answers 200 to
//!   the body three times and exactly three messages come back from a temporary pull
//!   subscription; both refuse the body with another body's valid signature.
//! - **Load**: `wrk -t1 -c N` with a Lua script that posts the one body (or cycles through
//!   `--invoices` distinct ones) and prints its summary as JSON. After a warm-up of each
//!   server at each connection count, rounds alternate the servers (and swap who goes first
//!   each round) at every connection count.
//! - **CPU** of a server is `utime + stime` from `/proc/<pid>/stat` of its whole process tree
//!   (gunicorn's master plus its worker) before and after each `wrk` run, so requests per
//!   CPU-second do not depend on what else shares the machine. The emulator's CPU in the same
//!   windows is reported too: it shares the load generator's core.
//!
//! ```sh
//! cargo build --release -p webhook-ingester -p bench
//! scripts/bench.sh seed          # builds the virtualenv if missing, then runs this
//! target/release/side-by-side --venv target/seed-venv --duration 10s --rounds 2
//! ```
#![forbid(unsafe_code)]

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bench::procfs::{cpus_allowed, process_tree, total_cpu_time};
use bench::{free_port, parse_duration};
use clap::Parser;
use gcp_pubsub::emulator::{Emulator, EmulatorOptions};
use pipeline_domain::messages::PAID_INVOICES;
use pipeline_testkit::webhooks::{SignedWebhook, WORKSPACE_ID, signed_webhooks};
use serde_json::{Value, json};
use stark_client::PrivateKey;
use stark_sandbox::{Sandbox, SandboxConfig};

/// The emulator project of this benchmark.
const PROJECT: &str = "bench-side-by-side";
/// The temporary subscription that proves ours publishes.
const CHECK_SUBSCRIPTION: &str = "side-by-side-check";

/// Our webhook-ingester against the seed's Python webhook, same load, same run.
#[derive(Debug, Parser)]
#[command(name = "side-by-side")]
struct Args {
    /// Connections of each wrk run (one wrk thread).
    #[arg(long, value_delimiter = ',', default_value = "4,32")]
    connections: Vec<u32>,
    /// Length of each measured wrk run (whole seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Distinct credited invoices the load cycles through. 1 (the default, and the issue's
    /// method) sends the very same webhook every time: every publish of ours then carries the
    /// same ordering key, and the Pub/Sub client keeps one batch of a key in flight at a time,
    /// so concurrent requests queue behind each other's publish and share batches. Stark's real
    /// traffic is distinct invoices (one key each, batches in parallel): `--invoices 1000`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    invoices: u64,
    /// Rounds; each runs both servers at every connection count.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Unmeasured wrk run against each server at each connection count first: caches,
    /// allocator, connection pools, and above all the emulator's JVM, which spends several
    /// times more CPU per publish until its JIT has compiled the publish path (seen as a first
    /// round twice as slow after a 3 s warm-up, and still slower after 10 s at 32 connections
    /// only).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    warmup: Duration,
    /// The webhook-ingester binary (default: next to this one, i.e. the same release build).
    #[arg(long)]
    ingester: Option<PathBuf>,
    /// The virtualenv with starkbank, flask and gunicorn (crates/bench/seed/requirements.txt).
    #[arg(long, default_value = "target/seed-venv")]
    venv: PathBuf,
    /// The directory of the seed's Flask app (`app.py`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/seed"))]
    seed_app: PathBuf,
    /// Core of the servers.
    #[arg(long, default_value_t = 1)]
    server_cpu: u32,
    /// Core of this process, the emulator, wrk and the local Stark.
    #[arg(long, default_value_t = 0)]
    generator_cpu: u32,
    /// Where the servers' stderr, wrk's output, the webhooks and the script go (default: a new
    /// directory under the system's temporary directory).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("side-by-side: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    ensure!(
        !args.connections.is_empty() && args.connections.iter().all(|c| *c >= 1),
        "--connections needs at least one count, each at least 1"
    );
    ensure!(args.rounds >= 1, "--rounds must be at least 1");
    ensure!(
        args.duration >= Duration::from_secs(1) && args.warmup >= Duration::from_secs(1),
        "wrk counts in whole seconds: --duration and --warmup must be at least 1s"
    );
    ensure!(
        args.server_cpu != args.generator_cpu,
        "--server-cpu and --generator-cpu must differ"
    );
    // Before any other thread exists, so that every thread and child inherits it.
    pin_self(args.generator_cpu)?;
    // Two workers (on the one pinned core): the sandbox must keep answering while a task
    // waits for wrk or for a server.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(measure(args))
}

/// Pins this process (all its threads) to `cpu` with `taskset -a -p` and checks the result.
fn pin_self(cpu: u32) -> anyhow::Result<()> {
    let pid = std::process::id().to_string();
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    ensure!(status.success(), "taskset -p -c {cpu} failed: {status}");
    let allowed = cpus_allowed("self")?;
    ensure!(
        allowed == cpu.to_string(),
        "pinned to CPU {cpu} but allowed on {allowed}"
    );
    Ok(())
}

/// Whether `program` is on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

// ----- the servers -------------------------------------------------------------------------------

/// Which server a measurement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Our webhook-ingester, publishing to the emulator.
    Ours,
    /// The seed's Flask app under gunicorn.
    Seed,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::Seed => "seed",
        }
    }
}

/// A server process, stopped when dropped. gunicorn runs as the leader of its own process
/// group, so that its worker is stopped with it.
#[derive(Debug)]
struct Server {
    side: Side,
    child: Child,
    port: u16,
    stderr_log: PathBuf,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The last lines of its stderr, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Polls `GET /healthz` until 200, failing early if the process exits.
    async fn wait_healthy(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = self.url("/healthz");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the {} server exited ({status}) before answering; its stderr:\n{}",
                    self.side.name(),
                    self.log_tail()
                );
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the {} server did not answer {url} within 60 s; its stderr:\n{}",
                    self.side.name(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        match self.side {
            Side::Ours => {
                let _ = self.child.kill();
            }
            Side::Seed => {
                // The group is gunicorn's own (spawned with process_group(0)): its master and
                // worker, nothing else.
                signal_group(self.pid(), "TERM");
                let deadline = Instant::now() + Duration::from_secs(5);
                while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                signal_group(self.pid(), "KILL");
            }
        }
        let _ = self.child.wait();
    }
}

/// Sends `signal` to process group `pgid` with kill(1) (the crate forbids `unsafe`, which
/// rules out `libc::kill`).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stderr(Stdio::null())
        .status();
}

/// Our webhook-ingester, configured through its environment as in production.
fn start_ours(
    binary: &Path,
    cpu: u32,
    work: &Path,
    stark_base: &str,
    project_id: &str,
    key: &PrivateKey,
    emulator_host: &str,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let stderr_log = work.join("ours.stderr");
    let child = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(binary)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("STARK_ACCESS_ID", format!("project/{project_id}"))
        .env("STARK_ENVIRONMENT", stark_base)
        .env("STARK_PRIVATE_KEY_PEM", key.to_pem())
        .env("STARK_WORKSPACE_ID", WORKSPACE_ID)
        .env("PUBSUB_PROJECT_ID", PROJECT)
        .env("PUBSUB_EMULATOR_HOST", emulator_host)
        .env("LOG_FORMAT", "json")
        // It reads ./.env first: run it where there is none.
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_log)?)
        .spawn()
        .with_context(|| format!("starting taskset -c {cpu} {}", binary.display()))?;
    Ok(Server {
        side: Side::Ours,
        child,
        port,
        stderr_log,
    })
}

/// The seed's Flask app under gunicorn, one worker (the default sync worker).
fn start_seed(
    gunicorn: &Path,
    app_dir: &Path,
    cpu: u32,
    work: &Path,
    stark_root: &str,
    project_id: &str,
    key_path: &Path,
) -> anyhow::Result<Server> {
    let port = free_port()?;
    let stderr_log = work.join("seed.stderr");
    let child = Command::new("taskset")
        .args(["-c", &cpu.to_string()])
        .arg(gunicorn)
        .args(["--workers", "1", "--bind", &format!("127.0.0.1:{port}")])
        // gunicorn 27 would otherwise open a control socket in the home directory.
        .arg("--no-control-socket")
        .arg("--chdir")
        .arg(app_dir)
        .arg("app:app")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SEED_STARK_ROOT", stark_root)
        .env("SEED_PROJECT_ID", project_id)
        .env("SEED_PRIVATE_KEY_PATH", key_path)
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_log)?)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting taskset -c {cpu} {}", gunicorn.display()))?;
    Ok(Server {
        side: Side::Seed,
        child,
        port,
        stderr_log,
    })
}

// ----- Pub/Sub (the emulator's REST API) ---------------------------------------------------------

/// One REST call to the emulator; the answer's JSON (`{}` when empty).
async fn emulator_call(
    http: &reqwest::Client,
    emulator: &Emulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}/v1/projects/{}/{path}", emulator.endpoint(), PROJECT);
    let mut request = http.request(method.clone(), &url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body)?);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = response.status();
    let bytes = response.bytes().await?;
    ensure!(
        status.is_success(),
        "{method} {url}: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(if bytes.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&bytes)?
    })
}

/// Posts `hook` to `server` (optionally with another signature); the HTTP status.
async fn post(
    http: &reqwest::Client,
    server: &Server,
    hook: &SignedWebhook,
    signature: Option<&str>,
) -> anyhow::Result<u16> {
    let response = http
        .post(server.url("/webhook"))
        .header("content-type", "application/json")
        .header("digital-signature", signature.unwrap_or(&hook.signature))
        .body(hook.body.clone())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// Ours answers 200 three times and three messages reach `paid_invoices`; a valid signature of
/// another body is refused with 401.
async fn check_ours(
    http: &reqwest::Client,
    emulator: &Emulator,
    ours: &Server,
    hook: &SignedWebhook,
    foreign_signature: &str,
) -> anyhow::Result<()> {
    let subscription = format!("subscriptions/{CHECK_SUBSCRIPTION}");
    emulator_call(
        http,
        emulator,
        reqwest::Method::PUT,
        &subscription,
        Some(json!({"topic": format!("projects/{PROJECT}/topics/{PAID_INVOICES}")})),
    )
    .await?;
    for _ in 0..3 {
        let status = post(http, ours, hook, None).await?;
        ensure!(status == 200, "ours answered {status} to the signed body");
    }
    let forged = post(http, ours, hook, Some(foreign_signature)).await?;
    ensure!(
        forged == 401,
        "ours answered {forged} to another body's signature"
    );
    let mut received = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received < 3 && Instant::now() < deadline {
        let answer = emulator_call(
            http,
            emulator,
            reqwest::Method::POST,
            &format!("{subscription}:pull"),
            Some(json!({"maxMessages": 10, "returnImmediately": true})),
        )
        .await?;
        let messages = answer["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        received += messages.len();
        let ack_ids: Vec<&Value> = messages.iter().map(|m| &m["ackId"]).collect();
        if !ack_ids.is_empty() {
            emulator_call(
                http,
                emulator,
                reqwest::Method::POST,
                &format!("{subscription}:acknowledge"),
                Some(json!({ "ackIds": ack_ids })),
            )
            .await?;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    emulator_call(http, emulator, reqwest::Method::DELETE, &subscription, None).await?;
    ensure!(
        received == 3,
        "3 webhooks answered 200 but {received} messages reached {PAID_INVOICES}"
    );
    println!(
        "check ours: 3 x 200, 3 messages pulled back from {PAID_INVOICES} on the emulator; another body's signature -> 401"
    );
    Ok(())
}

/// The seed's answers 200 and refuses a valid signature of another body.
async fn check_seed(
    http: &reqwest::Client,
    seed: &Server,
    hook: &SignedWebhook,
    foreign_signature: &str,
) -> anyhow::Result<()> {
    let status = post(http, seed, hook, None).await?;
    ensure!(
        status == 200,
        "the seed's answered {status} to the signed body; its stderr:\n{}",
        seed.log_tail()
    );
    let forged = post(http, seed, hook, Some(foreign_signature)).await?;
    ensure!(
        forged != 200,
        "the seed's accepted another body's signature"
    );
    println!(
        "check seed: 200; another body's signature -> {forged} (starkbank.error.InvalidSignatureError)"
    );
    Ok(())
}

// ----- wrk ---------------------------------------------------------------------------------------

/// Marks the line our Lua `done` hook prints.
const WRK_MARK: &str = "side-by-side-result ";

/// The webhooks file the Lua script reads: one `signature<TAB>body` line per webhook.
fn webhooks_file(hooks: &[SignedWebhook]) -> anyhow::Result<Vec<u8>> {
    let mut file = Vec::new();
    for hook in hooks {
        ensure!(
            hook.signature
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
            "a signature that is not base64"
        );
        ensure!(
            !hook.body.contains(&b'\n') && !hook.body.contains(&b'\t'),
            "a body with a newline or a tab"
        );
        file.extend_from_slice(hook.signature.as_bytes());
        file.push(b'\t');
        file.extend_from_slice(&hook.body);
        file.push(b'\n');
    }
    Ok(file)
}

/// The Lua script: builds one POST per line of the webhooks file before the clock starts and
/// sends them in turn (one line: the same request every time); at the end it prints wrk's
/// summary as JSON (counts, latency percentiles in µs), so nothing depends on wrk's human
/// output.
fn wrk_script(webhooks_path: &Path) -> anyhow::Result<String> {
    let path = webhooks_path.to_str().context("a UTF-8 work directory")?;
    ensure!(!path.contains("]==]"), "unusual work directory {path}");
    Ok(format!(
        r#"-- Generated by side-by-side (crates/bench/src/bin/side-by-side.rs).
local prepared = {{}}
for line in io.lines([==[{path}]==]) do
  local signature, body = line:match("^([^\t]+)\t(.*)$")
  prepared[#prepared + 1] = wrk.format("POST", nil,
    {{["Content-Type"] = "application/json", ["Digital-Signature"] = signature}}, body)
end
assert(#prepared > 0, "no webhooks")
local next_one = 0

request = function()
  next_one = next_one % #prepared + 1
  return prepared[next_one]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{WRK_MARK}{{"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,"max_us":%.0f}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"#
    ))
}

/// What one wrk run reported.
#[derive(Debug, Clone, Copy)]
struct WrkResult {
    requests: u64,
    duration: Duration,
    errors: u64,
    p50: Duration,
    p90: Duration,
    p99: Duration,
    max: Duration,
}

impl WrkResult {
    fn parse(stdout: &str) -> anyhow::Result<Self> {
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix(WRK_MARK))
            .context("wrk printed no summary (did the Lua script run?)")?;
        let v: Value = serde_json::from_str(line)?;
        let n = |k: &str| v[k].as_f64().map(|x| x.max(0.0) as u64).unwrap_or(0);
        let us = |k: &str| Duration::from_micros(n(k));
        Ok(Self {
            requests: n("requests"),
            duration: us("duration_us"),
            errors: ["connect", "read", "write", "status", "timeout"]
                .iter()
                .map(|k| n(k))
                .sum(),
            p50: us("p50_us"),
            p90: us("p90_us"),
            p99: us("p99_us"),
            max: us("max_us"),
        })
    }

    fn per_second(&self) -> f64 {
        self.requests as f64 / self.duration.as_secs_f64().max(1e-9)
    }
}

/// Runs wrk against `server`; its full output goes to `log`.
async fn wrk(
    server: &Server,
    connections: u32,
    duration: Duration,
    script: &Path,
    log: &Path,
) -> anyhow::Result<WrkResult> {
    let output = tokio::process::Command::new("wrk")
        .args(["-t1", "-c", &connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs())])
        .args(["--timeout", "10s", "--latency", "-s"])
        .arg(script)
        .arg(server.url("/webhook"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    std::fs::write(
        log,
        format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
    )?;
    ensure!(
        output.status.success(),
        "wrk failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    WrkResult::parse(&stdout)
}

/// One measured wrk run and the CPU it cost.
#[derive(Debug, Clone, Copy)]
struct Run {
    round: u32,
    side: Side,
    connections: u32,
    wrk: WrkResult,
    server_cpu: Duration,
    emulator_cpu: Duration,
}

impl Run {
    fn per_cpu_second(&self) -> f64 {
        self.wrk.requests as f64 / self.server_cpu.as_secs_f64().max(1e-9)
    }
    fn busy(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.wrk.duration.as_secs_f64().max(1e-9)
    }
}

/// Measures one wrk run: the server's process tree CPU before and after (the tree must not
/// change: a restarted worker would take its CPU time with it), and the emulator's.
async fn measure_one(
    server: &Server,
    emulator_pid: u32,
    round: u32,
    connections: u32,
    duration: Duration,
    script: &Path,
    work: &Path,
) -> anyhow::Result<Run> {
    let tree = process_tree(server.pid())?;
    let emulator_tree = process_tree(emulator_pid)?;
    let cpu_before = total_cpu_time(&tree)?;
    let emulator_before = total_cpu_time(&emulator_tree)?;
    let log = work.join(format!(
        "wrk-r{round}-c{connections}-{}.txt",
        server.side.name()
    ));
    let result = wrk(server, connections, duration, script, &log).await?;
    let cpu_after = total_cpu_time(&tree)?;
    let emulator_after = total_cpu_time(&emulator_tree)?;
    ensure!(
        process_tree(server.pid())? == tree,
        "the {} server's processes changed during the run (a worker restarted?); its stderr:\n{}",
        server.side.name(),
        server.log_tail()
    );
    let run = Run {
        round,
        side: server.side,
        connections,
        wrk: result,
        server_cpu: cpu_after.saturating_sub(cpu_before),
        emulator_cpu: emulator_after.saturating_sub(emulator_before),
    };
    println!(
        "round {round}, {connections:>2} connections, {}: {} requests in {:.2} s = {:.0} req/s; server CPU {:.2} s ({:.0} % of its core) -> {:.0} req per CPU-second; p50 {} / p90 {} / p99 {} / max {} ms; errors {}; emulator CPU {:.2} s",
        server.side.name(),
        result.requests,
        result.duration.as_secs_f64(),
        result.per_second(),
        run.server_cpu.as_secs_f64(),
        100.0 * run.busy(),
        run.per_cpu_second(),
        bench::ms(result.p50),
        bench::ms(result.p90),
        bench::ms(result.p99),
        bench::ms(result.max),
        result.errors,
        run.emulator_cpu.as_secs_f64()
    );
    Ok(run)
}

// ----- the run -----------------------------------------------------------------------------------

async fn measure(args: &Args) -> anyhow::Result<bool> {
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("side-by-side-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let work = std::fs::canonicalize(&work)?;
    let ingester = match &args.ingester {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this binary's directory")?
            .join("webhook-ingester"),
    };
    ensure!(
        ingester.is_file(),
        "{} not found: build it with `cargo build --release -p webhook-ingester`",
        ingester.display()
    );
    let gunicorn = std::fs::canonicalize(args.venv.join("bin/gunicorn")).with_context(|| {
        format!(
            "no gunicorn in {}: create the virtualenv with `python3 -m venv {0}` and `{0}/bin/pip install -r crates/bench/seed/requirements.txt` (scripts/bench.sh seed does both)",
            args.venv.display()
        )
    })?;
    let app_dir = std::fs::canonicalize(&args.seed_app)?;
    ensure!(
        app_dir.join("app.py").is_file(),
        "no app.py in {}",
        app_dir.display()
    );
    ensure!(
        on_path("wrk"),
        "wrk is not on PATH (apt-get install -y wrk)"
    );
    println!(
        "side-by-side: load average {} at start; this process, the emulator, wrk and the local Stark on CPU {}; servers on CPU {}; work dir {}",
        load_average(),
        args.generator_cpu,
        args.server_cpu,
        work.display()
    );

    // Stark, with a signing key of ours, so the body carries a signature of the key it serves.
    let signing = PrivateKey::generate();
    let sandbox = Sandbox::start(SandboxConfig {
        signing_key: Some(signing.clone()),
        ..SandboxConfig::default()
    })
    .await?;
    let (our_project, our_key) = sandbox.new_project();
    let (seed_project, seed_key) = sandbox.new_project();
    let seed_key_path = work.join("seed-project-key.pem");
    std::fs::write(&seed_key_path, seed_key.to_pem())?;

    // The load: `--invoices` credited-invoice events (the first low-S, then alternating as
    // Stark's); one more only lends its signature to the checks.
    let mut hooks = signed_webhooks(&signing, args.invoices + 1);
    let foreign = hooks.pop().context("signed webhooks")?;
    let (hook, foreign_signature) = (&hooks[0], foreign.signature.as_str());
    let webhooks_path = work.join("webhooks.txt");
    std::fs::write(&webhooks_path, webhooks_file(&hooks)?)?;
    let script = work.join("post.lua");
    std::fs::write(&script, wrk_script(&webhooks_path)?)?;

    let emulator = Emulator::start_with(EmulatorOptions {
        project: PROJECT.to_owned(),
        ..EmulatorOptions::default()
    })
    .await?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    emulator_call(
        &http,
        &emulator,
        reqwest::Method::PUT,
        &format!("topics/{PAID_INVOICES}"),
        Some(json!({})),
    )
    .await?;

    let mut ours = start_ours(
        &ingester,
        args.server_cpu,
        &work,
        &sandbox.base_url(),
        &our_project,
        &our_key,
        emulator.host(),
    )?;
    let mut seed = start_seed(
        &gunicorn,
        &app_dir,
        args.server_cpu,
        &work,
        &sandbox.root_url(),
        &seed_project,
        &seed_key_path,
    )?;
    ours.wait_healthy(&http).await?;
    seed.wait_healthy(&http).await?;
    for server in [&ours, &seed] {
        let tree = process_tree(server.pid())?;
        let cpus = tree
            .iter()
            .map(|pid| cpus_allowed(&pid.to_string()).map(|c| format!("{pid} on CPU {c}")))
            .collect::<Result<Vec<_>, _>>()?;
        println!("{}: {}", server.side.name(), cpus.join(", "));
    }
    println!(
        "emulator (process group {}) on CPU {}; load: {} credited-invoice webhook{} of {} bytes{}",
        emulator.process_group(),
        cpus_allowed(&emulator.process_group().to_string())?,
        hooks.len(),
        if hooks.len() == 1 { "" } else { "s" },
        hook.body.len(),
        if hooks.len() == 1 {
            ", low-S signature, sent again and again (one invoice: one ordering key)"
        } else {
            ", half with high-S signatures, sent in turn (one ordering key each)"
        }
    );
    check_ours(&http, &emulator, &ours, hook, foreign_signature).await?;
    check_seed(&http, &seed, hook, foreign_signature).await?;

    // At every connection count: the emulator's JVM compiles its unbatched publish path (one
    // message per request, at few connections) apart from the batched one.
    for &connections in &args.connections {
        for server in [&ours, &seed] {
            let log = work.join(format!(
                "wrk-warmup-c{connections}-{}.txt",
                server.side.name()
            ));
            let warm = wrk(server, connections, args.warmup, &script, &log).await?;
            println!(
                "warm-up {}, {connections} connections: {} requests, {} errors",
                server.side.name(),
                warm.requests,
                warm.errors
            );
        }
    }

    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for &connections in &args.connections {
            // Whoever went first in the last round goes second in this one.
            let order = if round % 2 == 1 {
                [&ours, &seed]
            } else {
                [&seed, &ours]
            };
            for server in order {
                runs.push(
                    measure_one(
                        server,
                        emulator.process_group(),
                        round,
                        connections,
                        args.duration,
                        &script,
                        &work,
                    )
                    .await?,
                );
            }
        }
    }
    drop(ours);
    drop(seed);
    emulator.stop();
    sandbox.shutdown().await;
    Ok(report(args, &runs))
}

// ----- the report --------------------------------------------------------------------------------

/// Every run of one side at one connection count, pooled.
#[derive(Debug, Clone, Copy, Default)]
struct Pooled {
    requests: u64,
    wall: Duration,
    cpu: Duration,
    errors: u64,
    worst_p50: Duration,
    worst_p99: Duration,
}

impl Pooled {
    fn of(runs: &[Run], side: Side, connections: u32) -> Self {
        runs.iter()
            .filter(|r| r.side == side && r.connections == connections)
            .fold(Self::default(), |p, r| Self {
                requests: p.requests + r.wrk.requests,
                wall: p.wall + r.wrk.duration,
                cpu: p.cpu + r.server_cpu,
                errors: p.errors + r.wrk.errors,
                worst_p50: p.worst_p50.max(r.wrk.p50),
                worst_p99: p.worst_p99.max(r.wrk.p99),
            })
    }
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    fn per_cpu_second(&self) -> f64 {
        self.requests as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// The ratio over the rounds: pooled, and the lowest and highest of the per-round ratios.
fn ratio_range(runs: &[Run], connections: u32, figure: impl Fn(&Run) -> f64) -> (f64, f64) {
    let rounds: Vec<u32> = {
        let mut r: Vec<u32> = runs.iter().map(|r| r.round).collect();
        r.dedup();
        r
    };
    let ratios: Vec<f64> = rounds
        .iter()
        .filter_map(|round| {
            let find = |side| {
                runs.iter()
                    .find(|r| r.round == *round && r.side == side && r.connections == connections)
            };
            Some(figure(find(Side::Ours)?) / figure(find(Side::Seed)?))
        })
        .collect();
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(0.0, f64::max);
    (low, high)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Prints the pooled table and the ratios against their goals; false if any request failed.
fn report(args: &Args, runs: &[Run]) -> bool {
    println!();
    println!(
        "pooled over {} rounds of {} s each:",
        args.rounds,
        args.duration.as_secs()
    );
    println!(
        "| connections | server | requests | req/s (wall) | server CPU | busy | req per CPU-second | worst p50 / p99 | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut errors = 0;
    for &connections in &args.connections {
        for side in [Side::Ours, Side::Seed] {
            let p = Pooled::of(runs, side, connections);
            errors += p.errors;
            println!(
                "| {connections} | {} | {} | {:.0} | {:.2} s | {:.0} % | {:.0} | {} / {} ms | {} |",
                side.name(),
                p.requests,
                p.per_second(),
                p.cpu.as_secs_f64(),
                100.0 * p.cpu.as_secs_f64() / p.wall.as_secs_f64().max(1e-9),
                p.per_cpu_second(),
                bench::ms(p.worst_p50),
                bench::ms(p.worst_p99),
                p.errors
            );
        }
    }
    println!();
    println!("| figure | goal | measured (pooled; per-round range) | |");
    println!("|---|---|---|---|");
    for &connections in &args.connections {
        let (ours, seed) = (
            Pooled::of(runs, Side::Ours, connections),
            Pooled::of(runs, Side::Seed, connections),
        );
        let per_cpu = ours.per_cpu_second() / seed.per_cpu_second();
        let (low, high) = ratio_range(runs, connections, Run::per_cpu_second);
        let goal = matches!(connections, 4 | 32);
        println!(
            "| req per server CPU-second, ours ÷ seed's, {connections} connections | {} | {per_cpu:.1}× ({low:.1} – {high:.1}) | {} |",
            if goal { "≥ 20×" } else { "–" },
            if goal { verdict(per_cpu >= 20.0) } else { "" }
        );
        let wall = ours.per_second() / seed.per_second();
        let (low, high) = ratio_range(runs, connections, |r| r.wrk.per_second());
        let goal = connections == 32;
        println!(
            "| wall req/s, ours ÷ seed's, {connections} connections | {} | {wall:.1}× ({low:.1} – {high:.1}) | {} |",
            if goal { "≥ 5×" } else { "–" },
            if goal { verdict(wall >= 5.0) } else { "" }
        );
    }
    if args.connections.contains(&4) {
        let p50s: Vec<String> = runs
            .iter()
            .filter(|r| r.side == Side::Ours && r.connections == 4)
            .map(|r| bench::ms(r.wrk.p50))
            .collect();
        let worst = Pooled::of(runs, Side::Ours, 4).worst_p50;
        println!(
            "| p50 answer of ours at 4 connections, publishing to the emulator (worst round) | ≤ 3 ms | {} ms (rounds: {}) | {} |",
            bench::ms(worst),
            p50s.join(", "),
            verdict(worst <= Duration::from_millis(3))
        );
    }
    println!("load average at end: {}", load_average());
    if errors > 0 {
        println!("{errors} requests failed: the figures above are not valid");
    }
    errors == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_lua_summary_line() {
        let out = "Running 10s test\n  1 threads and 4 connections\nside-by-side-result {\"requests\":1000,\"duration_us\":10000000,\"connect\":0,\"read\":1,\"write\":0,\"status\":2,\"timeout\":0,\"p50_us\":450,\"p90_us\":600,\"p99_us\":900,\"max_us\":5000}\nRequests/sec: 100\n";
        let r = WrkResult::parse(out).unwrap();
        assert_eq!(r.requests, 1000);
        assert_eq!(r.errors, 3);
        assert_eq!(r.p50, Duration::from_micros(450));
        assert!((r.per_second() - 100.0).abs() < 1e-9);
        assert!(WrkResult::parse("no summary").is_err());
    }

    #[test]
    fn the_script_sends_every_line_of_the_webhooks_file() {
        let script = wrk_script(Path::new("/tmp/x/webhooks.txt")).unwrap();
        assert!(script.contains("io.lines([==[/tmp/x/webhooks.txt]==])"));
        assert!(script.contains("request = function()"));
        assert!(script.contains(WRK_MARK));
        let hook = |body: &str, signature: &str| SignedWebhook {
            body: body.as_bytes().to_vec(),
            signature: signature.to_owned(),
        };
        let file = webhooks_file(&[hook("{\"a\": 1}", "MEUC+/="), hook("{}", "MEQC")]).unwrap();
        assert_eq!(file, b"MEUC+/=\t{\"a\": 1}\nMEQC\t{}\n");
        assert!(webhooks_file(&[hook("{}", "a\"b")]).is_err());
        assert!(webhooks_file(&[hook("{\n}", "MEQC")]).is_err());
    }

    #[test]
    fn ratios_pool_and_range_over_rounds() {
        let run = |round, side, requests, cpu_ms| Run {
            round,
            side,
            connections: 4,
            wrk: WrkResult {
                requests,
                duration: Duration::from_secs(10),
                errors: 0,
                p50: Duration::from_millis(1),
                p90: Duration::from_millis(1),
                p99: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            server_cpu: Duration::from_millis(cpu_ms),
            emulator_cpu: Duration::ZERO,
        };
        let runs = [
            run(1, Side::Ours, 10_000, 1_000),
            run(1, Side::Seed, 100, 1_000),
            run(2, Side::Seed, 100, 1_000),
            run(2, Side::Ours, 20_000, 1_000),
        ];
        let (low, high) = ratio_range(&runs, 4, Run::per_cpu_second);
        assert_eq!((low, high), (100.0, 200.0));
        let ours = Pooled::of(&runs, Side::Ours, 4);
        assert_eq!(ours.requests, 30_000);
        assert!((ours.per_cpu_second() - 15_000.0).abs() < 1e-6);
    }
}
