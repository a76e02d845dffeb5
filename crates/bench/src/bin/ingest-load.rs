//! Load benchmark of the webhook-ingester on loopback.
//!
//! The ingester runs in a **child process** (this same binary with the hidden `--serve-child`
//! flag), so that its memory and CPU time are measured apart from the load generator's: the
//! child serves `webhook_ingester::router` exactly as the service does (same `Server` wrapper,
//! `/healthz`, request tracing, and by default Cloud Logging JSON lines written to
//! `/dev/null`), on a **single-threaded** tokio runtime, publishing to the in-memory bus
//! (`MemoryBus`, no subscriptions). Stark's public key comes from a tiny stand-in for
//! `GET /v2/public-key` in this process; the webhooks are credited-invoice events signed with
//! that key, half of them high-S, as Stark signs them.
//!
//! Measured in one run: the raw ECDSA verify rate on one thread of this process (before and
//! after the load), then the load: requests/s, client-side latency percentiles, the child's CPU
//! time (so throughput per CPU-second, robust on a shared machine), and the child's RSS (idle,
//! after load, peak `VmHWM`). The verdict compares ingest per CPU-second with raw verifies per
//! CPU-second (target ≥ [`TARGET_RATIO`]).
//!
//! ```sh
//! cargo run --release -p bench --bin ingest-load -- --duration 10s --max-requests 100000
//! ```
#![forbid(unsafe_code)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bench::procfs::{Memory, cpu_time, mib};
use bench::{Percentiles, free_port, ms, parse_duration};
use clap::{Parser, ValueEnum};
use pipeline_domain::messages::PAID_INVOICES;
use pipeline_service::publisher::SharedPublisher;
use pipeline_testkit::NullPublisher;
use pipeline_testkit::bus::MemoryBus;
use pipeline_testkit::webhooks::{SignedWebhook, signed_webhooks};
use stark_client::keys::parse_signature;
use stark_client::{AccessId, Client, ClientConfig, Environment, PrivateKey, PublicKey};

/// The goal for ingest per CPU-second ÷ raw verifies per CPU-second. 50 % since stark-client
/// verifies with libsecp256k1: the raw verify got about three times faster than with k256 (for
/// which the goal was 60 %), while the HTTP, JSON and logging work around it did not, so the
/// same ingester is a smaller fraction of a much higher ceiling.
const TARGET_RATIO: f64 = 0.50;

