//! The three HTTP services of the pipeline, run in-process on loopback ports, each
//! restartable on the same port (the push subscriptions keep pointing at it).

use std::net::SocketAddr;

use axum::Router;
use pipeline_common::serve::Server;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Builds a fresh router for each (re)start, as a new process would.
pub type RouterFactory = Box<dyn Fn() -> Router + Send + Sync>;

/// One running service.
pub struct Service {
    /// Name for logs.
    pub name: &'static str,
    /// Its loopback port, stable across restarts.
    pub port: u16,
    factory: RouterFactory,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("port", &self.port)
            .finish()
    }
}

impl Service {
    /// Starts `factory()` on a free loopback port.
    pub async fn start(name: &'static str, factory: RouterFactory) -> std::io::Result<Self> {
        let mut service = Service {
            name,
            port: 0,
            factory,
            stop: None,
            task: None,
        };
        service.launch().await?;
        Ok(service)
    }

    async fn launch(&mut self) -> std::io::Result<()> {
        let server = Server::bind(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            (self.factory)(),
        )
        .await?;
        self.port = server.port();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        self.stop = Some(stop_tx);
        self.task = Some(tokio::spawn(server.run_until_stopped(async move {
            let _ = stop_rx.await;
        })));
        Ok(())
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Stops the service gracefully (in-flight requests finish) and starts it again on the
    /// same port, like a Cloud Run revision replacing an instance.
    pub async fn restart(&mut self) -> std::io::Result<()> {
        self.shutdown().await;
        self.launch().await
    }

    /// Stops the service and waits for it.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
