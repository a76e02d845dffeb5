//! Starting, driving and stopping a sandbox.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use stark_client::{AccessId, Client, ClientConfig, Environment, Invoice, PrivateKey, PublicKey};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::auth::check_project_id;
use crate::config::{FaultConfig, SandboxConfig};
use crate::conn::{ConnHandle, KillableListener};
use crate::engine::{self, Shared};
use crate::error::SandboxError;
use crate::state::{Counters, SandboxState};
use crate::world::World;

/// Entry point: `Sandbox::start(config)` binds, spawns the server and the scheduler, and hands
/// back a [`SandboxHandle`].
#[derive(Debug)]
pub struct Sandbox;

impl Sandbox {
    /// Binds `127.0.0.1:{config.port}` (0 picks a free port) and starts serving in the
    /// background of the current tokio runtime.
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), config).await
    }

    /// Like [`Sandbox::start`] on another address, e.g. `0.0.0.0` so that containers can reach
    /// the sandbox. URLs the handle gives still say `127.0.0.1` for unspecified addresses.
    pub async fn start_on(
        host: IpAddr,
        config: SandboxConfig,
    ) -> Result<SandboxHandle, SandboxError> {
        config.validate()?;
        let listener = TcpListener::bind(SocketAddr::new(host, config.port))
            .await
            .map_err(|source| SandboxError::Bind {
                port: config.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            port: config.port,
            source,
        })?;
        let shown_host = if host.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            host.to_string()
        };
        let root_url = format!("http://{shown_host}:{}", addr.port());
        let clock = crate::clock::Clock::new(config.speed);
        let world = World::new(&config, root_url.clone(), clock.now());
        // Stark posts to the registered URL and judges that answer; it does not follow redirects.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                SandboxError::Config(format!("cannot build the webhook HTTP client: {e}"))
            })?;
        let shared = Arc::new(Shared {
            world: std::sync::Mutex::new(world),
            clock,
            wake: Notify::new(),
            http,
            delivery_timeout: config.delivery_timeout,
            skew: config.access_time_skew,
            outage: std::sync::Mutex::new(None),
        });
        let (stop, stopped) = watch::channel(false);
        let engine = tokio::spawn(engine::run(shared.clone(), stopped.clone()));
        let app =
            crate::http::router(shared.clone()).into_make_service_with_connect_info::<ConnHandle>();
        let mut server_stop = stopped;
        let server = tokio::spawn(async move {
            let serve = axum::serve(KillableListener::new(listener), app).with_graceful_shutdown(
                async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                },
            );
            if let Err(err) = serve.await {
                tracing::error!(error = %err, "the sandbox server stopped with an error");
            }
        });
        tracing::info!(url = %format!("{root_url}/v2"), speed = config.speed, "stark sandbox listening");
        Ok(SandboxHandle {
            shared,
            addr,
            root_url,
            stop,
            tasks: Some((server, engine)),
        })
    }
}

/// A running sandbox. Dropping it stops the server; [`SandboxHandle::shutdown`] also waits
/// until it has stopped.
#[derive(Debug)]
pub struct SandboxHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    root_url: String,
    stop: watch::Sender<bool>,
    /// The server and scheduler tasks, taken by `shutdown` to await them.
    tasks: Option<(JoinHandle<()>, JoinHandle<()>)>,
}

impl SandboxHandle {
    /// The port bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/v2`: what `stark_client::Environment::Custom` wants.
    pub fn base_url(&self) -> String {
        format!("{}/v2", self.root_url)
    }

    /// `http://127.0.0.1:PORT`, the root of `/_sandbox/...` (and what the Python SDK monkeypatch
    /// replaces `https://sandbox.api.starkbank.com` with).
    pub fn root_url(&self) -> String {
        self.root_url.clone()
    }

    /// Allows `project/{id}` to call the API with requests signed by `key`'s private half, in the
    /// default workspace (or the one it was registered in before).
    pub fn register_project(&self, id: &str, key: PublicKey) -> Result<(), SandboxError> {
        check_project_id(id).map_err(SandboxError::Config)?;
        self.shared.lock().register_project(id.to_owned(), key);
        Ok(())
    }

    /// Registers a project in the default workspace with a fresh key and returns its id and
    /// private key: the one-liner a test needs.
    pub fn new_project(&self) -> (String, PrivateKey) {
        let key = PrivateKey::generate();
        let mut world = self.shared.lock();
        let id = world.next_id();
        world.register_project(id.clone(), key.public_key());
        drop(world);
        (id, key)
    }

