//! The client against a local HTTP server that records what it receives and answers as scripted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use stark_client::{
    AccessId, Client, ClientConfig, Environment, ErrorKind, EventAttemptQuery, EventLog,
    InvoiceLogType, InvoiceQuery, InvoiceStatus, NewInvoice, NewTransfer, PrivateKey, VerifyError,
};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

type Responder = Arc<dyn Fn(&Seen, usize) -> Response + Send + Sync>;

struct MockStark {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl MockStark {
    async fn start(responder: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Self {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let responder: Responder = Arc::new(responder);
        let app = {
            let seen = seen.clone();
            axum::Router::new().fallback(
                move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                    let seen = seen.clone();
                    let responder = responder.clone();
                    async move {
                        let request = Seen {
                            method,
                            uri,
                            headers,
                            body,
                        };
                        let index = {
                            let mut all = seen.lock().unwrap();
                            all.push(request.clone());
                            all.len() - 1
                        };
                        responder(&request, index)
                    }
                },
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.uri.path() == path).count()
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn config(base: String, key: PrivateKey) -> ClientConfig {
    let mut config = ClientConfig::new(
        AccessId::parse("project/5656565656565656").unwrap(),
        key,
        Environment::parse(&base).unwrap(),
    );
    config.retry_backoff = Duration::from_millis(5);
    config.public_key_min_refresh = Duration::ZERO;
    config
}

fn client_for(addr: SocketAddr) -> (Client, PrivateKey) {
    let key = PrivateKey::generate();
    let client = Client::new(config(format!("http://{addr}/v2"), key.clone())).unwrap();
    (client, key)
}

fn invoice_json(id: &str) -> Value {
    json!({"id": id, "amount": 100, "nominalAmount": 100, "fineAmount": 0, "interestAmount": 0, "discountAmount": 0,
           "fee": 0, "status": "created", "taxId": "012.345.678-90", "name": "Ana", "due": "2030-01-01T00:00:00+00:00",
           "expiration": 5097600, "fine": 2.0, "interest": 1.0, "discounts": [], "descriptions": [], "tags": ["t"],
           "rules": [], "splits": [], "brcode": "", "pdf": "", "link": "", "transactionIds": [],
           "created": "2026-11-27T10:00:00.000000+00:00", "updated": "2026-11-27T10:00:00.000000+00:00"})
}

fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn get_sends_signed_headers_over_an_empty_body() {
    let mock =
        MockStark::start(|_, _| ok(json!({"invoice": invoice_json("5155165527080960")}))).await;
    let (client, key) = client_for(mock.addr);
    let invoice = client.get_invoice("5155165527080960").await.unwrap();
    assert_eq!(invoice.id, "5155165527080960");
    let seen = &mock.seen()[0];
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.uri.path(), "/v2/invoice/5155165527080960");
    assert!(seen.body.is_empty());
    assert_eq!(header(seen, "access-id"), "project/5656565656565656");
    let time = header(seen, "access-time");
    assert!(time.parse::<u64>().is_ok(), "integer seconds, got {time:?}");
    assert_eq!(header(seen, "content-type"), "application/json");
    assert_eq!(header(seen, "accept-language"), "en-US");
    assert!(header(seen, "user-agent").contains("SDK-bank"));
    let message = format!("project/5656565656565656:{time}:");
    key.public_key()
        .verify_base64(message.as_bytes(), header(seen, "access-signature"))
        .unwrap();
}

#[tokio::test]
async fn post_sends_exactly_the_bytes_it_signed() {
    let mock = MockStark::start(|_, _| {
        ok(json!({"invoices": [invoice_json("1")], "message": "Invoice(s) successfully created"}))
    })
    .await;
    let (client, key) = client_for(mock.addr);
    let invoice = NewInvoice {
        amount: 23571,
        tax_id: "012.345.678-90".into(),
        name: "João da Silva".into(),
        tags: vec!["Request-1".into()],
        ..Default::default()
    };
    client.create_invoices(&[invoice]).await.unwrap();
    let seen = &mock.seen()[0];
    assert_eq!(
        (seen.method.clone(), seen.uri.path()),
        (Method::POST, "/v2/invoice")
    );
    let body = std::str::from_utf8(&seen.body).unwrap();
    let message = format!(
        "{}:{}:{body}",
        header(seen, "access-id"),
        header(seen, "access-time")
    );
    key.public_key()
        .verify_base64(message.as_bytes(), header(seen, "access-signature"))
        .unwrap();
    let parsed: Value = serde_json::from_str(body).unwrap();
    assert_eq!(parsed["invoices"][0]["taxId"], "012.345.678-90");
    assert_eq!(parsed["invoices"][0]["name"], "João da Silva");
    assert!(
        parsed["invoices"][0].get("due").is_none(),
        "None fields are omitted"
    );
    // A tampered body would not verify.
    let tampered = message.replace("23571", "23572");
    assert!(
        key.public_key()
            .verify_base64(tampered.as_bytes(), header(seen, "access-signature"))
            .is_err()
    );
}

#[tokio::test]
async fn batches_over_100_are_refused_before_sending() {
    let mock = MockStark::start(|_, _| ok(json!({}))).await;
    let (client, _) = client_for(mock.addr);
    let many = vec![NewInvoice::default(); 101];
    let err = client.create_invoices(&many).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(client.create_transfers(&[]).await.is_err());
    assert!(mock.seen().is_empty());
}

#[tokio::test]
async fn query_follows_cursors_and_encodes_filters() {
    let mock = MockStark::start(|seen, _| {
        let query: HashMap<String, String> = url_pairs(&seen.uri);
        let limit: usize = query["limit"].parse().unwrap();
        let page = query
            .get("cursor")
            .map_or(0, |c| c.parse::<usize>().unwrap());
        // 250 invoices in all, served `limit` at a time.
        let start = page;
        let end = (start + limit).min(250);
        let items: Vec<Value> = (start..end)
            .map(|i| invoice_json(&format!("{:016}", i)))
            .collect();
        let cursor = if end < 250 {
            json!(end.to_string())
        } else {
            Value::Null
        };
        ok(json!({"cursor": cursor, "invoices": items}))
    })
    .await;
    let (client, _) = client_for(mock.addr);
    let all = client
        .query_invoices(&InvoiceQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    assert_eq!(all[249].id, format!("{:016}", 249));
    assert_eq!(mock.seen().len(), 3);

    let query = InvoiceQuery {
        limit: Some(150),
        tags: vec!["a".into(), "b".into()],
        status: Some(stark_client::InvoiceStatus::Paid),
        after: Some("2024-01-01".into()),
        ..Default::default()
    };
    let some = client.query_invoices(&query).await.unwrap();
    assert_eq!(some.len(), 150);
    let requests = mock.seen();
    let first = url_pairs(&requests[3].uri);
    assert_eq!(first["limit"], "100");
    assert_eq!(first["tags"], "a,b");
    assert_eq!(first["status"], "paid");
    assert_eq!(first["after"], "2024-01-01");
    assert!(requests[3].uri.query().unwrap().contains("tags=a%2Cb"));
    let second = url_pairs(&requests[4].uri);
    assert_eq!(
        (second["limit"].as_str(), second["cursor"].as_str()),
        ("50", "100")
    );
    assert_eq!(requests.len(), 5);

    // The same cursors, handed over a page at a time: nothing is kept between pages.
    let mut pages: Vec<(String, usize)> = Vec::new();
    client
        .each_invoice(&InvoiceQuery::default(), |page| {
            pages.push((page[0].id.clone(), page.len()));
        })
        .await
        .unwrap();
    let starts = |i: usize| format!("{:016}", i);
    assert_eq!(
        pages,
        vec![(starts(0), 100), (starts(100), 100), (starts(200), 50)]
    );
    assert_eq!(mock.seen().len(), 8);
}

fn url_pairs(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

#[tokio::test]
async fn stark_error_list_is_kept_on_400() {
    let mock = MockStark::start(|_, _| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"errors": [
                {"code": "invalidTaxId", "message": "Element 0: invalid tax id"},
                {"code": "invalidAmount", "message": "Element 1: invalid amount"}
            ]})),
        )
            .into_response()
    })
    .await;
    let (client, _) = client_for(mock.addr);
    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.errors().len(), 2);
    assert!(err.has_code("invalidTaxId") && err.has_code("invalidAmount"));
    assert!(!err.is_transient() && !err.may_have_happened());
    assert!(err.to_string().contains("invalidTaxId"));
}