/// Load benchmark of the webhook-ingester (see the crate's `BENCHMARKS.md`).
#[derive(Debug, Parser)]
#[command(name = "ingest-load")]
struct Args {
    /// How long to send load, after the warm-up (e.g. 500ms, 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many requests even if the duration is not over.
    #[arg(long, default_value_t = 100_000)]
    max_requests: u64,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Distinct signed webhooks to cycle through (signed before the clock starts).
    #[arg(long, default_value_t = 1_000)]
    bodies: u64,
    /// Requests sent before measuring (fetches Stark's key, warms caches and the allocator).
    #[arg(long, default_value_t = 500)]
    warmup_requests: u64,
    /// How long each raw-verify measurement runs.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    verify_duration: Duration,
    /// Where the ingester publishes: the in-memory bus (retains every message, as the local
    /// stack's does), or a publisher that confirms and drops (the ingester's own footprint).
    #[arg(long, value_enum, default_value_t = PublisherKind::Memory)]
    publisher: PublisherKind,
    /// The ingester's logs: Cloud Logging JSON lines to /dev/null (as in production, info
    /// level unless RUST_LOG says otherwise), or none.
    #[arg(long, value_enum, default_value_t = Logs::Json)]
    logs: Logs,
    /// Tokio worker threads of the ingester: 1 is a current-thread runtime (one core).
    #[arg(long, default_value_t = 1)]
    ingester_threads: usize,
    /// Internal: run as the ingester child.
    #[arg(long, hide = true)]
    serve_child: bool,
    /// Internal: the child's port.
    #[arg(long, hide = true, default_value_t = 0)]
    port: u16,
    /// Internal: the child's Stark base URL.
    #[arg(long, hide = true, default_value = "")]
    stark_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PublisherKind {
    Memory,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Logs {
    Json,
    Off,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.serve_child {
        serve_child(&args)
    } else {
        run(&args)
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("ingest-load: {err:#}");
            ExitCode::FAILURE
        }
    }
}

// ----- the child: the ingester -----------------------------------------------------------------

fn serve_child(args: &Args) -> anyhow::Result<bool> {
    if args.logs == Logs::Json {
        pipeline_service::logging::init(pipeline_service::logging::LogFormat::Json);
    }
    let runtime = if args.ingester_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.ingester_threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async {
        let stark = Client::new(ClientConfig::new(
            AccessId::parse("project/1")?,
            PrivateKey::generate(),
            Environment::parse(&args.stark_url)?,
        ))?;
        let mut config = webhook_ingester::Config::local(pipeline_testkit::webhooks::WORKSPACE_ID);
        config.listen.set_port(args.port);
        let bus = MemoryBus::new();
        let null = Arc::new(NullPublisher::default());
        let publisher: SharedPublisher = match args.publisher {
            PublisherKind::Memory => Arc::new(bus.clone()),
            PublisherKind::Null => null.clone(),
        };
        let server = webhook_ingester::build(config, webhook_ingester::Deps { stark, publisher })
            .await?
            .with_grace(Duration::from_secs(1));
        // Stops when the parent closes our stdin (or dies).
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            let _ = stop_tx.send(());
        });
        server
            .run_until_stopped(async {
                let _ = stop_rx.await;
            })
            .await?;
        let published = match args.publisher {
            PublisherKind::Memory => bus.published(PAID_INVOICES).len() as u64,
            PublisherKind::Null => null.published(),
        };
        eprintln!("published={published}");
        Ok(true)
    })
}

// ----- the parent: verify rate, load, report ---------------------------------------------------

/// A raw-verify measurement on one thread.
#[derive(Debug, Clone, Copy)]
struct VerifyRate {
    count: u64,
    wall: Duration,
    cpu: Duration,
}

