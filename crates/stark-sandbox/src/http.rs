//! The axum application: `/v2` (authenticated, with faults) and `/_sandbox` (inspection and
//! control, unauthenticated: the sandbox listens on loopback and holds no real money).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use stark_client::PublicKey;

use crate::api::{RouteKind, dispatch, segments};
use crate::auth::{authenticate, check_project_id};
use crate::clock::timestamp;
use crate::config::FaultConfig;
use crate::conn::ConnHandle;
use crate::engine::Shared;
use crate::error::ApiError;
use crate::faults::{AnswerFault, LostAnswer};
use crate::query;

/// Marks a response with the fault injected into it, for the request log.
#[derive(Debug, Clone, Copy)]
struct FaultTag(&'static str);

/// Builds the router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sandbox/state", get(sandbox_state))
        .route("/_sandbox/counters", get(counters))
        .route("/_sandbox/faults", get(get_faults).post(set_faults))
        .route("/_sandbox/rotate-key", post(rotate_key))
        .route("/_sandbox/advance", post(advance))
        .route("/_sandbox/projects", post(register_project))
        .route("/_sandbox/workspaces", post(create_workspace))
        .route("/_sandbox/reverse", post(reverse_invoice))
        .fallback(v2)
        .layer(middleware::from_fn(log_request))
        .with_state(shared)
}

/// One log line per request: method, path, status, time taken, and the fault injected if any.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match response.extensions().get::<FaultTag>() {
        Some(FaultTag(fault)) => {
            tracing::info!(method = %method, path = %path, status, elapsed_ms, fault, "request");
        }
        None => tracing::info!(method = %method, path = %path, status, elapsed_ms, "request"),
    }
    response
}

fn tagged(mut response: Response, tag: &'static str) -> Response {
    response.extensions_mut().insert(FaultTag(tag));
    response
}

/// What the locked part of a `/v2` request decided.
enum Outcome {
    Answer(Response),
    Drop(&'static str),
}

/// Every `/v2` request: infrastructure faults first (they happen before Stark looks at the
/// request), then authentication, then the route, then the lost-answer fault for creates.
async fn v2(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs = segments(uri.path());
    if segs.first() != Some(&"v2") {
        return ApiError::not_found(uri.path()).into_response();
    }
    let line = format!("{method} {}", uri.path());
    if shared.outage_until(shared.clock.now()).is_some() {
        shared.lock().record_request_fault("outage", line);
        return tagged(ApiError::unavailable().into_response(), "outage");
    }
    let (faults, slow_delay, retry_after) = {
        let mut world = shared.lock();
        let faults = world.receive_request(&line);
        let config = world.faults();
        (
            faults,
            Duration::from_millis(config.slow_delay_ms),
            config.retry_after_secs,
        )
    };
    let answer = faults.answer();
    if answer == Some(AnswerFault::Drop) {
        conn.kill();
        return tagged(StatusCode::INTERNAL_SERVER_ERROR.into_response(), "drop");
    }
    if faults.slow {
        tokio::time::sleep(slow_delay).await;
    }
    match answer {
        Some(AnswerFault::ServerError) => {
            return tagged(ApiError::internal().into_response(), "serverError");
        }
        Some(AnswerFault::Timeout) => {
            return tagged(ApiError::request_timeout().into_response(), "timeout");
        }
        Some(AnswerFault::RateLimit) => {
            let mut response = ApiError::too_many_requests(retry_after).into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after));
            return tagged(response, "rateLimit");
        }
        Some(AnswerFault::Drop) | None => {}
    }
    let outcome = handle(&shared, &method, &uri, &headers, &body, &segs[1..], &line);
    shared.wake.notify_one();
    let response = match outcome {
        Outcome::Answer(response) => response,
        Outcome::Drop(tag) => {
            conn.kill();
            tagged(StatusCode::INTERNAL_SERVER_ERROR.into_response(), tag)
        }
    };
    if faults.slow && response.extensions().get::<FaultTag>().is_none() {
        return tagged(response, "slow");
    }
    response
}