#[tokio::test]
async fn stark_fault_is_retried_for_get_but_never_for_post() {
    let mock = MockStark::start(|seen, index| {
        if seen.method == Method::GET && index >= 1 {
            ok(json!({"transfer": transfer_json()}))
        } else {
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"errors": [{"code": "internalError", "message": "Houston, we have a problem."}]}))).into_response()
        }
    })
    .await;
    let (client, _) = client_for(mock.addr);
    let transfer = client.get_transfer("5107489032896512").await.unwrap();
    assert_eq!(transfer.amount, 2);
    assert_eq!(mock.seen().len(), 2, "one 500, then one retry");

    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StarkFault);
    assert!(err.may_have_happened());
    assert_eq!(mock.count("/v2/transfer"), 1, "a POST is sent once");
}

/// An error answer with Stark's error body and, optionally, a `Retry-After` header.
fn error_answer(status: u16, retry_after: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let body = axum::Json(json!({"errors": [{"code": "someCode", "message": "some message"}]}));
    match retry_after {
        Some(value) => (status, [("retry-after", value.to_owned())], body).into_response(),
        None => (status, body).into_response(),
    }
}

#[tokio::test]
async fn unlisted_4xx_are_refusals_and_never_retried() {
    for status in [404u16, 409, 422] {
        let mock = MockStark::start(move |_, _| error_answer(status, Some("1"))).await;
        let (client, _) = client_for(mock.addr);
        let err = client.get_invoice("1").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Rejected, "{status}");
        assert_eq!(err.status(), Some(status));
        assert!(err.has_code("someCode"));
        assert!(!err.is_transient() && !err.may_have_happened(), "{status}");
        assert_eq!(err.retry_after(), None, "only throttling keeps Retry-After");
        assert_eq!(mock.seen().len(), 1, "a refused GET is not retried");
    }
}

