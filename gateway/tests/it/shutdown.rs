//! Graceful shutdown of the real binary: SIGTERM lets an in-flight proxied
//! request complete, then the process exits 0.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::common::{self, bearer, client, token};
use axum::{Router, routing::any};
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
    let arrived = Arc::new(AtomicUsize::new(0));
    let counter = arrived.clone();
    let slow = common::upstream(Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "done"
        }
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
    // The signal comes while the request is at the upstream.
    let in_upstream = eventually(Duration::from_secs(10), || async {
        arrived.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(in_upstream, "the request never reached the upstream");
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "done");
    // Bounded: past 10 s the test fails (and the guard kills the gateway).
    let mut exit = None;
    let exited = eventually(Duration::from_secs(10), || {
        exit = exit.or_else(|| guard.0.as_mut().unwrap().try_wait().unwrap());
        let done = exit.is_some();
        async move { done }
    })
    .await;
    assert!(exited, "the gateway did not exit after SIGTERM");
    assert_eq!(exit.unwrap().code(), Some(0));
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
