//! Routing of `/v2` paths and the smaller resources (webhooks, events, attempts, public keys).
//!
//! Routing is done by hand on the path segments rather than by axum's router because Stark
//! tolerates `//` and a trailing `/` (the Python SDK asks for `GET /v2//public-key?limit=1`), and
//! because authentication needs the raw body before any route is chosen.

use axum::http::Method;
use serde_json::{Value, json};
use stark_client::Event;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::query::{self, Query};
use crate::state::EventAttempt;
use crate::table::Ws;
use crate::world::World;

/// Subscriptions Stark offers (docs/stark-api.md, "Webhooks and events"). The sandbox only produces `invoice` and `transfer`
/// events, but accepts the others so that a client's registration code runs unchanged.
const SUBSCRIPTIONS: &[&str] = &[
    "transfer",
    "invoice",
    "deposit",
    "boleto",
    "boleto-payment",
    "boleto-holmes",
    "brcode-payment",
    "utility-payment",
    "tax-payment",
    "darf-payment",
    "payment-request",
    "invoice-pull-request",
    "invoice-pull-subscription",
];

/// Splits a path into segments, dropping empty ones (`//`, trailing `/`).
pub fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Which route a request hit, so the HTTP layer knows whether it created something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// `POST /v2/invoice` or `POST /v2/transfer`: the targets of the lost-answer fault.
    Create,
    /// Anything else.
    Other,
}

/// Dispatches an authenticated `/v2` request of a project acting in workspace `ws`. `path` is
/// the part after `/v2`, already split.
pub fn dispatch(
    world: &mut World,
    ws: Ws,
    method: &Method,
    path: &[&str],
    q: &Query,
    body: &[u8],
    now: OffsetDateTime,
) -> (RouteKind, Result<Value, ApiError>) {
    world.count_request(ws);
    let display = format!("/v2/{}", path.join("/"));
    let not_allowed = || Err(ApiError::method_not_allowed(method.as_str(), &display));
    let get = *method == Method::GET;
    let post = *method == Method::POST;
    let patch = *method == Method::PATCH;
    let delete = *method == Method::DELETE;
    let result = match path {
        ["public-key"] if get => list_public_keys(world, q),
        ["balance"] if get => Ok(json!({ "cursor": null, "balances": [world.balance_object(ws)] })),
        ["invoice"] if post => return (RouteKind::Create, world.create_invoices(ws, body, now)),
        ["invoice"] if get => world.list_invoices(ws, q, now),
        ["invoice", "log"] if get => world.list_invoice_logs(ws, q, now),
        ["invoice", "log", id] if get => world.get_invoice_log(ws, id),
        ["invoice", id] if get => world.get_invoice(ws, id),
        ["invoice", id] if patch => world.patch_invoice(ws, id, body, now),
        ["invoice", id, "payment"] if get => world.get_invoice_payment(ws, id),
        ["transfer"] if post => return (RouteKind::Create, world.create_transfers(ws, body, now)),
        ["transfer"] if get => world.list_transfers(ws, q, now),
        ["transfer", "log"] if get => world.list_transfer_logs(ws, q, now),
        ["transfer", "log", id] if get => world.get_transfer_log(ws, id),
        ["transfer", id] if get => world.get_transfer(ws, id),
        ["transfer", id] if delete => world.cancel_transfer(ws, id, now),
        ["webhook"] if post => create_webhook(world, ws, body, now),
        ["webhook"] if get => list_webhooks(world, ws, q),
        ["webhook", id] if get => get_webhook(world, ws, id),
        ["webhook", id] if delete => delete_webhook(world, ws, id),
        ["event"] if get => list_events(world, ws, q),
        ["event", "attempt"] if get => list_attempts(world, ws, q),
        ["event", "attempt", id] if get => get_attempt(world, ws, id),
        ["event", id] if get => get_event(world, ws, id),
        ["event", id] if patch => patch_event(world, ws, id, body),
        ["event", id] if delete => delete_event(world, ws, id),
        ["public-key"]
        | ["balance"]
        | ["invoice"]
        | ["invoice", "log"]
        | ["invoice", "log", _]
        | ["invoice", _]
        | ["invoice", _, "payment"]
        | ["transfer"]
        | ["transfer", "log"]
        | ["transfer", "log", _]
        | ["transfer", _]
        | ["webhook"]
        | ["webhook", _]
        | ["event"]
        | ["event", "attempt"]
        | ["event", "attempt", _]
        | ["event", _] => not_allowed(),
        _ => Err(ApiError::not_found(&display)),
    };
    (RouteKind::Other, result)
}

fn list_public_keys(world: &World, q: &Query) -> Result<Value, ApiError> {
    let params = query::list_params(q)?;
    let keys = world.public_keys();
    let start = params.cursor.unwrap_or(0);
    let end = (start + params.limit).min(keys.len());
    let page = keys.get(start..end).unwrap_or_default();
    let cursor = (end < keys.len()).then(|| {
        // Keys are few; an offset cursor is enough here.
        crate::table::encode_cursor(end)
    });
    Ok(json!({ "cursor": cursor, "publicKeys": page }))
}

