//! Egress rules at the `/svc` proxy: a registration cannot make the gateway
//! connect to the control plane, Redis, its own listener, link-local
//! addresses or (in tests) anything outside loopback. Each refusal is a 403
//! problem that names the reason, is not a breaker failure, and no
//! connection is attempted (the destinations outside loopback are refused
//! before any connect, so these tests never leave 127.0.0.0/8).

use std::{net::SocketAddr, time::Duration};

use crate::common::{self, Registry, bearer, client, gateway};
use axum::{Router, routing::any};
use mcp_shared::registry::HealthStatus;
use mcp_testkit::{prefix, redis};

/// `GET /svc/{service}/x` with a scope-less token: status and body.
async fn call(gateway: &mcp_testkit::TestService, service: &str) -> (u16, serde_json::Value) {
    let response = client()
        .get(gateway.at(&format!("/svc/{service}/x")))
        .header("authorization", bearer(&common::token("mallory", "")))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or_default();
    if status == 403 {
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    }
    (status, body)
}

/// Register `service` at `addr` and wait until the gateway routes it
/// (anything but 404), returning that first answer.
async fn routed(
    gateway: &mcp_testkit::TestService,
    registry: &Registry,
    service: &str,
    addr: SocketAddr,
) -> (u16, serde_json::Value) {
    registry
        .register_at(service, "i-1", addr, HealthStatus::Passing)
        .await;
    // Bounded: 2 s of polling, then fail.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let mut last = call(gateway, service).await;
    while last.0 == 404 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        last = call(gateway, service).await;
    }
    let found = last.0 != 404;
    assert!(found, "{service} never became routable: {last:?}");
    last
}

#[tokio::test]
async fn the_proxy_refuses_the_control_plane_redis_itself_and_outside_loopback() {
    let prefix = prefix();
    // A real server plays config-svc, so a refusal is not just a closed port.
    let config = common::upstream(Router::new().fallback(any(|| async { "config secrets" }))).await;
    let gw = gateway(
        &redis().url(),
        &prefix,
        &["--config-url", &config.url, "--cb-failure-threshold", "1"],
    )
    .await;
    let registry = Registry::new(&redis().url(), &prefix);
    let redis_addr: SocketAddr = format!("127.0.0.1:{}", redis().port()).parse().unwrap();

    let cases = [
        ("walk-around", config.addr, "config-svc"),
        // Another loopback address on the same port reaches a 0.0.0.0 listener.
        (
            "walk-around-2",
            SocketAddr::new([127, 0, 0, 2].into(), config.addr.port()),
            "config-svc",
        ),
        ("redis", redis_addr, "Redis"),
        ("itself", gw.addr, "the gateway itself"),
        (
            "metadata",
            "169.254.169.254:80".parse().unwrap(),
            "link-local",
        ),
        (
            "outside",
            "10.0.0.7:9000".parse().unwrap(),
            "EGRESS_ALLOW_CIDRS",
        ),
    ];
    for (service, addr, reason) in cases {
        let (status, body) = routed(&gw, &registry, service, addr).await;
        assert_eq!(status, 403, "{service}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{service}: {detail}");
        assert!(!detail.contains("secrets"));
        // A refusal is the registration's fault: the breaker (threshold 1)
        // stays closed, so the answer stays 403, never 503.
        for _ in 0..3 {
            assert_eq!(call(&gw, service).await.0, 403, "{service}");
        }
    }

    // A loopback instance that is none of these is proxied as usual.
    let upstream = common::upstream(Router::new().fallback(any(|| async { "ok" }))).await;
    assert_eq!(routed(&gw, &registry, "fine", upstream.addr).await.0, 200);
}

#[tokio::test]
async fn the_control_plane_itself_is_still_reached_through_api() {
    // The protected control-plane URLs are refused to `/svc` only: `/api`
    // is how they are meant to be reached.
    let prefix = prefix();
    let config = common::upstream(Router::new().fallback(any(|| async { "{}" }))).await;
    let gw = gateway(&redis().url(), &prefix, &["--config-url", &config.url]).await;
    let response = client()
        .get(gw.at("/api/v1/config/namespaces"))
        .header("authorization", bearer(&common::token("ops", "admin")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}
