//! The Google Pub/Sub emulator as a child process, for tests and the local stack.
//!
//! `gcloud beta emulators pubsub start` is a Python wrapper that runs a shell script that
//! runs `java -jar cloud-pubsub-emulator-*.jar`. Killing the `gcloud` process alone leaves
//! the JVM running (holding the port, ~300 MB) forever, so the emulator is spawned as the
//! leader of its own process group and [`Emulator::stop`] (or drop) signals the whole
//! group: SIGTERM, then SIGKILL if anything is still alive after a grace period.
//!
//! Signals are sent with the `kill(1)` utility: the crate forbids `unsafe`, which rules
//! out `libc::kill`, and a system with gcloud and Java has `kill` anyway.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::target::PubSubTarget;

/// The project the emulator serves unless told otherwise (it accepts any name).
pub const DEFAULT_PROJECT: &str = "local-pipeline";

/// Lines of emulator output kept for error messages.
const LOG_LINES: usize = 60;

/// Why the emulator could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// gcloud, its pubsub-emulator component or Java is missing.
    #[error("the Pub/Sub emulator is not installed: {0}")]
    Unavailable(String),
    /// Could not reserve a local port.
    #[error("cannot find a free local port for the emulator")]
    NoFreePort(#[source] std::io::Error),
    /// Could not run gcloud.
    #[error("cannot spawn `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The emulator process ended before it answered.
    #[error(
        "the emulator on {host} exited ({status}) before it was ready; its last output:\n{output}"
    )]
    Exited {
        /// `127.0.0.1:PORT`.
        host: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its last lines of output.
        output: String,
    },
    /// The emulator did not answer in time.
    #[error("the emulator on {host} did not answer within {timeout:?}; its last output:\n{output}")]
    Timeout {
        /// `127.0.0.1:PORT`.
        host: String,
        /// How long we waited.
        timeout: Duration,
        /// Its last lines of output.
        output: String,
    },
}

/// How to start the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorOptions {
    /// The project passed to `--project` (and put in [`Emulator::target`]).
    pub project: String,
    /// How long to wait for it to answer. A cold JVM on a busy two-core machine can take
    /// ten seconds or more, hence the generous default.
    pub startup_timeout: Duration,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            project: DEFAULT_PROJECT.to_owned(),
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// A running emulator; stopped (with its whole process group) on [`stop`](Self::stop) or drop.
#[derive(Debug)]
pub struct Emulator {
    /// The `gcloud` process, leader of the group; `None` once stopped. In a mutex because
    /// polling its exit status needs `&mut` while readiness checks only have `&self`.
    child: Mutex<Option<Child>>,
    /// Its process group id (= its pid), to signal the JVM too.
    pgid: u32,
    /// `127.0.0.1:PORT`.
    host: String,
    /// The `--project` it was started with.
    project: String,
    /// The last lines of its stdout and stderr, for error messages and debugging.
    output: Arc<Mutex<VecDeque<String>>>,
}

impl Emulator {
    /// Whether gcloud, the pubsub-emulator component and Java are installed.
    pub fn available() -> bool {
        Self::check_installed().is_ok()
    }

    /// Like [`available`](Self::available), saying what is missing.
    pub fn check_installed() -> Result<(), EmulatorError> {
        let gcloud = find_on_path("gcloud")
            .ok_or_else(|| EmulatorError::Unavailable("`gcloud` is not on PATH".into()))?;
        let sdk_root = std::fs::canonicalize(&gcloud)
            .ok()
            .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
            .ok_or_else(|| {
                EmulatorError::Unavailable(format!(
                    "cannot resolve the SDK root from {}",
                    gcloud.display()
                ))
            })?;
        let script = sdk_root.join("platform/pubsub-emulator/bin/cloud-pubsub-emulator");
        if !script.is_file() {
            return Err(EmulatorError::Unavailable(format!(
                "{} is missing; install the `google-cloud-cli-pubsub-emulator` package \
                 (or `gcloud components install pubsub-emulator`)",
                script.display()
            )));
        }
        if find_on_path("java").is_none() {
            return Err(EmulatorError::Unavailable(
                "`java` (17+) is not on PATH".into(),
            ));
        }
        Ok(())
    }

    /// Starts an emulator for [`DEFAULT_PROJECT`] on a free port and waits until it answers.
    pub async fn start() -> Result<Self, EmulatorError> {
        Self::start_with(EmulatorOptions::default()).await
    }

