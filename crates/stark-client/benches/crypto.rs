//! What one Stark request signature and one webhook verification cost.
//!
//! - `sign_request`: `Access-Signature` over a one-invoice `POST /v2/invoice` body.
//! - `verify/raw_ecdsa_*`: ECDSA-SHA256 verification alone (signature already parsed): the floor
//!   that every webhook pays, whatever the code around it does. `PublicKey::verify`
//!   (libsecp256k1), and `_k256` the same check with `k256` for comparison.
//! - `verify/base64_der`: the same plus decoding the header (base64, strict DER).
//! - `verify_webhook/*`: the whole `Client::verify_webhook` with the key cache warm (the key is
//!   served once by a tiny local axum server): header decoding, key lookup, verification, event
//!   parsing. `sorted_fallback` is a body whose signature only matches Python's sorted-keys
//!   re-serialization, the slow path real Stark deliveries should never take.
//!
//! - `library/*`: `k256` and libsecp256k1 called directly on the same key and body, verify and
//!   sign; the numbers behind the choice documented in `src/keys.rs`.
//!
//! `cargo bench -p stark-client --bench crypto`
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use stark_client::keys::{high_s_twin, parse_signature, signature_to_base64};
use stark_client::{AccessId, Client, ClientConfig, Environment, PrivateKey, sign_request};

/// A credited-invoice event shaped like the ones Stark posts (every field of a real delivery).
fn credited_event() -> Value {
    json!({"event": {
        "created": "2026-11-27T10:09:00.866857+00:00", "id": "5415223380934656",
        "subscription": "invoice", "workspaceId": "6010044957065216",
        "log": {"created": "2026-11-27T10:08:59.927706+00:00", "errors": [], "id": "4687457496858624", "type": "credited",
            "invoice": {"amount": 24_990, "brcode": "00020101021226890014br.gov.bcb.pix2567invoice-h.sandbox.starkbank.com/v2/afdf94b770b0458a8440a335daf77c4c5204000053039865802BR5915Stark Bank S.A.6009Sao Paulo62070503***6304CC32",
                "created": "2026-11-27T10:00:50.886319+00:00", "descriptions": [], "discountAmount": 0, "discounts": [],
                "due": "2026-11-29T10:00:50.886319+00:00", "expiration": 5_097_600, "fee": 50, "fine": 2.0, "fineAmount": 0,
                "id": "5941925571985408", "interest": 1.0, "interestAmount": 0,
                "link": "https://local.sandbox.starkbank.com/invoicelink/afdf94b770b0458a8440a335daf77c4c",
                "name": "Vitória Fidalgo", "nominalAmount": 24_990,
                "pdf": "https://invoice-h.sandbox.starkbank.com/pdf/afdf94b770b0458a8440a335daf77c4c",
                "status": "paid", "tags": ["request:demo-0-0", "campaign:demo", "slot:0"], "taxId": "837.656.654-79",
                "transactionIds": ["6547649079541760"], "updated": "2026-11-27T10:08:59.927706+00:00"}}}})
}

fn signing(c: &mut Criterion) {
    let key = PrivateKey::generate();
    let body = r#"{"invoices":[{"amount":8993,"taxId":"837.656.654-79","name":"Vitória Fidalgo","tags":["request:demo-0-0","campaign:demo","slot:0"]}]}"#;
    let mut group = c.benchmark_group("sign_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("invoice_create", |b| {
        b.iter(|| {
            sign_request(
                black_box(&key),
                "project/5656565656565656",
                "1764237600",
                black_box(body),
            )
        })
    });
    group.finish();
}

fn verification(c: &mut Criterion) {
    let key = PrivateKey::generate();
    let public = key.public_key();
    let body = stark_client::python_json::to_string_sorted(&credited_event());
    let low = key.sign(body.as_bytes());
    let low = low.normalize_s().unwrap_or(low);
    let high = high_s_twin(&low);
    let high_b64 = signature_to_base64(&high);

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_ecdsa_low_s", |b| {
        b.iter(|| public.verify(black_box(body.as_bytes()), black_box(&low)))
    });
    group.bench_function("raw_ecdsa_high_s", |b| {
        b.iter(|| public.verify(black_box(body.as_bytes()), black_box(&high)))
    });
    group.bench_function("raw_ecdsa_high_s_k256", |b| {
        b.iter(|| public.verify_with_k256(black_box(body.as_bytes()), black_box(&high)))
    });
    group.bench_function("base64_der", |b| {
        b.iter(|| public.verify_base64(black_box(body.as_bytes()), black_box(&high_b64)))
    });
    group.finish();
}

