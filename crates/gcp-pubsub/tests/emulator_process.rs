//! The emulator harness must not leak JVMs: both `stop()` and drop end the whole process
//! group, `gcloud` wrapper and `java` child alike.

mod common;

use std::process::Command;

use gcp_pubsub::emulator::Emulator;

/// Pids of processes whose command line is the emulator JVM for `port`.
fn emulator_jvms(port: &str) -> Vec<String> {
    let output = Command::new("pgrep")
        .args(["-f", &format!("cloud-pubsub-emulator.*--port={port}")])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn port_of(emulator: &Emulator) -> String {
    emulator.host().rsplit(':').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_drop_leave_no_emulator_process() {
    common::bounded(async {
        let Some(stopped) = common::emulator().await else {
            return;
        };
        let Some(dropped) = common::emulator().await else {
            return;
        };
        let ports = [port_of(&stopped), port_of(&dropped)];
        for port in &ports {
            assert_eq!(
                emulator_jvms(port).len(),
                1,
                "expected one JVM listening on {port}"
            );
        }
        assert!(Emulator::available());

        stopped.stop();
        drop(dropped);
        // stop() and drop return only once the group is gone, so no waiting is needed here.
        for port in &ports {
            assert_eq!(
                emulator_jvms(port),
                Vec::<String>::new(),
                "JVM on {port} survived"
            );
        }
    })
    .await;
}