    /// Creates a workspace (a fresh 16-digit id, zero balance, no objects) and returns its id.
    /// Its projects see only its objects; its events carry its id as `workspaceId` and are
    /// signed with the same environment key as every other workspace's.
    pub fn new_workspace(&self) -> String {
        let now = self.shared.clock.now();
        self.shared.lock().new_workspace(now)
    }

    /// The default workspace's id (`SandboxConfig::workspace_id`): where [`Self::new_project`]
    /// and configured projects act.
    pub fn workspace_id(&self) -> String {
        self.shared.lock().default_workspace_id().to_owned()
    }

    /// Registers a project acting in workspace `workspace_id`, with a fresh key, and returns its
    /// id and private key.
    ///
    /// # Panics
    /// If no workspace has that id (make one with [`Self::new_workspace`]): a test setup error.
    pub fn new_project_in(&self, workspace_id: &str) -> (String, PrivateKey) {
        let key = PrivateKey::generate();
        let mut world = self.shared.lock();
        let ws = world
            .find_workspace(workspace_id)
            .unwrap_or_else(|| panic!("no workspace {workspace_id} in this sandbox"));
        let id = world.next_id();
        world.register_project_in(id.clone(), key.public_key(), ws);
        drop(world);
        (id, key)
    }

    /// Allows `project/{id}` to call the API in workspace `workspace_id` with requests signed by
    /// `key`'s private half.
    pub fn register_project_in(
        &self,
        id: &str,
        key: PublicKey,
        workspace_id: &str,
    ) -> Result<(), SandboxError> {
        check_project_id(id).map_err(SandboxError::Config)?;
        let mut world = self.shared.lock();
        let ws = world.find_workspace(workspace_id).ok_or_else(|| {
            SandboxError::Config(format!("no workspace {workspace_id} in this sandbox"))
        })?;
        world.register_project_in(id.to_owned(), key, ws);
        Ok(())
    }

    /// A `stark_client` configuration pointing at this sandbox.
    pub fn client_config(&self, project_id: &str, key: PrivateKey) -> ClientConfig {
        ClientConfig::new(
            AccessId::Project(project_id.to_owned()),
            key,
            Environment::Custom(self.base_url()),
        )
    }

    /// A `stark_client::Client` for a registered project.
    pub fn client(&self, project_id: &str, key: PrivateKey) -> Result<Client, stark_client::Error> {
        Client::new(self.client_config(project_id, key))
    }

    /// A snapshot of everything, for assertions.
    pub fn state(&self) -> SandboxState {
        let now = self.shared.clock.now();
        self.shared.lock().snapshot(now)
    }

    /// [`SandboxHandle::state`] cut down to what reversals touched: the invoices reversed at
    /// least once, their logs, and the transfers tagged `transfer_tag(invoice id)`; balances
    /// and counters whole, every other list empty. Cheap while few invoices are reversed, so a
    /// check of what reversals took can run during a long campaign without copying it.
    pub fn reversed_state(&self, transfer_tag: &dyn Fn(&str) -> String) -> SandboxState {
        let now = self.shared.clock.now();
        self.shared.lock().reversed_snapshot(now, transfer_tag)
    }

    /// How far the lifecycles have got (invoices issued, paid, credited, reversed; transfers
    /// created, settled, failed), across every workspace. Cheap: the numbers are kept up to
    /// date as things happen, so a progress display can ask many times a second, unlike
    /// [`SandboxHandle::state`], which copies everything.
    pub fn counters(&self) -> Counters {
        self.shared.lock().counters()
    }

    /// [`SandboxHandle::counters`] of the default workspace only (where `new_project()`
    /// projects act), as cheap.
    pub fn workspace_counters(&self) -> Counters {
        let world = self.shared.lock();
        world.counters_in(world.default_workspace())
    }