#[tokio::test]
async fn http_401_and_403_are_configuration_errors() {
    for status in [401u16, 403] {
        let mock = MockStark::start(move |_, _| error_answer(status, None)).await;
        let (client, _) = client_for(mock.addr);
        let err = client.get_invoice("1").await.unwrap_err();
        assert!(
            matches!(err, stark_client::Error::Unauthorized { status: s, .. } if s == status),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Configuration);
        assert_eq!(err.status(), Some(status));
        assert!(err.has_code("someCode"));
        assert!(!err.is_transient() && !err.may_have_happened());
        assert_eq!(mock.seen().len(), 1, "no retry can fix credentials");
        let text = err.to_string();
        assert!(
            text.contains("configuration problem") && text.contains("STARK_ACCESS_ID"),
            "{text}"
        );
        let err = client
            .create_transfers(&[NewTransfer::default()])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Configuration);
    }
}

#[tokio::test]
async fn http_408_425_429_are_throttled_and_a_post_is_sent_once() {
    for status in [408u16, 425, 429] {
        let mock = MockStark::start(move |_, _| error_answer(status, Some("7"))).await;
        let (client, _) = client_for(mock.addr);
        let err = client
            .create_transfers(&[NewTransfer::default()])
            .await
            .unwrap_err();
        assert!(
            matches!(err, stark_client::Error::Throttled { status: s, .. } if s == status),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Throttled);
        assert_eq!(err.status(), Some(status));
        assert!(err.is_transient());
        // A request timeout may come after the POST was applied; 425 and 429 were not processed.
        assert_eq!(err.may_have_happened(), status == 408, "{status}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(err.has_code("someCode"));
        assert!(err.to_string().contains("retry after 7 s"), "{err}");
        assert_eq!(mock.count("/v2/transfer"), 1, "a POST is never retried");
    }
}

#[tokio::test]
async fn retry_after_as_an_http_date_becomes_a_wait() {
    let mock = MockStark::start(|_, _| {
        let when = std::time::SystemTime::now() + Duration::from_secs(10);
        error_answer(429, Some(&httpdate::fmt_http_date(when)))
    })
    .await;
    let (client, _) = client_for(mock.addr);
    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    let wait = err.retry_after().expect("the date was parsed");
    // HTTP-dates have whole seconds: 10 s from now is 9 to 10 s away when read.
    assert!(
        wait <= Duration::from_secs(10) && wait >= Duration::from_secs(8),
        "{wait:?}"
    );
}

#[tokio::test]
async fn throttled_get_waits_what_retry_after_asks_then_retries() {
    let mock = MockStark::start(|_, index| {
        if index == 0 {
            error_answer(429, Some("1"))
        } else {
            ok(json!({"invoice": invoice_json("1")}))
        }
    })
    .await;
    let (client, _) = client_for(mock.addr); // backoff 5 ms: the wait can only come from Retry-After
    let started = std::time::Instant::now();
    client.get_invoice("1").await.unwrap();
    let waited = started.elapsed();
    assert_eq!(mock.seen().len(), 2, "one 429, then one retry");
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
async fn throttled_get_without_retry_after_backs_off_until_retries_run_out() {
    let mock = MockStark::start(|_, _| error_answer(408, None)).await;
    let (client, _) = client_for(mock.addr);
    let err = client.get_invoice("1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Throttled);
    assert_eq!(err.retry_after(), None);
    assert_eq!(
        mock.seen().len(),
        1 + client.config().get_retries as usize,
        "the first try and every retry"
    );
}

#[tokio::test]
async fn retry_after_beyond_the_bound_is_returned_to_the_caller_not_slept() {
    let mock = MockStark::start(|_, _| error_answer(429, Some("120"))).await;
    let key = PrivateKey::generate();
    let mut cfg = config(format!("http://{}/v2", mock.addr), key);
    cfg.max_retry_after = Duration::from_secs(2);
    let client = Client::new(cfg).unwrap();
    let started = std::time::Instant::now();
    let err = client.get_invoice("1").await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(
        mock.seen().len(),
        1,
        "no retry that the server said would fail"
    );
}

#[tokio::test]
async fn balance_is_the_first_entry_in_integer_cents() {
    let mock = MockStark::start(|_, _| {
        ok(json!({"balances": [
            {"id": "5706627130851328", "amount": 1_234_567, "currency": "BRL", "updated": "2026-11-27T10:00:00.000000+00:00"},
            {"id": "second", "amount": 1, "currency": "BRL", "updated": "2026-11-27T10:00:00.000000+00:00"}
        ]}))
    })
    .await;
    let (client, _) = client_for(mock.addr);
    let balance = client.get_balance().await.unwrap();
    assert_eq!(balance.id, "5706627130851328");
    assert_eq!(balance.amount, 1_234_567);
    assert_eq!(balance.currency, "BRL");
    let seen = &mock.seen()[0];
    assert_eq!(
        (seen.method.clone(), seen.uri.path()),
        (Method::GET, "/v2/balance")
    );
    assert!(seen.body.is_empty());

    let empty = MockStark::start(|_, _| ok(json!({"balances": []}))).await;
    let (client, _) = client_for(empty.addr);
    let err = client.get_balance().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownOutcome, "{err}");
}

fn attempt_json(i: usize) -> Value {
    json!({"id": format!("{i:016}"), "code": "badHttpStatus", "message": "HTTP POST request returned status 404",
           "eventId": "5415223380934656", "webhookId": "4722637223641088", "created": "2026-11-27T10:05:00.000000+00:00"})
}

#[tokio::test]
async fn event_attempts_follow_cursors_and_encode_filters() {
    let mock = MockStark::start(|seen, _| {
        if seen.uri.path() == "/v2/event/attempt/0000000000000007" {
            return ok(json!({"attempt": attempt_json(7)}));
        }
        assert_eq!(seen.uri.path(), "/v2/event/attempt");
        let query = url_pairs(&seen.uri);
        let start = query.get("cursor").map_or(0, |c| c.parse().unwrap());
        let end = (start + query["limit"].parse::<usize>().unwrap()).min(130);
        let cursor = if end < 130 { json!(end.to_string()) } else { Value::Null };
        ok(json!({"cursor": cursor, "attempts": (start..end).map(attempt_json).collect::<Vec<_>>()}))
    })
    .await;
    let (client, _) = client_for(mock.addr);
    let query = EventAttemptQuery {
        event_ids: vec!["5415223380934656".into(), "2".into()],
        webhook_ids: vec!["4722637223641088".into()],
        after: Some("2026-11-01".into()),
        before: Some("2026-12-01".into()),
        ..Default::default()
    };
    let attempts = client.query_event_attempts(&query).await.unwrap();
    assert_eq!(attempts.len(), 130);
    assert_eq!(attempts[129].id, format!("{:016}", 129));
    assert_eq!(attempts[0].code, "badHttpStatus");
    assert_eq!(attempts[0].event_id, "5415223380934656");
    assert_eq!(attempts[0].webhook_id, "4722637223641088");
    assert!(attempts[0].message.contains("404"));
    let requests = mock.seen();
    assert_eq!(requests.len(), 2);
    let first = url_pairs(&requests[0].uri);
    assert_eq!(first["eventIds"], "5415223380934656,2");
    assert_eq!(first["webhookIds"], "4722637223641088");
    assert_eq!(first["after"], "2026-11-01");
    assert_eq!(first["before"], "2026-12-01");
    assert_eq!(first["limit"], "100");
    assert_eq!(url_pairs(&requests[1].uri)["cursor"], "100");

    let limited = EventAttemptQuery {
        limit: Some(5),
        ..Default::default()
    };
    assert_eq!(
        client.query_event_attempts(&limited).await.unwrap().len(),
        5
    );
    let one = client.get_event_attempt("0000000000000007").await.unwrap();
    let expected: stark_client::EventAttempt = serde_json::from_value(attempt_json(7)).unwrap();
    assert_eq!(one, expected);
    assert_eq!(
        client.get_event_attempt("../x").await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
}

#[tokio::test]
async fn cancel_invoice_patches_the_status_and_returns_the_invoice() {
    let mock = MockStark::start(|_, _| {
        let mut invoice = invoice_json("5155165527080960");
        invoice["status"] = json!("canceled");
        ok(json!({"invoice": invoice}))
    })
    .await;
    let (client, key) = client_for(mock.addr);
    let invoice = client.cancel_invoice("5155165527080960").await.unwrap();
    assert_eq!(invoice.status, InvoiceStatus::Canceled);
    let seen = &mock.seen()[0];
    assert_eq!(
        (seen.method.clone(), seen.uri.path()),
        (Method::PATCH, "/v2/invoice/5155165527080960")
    );
    let body = std::str::from_utf8(&seen.body).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"status": "canceled"})
    );
    let message = format!(
        "{}:{}:{body}",
        header(seen, "access-id"),
        header(seen, "access-time")
    );
    key.public_key()
        .verify_base64(message.as_bytes(), header(seen, "access-signature"))
        .unwrap();
    assert_eq!(
        client.cancel_invoice("1/2").await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
}

fn transfer_json() -> Value {
    json!({"id": "5107489032896512", "amount": 2, "name": "Lawrence James", "taxId": "91.642.017/0001-06",
           "bankCode": "01", "branchCode": "0001", "accountNumber": "10000-0", "accountType": "checking",
           "scheduled": "2020-04-03T13:20:32.530367+00:00", "description": "", "tags": [], "rules": [],
           "fee": 160, "status": "processing", "transactionIds": [], "created": "2020-04-03T13:20:32.530367+00:00",
           "updated": "2020-04-03T13:20:33.485644+00:00"})
}

#[tokio::test]
async fn non_200_success_is_an_unknown_outcome() {
    let mock = MockStark::start(|_, _| {
        (StatusCode::CREATED, axum::Json(json!({"transfers": []}))).into_response()
    })
    .await;
    let (client, _) = client_for(mock.addr);
    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownOutcome);
    assert!(err.to_string().contains("201"));
}

