//! `scheduled` on transfers: what a client's clock calls "now" or "today" is accepted even when
//! the sandbox clock runs ahead of it, as Stark accepts it.

use std::time::Duration;

use serde_json::json;
use stark_client::NewTransfer;
use time::OffsetDateTime;
use time::macros::{format_description, offset};

use crate::common::*;

/// How the Python SDK sends a `datetime`: `%Y-%m-%dT%H:%M:%S+00:00`, microseconds dropped.
fn sdk_datetime(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]+00:00"
        ))
        .unwrap()
}

fn scheduled(at: String, n: usize) -> NewTransfer {
    NewTransfer {
        scheduled: Some(at),
        ..transfer(
            100 + n as i64,
            &format!("{n}-1"),
            Some(&format!("sched-{n}")),
        )
    }
}

#[tokio::test]
async fn a_transfer_scheduled_at_the_clients_now_or_today_is_accepted_with_the_sandbox_ahead() {
    let env = start(stark_sandbox::SandboxConfig {
        initial_balance: 100_000,
        ..fast()
    })
    .await;
    // A test or a fast clock leaves the client's clock behind the sandbox's.
    env.sandbox.advance(Duration::from_secs(2 * 3_600));
    let wall = OffsetDateTime::now_utc();
    let today_brasilia = wall.to_offset(offset!(-3)).date();
    let start_of_today = today_brasilia.midnight().assume_offset(offset!(-3));
    let accepted = [
        // `datetime.utcnow()` as the SDK's own TestTransferPost sends it: already in the past.
        sdk_datetime(wall),
        // The same a few days on, and `date.today()` (UTC) with and without days added.
        sdk_datetime(wall + time::Duration::days(3)),
        wall.date().to_string(),
        (wall.date() + time::Duration::days(10)).to_string(),
        // Today in Brasília, and its very first second.
        today_brasilia.to_string(),
        sdk_datetime(start_of_today),
    ];
    let batch: Vec<NewTransfer> = accepted
        .iter()
        .enumerate()
        .map(|(n, at)| scheduled(at.clone(), n))
        .collect();
    let before = env.sandbox.now();
    let created = env.client.create_transfers(&batch).await.unwrap();
    assert_eq!(created.len(), accepted.len());
    // A time already past runs now; the transfer says when it will really be processed.
    let first = time::OffsetDateTime::parse(
        &created[0].scheduled,
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(first >= before, "{first} vs {before}");

    // Before the start of today in Brasília is the past.
    let yesterday = start_of_today - time::Duration::SECOND;
    for (at, code) in [
        (sdk_datetime(yesterday), "invalidDateTime"),
        (
            (today_brasilia - time::Duration::days(1)).to_string(),
            "invalidDate",
        ),
    ] {
        let body = json!({"transfers": [serde_json::to_value(scheduled(at.clone(), 99)).unwrap()]});
        let answer = raw(&env, "POST", "/v2/transfer", &body.to_string(), None).await;
        assert_eq!(
            (answer.status(), answer.first_code()),
            (400, code.to_owned()),
            "{at}"
        );
    }
}