/// The synchronous part of a `/v2` request, under the world lock.
fn handle(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    path: &[&str],
    line: &str,
) -> Outcome {
    let now = shared.clock.now();
    let mut world = shared.lock();
    let project = match authenticate(world.projects(), headers, body, shared.skew) {
        Ok(project) => project,
        Err(err) => return Outcome::Answer(err.into_response()),
    };
    // Every registered project has a workspace; the fallback is never taken.
    let ws = world
        .project_workspace(&project)
        .unwrap_or_else(|| world.default_workspace());
    let q = query::parse(uri.query());
    let (kind, result) = dispatch(&mut world, ws, method, path, &q, body, now);
    let lost = match (&kind, &result) {
        (RouteKind::Create, Ok(_)) => world.roll_lost_answer(line),
        _ => None,
    };
    match lost {
        Some(LostAnswer::ServerError) => Outcome::Answer(tagged(
            ApiError::internal().into_response(),
            "lostAnswer500",
        )),
        Some(LostAnswer::Drop) => Outcome::Drop("lostAnswerDrop"),
        None => Outcome::Answer(match result {
            Ok(value) => (StatusCode::OK, axum::Json(value)).into_response(),
            Err(err) => err.into_response(),
        }),
    }
}

async fn sandbox_state(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.clock.now();
    let snapshot = shared.lock().snapshot(now);
    axum::Json(snapshot).into_response()
}

/// The lifecycle counters only: cheap enough to poll for a progress display.
async fn counters(State(shared): State<Arc<Shared>>) -> Response {
    let counters = shared.lock().counters();
    axum::Json(counters).into_response()
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    let config = shared.lock().faults().clone();
    axum::Json(config).into_response()
}

/// Replaces the fault settings (fields left out are 0) and reseeds the dice.
async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let config: FaultConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return ApiError::bad("invalidJson", format!("Not a fault configuration: {e}"))
                .into_response();
        }
    };
    if let Err(e) = config.validate() {
        return ApiError::bad("invalidJson", e.to_string()).into_response();
    }
    shared.lock().set_faults(config.clone());
    axum::Json(config).into_response()
}

async fn rotate_key(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.clock.now();
    let key = shared.lock().rotate_key(now);
    axum::Json(json!({ "publicKey": key.to_pem(), "created": timestamp(now) })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: u64,
}

/// Moves sandbox time forward, e.g. to reach an expiration or the end of the retry schedule.
async fn advance(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(Advance { seconds }) = serde_json::from_slice(&body) else {
        return ApiError::bad("invalidJson", "The body must be {\"seconds\": integer}.")
            .into_response();
    };
    shared.clock.advance(Duration::from_secs(seconds));
    shared.wake.notify_one();
    axum::Json(json!({ "now": timestamp(shared.clock.now()) })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewProject {
    id: String,
    public_key: String,
    /// The workspace it acts in; the default one when absent.
    #[serde(default)]
    workspace_id: Option<String>,
}

/// Registers a project at runtime (the local stack creates keys after the sandbox starts).
async fn register_project(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed: Result<NewProject, _> = serde_json::from_slice(&body);
    let Ok(project) = parsed else {
        return ApiError::bad(
            "invalidJson",
            "The body must be {\"id\": digits, \"publicKey\": PEM, \"workspaceId\"?: digits}.",
        )
        .into_response();
    };
    if let Err(e) = check_project_id(&project.id) {
        return ApiError::bad("invalidProject", e).into_response();
    }
    let key = match PublicKey::from_pem(&project.public_key) {
        Ok(k) => k,
        Err(e) => return ApiError::bad("invalidPublicKey", e.to_string()).into_response(),
    };
    let mut world = shared.lock();
    let ws = match &project.workspace_id {
        None => world.default_workspace(),
        Some(id) => match world.find_workspace(id) {
            Some(ws) => ws,
            None => {
                return ApiError::bad("invalidWorkspace", format!("No workspace {id}."))
                    .into_response();
            }
        },
    };
    world.register_project_in(project.id.clone(), key, ws);
    let workspace_id = world.workspace_id(ws).to_owned();
    axum::Json(json!({ "id": project.id, "workspaceId": workspace_id })).into_response()
}

/// Creates a workspace (for a local stack that wants several tenants) and returns its id.
async fn create_workspace(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.clock.now();
    let id = shared.lock().new_workspace(now);
    axum::Json(json!({ "id": id })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Reverse {
    invoice_id: String,
    amount: i64,
}

/// Reverses part or all of a credited invoice of any workspace, as its payer could.
async fn reverse_invoice(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let Ok(Reverse { invoice_id, amount }) = serde_json::from_slice(&body) else {
        return ApiError::bad(
            "invalidJson",
            "The body must be {\"invoiceId\": string, \"amount\": cents}.",
        )
        .into_response();
    };
    let now = shared.clock.now();
    let reversed = shared
        .lock()
        .reverse_invoice(None, &invoice_id, amount, now);
    shared.wake.notify_one();
    match reversed {
        Ok(invoice) => axum::Json(json!({ "invoice": invoice })).into_response(),
        Err(e) => ApiError::bad("invalidOperation", e.to_string()).into_response(),
    }
}
