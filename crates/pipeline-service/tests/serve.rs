//! The server answers `/healthz`, refuses malformed push bodies, and drains in-flight requests on stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use pipeline_service::envelope::PushEnvelope;
use pipeline_service::serve::Server;

#[tokio::test]
async fn malformed_push_bodies_get_400_with_the_reason() {
    let app = Router::new().route("/push", post(|_: PushEnvelope| async { "ok" }));
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), app)
        .await
        .unwrap();
    let port = server.port();
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    let http = reqwest::Client::new();
    let response = http
        .post(format!("http://127.0.0.1:{port}/push"))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("malformed push envelope")
    );
    let health = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let started = Arc::new(tokio::sync::Notify::new());
    let notify = started.clone();
    let app = Router::new().route(
        "/slow",
        get(move || async move {
            notify.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    );
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), app)
        .await
        .unwrap();
    let port = server.port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let request = tokio::spawn(async move {
        reqwest::get(format!("http://127.0.0.1:{port}/slow"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    started.notified().await; // the request is in flight
    stop_tx.send(()).unwrap();
    assert_eq!(request.await.unwrap(), "done");
    running.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn shutdown_is_forced_after_the_grace_period() {
    let started = Arc::new(tokio::sync::Notify::new());
    let notify = started.clone();
    let app = Router::new().route(
        "/stuck",
        get(move || async move {
            notify.notify_one();
            std::future::pending::<&'static str>().await
        }),
    );
    let server = Server::bind(SocketAddr::from(([127, 0, 0, 1], 0)), app)
        .await
        .unwrap()
        .with_grace(Duration::from_millis(200));
    let port = server.port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    let _stuck = tokio::spawn(reqwest::get(format!("http://127.0.0.1:{port}/stuck")));
    started.notified().await;
    let stopped_at = Instant::now();
    stop_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
    let took = stopped_at.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