#[tokio::test]
async fn connection_refused_is_not_sent() {
    // Bind then drop a listener: the port is closed.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (client, _) = client_for(addr);
    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotSent, "{err}");
    assert!(err.is_transient() && !err.may_have_happened());
}

#[tokio::test]
async fn timeout_after_sending_is_an_unknown_outcome_and_not_retried() {
    let slow = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, slow).await.unwrap() });
    let key = PrivateKey::generate();
    let mut cfg = config(format!("http://{addr}/v2"), key);
    cfg.timeout = Duration::from_millis(300);
    let client = Client::new(cfg).unwrap();
    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownOutcome, "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn connection_cut_after_request_is_an_unknown_outcome() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await;
            drop(socket); // the request arrived; the answer never leaves
        }
    });
    let (client, _) = client_for(addr);
    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownOutcome, "{err}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the POST was not retried"
    );
}

#[tokio::test]
async fn unreadable_200_body_is_an_unknown_outcome() {
    let mock =
        MockStark::start(|_, _| (StatusCode::OK, "<html>proxy</html>").into_response()).await;
    let (client, _) = client_for(mock.addr);
    let err = client
        .create_transfers(&[NewTransfer::default()])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownOutcome);
}

#[tokio::test]
async fn ids_that_would_change_the_path_are_refused() {
    let mock = MockStark::start(|_, _| ok(json!({}))).await;
    let (client, _) = client_for(mock.addr);
    for id in ["../transfer", "1?x=2", "", "1/2"] {
        assert_eq!(
            client.get_invoice(id).await.unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }
    assert!(mock.seen().is_empty());
}

// ---- webhook verification -------------------------------------------------------------------

/// A mock Stark that serves `GET /v2/public-key` from a swappable key and counts fetches.
struct KeyServer {
    mock: MockStark,
    pem: Arc<Mutex<Option<String>>>,
}

impl KeyServer {
    async fn start(pem: Option<String>) -> Self {
        let shared = Arc::new(Mutex::new(pem));
        let served = shared.clone();
        let mock = MockStark::start(move |seen, _| {
            assert_eq!(seen.uri.path(), "/v2/public-key");
            match served.lock().unwrap().clone() {
                Some(pem) => ok(json!({"cursor": null, "publicKeys": [{"content": pem, "created": "2020-03-24T03:58:00+00:00"}]})),
                None => (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response(),
            }
        })
        .await;
        Self { mock, pem: shared }
    }

    fn fetches(&self) -> usize {
        self.mock.count("/v2/public-key")
    }
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/vectors.json")).unwrap()
}

#[tokio::test]
async fn real_stark_webhooks_verify_and_parse() {
    let v = vectors();
    let stark_pem = v["starkWebhookVector"]["starkPublicKeyPem"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = KeyServer::start(Some(stark_pem)).await;
    let (client, _) = client_for(server.mock.addr);
    let w = &v["starkWebhookVector"];
    let content = w["content"].as_str().unwrap().as_bytes();
    let event = client
        .verify_webhook(content, w["digitalSignature"].as_str())
        .await
        .unwrap();
    assert_eq!(event.id, "5415223380934656");
    assert_eq!(event.workspace_id.as_deref(), Some("5078376503050240"));
    let log = event.invoice_log().unwrap();
    assert_eq!(log.log_type, InvoiceLogType::Created);
    assert_eq!(*log.invoice.tags, ["war supply", "invoice #1234"]);
    client
        .verify_webhook(content, w["digitalSignatureLowS"].as_str())
        .await
        .unwrap();

    let w2 = &v["starkWebhookVector2"];
    let event = client
        .verify_webhook(
            w2["content"].as_str().unwrap().as_bytes(),
            w2["digitalSignature"].as_str(),
        )
        .await
        .unwrap();
    assert!(matches!(event.log, EventLog::Transfer(ref t) if t.transfer.fee == 160));
    assert_eq!(server.fetches(), 1, "the key is fetched once and cached");

    let invalid = client
        .verify_webhook(content, w["invalidSignature"].as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(invalid, VerifyError::SignatureMismatch),
        "{invalid:?}"
    );
    let malformed = client
        .verify_webhook(content, w["malformedSignature"].as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(malformed, VerifyError::MalformedSignature(_)),
        "{malformed:?}"
    );
    let missing = client.verify_webhook(content, None).await.unwrap_err();
    assert!(
        matches!(missing, VerifyError::MalformedSignature(_)),
        "{missing:?}"
    );
}

fn signed_event(key: &PrivateKey, body: &str) -> String {
    key.sign_base64(body.as_bytes())
}

fn credited_body(event_id: &str) -> String {
    let mut invoice = invoice_json("5166945473134592");
    invoice["status"] = json!("paid");
    json!({"event": {"created": "2024-02-29T05:00:12.051456+00:00", "id": event_id, "subscription": "invoice",
        "workspaceId": "6010044957065216",
        "log": {"created": "2024-02-29T05:00:11.794243+00:00", "errors": [], "id": "6417929088270336", "type": "credited", "invoice": invoice}}})
    .to_string()
}

#[tokio::test]
async fn sorted_keys_reserialization_is_accepted_like_the_python_sdk() {
    let stark = PrivateKey::generate();
    let server = KeyServer::start(Some(stark.public_key().to_pem())).await;
    let (client, _) = client_for(server.mock.addr);
    // The signature covers Python's sorted form, but the body arrives in another key order.
    let value: Value = serde_json::from_str(&credited_body("1")).unwrap();
    let sorted = stark_client::python_json::to_string_sorted(&value);
    let unsorted = sorted
        .replacen(
            "{\"event\": {\"created\"",
            "{\"event\": {\"subscription\": \"invoice\", \"created\"",
            1,
        )
        .replacen(", \"subscription\": \"invoice\"", "", 1);
    assert_ne!(unsorted, sorted);
    assert_eq!(serde_json::from_str::<Value>(&unsorted).unwrap(), value);
    let event = client
        .verify_webhook(unsorted.as_bytes(), Some(&signed_event(&stark, &sorted)))
        .await
        .unwrap();
    assert_eq!(
        event.invoice_log().unwrap().log_type,
        InvoiceLogType::Credited
    );
}

#[tokio::test]
async fn rotated_key_is_refreshed_once_and_cached_under_concurrency() {
    let old = PrivateKey::generate();
    let new = PrivateKey::generate();
    let server = KeyServer::start(Some(old.public_key().to_pem())).await;
    let (client, _) = client_for(server.mock.addr);
    let body = credited_body("10");

    // Many concurrent first verifications share one fetch.
    let sig = signed_event(&old, &body);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            let body = body.clone();
            let sig = sig.clone();
            tokio::spawn(async move { client.verify_webhook(body.as_bytes(), Some(&sig)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(server.fetches(), 1);

    // Stark rotates its key: the first failure refreshes once, and the new key is cached.
    *server.pem.lock().unwrap() = Some(new.public_key().to_pem());
    let sig = signed_event(&new, &body);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            let body = body.clone();
            let sig = sig.clone();
            tokio::spawn(async move { client.verify_webhook(body.as_bytes(), Some(&sig)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(server.fetches(), 2, "concurrent failures share one refresh");

    // A forged signature refreshes (still the same key) and is refused.
    let forged = signed_event(&PrivateKey::generate(), &body);
    let err = client
        .verify_webhook(body.as_bytes(), Some(&forged))
        .await
        .unwrap_err();
    assert!(matches!(err, VerifyError::SignatureMismatch));
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn forged_signatures_cannot_hammer_the_key_endpoint() {
    let stark = PrivateKey::generate();
    let server = KeyServer::start(Some(stark.public_key().to_pem())).await;
    let key = PrivateKey::generate();
    let mut cfg = config(format!("http://{}/v2", server.mock.addr), key);
    cfg.public_key_min_refresh = Duration::from_secs(60);
    let client = Client::new(cfg).unwrap();
    let body = credited_body("11");
    for _ in 0..5 {
        let forged = signed_event(&PrivateKey::generate(), &body);
        assert!(matches!(
            client.verify_webhook(body.as_bytes(), Some(&forged)).await,
            Err(VerifyError::SignatureMismatch)
        ));
    }
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn key_fetch_failure_is_public_key_unavailable() {
    let server = KeyServer::start(None).await;
    let (client, _) = client_for(server.mock.addr);
    let stark = PrivateKey::generate();
    let body = credited_body("12");
    let err = client
        .verify_webhook(body.as_bytes(), Some(&signed_event(&stark, &body)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::PublicKeyUnavailable(_)),
        "{err:?}"
    );
    // Once Stark is back, the same webhook verifies.
    *server.pem.lock().unwrap() = Some(stark.public_key().to_pem());
    client
        .verify_webhook(body.as_bytes(), Some(&signed_event(&stark, &body)))
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_signature_makes_no_network_call_and_bad_body_is_invalid_event() {
    let stark = PrivateKey::generate();
    let server = KeyServer::start(Some(stark.public_key().to_pem())).await;
    let (client, _) = client_for(server.mock.addr);
    let err = client.verify_webhook(b"{}", Some("!!!")).await.unwrap_err();
    assert!(matches!(err, VerifyError::MalformedSignature(_)));
    assert_eq!(server.fetches(), 0);
    // Validly signed, but an invoice event whose log is not an invoice log.
    let body =
        r#"{"event": {"created": "x", "id": "1", "subscription": "invoice", "log": {"id": "2"}}}"#;
    let err = client
        .verify_webhook(body.as_bytes(), Some(&signed_event(&stark, body)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, VerifyError::InvalidEvent(ref m) if m.contains("invoice log")),
        "{err:?}"
    );
}