fn create_webhook(
    world: &mut World,
    ws: Ws,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("invalidJson", format!("The body is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::bad("invalidJson", "The body must be an object."))?;
    let mut errors = Vec::new();
    let mut push = |code: &str, message: String| {
        errors.push(stark_client::StarkError {
            code: code.into(),
            message,
        })
    };
    for key in obj.keys().filter(|k| *k != "url" && *k != "subscriptions") {
        push("invalidJson", format!("Unknown field {key:?}."));
    }
    // Stark requires HTTPS with a valid certificate; the sandbox also takes http so that local
    // receivers work.
    let url = obj
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let url_ok = url::Url::parse(&url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !url_ok {
        push(
            "invalidUrl",
            format!("url {url:?} must be an http or https URL."),
        );
    }
    let subscriptions: Vec<String> = obj
        .get("subscriptions")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let subs_ok = obj
        .get("subscriptions")
        .and_then(Value::as_array)
        .is_some_and(|l| l.len() == subscriptions.len())
        && !subscriptions.is_empty()
        && subscriptions
            .iter()
            .all(|s| SUBSCRIPTIONS.contains(&s.as_str()));
    if !subs_ok {
        push(
            "invalidSubscription",
            format!("subscriptions must be a non-empty list from {SUBSCRIPTIONS:?}."),
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::many(errors));
    }
    let webhook = world.add_webhook(ws, url, subscriptions, now);
    Ok(json!({ "webhook": webhook, "message": "Webhook successfully created" }))
}

fn list_webhooks(world: &World, ws: Ws, q: &Query) -> Result<Value, ApiError> {
    let params = query::list_params(q)?;
    let (webhooks, cursor) = world.webhooks_page(ws, &params);
    Ok(json!({ "cursor": cursor, "webhooks": webhooks }))
}

fn webhook_not_found(id: &str) -> ApiError {
    ApiError::bad("invalidWebhookId", format!("Webhook {id} not found."))
}

fn get_webhook(world: &World, ws: Ws, id: &str) -> Result<Value, ApiError> {
    let webhook = world.webhook(ws, id).ok_or_else(|| webhook_not_found(id))?;
    Ok(json!({ "webhook": webhook }))
}

fn delete_webhook(world: &mut World, ws: Ws, id: &str) -> Result<Value, ApiError> {
    let webhook = world
        .delete_webhook(ws, id)
        .ok_or_else(|| webhook_not_found(id))?;
    Ok(json!({ "webhook": webhook, "message": "Webhook successfully deleted" }))
}

fn list_events(world: &World, ws: Ws, q: &Query) -> Result<Value, ApiError> {
    let params = query::list_params(q)?;
    let delivered = query::boolean(q, "isDelivered")?;
    let (events, cursor) = world.events_page(ws, &params, |e: &Event| {
        delivered.is_none_or(|d| e.is_delivered == Some(d))
    });
    Ok(json!({ "cursor": cursor, "events": events }))
}

fn event_not_found(id: &str) -> ApiError {
    ApiError::bad("invalidEvent", format!("Event {id} not found."))
}

fn get_event(world: &World, ws: Ws, id: &str) -> Result<Value, ApiError> {
    let event = world.event(ws, id).ok_or_else(|| event_not_found(id))?;
    Ok(json!({ "event": event }))
}

/// `PATCH /v2/event/{id}` with `{"isDelivered": true}`: a delivered event drops out of
/// `isDelivered=false` queries and is not retried any more.
fn patch_event(world: &mut World, ws: Ws, id: &str, body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad("invalidJson", format!("The body is not valid JSON: {e}")))?;
    let delivered = value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("isDelivered"))
        .and_then(Value::as_bool)
        .ok_or_else(|| ApiError::bad("invalidJson", "The body must be {\"isDelivered\": true}."))?;
    let event = world
        .set_event_delivered(ws, id, delivered)
        .ok_or_else(|| event_not_found(id))?;
    Ok(json!({ "event": event }))
}

fn delete_event(world: &mut World, ws: Ws, id: &str) -> Result<Value, ApiError> {
    let event = world
        .delete_event(ws, id)
        .ok_or_else(|| event_not_found(id))?;
    Ok(json!({ "event": event }))
}

fn list_attempts(world: &World, ws: Ws, q: &Query) -> Result<Value, ApiError> {
    let params = query::list_params(q)?;
    let event_ids = query::list(q, "eventIds");
    let webhook_ids = query::list(q, "webhookIds");
    let (attempts, cursor) = world.attempts_page(ws, &params, |a: &EventAttempt| {
        (event_ids.is_empty() || event_ids.contains(&a.event_id))
            && (webhook_ids.is_empty() || webhook_ids.contains(&a.webhook_id))
    });
    Ok(json!({ "cursor": cursor, "attempts": attempts }))
}

fn get_attempt(world: &World, ws: Ws, id: &str) -> Result<Value, ApiError> {
    let attempt = world.attempt(ws, id).ok_or_else(|| {
        ApiError::bad(
            "invalidEventAttempt",
            format!("Event attempt {id} not found."),
        )
    })?;
    Ok(json!({ "attempt": attempt }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collapses_slashes() {
        assert_eq!(segments("/v2//public-key"), ["v2", "public-key"]);
        assert_eq!(segments("/v2//invoice/"), ["v2", "invoice"]);
        assert_eq!(
            segments("/v2/invoice/log/12"),
            ["v2", "invoice", "log", "12"]
        );
    }
}
