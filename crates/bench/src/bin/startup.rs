//! Start-up benchmark of the service binaries: time from spawning the process (fork + exec) to
//! the first `200` on `GET /healthz`, and the resident memory once idle.
//!
//! Each service gets the environment it needs and nothing reachable behind it: Stark at
//! `http://127.0.0.1:1/v2` (nobody listens; no service calls Stark before serving), a freshly
//! generated key, and for webhook-ingester a Pub/Sub emulator address where nobody listens
//! (`GcpPublisher::connect` opens its channel lazily, so it does not block on it; the
//! benchmark would time out if it did). The poll is a raw HTTP/1.1 request over a new TCP
//! connection every 200 µs, so the resolution is about a quarter of a millisecond.
//!
//! ```sh
//! cargo build --release -p invoice-sender -p webhook-ingester -p money-sender
//! cargo run --release -p bench --bin startup -- --bin-dir target/release --runs 20
//! ```
#![forbid(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bench::procfs::{Memory, mib};
use bench::{free_port, ms, parse_duration};
use clap::Parser;
use stark_client::PrivateKey;

/// Start-up time and idle memory of the service binaries.
#[derive(Debug, Parser)]
#[command(name = "startup")]
struct Args {
    /// Directory holding the service binaries (build them with `--release` first).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Services to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "invoice-sender,webhook-ingester,money-sender"
    )]
    services: Vec<String>,
    /// Starts per service.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// How long after the first 200 to read the idle RSS.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    settle: Duration,
    /// Give up on a start after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
}

/// One start.
#[derive(Debug, Clone, Copy)]
struct Start {
    to_healthy: Duration,
    idle: Memory,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("startup: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<bool> {
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    let key_pem = PrivateKey::generate().to_pem();
    let nobody = free_port()?; // where the "emulator" is: nothing listens there
    println!(
        "startup: {} runs per service, idle RSS read {:?} after the first 200; load average {}",
        args.runs,
        args.settle,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "| service | exec → first 200 on /healthz: median | min | max | idle RSS (median) | peak RSS (VmHWM, median) |"
    );
    println!("|---|---|---|---|---|---|");
    let mut all_met = true;
    for service in &args.services {
        let binary = args.bin_dir.join(service);
        anyhow::ensure!(
            binary.is_file(),
            "{} not found: build it with `cargo build --release -p {service}`",
            binary.display()
        );
        let mut starts = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            starts.push(start_once(args, &binary, &key_pem, nobody)?);
        }
        let mut times: Vec<Duration> = starts.iter().map(|s| s.to_healthy).collect();
        times.sort_unstable();
        let mut rss: Vec<u64> = starts.iter().map(|s| s.idle.rss_kib).collect();
        rss.sort_unstable();
        let mut peak: Vec<u64> = starts.iter().map(|s| s.idle.peak_kib).collect();
        peak.sort_unstable();
        let median_time = times[times.len() / 2];
        let median_rss = rss[rss.len() / 2];
        println!(
            "| {service} | {} ms | {} ms | {} ms | {} MiB | {} MiB |",
            ms(median_time),
            ms(times[0]),
            ms(times[times.len() - 1]),
            mib(median_rss),
            mib(peak[peak.len() / 2])
        );
        all_met &= median_time < Duration::from_millis(50) && median_rss < 20 * 1024;
    }
    println!(
        "targets (median under 50 ms, idle RSS under 20 MiB): {}",
        if all_met { "met" } else { "NOT met" }
    );
    Ok(all_met)
}

fn start_once(
    args: &Args,
    binary: &PathBuf,
    key_pem: &str,
    emulator_port: u16,
) -> anyhow::Result<Start> {
    let port = free_port()?;
    let mut command = std::process::Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("STARK_ACCESS_ID", "project/1")
        .env("STARK_ENVIRONMENT", "http://127.0.0.1:1/v2")
        .env("STARK_PRIVATE_KEY_PEM", key_pem)
        .env("PUBSUB_PROJECT_ID", "bench-project")
        .env("PUBSUB_EMULATOR_HOST", format!("127.0.0.1:{emulator_port}"))
        .env("LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let outcome = (|| {
        loop {
            if healthy(port) {
                return Ok(started.elapsed());
            }
            if let Some(status) = child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                bail!(
                    "{} exited with {status} before answering: {stderr}",
                    binary.display()
                );
            }
            if started.elapsed() > args.timeout {
                bail!(
                    "{} did not answer /healthz within {:?}",
                    binary.display(),
                    args.timeout
                );
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    })();
    let result = outcome.and_then(|to_healthy| {
        std::thread::sleep(args.settle);
        let idle = Memory::of(&child.id().to_string())?;
        Ok(Start { to_healthy, idle })
    });
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// One `GET /healthz` on a fresh connection; true on a 200.
fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
