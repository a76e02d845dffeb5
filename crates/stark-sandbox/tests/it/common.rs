//! Helpers shared by the integration tests: a sandbox with a registered project and client, a
//! webhook receiver, raw signed requests, and sample objects.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use stark_client::{Client, Event, NewInvoice, NewTransfer, PrivateKey, sign_request};
use stark_sandbox::{Sandbox, SandboxConfig, SandboxHandle};

/// How long any wait may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A running sandbox with one registered project.
pub struct Env {
    pub sandbox: SandboxHandle,
    pub client: Client,
    pub project: String,
    pub key: PrivateKey,
    /// The sandbox's listing lag (sandbox time).
    pub listing_lag: Duration,
}

/// Sandbox time at 600x, no automatic payments (tests that want them say so).
pub fn fast() -> SandboxConfig {
    SandboxConfig {
        speed: 600.0,
        pay_probability: 0.0,
        pay_delay: Duration::from_secs(60),
        credit_delay: Duration::from_secs(2),
        transfer_processing_delay: Duration::from_secs(5),
        transfer_settle_delay: Duration::from_secs(5),
        delivery_timeout: Duration::from_secs(5),
        ..Default::default()
    }
}

pub async fn start(config: SandboxConfig) -> Env {
    let listing_lag = config.listing_lag;
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let (project, key) = sandbox.new_project();
    let mut client_config = sandbox.client_config(&project, key.clone());
    // The tests rotate keys and want the client to refetch at once.
    client_config.public_key_min_refresh = Duration::ZERO;
    let client = Client::new(client_config).expect("client");
    Env {
        sandbox,
        client,
        project,
        key,
        listing_lag,
    }
}

impl Env {
    /// A [`receiver`] registered as this project's webhook for invoice events: what most
    /// delivery tests start from.
    pub async fn invoice_hook(&self, verifier: Option<Client>) -> Receiver {
        let hook = receiver(verifier).await;
        self.client
            .create_webhook(&hook.url, &["invoice".into()])
            .await
            .expect("webhook registered");
        hook
    }

    /// Moves sandbox time past the listing lag, so that list queries show everything created
    /// so far (a GET by id needs no such wait).
    pub fn past_listing_lag(&self) {
        self.sandbox.advance(self.listing_lag);
    }

    /// A client of a fresh project in a fresh workspace, and that workspace's id.
    pub fn client_in_new_workspace(&self) -> (String, Client) {
        let workspace = self.sandbox.new_workspace();
        let (project, key) = self.sandbox.new_project_in(&workspace);
        let mut config = self.sandbox.client_config(&project, key);
        config.public_key_min_refresh = Duration::ZERO;
        (workspace, Client::new(config).expect("client"))
    }
}

pub fn invoice(amount: i64, tag: &str) -> NewInvoice {
    NewInvoice {
        amount,
        tax_id: "012.345.678-90".into(),
        name: "Ana Souza".into(),
        tags: vec![tag.into()],
        ..Default::default()
    }
}

pub fn transfer(amount: i64, account: &str, external_id: Option<&str>) -> NewTransfer {
    NewTransfer {
        amount,
        name: "Stark Bank S.A.".into(),
        tax_id: "20.018.183/0001-80".into(),
        bank_code: "20018183".into(),
        branch_code: "0001".into(),
        account_number: account.into(),
        account_type: Some("payment".into()),
        external_id: external_id.map(str::to_owned),
        tags: vec!["Payout".into()],
        ..Default::default()
    }
}

/// The `Access-Time` a client would send now.
pub fn now_seconds() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

/// What a raw call got: a status and JSON, or a transport failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Answer(u16, Value),
    Broken,
}

impl Raw {
    pub fn status(&self) -> u16 {
        match self {
            Raw::Answer(s, _) => *s,
            Raw::Broken => 0,
        }
    }

    pub fn json(&self) -> &Value {
        match self {
            Raw::Answer(_, v) => v,
            Raw::Broken => panic!("no answer"),
        }
    }

    pub fn first_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Sends one signed request by hand (no retries), so that tests control every header.
pub async fn raw(
    env: &Env,
    method: &str,
    path_and_query: &str,
    body: &str,
    access_time: Option<&str>,
) -> Raw {
    let time = access_time.map_or_else(now_seconds, str::to_owned);
    let signed = sign_request(&env.key, &format!("project/{}", env.project), &time, body);
    raw_with(
        env,
        method,
        path_and_query,
        body,
        &signed.access_id,
        &time,
        &signed.access_signature,
    )
    .await
}

pub async fn raw_with(
    env: &Env,
    method: &str,
    path_and_query: &str,
    body: &str,
    id: &str,
    time: &str,
    signature: &str,
) -> Raw {
    let http = reqwest::Client::new();
    let url = format!("{}{}", env.sandbox.root_url(), path_and_query);
    let mut request = http
        .request(method.parse().unwrap(), url)
        .header("Access-Id", id)
        .header("Access-Time", time)
        .header("Access-Signature", signature)
        .header("Content-Type", "application/json")
        .timeout(Duration::from_secs(10));
    if !body.is_empty() {
        request = request.body(body.to_owned());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(bytes) => Raw::Answer(
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                ),
                Err(_) => Raw::Broken,
            }
        }
        Err(_) => Raw::Broken,
    }
}

/// Sends one signed request and returns the status, the headers and the JSON body (for tests
/// of headers such as `Retry-After`).
pub async fn raw_with_headers(
    env: &Env,
    method: &str,
    path_and_query: &str,
    body: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let time = now_seconds();
    let signed = sign_request(&env.key, &format!("project/{}", env.project), &time, body);
    let response = reqwest::Client::new()
        .request(
            method.parse().unwrap(),
            format!("{}{}", env.sandbox.root_url(), path_and_query),
        )
        .header("Access-Id", &signed.access_id)
        .header("Access-Time", &time)
        .header("Access-Signature", &signed.access_signature)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, headers, json)
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub signature: Option<String>,
    /// `Client::verify_webhook`'s verdict, when the receiver verifies.
    pub verified: Option<Result<Event, String>>,
}

struct ReceiverState {
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    delay_ms: AtomicU64,
    verifier: Option<Client>,
}

/// A small axum webhook receiver on port 0.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Event ids in arrival order.
    pub fn event_ids(&self) -> Vec<String> {
        self.received()
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(&r.body).unwrap();
                v["event"]["id"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("Digital-Signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let verified = match &state.verifier {
        Some(client) => Some(
            client
                .verify_webhook(&body, signature.as_deref())
                .await
                .map_err(|e| e.to_string()),
        ),
        None => None,
    };
    state.received.lock().unwrap().push(Received {
        body: String::from_utf8(body.to_vec()).unwrap(),
        signature,
        verified,
    });
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap()
}

/// Starts a receiver answering 200; with `verifier`, every body is checked with
/// `Client::verify_webhook` (as the webhook-ingester does).
pub async fn receiver(verifier: Option<Client>) -> Receiver {
    let state = Arc::new(ReceiverState {
        received: Mutex::new(Vec::new()),
        status: AtomicU16::new(200),
        delay_ms: AtomicU64::new(0),
        verifier,
    });
    let app = axum::Router::new()
        .fallback(receive)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver { url, state }
}
