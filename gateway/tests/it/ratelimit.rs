//! Rate limiting: per client, with the IETF headers, locally or across
//! replicas through Redis, failing open when Redis is down.

use std::time::Instant;

use crate::common::{bearer, client, echo, gateway, metrics, token};
use mcp_testkit::{RedisServer, prefix, redis};

async fn call(url: &str, token: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_burst_over_the_limit_gets_429_with_rate_limit_headers() {
    burst_over_the_limit("local").await;
}

#[tokio::test]
async fn in_redis_mode_a_burst_over_the_limit_gets_the_same_429_and_headers() {
    burst_over_the_limit("redis").await;
}

/// A burst of 3 at 1 rps in `mode`: the `RateLimit-*` headers count down,
/// the fourth request gets 429 with `Retry-After`, another client passes.
async fn burst_over_the_limit(mode: &str) {
    let registry = echo("registry").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &registry.url,
            "--rate-limit-mode",
            mode,
            "--rate-limit-rps",
            "1",
            "--rate-limit-burst",
            "3",
        ],
    )
    .await;
    let url = gw.at("/api/v1/registry/services");
    let alice = token("alice", "registry:read");
    for expected_remaining in ["2", "1", "0"] {
        let response = call(&url, &alice).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(
            response.headers()["ratelimit-remaining"],
            expected_remaining
        );
        assert!(response.headers().contains_key("ratelimit-reset"));
    }
    let response = call(&url, &alice).await;
    assert_eq!(response.status(), 429);
    let headers = response.headers();
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(headers["ratelimit-limit"], "3");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert!(headers.contains_key("ratelimit-reset"));

    // Another client has its own allowance.
    assert_eq!(
        call(&url, &token("bob", "registry:read")).await.status(),
        200
    );
    let metrics = metrics(&gw).await;
    assert!(metrics.contains("gateway_rate_limited_total"));
}

#[tokio::test]
async fn two_replicas_in_redis_mode_together_let_through_no_more_than_the_limit() {
    let registry = echo("registry").await;
    let prefix = prefix();
    let args = [
        "--registry-url",
        &registry.url,
        "--rate-limit-mode",
        "redis",
        "--rate-limit-rps",
        "1",
        "--rate-limit-burst",
        "5",
    ];
    let a = gateway(&redis().url(), &prefix, &args).await;
    let b = gateway(&redis().url(), &prefix, &args).await;
    let carol = token("carol", "registry:read");
    let started = Instant::now();
    let mut passed = 0u64;
    for i in 0..20 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let response = call(&gw.at("/api/v1/registry/services"), &carol).await;
        match response.status().as_u16() {
            200 => passed += 1,
            429 => assert!(response.headers().contains_key("retry-after")),
            other => panic!("unexpected {other}"),
        }
    }
    // The burst, plus what the sustained rate refilled meanwhile.
    let allowance = 5 + started.elapsed().as_secs() + 1;
    assert!(passed >= 5, "the burst passes: {passed}");
    assert!(passed <= allowance, "{passed} passed, limit {allowance}");
}

#[tokio::test]
async fn redis_mode_fails_open_when_redis_is_down() {
    let server = RedisServer::start();
    let registry = echo("registry").await;
    let gw = gateway(
        &server.url(),
        &prefix(),
        &[
            "--registry-url",
            &registry.url,
            "--rate-limit-mode",
            "redis",
            "--rate-limit-rps",
            "1",
            "--rate-limit-burst",
            "1",
        ],
    )
    .await;
    let url = gw.at("/api/v1/registry/services");
    let dave = token("dave", "registry:read");
    assert_eq!(call(&url, &dave).await.status(), 200);
    assert_eq!(call(&url, &dave).await.status(), 429);
    server.stop();
    for _ in 0..3 {
        assert_eq!(call(&url, &dave).await.status(), 200, "fails open");
    }
    let metrics = metrics(&gw).await;
    assert!(metrics.contains("gateway_rate_limit_fail_open_total"));
}