impl VerifyRate {
    fn per_cpu_second(&self) -> f64 {
        self.count as f64 / self.cpu.as_secs_f64().max(1e-9)
    }
    fn per_wall_second(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// ECDSA verifications (signature already parsed, S normalized as the ingester does) for
/// `duration` on the calling thread.
fn measure_verify(
    key: &PublicKey,
    hooks: &[SignedWebhook],
    duration: Duration,
) -> anyhow::Result<VerifyRate> {
    let parsed: Vec<_> = hooks
        .iter()
        .map(|h| parse_signature(&h.signature).map(|s| (h.body.as_slice(), s)))
        .collect::<Result<_, _>>()?;
    let cpu_start = cpu_time("thread-self")?;
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        for (body, signature) in parsed.iter().take(32) {
            key.verify(body, signature)
                .map_err(|e| anyhow::anyhow!("a benchmark signature failed: {e}"))?;
            count += 1;
        }
    }
    Ok(VerifyRate {
        count,
        wall: start.elapsed(),
        cpu: cpu_time("thread-self")? - cpu_start,
    })
}

/// The ingester child, killed if still running when dropped.
struct Ingester {
    child: Child,
    stderr: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Ingester {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Closes stdin (the stop signal), waits for exit, returns what it printed on stderr.
    fn stop(mut self) -> anyhow::Result<Vec<String>> {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("the ingester did not stop within 10 s of its stdin closing");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default())
    }
}

impl Drop for Ingester {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_ingester(args: &Args, port: u16, stark_url: &str) -> anyhow::Result<Ingester> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut child = std::process::Command::new(exe)
        .args(["--serve-child", "--port", &port.to_string()])
        .args(["--stark-url", stark_url])
        .args(["--ingester-threads", &args.ingester_threads.to_string()])
        .args([
            "--publisher",
            match args.publisher {
                PublisherKind::Memory => "memory",
                PublisherKind::Null => "null",
            },
        ])
        .args([
            "--logs",
            match args.logs {
                Logs::Json => "json",
                Logs::Off => "off",
            },
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the ingester child")?;
    let stderr = child.stderr.take().map(|pipe| {
        std::thread::spawn(move || {
            BufReader::new(pipe)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
    });
    Ok(Ingester { child, stderr })
}

/// One phase of requests: how many, how long, their latencies.
#[derive(Debug)]
struct Phase {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    wall: Duration,
    latencies: Vec<Duration>,
}

/// Sends up to `max` requests over `connections` concurrent loops until `duration` elapses.
async fn send_load(
    http: &reqwest::Client,
    url: &str,
    hooks: &Arc<Vec<(bytes::Bytes, String)>>,
    connections: usize,
    max: u64,
    duration: Duration,
) -> Phase {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (http, url, hooks, next) = (http.clone(), url.to_owned(), hooks.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= max || Instant::now() >= deadline {
                    break;
                }
                let (body, signature) = &hooks[(n % hooks.len() as u64) as usize];
                let sent = Instant::now();
                let outcome = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("digital-signature", signature)
                    .body(body.clone())
                    .send()
                    .await;
                let outcome = match outcome {
                    Ok(response) => {
                        let status = response.status();
                        let _ = response.bytes().await;
                        if status == 200 {
                            Ok(())
                        } else {
                            Err(format!("HTTP {status}"))
                        }
                    }
                    Err(err) => Err(err.to_string()),
                };
                latencies.push(sent.elapsed());
                match outcome {
                    Ok(()) => ok += 1,
                    Err(err) => {
                        errors += 1;
                        first_error.get_or_insert(err);
                    }
                }
            }
            (ok, errors, first_error, latencies)
        }));
    }
    let mut phase = Phase {
        ok: 0,
        errors: 0,
        first_error: None,
        wall: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        if let Ok((ok, errors, first_error, latencies)) = task.await {
            phase.ok += ok;
            phase.errors += errors;
            if phase.first_error.is_none() {
                phase.first_error = first_error;
            }
            phase.latencies.extend(latencies);
        }
    }
    phase.wall = start.elapsed();
    phase
}

async fn wait_healthy(http: &reqwest::Client, port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(response) = http.get(&url).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the ingester did not answer {url} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

fn run(args: &Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.connections >= 1, "--connections must be at least 1");
    anyhow::ensure!(args.bodies >= 1, "--bodies must be at least 1");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "ingest-load: {cpus} CPUs, load average {} at start",
        load_average()
    );
    let signing_key = PrivateKey::generate();
    let public = signing_key.public_key();
    let hooks = signed_webhooks(&signing_key, args.bodies);
    let body_bytes = hooks.first().map_or(0, |h| h.body.len());

    let verify_before = measure_verify(&public, &hooks, args.verify_duration)?;
    println!(
        "raw ECDSA verify, 1 thread (before load): {:.0}/s per CPU-second ({:.0}/s wall, {} verifies)",
        verify_before.per_cpu_second(),
        verify_before.per_wall_second(),
        verify_before.count
    );