    /// Polls [`SandboxHandle::state`] every 10 ms until `condition` holds, or fails after
    /// `within` (real time) with a description of the last state.
    pub async fn wait_for(
        &self,
        within: Duration,
        mut condition: impl FnMut(&SandboxState) -> bool,
    ) -> Result<SandboxState, SandboxError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let state = self.state();
            if condition(&state) {
                return Ok(state);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SandboxError::Timeout(format!(
                    "condition not met within {within:?}; at sandbox time {}: {} invoices, {} transfers, {} events, {} attempts, {} deliveries, balance {}",
                    state.now,
                    state.invoices.len(),
                    state.transfers.len(),
                    state.events.len(),
                    state.attempts.len(),
                    state.deliveries.len(),
                    state.balance
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Reverses `cents` of a credited invoice of any workspace, as if its payer had claimed
    /// them back: `amount` drops by `cents` (to 0 for a full reversal; the status stays
    /// `paid`), the workspace's balance drops by `cents`, and a `reversed` log and event are
    /// written. Returns the invoice after the reversal.
    pub fn reverse_invoice(&self, id: &str, cents: i64) -> Result<Invoice, SandboxError> {
        let now = self.shared.clock.now();
        let invoice = self
            .shared
            .lock()
            .reverse_invoice(None, id, cents, now)
            .map_err(|e| SandboxError::Refused(e.to_string()))?;
        self.shared.wake.notify_one();
        Ok(invoice)
    }

    /// Cents available for transfers in workspace `workspace_id`; `None` for an unknown id.
    pub fn balance_of(&self, workspace_id: &str) -> Option<i64> {
        let world = self.shared.lock();
        world
            .find_workspace(workspace_id)
            .map(|ws| world.balance_in(ws))
    }

    /// Deposits `cents` into workspace `workspace_id` (an account holder funding the account,
    /// e.g. to cover a reversal that came after the money was paid out); the new balance.
    pub fn deposit(&self, workspace_id: &str, cents: i64) -> Result<i64, SandboxError> {
        let now = self.shared.clock.now();
        let mut world = self.shared.lock();
        let ws = world
            .find_workspace(workspace_id)
            .ok_or_else(|| SandboxError::Refused(format!("unknown workspace {workspace_id}")))?;
        let balance = world
            .deposit(ws, cents, now)
            .map_err(SandboxError::Refused)?;
        drop(world);
        self.shared.wake.notify_one();
        Ok(balance)
    }

    /// Scripts an outage from `start` for `duration` (sandbox time): every `/v2` request is
    /// answered 503 `serviceUnavailable` and webhooks are held back until it ends, then
    /// delivered. Replaces an earlier one.
    pub fn schedule_outage(&self, start: OffsetDateTime, duration: Duration) {
        let end = start + duration;
        *self.shared.outage.lock().unwrap_or_else(|e| e.into_inner()) = Some((start, end));
        self.shared.wake.notify_one();
    }

    /// Cents available for transfers in the default workspace.
    pub fn balance(&self) -> i64 {
        self.shared.lock().balance()
    }

    /// The fault settings in force.
    pub fn faults(&self) -> FaultConfig {
        self.shared.lock().faults().clone()
    }

    /// Replaces the fault settings and reseeds their dice, so that what follows repeats for the
    /// same seed.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), SandboxError> {
        faults.validate()?;
        self.shared.lock().set_faults(faults);
        Ok(())
    }

    /// Rotates the webhook signing key: `GET /v2/public-key` then lists the new key first and
    /// the older ones after it.
    pub fn rotate_key(&self) -> PublicKey {
        let now = self.shared.clock.now();
        self.shared.lock().rotate_key(now)
    }

    /// The key webhooks are signed with now.
    pub fn public_key(&self) -> PublicKey {
        self.shared.lock().public_key()
    }

    /// Current sandbox time.
    pub fn now(&self) -> OffsetDateTime {
        self.shared.clock.now()
    }

    /// Moves sandbox time forward and runs whatever became due.
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
        self.shared.wake.notify_one();
    }

    /// Waits until the server stops (it stops when [`SandboxHandle::shutdown`] is called from
    /// elsewhere, or never): what a binary calls after start.
    pub async fn run_until_stopped(mut self) {
        if let Some((server, engine)) = self.tasks.take() {
            let _ = server.await;
            let _ = self.stop.send(true);
            let _ = engine.await;
        }
    }

    /// A handle to stop the sandbox from another task (for a binary waiting on a signal).
    pub fn stopper(&self) -> SandboxStopper {
        SandboxStopper {
            stop: self.stop.clone(),
        }
    }

    /// Stops accepting requests, lets in-flight ones finish, and stops the scheduler.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some((server, engine)) = self.tasks.take() {
            let _ = server.await;
            let _ = engine.await;
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Stops a sandbox from elsewhere (e.g. a signal handler).
#[derive(Debug, Clone)]
pub struct SandboxStopper {
    stop: watch::Sender<bool>,
}

impl SandboxStopper {
    /// Asks the sandbox to stop.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}