fn verify_webhook(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let key = PrivateKey::generate();
    let client = runtime.block_on(key_server(key.public_key().to_pem()));

    let event = credited_event();
    let body = stark_client::python_json::to_string_sorted(&event);
    let signature = signature_to_base64(&high_s_twin(&key.sign(body.as_bytes())));
    // Signed over the sorted re-serialization, delivered compact: only the fallback matches.
    let compact = serde_json::to_string(&event).expect("serializes");
    assert_ne!(compact, body);
    let fallback_signature = key.sign_base64(body.as_bytes());
    for (body, signature) in [(&body, &signature), (&compact, &fallback_signature)] {
        runtime
            .block_on(client.verify_webhook(body.as_bytes(), Some(signature)))
            .expect("the benchmark's webhook verifies");
    }
    assert!(parse_signature(&signature).is_ok());

    let mut group = c.benchmark_group("verify_webhook");
    group.throughput(Throughput::Elements(1));
    group.bench_function("credited_event", |b| {
        b.to_async(&runtime).iter(|| async {
            client
                .verify_webhook(black_box(body.as_bytes()), Some(black_box(&signature)))
                .await
                .expect("verifies")
        })
    });
    group.bench_function("sorted_fallback", |b| {
        b.to_async(&runtime).iter(|| async {
            client
                .verify_webhook(
                    black_box(compact.as_bytes()),
                    Some(black_box(&fallback_signature)),
                )
                .await
                .expect("verifies")
        })
    });
    group.finish();
}

/// Serves `GET /v2/public-key` with `pem` on a loopback port and returns a client pointed at it.
async fn key_server(pem: String) -> Client {
    let app = axum::Router::new().route(
        "/v2/public-key",
        axum::routing::get(move || {
            let pem = pem.clone();
            async move {
                axum::Json(json!({"cursor": null, "publicKeys": [
                    {"content": pem, "created": "2026-01-01T00:00:00+00:00"}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = ClientConfig::new(
        AccessId::parse("project/1").expect("access id"),
        PrivateKey::generate(),
        Environment::parse(&format!("http://{addr}/v2")).expect("environment"),
    );
    Client::new(config).expect("client")
}

/// The two secp256k1 implementations side by side on the same key, message and signatures, each
/// doing the whole job of one call: SHA-256 of the message, high-S normalization, the ECDSA
/// operation. This is where the choice of library in `keys.rs` is measured.
fn libraries(c: &mut Criterion) {
    use k256::ecdsa::signature::{Signer as _, Verifier as _};
    use sha2::Digest as _;

    let k256_key = k256::ecdsa::SigningKey::random(&mut k256::elliptic_curve::rand_core::OsRng);
    let k256_public = *k256_key.verifying_key();
    let secret = secp256k1::SecretKey::from_secret_bytes(k256_key.to_bytes().into()).expect("key");
    let secp_public = secp256k1::PublicKey::from_secret_key(&secret);
    let body = stark_client::python_json::to_string_sorted(&credited_event());
    let low: k256::ecdsa::Signature = k256_key.sign(body.as_bytes());
    let high = high_s_twin(&low);
    let digest = |m: &[u8]| secp256k1::Message::from_digest(sha2::Sha256::digest(m).into());

    let mut group = c.benchmark_group("library");
    group.throughput(Throughput::Elements(1));
    group.bench_function("k256_verify_high_s", |b| {
        b.iter(|| {
            let sig = black_box(&high);
            let sig = sig.normalize_s().unwrap_or(*sig);
            k256_public.verify(black_box(body.as_bytes()), &sig)
        })
    });
    group.bench_function("libsecp256k1_verify_high_s", |b| {
        b.iter(|| {
            let mut sig = secp256k1::ecdsa::Signature::from_compact(&black_box(&high).to_bytes())
                .expect("compact");
            sig.normalize_s();
            secp256k1::ecdsa::verify(&sig, digest(black_box(body.as_bytes())), &secp_public)
        })
    });
    group.bench_function("k256_sign", |b| {
        b.iter(|| -> k256::ecdsa::Signature { k256_key.sign(black_box(body.as_bytes())) })
    });
    group.bench_function("libsecp256k1_sign", |b| {
        b.iter(|| secp256k1::ecdsa::sign(digest(black_box(body.as_bytes())), &secret))
    });
    group.finish();
}

criterion_group!(benches, signing, verification, verify_webhook, libraries);
criterion_main!(benches);
