//! The three HTTP services of the pipeline, run in-process on loopback ports, each
//! restartable on the same port (the push subscriptions keep pointing at it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::middleware::Next;
use futures::future::BoxFuture;
use pipeline_service::serve::Server;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;

/// Builds the service through its crate's `build` for each (re)start, as a new process would,
/// listening on the given loopback port (0 the first time: any free port).
pub type ServerFactory =
    Box<dyn Fn(u16) -> BoxFuture<'static, std::io::Result<Server>> + Send + Sync>;

/// One running service.
pub struct Service {
    /// Name for logs.
    pub name: &'static str,
    /// Its loopback port, stable across restarts.
    pub port: u16,
    factory: ServerFactory,
    running: Mutex<Option<Running>>,
    /// POST requests received, over all restarts: lets tests see redeliveries arrive.
    posts: Arc<AtomicU64>,
}

struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
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
    /// Starts `factory(0)`: a free loopback port.
    pub async fn start(name: &'static str, factory: ServerFactory) -> std::io::Result<Self> {
        let posts = Arc::new(AtomicU64::new(0));
        let (port, running) = launch(0, &factory, &posts).await?;
        Ok(Service {
            name,
            port,
            factory,
            running: Mutex::new(Some(running)),
            posts,
        })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// POST requests received so far.
    pub fn posts(&self) -> u64 {
        self.posts.load(Ordering::SeqCst)
    }

    /// Stops the service gracefully (in-flight requests finish) and starts it again on the
    /// same port, like a Cloud Run revision replacing an instance.
    pub async fn restart(&self) -> std::io::Result<()> {
        let mut running = self.running.lock().await;
        if let Some(old) = running.take() {
            stop(old).await;
        }
        let (_, fresh) = launch(self.port, &self.factory, &self.posts).await?;
        *running = Some(fresh);
        tracing::info!(
            event = "service_restarted",
            service = self.name,
            port = self.port,
            "service restarted"
        );
        Ok(())
    }

    /// Stops the service and waits for it.
    pub async fn shutdown(&self) {
        if let Some(old) = self.running.lock().await.take() {
            stop(old).await;
        }
    }
}

async fn launch(
    port: u16,
    factory: &ServerFactory,
    posts: &Arc<AtomicU64>,
) -> std::io::Result<(u16, Running)> {
    let counter = posts.clone();
    let server = factory(port).await?.map_router(|router| {
        router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                if request.method() == axum::http::Method::POST {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request)
            },
        ))
    });
    let port = server.port();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    Ok((
        port,
        Running {
            stop: stop_tx,
            task,
        },
    ))
}

async fn stop(running: Running) {
    let _ = running.stop.send(());
    let _ = running.task.await;
}

/// A round-robin reverse proxy in front of `backends` (base URLs): what Cloud Run's load
/// balancer does with pushes when a service runs several instances, none of which shares a
/// lock with another.
pub fn round_robin(backends: Vec<String>) -> axum::Router {
    let proxy = Arc::new(Proxy {
        backends,
        next: AtomicU64::new(0),
        client: reqwest::Client::new(),
    });
    axum::Router::new().fallback(forward).with_state(proxy)
}

#[derive(Debug)]
struct Proxy {
    backends: Vec<String>,
    next: AtomicU64,
    client: reqwest::Client,
}

/// Sends the request to the next backend and passes its answer back; 502 when it is down.
async fn forward(
    axum::extract::State(proxy): axum::extract::State<Arc<Proxy>>,
    request: Request,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let n = proxy.next.fetch_add(1, Ordering::SeqCst) as usize % proxy.backends.len();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = proxy
        .client
        .request(parts.method, format!("{}{path}", proxy.backends[n]))
        .body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(answer) => {
            let status = answer.status();
            let bytes = answer.bytes().await.unwrap_or_default();
            (status, bytes).into_response()
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}
