//! Authentication and path handling.

use stark_client::keys::{high_s_twin, signature_to_base64};
use stark_client::{Client, PrivateKey};

use crate::common::*;

#[tokio::test]
async fn a_signature_from_another_key_is_invalid_credentials() {
    let env = start(fast()).await;
    let wrong = Client::new(
        env.sandbox
            .client_config(&env.project, PrivateKey::generate()),
    )
    .unwrap();
    let err = wrong.list_public_keys(1).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.has_code("invalidCredentials"), "{err}");
    // The body is part of the signed message: a valid signature over another body fails.
    let id = format!("project/{}", env.project);
    let time = now_seconds();
    let signed = stark_client::sign_request(&env.key, &id, &time, "{}");
    let answer = raw_with(
        &env,
        "POST",
        "/v2/webhook",
        r#"{"url": "https://x.com", "subscriptions": ["invoice"]}"#,
        &id,
        &time,
        &signed.access_signature,
    )
    .await;
    assert_eq!(
        (answer.status(), answer.first_code()),
        (400, "invalidCredentials".to_owned())
    );
    // Missing headers too.
    let answer = raw_with(&env, "GET", "/v2/invoice", "", &id, &time, "").await;
    assert_eq!(answer.first_code(), "invalidCredentials");
}

#[tokio::test]
async fn an_unknown_project_is_invalid_project() {
    let env = start(fast()).await;
    let stranger = Client::new(
        env.sandbox
            .client_config("9999999999999999", env.key.clone()),
    )
    .unwrap();
    let err = stranger.get_invoice("1234567890123456").await.unwrap_err();
    assert!(err.has_code("invalidProject"), "{err}");
    // Once registered, the same key works.
    env.sandbox
        .register_project("9999999999999999", env.key.public_key())
        .unwrap();
    assert!(stranger.list_public_keys(1).await.is_ok());
}

#[tokio::test]
async fn access_time_outside_the_window_is_refused() {
    let env = start(stark_sandbox::SandboxConfig {
        access_time_skew: std::time::Duration::from_secs(60),
        ..fast()
    })
    .await;
    let now: f64 = now_seconds().parse().unwrap();
    let old = format!("{}", now - 600.0);
    let answer = raw(&env, "GET", "/v2/public-key", "", Some(&old)).await;
    assert_eq!(
        (answer.status(), answer.first_code()),
        (400, "invalidCredentials".to_owned())
    );
    let future = format!("{}", now + 600.0);
    assert_eq!(
        raw(&env, "GET", "/v2/public-key", "", Some(&future))
            .await
            .status(),
        400
    );
    // Python's float form, inside the window, is fine.
    let python = format!("{:.7}", now - 5.0);
    assert_eq!(
        raw(&env, "GET", "/v2/public-key", "", Some(&python))
            .await
            .status(),
        200
    );
    assert_eq!(
        raw(&env, "GET", "/v2/public-key", "", Some("yesterday"))
            .await
            .first_code(),
        "invalidCredentials"
    );
}

#[tokio::test]
async fn repeated_and_trailing_slashes_are_accepted_and_high_s_signatures_too() {
    let env = start(fast()).await;
    let answer = raw(&env, "GET", "/v2//public-key?limit=1", "", None).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json()["publicKeys"].as_array().unwrap().len(), 1);
    assert!(answer.json()["cursor"].is_null());
    let answer = raw(&env, "GET", "/v2//invoice/?limit=1&status=paid", "", None).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.json()["invoices"], serde_json::json!([]));

    // A high-S Access-Signature (what Node and old Python SDKs send half the time) is accepted.
    let id = format!("project/{}", env.project);
    let time = now_seconds();
    let low = env.key.sign(format!("{id}:{time}:").as_bytes());
    let high = signature_to_base64(&high_s_twin(&low));
    let answer = raw_with(&env, "GET", "/v2/public-key", "", &id, &time, &high).await;
    assert_eq!(answer.status(), 200);

    // Unknown paths and methods.
    assert_eq!(
        raw(&env, "GET", "/v2/nothing", "", None).await.status(),
        404
    );
    assert_eq!(
        raw(&env, "PUT", "/v2/invoice", "", None).await.status(),
        405
    );
}