    /// Starts an emulator with `options`.
    ///
    /// The port is found by binding port 0 and releasing it, so another process can grab
    /// it in between; the start is then retried on a new port (twice at most).
    pub async fn start_with(options: EmulatorOptions) -> Result<Self, EmulatorError> {
        Self::check_installed()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = pipeline_service::serve::free_port().map_err(EmulatorError::NoFreePort)?;
            let emulator = Self::spawn(&options.project, port)?;
            match emulator.wait_ready(options.startup_timeout).await {
                Ok(()) => return Ok(emulator),
                Err(EmulatorError::Exited { output, .. })
                    if attempt < 3 && output.contains("already in use") =>
                {
                    tracing::warn!(port, "emulator port taken, retrying on another");
                }
                // Dropping `emulator` here kills whatever it had started.
                Err(e) => return Err(e),
            }
        }
    }

    fn spawn(project: &str, port: u16) -> Result<Self, EmulatorError> {
        let host = format!("127.0.0.1:{port}");
        let mut command = Command::new("gcloud");
        command
            .args(["beta", "emulators", "pubsub", "start"])
            .arg(format!("--host-port={host}"))
            .arg(format!("--project={project}"))
            // Never block on an interactive prompt (e.g. "install the component?").
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that stop() reaches the JVM grandchild too.
            .process_group(0);
        let mut child = command.spawn().map_err(|source| EmulatorError::Spawn {
            command: format!("{command:?}"),
            source,
        })?;
        let output = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_LINES)));
        // The pipes must be drained continuously: the emulator logs a line per push
        // connection, and a full pipe would block it mid-test.
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, Arc::clone(&output));
        }
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, Arc::clone(&output));
        }
        tracing::info!(%host, pid = child.id(), "started the Pub/Sub emulator");
        Ok(Self {
            pgid: child.id(),
            child: Mutex::new(Some(child)),
            host,
            project: project.to_owned(),
            output,
        })
    }

    /// Polls `GET /` (the emulator answers `Ok`) until it answers or `timeout` passes,
    /// failing early if the process exits.
    async fn wait_ready(&self, timeout: Duration) -> Result<(), EmulatorError> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://{}/", self.host);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        loop {
            if let Some(status) = self.exit_status() {
                return Err(EmulatorError::Exited {
                    host: self.host.clone(),
                    status,
                    output: self.recent_output(),
                });
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EmulatorError::Timeout {
                    host: self.host.clone(),
                    timeout,
                    output: self.recent_output(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader's exit status if it has ended. `gcloud` waits for the JVM, so the leader
    /// ending means the emulator is gone (or never started).
    fn exit_status(&self) -> Option<ExitStatus> {
        let mut child = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        child.as_mut()?.try_wait().ok().flatten()
    }

    /// `127.0.0.1:PORT`, the value for `PUBSUB_EMULATOR_HOST`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:PORT`, the value for `with_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The project it serves.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// A target for this emulator and its project.
    pub fn target(&self) -> PubSubTarget {
        PubSubTarget::emulator(&self.project, &self.host)
    }

    /// The process group id (the `gcloud` process's pid); the JVM is in this group.
    pub fn process_group(&self) -> u32 {
        self.pgid
    }

    /// Its last lines of output, oldest first.
    pub fn recent_output(&self) -> String {
        let lines = self
            .output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Stops the emulator and every process it started; returns once they are gone
    /// (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let taken = self
            .child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(mut child) = taken else {
            return;
        };
        signal_group(self.pgid, "TERM");
        let gone = wait_gone(&mut child, self.pgid, Duration::from_secs(10));
        if !gone {
            tracing::warn!(
                pgid = self.pgid,
                "emulator ignored SIGTERM, sending SIGKILL"
            );
            signal_group(self.pgid, "KILL");
            if !wait_gone(&mut child, self.pgid, Duration::from_secs(5)) {
                tracing::error!(pgid = self.pgid, "emulator process group survived SIGKILL");
            }
        }
        tracing::info!(host = %self.host, "stopped the Pub/Sub emulator");
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reaps the leader and polls until no process of the group is left.
fn wait_gone(child: &mut Child, pgid: u32, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        // Reap the leader, or it lingers as a zombie that `kill -0` still sees.
        let _ = child.try_wait();
        if !group_alive(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `SIG<signal>` to every process in group `pgid`.
fn signal_group(pgid: u32, signal: &str) {
    let result = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(error) = result {
        tracing::error!(pgid, %error, "cannot run kill(1)");
    }
}

/// Whether any process of group `pgid` exists (`kill -0` succeeds).
fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn drain(stream: impl Read + Send + 'static, sink: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            tracing::debug!(target: "pubsub_emulator", "{line}");
            let mut lines = sink
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if lines.len() == LOG_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    });
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}
