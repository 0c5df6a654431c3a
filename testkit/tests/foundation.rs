//! The foundation contract, checked on each of the four real services:
//! `/healthz`, `/readyz` through a Redis outage (503 problem+json within a
//! second, 200 again within two seconds of Redis returning, no restart),
//! `/metrics`, problem+json 404s, and a bad `REDIS_URL` stopping each binary
//! at start with one clear line.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use clap::Parser;
use mcp_testkit::{JWT_SECRET, RedisServer, TestService, common_args, eventually, prefix, spawn};

const SERVICES: [&str; 4] = ["registry-svc", "config-svc", "health-svc", "gateway"];

/// Start `name` in-process against `redis_url`.
async fn start(name: &str, redis_url: &str) -> TestService {
    let mut args = vec![name.to_owned()];
    args.extend(common_args(redis_url, &prefix()));
    if name != "config-svc" {
        args.extend(mcp_testkit::egress_args());
    }
    match name {
        "registry-svc" => {
            let s = registry_svc::Settings::try_parse_from(args).unwrap();
            spawn(|l, t| registry_svc::run(s, l, t)).await
        }
        "config-svc" => {
            let s = config_svc::Settings::try_parse_from(args).unwrap();
            spawn(|l, t| config_svc::run(s, l, t)).await
        }
        "health-svc" => {
            let s = health_svc::Settings::try_parse_from(args).unwrap();
            spawn(|l, t| health_svc::run(s, l, t)).await
        }
        _ => {
            args.extend(["--jwt-secret", JWT_SECRET].map(str::to_owned));
            let s = gateway::Settings::try_parse_from(args).unwrap();
            spawn(|l, t| gateway::run(s, l, t)).await
        }
    }
}

async fn status(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn every_service_is_live_ready_and_heals_after_a_redis_outage() {
    let redis = RedisServer::start();
    let mut services = Vec::new();
    for name in SERVICES {
        services.push((name, start(name, &redis.url()).await));
    }
    for (name, service) in &services {
        let up = eventually(Duration::from_secs(5), || async {
            status(&service.at("/readyz")).await == Some(200)
        })
        .await;
        assert!(up, "{name}: /readyz not 200 with Redis up");
        assert_eq!(status(&service.at("/healthz")).await, Some(200), "{name}");
    }

    redis.stop();
    for (name, service) in &services {
        let started = Instant::now();
        let response = reqwest::get(service.at("/readyz")).await.unwrap();
        let took = started.elapsed();
        assert_eq!(response.status(), 503, "{name}: /readyz with Redis down");
        assert!(
            took < Duration::from_secs(1),
            "{name}: /readyz took {took:?}"
        );
        assert_eq!(
            response.headers().get("content-type").unwrap(),
            "application/problem+json",
            "{name}"
        );
        assert_eq!(
            status(&service.at("/healthz")).await,
            Some(200),
            "{name}: liveness"
        );
    }

    redis.restart();
    let restarted = Instant::now();
    for (name, service) in &services {
        let healed = eventually(Duration::from_secs(2), || async {
            status(&service.at("/readyz")).await == Some(200)
        })
        .await;
        assert!(
            healed,
            "{name}: /readyz not 200 within 2 s of Redis returning ({:?})",
            restarted.elapsed()
        );
    }
}

#[tokio::test]
async fn every_service_serves_metrics_and_problem_json_404s() {
    let redis = mcp_testkit::redis();
    for name in SERVICES {
        let service = start(name, &redis.url()).await;
        let missing = reqwest::get(service.at("/definitely/not/here"))
            .await
            .unwrap();
        assert_eq!(missing.status(), 404, "{name}");
        assert_eq!(
            missing.headers().get("content-type").unwrap(),
            "application/problem+json",
            "{name}"
        );
        let body: serde_json::Value = missing.json().await.unwrap();
        assert_eq!(body["status"], 404, "{name}");

        // The gateway's `/metrics` needs `metrics:read`; the services' are open.
        let metrics = reqwest::Client::new()
            .get(service.at("/metrics"))
            .header(
                "authorization",
                format!(
                    "Bearer {}",
                    mcp_testkit::token(JWT_SECRET, "scraper", "metrics:read")
                ),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200, "{name}");
        let content_type = metrics
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            content_type.starts_with("text/plain"),
            "{name}: {content_type}"
        );
        let text = metrics.text().await.unwrap();
        assert!(
            text.contains("http_server_requests_total{"),
            "{name}: {text}"
        );
        assert!(
            text.contains(r#"route="unmatched""#),
            "{name}: 404s share one series"
        );
    }
}

/// The binary next to this test executable (cargo builds every binary of the
/// workspace before running `cargo test --workspace`).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo test --workspace` (or `cargo build -p {name}`) first",
        path.display()
    );
    path
}

#[test]
fn a_bad_redis_url_stops_each_binary_with_one_clear_line() {
    for name in SERVICES {
        let output = Command::new(binary(name))
            .env("REDIS_URL", "not-a-url")
            .env("JWT_SECRET", JWT_SECRET)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name} must exit non-zero");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains("not-a-url") && first.contains("--redis-url"),
            "{name}: first line must name the setting and the value: {stderr}"
        );
        assert!(
            stderr.lines().count() <= 4,
            "{name}: short error, got {stderr}"
        );
    }
}
