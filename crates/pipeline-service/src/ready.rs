//! `GET /readyz`: the Cloud Run startup probe. An instance is ready once it has reached Stark's
//! API host with our credentials (a signed `GET /v2/public-key`): with Direct VPC egress and
//! Cloud NAT, Google documents connection delays of a minute or more at instance start, and an
//! instance that takes traffic before it can reach Stark only turns pushes into retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use stark_client::Client;

#[derive(Debug)]
struct Probe {
    stark: Client,
    ready: AtomicBool,
}

/// A router with `GET /readyz` probing `stark`, to merge into a service's router. Once the probe
/// succeeded it answers 200 without calling Stark again: readiness is about the start, and a
/// later Stark outage must not take every instance out of service.
pub fn routes(stark: Client) -> Router {
    let probe = Arc::new(Probe {
        stark,
        ready: AtomicBool::new(false),
    });
    Router::new().route("/readyz", get(ready)).with_state(probe)
}

async fn ready(State(probe): State<Arc<Probe>>) -> (StatusCode, &'static str) {
    if probe.ready.load(Ordering::Relaxed) {
        return (StatusCode::OK, "ready");
    }
    match probe.stark.list_public_keys(1).await {
        Ok(_) => {
            probe.ready.store(true, Ordering::Relaxed);
            tracing::info!(event = "service_ready", "reached Stark's API; ready");
            (StatusCode::OK, "ready")
        }
        Err(err) => {
            tracing::warn!(event = "service_not_ready", error = %err, "cannot reach Stark's API yet");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: Stark is unreachable",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stark_client::{AccessId, ClientConfig, Environment, PrivateKey};

    fn client_at(base: &str) -> Client {
        let mut config = ClientConfig::new(
            AccessId::parse("project/1").unwrap(),
            PrivateKey::generate(),
            Environment::parse(base).unwrap(),
        );
        config.retry_backoff = std::time::Duration::from_millis(1);
        Client::new(config).unwrap()
    }

    async fn get_readyz(router: Router) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn ready_only_once_stark_answers() {
        // Nothing listens on port 1: not ready.
        let unreachable = routes(client_at("http://127.0.0.1:1/v2"));
        assert_eq!(get_readyz(unreachable).await, 503);
        // A stand-in Stark that serves the public key: ready, and stays ready.
        let app = Router::new().route(
            "/v2/public-key",
            get(|| async { axum::Json(serde_json::json!({"cursor": null, "publicKeys": []})) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let router = routes(client_at(&format!("http://{addr}/v2")));
        assert_eq!(get_readyz(router.clone()).await, 200);
        server.abort();
        assert_eq!(
            get_readyz(router).await,
            200,
            "a later outage does not unready it"
        );
    }
}
