//! The `stark-sandbox` binary: flags documented, projects registered from the command line.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use stark_client::{AccessId, Client, ClientConfig, Environment, PrivateKey};

const BIN: &str = env!("CARGO_BIN_EXE_stark-sandbox");

#[test]
fn help_documents_every_option() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--host",
        "--port",
        "--speed",
        "--project",
        "--projects-file",
        "--seed",
        "--pay-delay",
        "--credit-delay",
        "--pay-probability",
        "--invoice-fee",
        "--transfer-fee",
        "--reversal-rate",
        "--full-reversal-share",
        "--reversal-delay",
        "--listing-lag",
        "--initial-balance",
        "--access-time-skew",
        "--workspace-id",
        "--signing-key",
        "--delivery-timeout",
        "--retry-schedule",
        "--fault-seed",
        "--fault-server-error",
        "--fault-timeout",
        "--fault-rate-limit",
        "--retry-after",
        "--fault-slow",
        "--slow-delay-ms",
        "--fault-drop",
        "--fault-lost-answer",
        "--fault-duplicate-delivery",
        "--fault-out-of-order",
        "--out-of-order-delay",
        "--fault-key-rotation",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[tokio::test]
async fn a_project_given_on_the_command_line_can_call_the_api() {
    let key = PrivateKey::generate();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sandbox-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = dir.join("public-key.pem");
    std::fs::write(&pem, key.public_key().to_pem()).unwrap();
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--speed", "60", "--project"])
        .arg(format!("4242424242424242={}", pem.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The binary prints its URL once listening.
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("stark-sandbox listening on "))
    })
    .await
    .unwrap();
    let url = line
        .expect("listening line")
        .trim_start_matches("stark-sandbox listening on ")
        .to_owned();
    let config = ClientConfig::new(
        AccessId::Project("4242424242424242".into()),
        key,
        Environment::Custom(url),
    );
    let keys = Client::new(config).unwrap().list_public_keys(1).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(keys.unwrap().len(), 1);
}
