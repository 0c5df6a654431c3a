//! The real binary: SIGTERM lets an in-flight blocking query finish, then
//! the process exits 0; the password of `REDIS_URL` never shows in `--help`,
//! a start-up error or a log line.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::common::body;
use mcp_testkit::{eventually, free_port, prefix, redis};

/// A child process killed when dropped, so a failing test leaves no server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn sigterm_finishes_an_in_flight_blocking_query_and_exits_zero() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_registry-svc"))
            .env("REGISTRY_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", redis().url())
            .env("MCP_REDIS_PREFIX", prefix())
            .env("MCP_INTERNAL_SECRET", mcp_testkit::INTERNAL_SECRET)
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "warn")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = mcp_testkit::client_builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let up = eventually(Duration::from_secs(10), || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(up, "registry-svc did not start");

    // Index 0 never blocks: give the registry a revision to wait past.
    let seeded = client
        .put(format!("{base}/v1/services/seed/instances/s-1"))
        .json(&body(30))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), 201);
    let listed: serde_json::Value = client
        .get(format!("{base}/v1/services"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let index = listed["revision"].as_u64().unwrap();
    let mut parked = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/v1/services?index={index}&wait=3s");
        async move { client.get(url).send().await }
    });
    // The query is parked on the server when the signal comes.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut parked)
            .await
            .is_err(),
        "the blocking query answered before its wait"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let response = parked.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["revision"].as_u64().unwrap(), index);

    let mut status = None;
    let exited = eventually(Duration::from_secs(10), || {
        status = status.or_else(|| child.0.try_wait().unwrap());
        let done = status.is_some();
        async move { done }
    })
    .await;
    assert!(exited, "registry-svc did not exit after SIGTERM");
    assert_eq!(status.unwrap().code(), Some(0));
}

const REDIS_PASSWORD: &str = "pw-never-printed-7f3a";

#[test]
fn the_redis_password_never_shows_in_help_or_a_start_up_error() {
    let help = Command::new(env!("CARGO_BIN_EXE_registry-svc"))
        .arg("--help")
        .env(
            "REDIS_URL",
            format!("redis://mcp:{REDIS_PASSWORD}@127.0.0.1:6379"),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("[env: REDIS_URL]"), "{text}");
    assert!(!text.contains(REDIS_PASSWORD), "{text}");

    // A URL the driver refuses: one line naming the setting, password redacted.
    let bad = Command::new(env!("CARGO_BIN_EXE_registry-svc"))
        .env(
            "REDIS_URL",
            format!("redis://mcp:{REDIS_PASSWORD}@127.0.0.1:notaport"),
        )
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("--redis-url") && first.contains("redis://mcp:***@127.0.0.1:notaport"),
        "{stderr}"
    );
    assert!(!stderr.contains(REDIS_PASSWORD), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_redis_is_logged_without_its_password() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Nothing listens on `dead`: every Redis command fails and is logged.
    let dead = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_registry-svc"))
        .env("REGISTRY_ADDR", format!("127.0.0.1:{port}"))
        .env(
            "REDIS_URL",
            format!("redis://mcp:{REDIS_PASSWORD}@127.0.0.1:{dead}"),
        )
        .env("MCP_REDIS_PREFIX", prefix())
        .env("MCP_INTERNAL_SECRET", mcp_testkit::INTERNAL_SECRET)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "debug")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let unready = eventually(Duration::from_secs(10), || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 503)
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let waited = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = match tokio::time::timeout(Duration::from_secs(30), waited).await {
        Ok(joined) => joined.unwrap().unwrap(),
        Err(_) => panic!("registry-svc did not exit after SIGTERM"),
    };
    assert!(unready, "registry-svc did not answer /readyz 503");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(logs.contains("listening"), "no logs captured: {logs}");
    assert!(!logs.contains(REDIS_PASSWORD), "{logs}");
}

#[test]
fn a_service_without_the_internal_secret_refuses_to_start_with_one_line() {
    for secret in [None, Some("too-short")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_registry-svc"));
        command
            .env("REGISTRY_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("REDIS_URL", redis().url())
            .env("LOG_FORMAT", "pretty")
            .env("RUST_LOG", "off")
            .env_remove("MCP_INTERNAL_SECRET");
        if let Some(secret) = secret {
            command.env("MCP_INTERNAL_SECRET", secret);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("MCP_INTERNAL_SECRET"), "{stderr}");
        assert!(
            !stderr.contains("too-short"),
            "the secret is not echoed: {stderr}"
        );
    }
}
