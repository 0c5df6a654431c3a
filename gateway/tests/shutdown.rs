//! Graceful shutdown of the real binary: SIGTERM lets an in-flight proxied
//! request complete, then the process exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use axum::{Router, routing::any};
use common::{bearer, client, token};
use mcp_testkit::{JWT_SECRET, eventually, free_port, prefix, redis};

/// Kills the child if the test fails before it exits.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn sigterm_lets_a_slow_proxied_request_complete_then_exits_zero() {
    let slow = common::upstream(Router::new().fallback(any(|| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        "done"
    })))
    .await;
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", redis().url())
        .env("MCP_REDIS_PREFIX", prefix())
        .env("JWT_SECRET", JWT_SECRET)
        .env("MCP_INTERNAL_SECRET", mcp_testkit::INTERNAL_SECRET)
        .env("REGISTRY_URL", &slow.url)
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut guard = Guard(Some(child));
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            reqwest::get(format!("{base}/healthz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "gateway binary did not start"
    );

    let url = format!("{base}/api/v1/registry/slow");
    let in_flight = tokio::spawn(async move {
        let response = client()
            .get(url)
            .header("authorization", bearer(&token("ops", "admin")))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "done");
    let mut child = guard.0.take().unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn missing_jwt_key_stops_the_binary_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "off")
        .env("MCP_INTERNAL_SECRET", mcp_testkit::INTERNAL_SECRET)
        .env_remove("JWT_SECRET")
        .env_remove("JWT_PUBLIC_KEY_FILE")
        .env_remove("JWT_JWKS_URL")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("JWT_SECRET"), "{stderr}");
}

#[test]
fn a_jwt_secret_under_32_bytes_stops_the_binary_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "off")
        .env("JWT_SECRET", "0123456789abcdef0123456789abcde")
        .env("MCP_INTERNAL_SECRET", mcp_testkit::INTERNAL_SECRET)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("JWT_SECRET") && stderr.contains("32"),
        "{stderr}"
    );
    assert!(!stderr.contains("0123456789abcdef"), "{stderr}");
}

#[test]
fn missing_internal_secret_stops_the_binary_with_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("LOG_FORMAT", "pretty")
        .env("RUST_LOG", "off")
        .env("JWT_SECRET", JWT_SECRET)
        .env_remove("MCP_INTERNAL_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("MCP_INTERNAL_SECRET"), "{stderr}");
}
