//! Serving a router the way Cloud Run expects: bind `0.0.0.0:$PORT`, answer `GET /healthz`,
//! trace every request, and on SIGTERM stop accepting, let in-flight requests finish for up to
//! 10 seconds, then exit.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::Instrument as _;

use crate::logging::trace_id_from_header;

/// How long in-flight requests may run after the shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A bound server, ready to run. Binding first lets tests use port 0 and read the real port.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
    grace: Duration,
}

impl Server {
    /// Binds `addr` and serves [`service_router`]`(router)`.
    pub async fn bind(addr: SocketAddr, router: Router) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self {
            listener,
            router: service_router(router),
            grace: SHUTDOWN_GRACE,
        })
    }

    /// Wraps the whole router, `/healthz` and request tracing included, in one more layer (the
    /// local stack counts the POSTs a service receives this way).
    pub fn map_router(mut self, wrap: impl FnOnce(Router) -> Router) -> Self {
        self.router = wrap(self.router);
        self
    }

    /// Changes the shutdown grace period (tests shorten it).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests for at most the grace
    /// period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!(
                event = "shutdown_started",
                "shutdown requested; finishing in-flight requests"
            );
            let _ = stopping_tx.send(());
        };
        let serve = axum::serve(self.listener, self.router).with_graceful_shutdown(signal);
        let grace = self.grace;
        let deadline = async move {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serve => {
                tracing::info!(event = "shutdown_complete", "server stopped");
                result
            }
            () = deadline => {
                tracing::warn!(event = "shutdown_forced", grace_ms = grace.as_millis() as u64, "in-flight requests did not finish in time");
                Ok(())
            }
        }
    }
}

/// `router` as every service serves it: with `GET /healthz` and request tracing. Public so that
/// an in-process benchmark measures the very stack a request goes through.
pub fn service_router(router: Router) -> Router {
    router
        .route("/healthz", get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(trace_request))
}

/// Resolves on SIGTERM (Cloud Run's stop signal) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// One span per request, carrying the Cloud trace id, and one log line when it ends.
async fn trace_request(request: Request, next: Next) -> Response {
    let trace = request
        .headers()
        .get("x-cloud-trace-context")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id_from_header);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = match &trace {
        // `message_id` is filled in by the push envelope extractor, so that every line of a
        // push request, the nack and `request_finished` included, names the Pub/Sub message.
        Some(trace) => tracing::info_span!(
            "request",
            %method,
            %path,
            trace_id = %trace,
            message_id = tracing::field::Empty
        ),
        None => tracing::info_span!("request", %method, %path, message_id = tracing::field::Empty),
    };
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_millis() as u64;
        if path != "/healthz" {
            if status >= 500 {
                tracing::warn!(
                    event = "request_finished",
                    status,
                    latency_ms,
                    "request failed"
                );
            } else {
                tracing::info!(
                    event = "request_finished",
                    status,
                    latency_ms,
                    "request finished"
                );
            }
        }
        response
    }
    .instrument(span)
    .await
}

/// `0.0.0.0:port`: Cloud Run routes to every interface.
pub fn all_interfaces(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

/// A loopback port that was free a moment ago (bound, then released), for a process that must
/// be told its port before it starts (the emulator, a benchmarked binary). A race with another
/// process shows up as a bind error, never as a silent clash. In-process servers bind port 0
/// instead.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(loopback(0))?;
    Ok(listener.local_addr()?.port())
}

/// `127.0.0.1:port`: the local stack and the tests (port 0: any free port).
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// What every service binary does once its `build` returned: serve until SIGTERM, or log why
/// it could not and exit 1. Keeps each `main.rs` down to reading the environment.
pub async fn run_service(service: &str, built: std::io::Result<Server>) {
    let result = match built {
        Ok(server) => {
            tracing::info!(
                event = "service_started",
                service,
                port = server.port(),
                "{service} listening"
            );
            server.run_until_stopped(shutdown_signal()).await
        }
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        tracing::error!(event = "server_failed", service, "{err}");
        eprintln!("{service}: {err}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{NackEvents, PushEnvelope, WireEnvelope, nack};
    use crate::logging::{Buffer, CloudJsonLayer};
    use crate::publisher::OutgoingMessage;
    use axum::http::StatusCode;
    use axum::routing::post;
    use tracing_subscriber::layer::SubscriberExt as _;

    /// The nack is logged after the handler returned, outside its span: the request span must
    /// still name the message, or an operator cannot tell which message keeps failing.
    #[tokio::test]
    async fn every_log_line_of_a_push_request_names_its_message() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber =
            tracing_subscriber::registry().with(CloudJsonLayer::new(None, move || writer.clone()));
        let _guard = tracing::subscriber::set_default(subscriber);

        let server = Server::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Router::new().route(
                "/push",
                post(|_: PushEnvelope| async {
                    let events = NackEvents {
                        retry: "test_retry",
                        rejected: "test_rejected",
                    };
                    nack(events, StatusCode::SERVICE_UNAVAILABLE, "busy".into(), None)
                }),
            ),
        )
        .await
        .unwrap();
        let url = format!("http://127.0.0.1:{}/push", server.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let message = OutgoingMessage {
            data: b"{}".to_vec(),
            attributes: Default::default(),
            ordering_key: None,
        };
        let body = serde_json::to_vec(&WireEnvelope::for_message(
            "projects/p/subscriptions/s",
            "4242",
            "2026-11-28T00:00:00Z",
            &message,
            None,
        ))
        .unwrap();
        let answer = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 503);
        let _ = stop.send(());
        running.await.unwrap().unwrap();

        let text = buffer.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for event in ["test_retry", "request_finished"] {
            let line = lines
                .iter()
                .find(|l| l["event"] == event)
                .unwrap_or_else(|| panic!("no {event} line in {text}"));
            assert_eq!(line["message_id"], "4242", "{event}: {line}");
        }
    }
}