    // The generator and the key server share one thread, so that the ingester has the other
    // core to itself as far as this benchmark is concerned.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (phase, idle, after, published, ingester_cpu) = runtime.block_on(async {
        let stark_base = pipeline_testkit::public_key_server(public.to_pem()).await;
        let port = free_port()?;
        let ingester = spawn_ingester(args, port, &stark_base)?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(args.connections)
            .build()?;
        wait_healthy(&http, port).await?;
        let pid = ingester.pid();
        let idle = Memory::of(&pid)?;
        let url = format!("http://127.0.0.1:{port}/webhook");
        let wire: Arc<Vec<(bytes::Bytes, String)>> = Arc::new(
            hooks
                .iter()
                .map(|h| (bytes::Bytes::from(h.body.clone()), h.signature.clone()))
                .collect(),
        );
        let warm = send_load(
            &http,
            &url,
            &wire,
            args.connections,
            args.warmup_requests,
            Duration::from_secs(60),
        )
        .await;
        if warm.errors > 0 {
            bail!(
                "{} warm-up requests failed (first: {})",
                warm.errors,
                warm.first_error.unwrap_or_default()
            );
        }
        let cpu_before = cpu_time(&pid)?;
        let phase = send_load(
            &http,
            &url,
            &wire,
            args.connections,
            args.max_requests,
            args.duration,
        )
        .await;
        let ingester_cpu = cpu_time(&pid)? - cpu_before;
        let after = Memory::of(&pid)?;
        drop(http);
        let lines = ingester.stop()?;
        let published = lines
            .iter()
            .find_map(|l| l.strip_prefix("published="))
            .and_then(|n| n.parse::<u64>().ok());
        for line in lines.iter().filter(|l| !l.starts_with("published=")) {
            eprintln!("ingester: {line}");
        }
        anyhow::Ok((phase, idle, after, published, ingester_cpu))
    })?;
    let verify_after = measure_verify(&public, &hooks, args.verify_duration)?;
    println!(
        "raw ECDSA verify, 1 thread (after load):  {:.0}/s per CPU-second ({:.0}/s wall, {} verifies)",
        verify_after.per_cpu_second(),
        verify_after.per_wall_second(),
        verify_after.count
    );

    let Phase {
        ok,
        errors,
        first_error,
        wall,
        mut latencies,
    } = phase;
    let runtime_kind = if args.ingester_threads <= 1 {
        "current-thread tokio runtime".to_owned()
    } else {
        format!("{}-worker tokio runtime", args.ingester_threads)
    };
    println!(
        "ingester: child process, {runtime_kind}, publisher {:?}, logs {:?}; credited events of {body_bytes} bytes, {} distinct, half high-S",
        args.publisher, args.logs, args.bodies
    );
    println!(
        "load: {} connections for up to {:?} or {} requests -> {ok} x 200, {errors} errors in {:.2} s",
        args.connections,
        args.duration,
        args.max_requests,
        wall.as_secs_f64()
    );
    if let Some(first) = &first_error {
        println!("first error: {first}");
    }
    let total = ok + errors;
    let rps = total as f64 / wall.as_secs_f64().max(1e-9);
    let cpu_s = ingester_cpu.as_secs_f64();
    let per_cpu = total as f64 / cpu_s.max(1e-9);
    println!(
        "throughput: {rps:.0} req/s wall; ingester CPU {cpu_s:.2} s ({:.0} % of one core) -> {per_cpu:.0} req per CPU-second",
        100.0 * cpu_s / wall.as_secs_f64().max(1e-9)
    );
    if let Some(p) = Percentiles::of(&mut latencies) {
        println!(
            "latency (client-side, {} in flight): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            args.connections,
            ms(p.p50),
            ms(p.p90),
            ms(p.p99),
            ms(p.max)
        );
    }
    println!(
        "ingester memory: idle {} MiB RSS; after load {} MiB RSS, peak (VmHWM) {} MiB",
        mib(idle.rss_kib),
        mib(after.rss_kib),
        mib(after.peak_kib)
    );
    let expected = ok + args.warmup_requests;
    match published {
        Some(n) if n == expected => {
            println!("published: {n} messages (warm-up included), one per 200")
        }
        Some(n) => println!("published: {n} messages, expected {expected}"),
        None => println!("published: unknown (the ingester did not report)"),
    }
    let verify = verify_before
        .per_cpu_second()
        .max(verify_after.per_cpu_second());
    let ratio = per_cpu / verify;
    let met = ratio >= TARGET_RATIO;
    println!(
        "ingest / raw verify, per CPU-second: {per_cpu:.0} / {verify:.0} = {:.0} % (target >= {:.0} %: {})",
        ratio * 100.0,
        TARGET_RATIO * 100.0,
        if met { "met" } else { "NOT met" }
    );
    println!("load average at end: {}", load_average());
    Ok(errors == 0 && published == Some(expected))
}
