//! What decoding one Pub/Sub push delivery costs: `PushEnvelope::parse` (JSON, both id
//! spellings, base64) and then the payload (`PaidInvoice` for money-sender, `PendingInvoice` for
//! invoice-sender), on envelopes shaped as real Pub/Sub sends them.
//!
//! `cargo bench -p pipeline-service --bench envelope`
#![forbid(unsafe_code)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipeline_domain::messages::{PaidInvoice, PendingInvoice, SCHEMA_VERSION, TopicMessage};
use pipeline_domain::vocab::invoice_tags;
use pipeline_service::envelope::{PushEnvelope, WireEnvelope};

fn paid() -> PaidInvoice {
    PaidInvoice {
        schema_version: SCHEMA_VERSION,
        event_id: "5415223380934656".into(),
        invoice_id: "5941925571985408".into(),
        amount: 24_990,
        fee: 50,
        payer_name: "Vitória Fidalgo".into(),
        payer_tax_id: "837.656.654-79".into(),
        credited_at: "2026-11-27T10:08:59.927706+00:00".into(),
        tags: vec![
            "request:demo-0-0".into(),
            "campaign:demo".into(),
            "slot:0".into(),
        ],
    }
}

fn pending() -> PendingInvoice {
    PendingInvoice {
        schema_version: SCHEMA_VERSION,
        request_id: "demo-0-0".into(),
        campaign: "demo".into(),
        slot: 0,
        amount: 8_993,
        name: "Vitória Fidalgo".into(),
        tax_id: "837.656.654-79".into(),
        due: None,
        expiration: None,
        tags: invoice_tags("demo-0-0", "demo", 0),
    }
}

/// The JSON body Pub/Sub would POST for `message`.
fn delivery<T: TopicMessage>(message: &T, subscription: &str) -> Vec<u8> {
    let envelope = WireEnvelope::for_message(
        &format!("projects/stark-pipeline/subscriptions/{subscription}"),
        "13696934694512345",
        "2026-11-27T10:09:01.123Z",
        &message.to_message(),
        Some(1),
    );
    serde_json::to_vec(&envelope).expect("serializes")
}

fn decoding(c: &mut Criterion) {
    let paid_body = delivery(&paid(), "paid_invoices-money-sender");
    let pending_body = delivery(&pending(), "pending_invoices-invoice-sender");
    assert_eq!(
        PushEnvelope::parse(&paid_body)
            .and_then(|e| e.payload::<PaidInvoice>())
            .expect("decodes"),
        paid()
    );

    let mut group = c.benchmark_group("push_envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_only", |b| {
        b.iter(|| PushEnvelope::parse(black_box(&paid_body)).expect("parses"))
    });
    group.bench_function("paid_invoice", |b| {
        b.iter(|| {
            PushEnvelope::parse(black_box(&paid_body))
                .and_then(|envelope| envelope.payload::<PaidInvoice>())
                .expect("decodes")
        })
    });
    group.bench_function("pending_invoice", |b| {
        b.iter(|| {
            PushEnvelope::parse(black_box(&pending_body))
                .and_then(|envelope| envelope.payload::<PendingInvoice>())
                .expect("decodes")
        })
    });
    group.finish();
}

criterion_group!(benches, decoding);
criterion_main!(benches);
