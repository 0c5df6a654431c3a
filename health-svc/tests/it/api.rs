//! The read API: service health, summary aggregation, explain, errors,
//! and behaviour while Redis is down.

use std::time::Duration;

use crate::common::{
    FakeServer, Registry, closed_port, get_json, http_check, instance, start, tcp_check,
    wait_status,
};
use mcp_shared::registry::HealthStatus;
use mcp_testkit::{RedisServer, eventually, prefix, redis};

const WITHIN: Duration = Duration::from_secs(8);

#[tokio::test]
async fn summary_aggregates_services_as_designed() {
    let (up, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    let down = closed_port();
    // all passing
    registry
        .register(&instance("green", "g1", up.port(), Some(tcp_check())))
        .await;
    registry
        .register(&instance("green", "g2", up.port(), Some(tcp_check())))
        .await;
    // some not passing -> warning
    registry
        .register(&instance("mixed", "m1", up.port(), Some(tcp_check())))
        .await;
    registry
        .register(&instance("mixed", "m2", down, Some(tcp_check())))
        .await;
    // none passing -> critical
    registry
        .register(&instance("red", "r1", down, Some(tcp_check())))
        .await;
    let health = start(&redis().url(), &p, &[]).await;
    for (service, id, status) in [
        ("green", "g1", HealthStatus::Passing),
        ("green", "g2", HealthStatus::Passing),
        ("mixed", "m1", HealthStatus::Passing),
        ("mixed", "m2", HealthStatus::Critical),
        ("red", "r1", HealthStatus::Critical),
    ] {
        assert!(wait_status(&registry, service, id, status, WITHIN).await);
    }
    let (code, body) = get_json(&health.at("/v1/summary")).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "critical");
    let services = body["services"].as_array().unwrap();
    let find = |name: &str| services.iter().find(|s| s["name"] == name).unwrap().clone();
    let green = find("green");
    assert_eq!(
        (green["status"].as_str(), green["passing"].as_u64()),
        (Some("passing"), Some(2))
    );
    let mixed = find("mixed");
    assert_eq!(mixed["status"], "warning");
    assert_eq!(
        (mixed["passing"].as_u64(), mixed["critical"].as_u64()),
        (Some(1), Some(1))
    );
    let red = find("red");
    assert_eq!(red["status"], "critical");
    assert_eq!(red["critical"], 1);
}

#[tokio::test]
async fn service_endpoint_lists_instances_with_their_last_output() {
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance(
            "web",
            "w1",
            server.port(),
            Some(http_check("/health")),
        ))
        .await;
    let health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);
    let (code, body) = get_json(&health.at("/v1/services/web")).await;
    assert_eq!(code, 200);
    assert_eq!(body["service"], "web");
    assert_eq!(body["status"], "passing");
    let one = &body["instances"][0];
    assert_eq!(one["id"], "w1");
    assert_eq!(one["status"], "passing");
    assert_eq!(one["consecutive_failures"], 0);
    assert!(one["output"].as_str().unwrap().starts_with("HTTP 200 OK"));
    assert!(one["last_checked_at"].is_string());
}

#[tokio::test]
async fn explain_says_why_an_instance_is_left_out_of_healthy_discovery() {
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance(
            "web",
            "w1",
            server.port(),
            Some(http_check("/health")),
        ))
        .await;
    let health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);
    let (code, body) = get_json(&health.at("/v1/services/web/instances/w1")).await;
    assert_eq!(code, 200);
    assert_eq!(body["healthy"], true, "{body}");
    assert_eq!(body["lease"]["alive"], true);

    server.set_status(500);
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Critical, WITHIN).await);
    let (_, body) = get_json(&health.at("/v1/services/web/instances/w1")).await;
    assert_eq!(body["healthy"], false);
    assert_eq!(body["status"], "critical");
    assert_eq!(body["thresholds"]["failures_before_critical"], 2);
    assert!(
        body["last_check"]["output"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("critical"), "{reasons}");
}

#[tokio::test]
async fn bad_names_are_400_and_unknown_ones_404() {
    let p = prefix();
    let health = start(&redis().url(), &p, &[]).await;
    let (code, body) = get_json(&health.at("/v1/services/bad*name")).await;
    assert_eq!(code, 400);
    assert_eq!(body["errors"][0]["field"], "service");
    let (code, body) = get_json(&health.at("/v1/services/web/instances/a%20b")).await;
    assert_eq!(code, 400);
    assert_eq!(body["errors"][0]["field"], "id");
    let (code, _) = get_json(&health.at("/v1/services/nothing")).await;
    assert_eq!(code, 404);
    let (code, body) = get_json(&health.at("/v1/services/nothing/instances/x")).await;
    assert_eq!(code, 404);
    assert_eq!(body["status"], 404);
}

#[tokio::test]
async fn metrics_count_checks_by_type_and_result() {
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance("web", "w1", server.port(), Some(http_check("/"))))
        .await;
    let health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);
    let ok = eventually(Duration::from_secs(5), || async {
        let text = reqwest::get(health.at("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains(r#"health_checks_total{type="http",result="passing"}"#)
            && text.contains("health_check_duration_seconds")
            && text.contains("health_assigned_instances")
            && text.contains(r#"health_instances{status="passing"}"#)
    })
    .await;
    assert!(ok);
}

#[tokio::test]
async fn redis_down_gives_503_without_panic_and_checks_resume() {
    let own = RedisServer::start();
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&own.url(), &p);
    registry
        .register(&instance("web", "w1", server.port(), Some(http_check("/"))))
        .await;
    let health = start(&own.url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);

    own.stop();
    for path in [
        "/v1/summary",
        "/v1/services/web",
        "/v1/services/web/instances/w1",
    ] {
        let started = std::time::Instant::now();
        let response = mcp_testkit::client()
            .get(health.at(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 503, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    let (code, _) = get_json(&health.at("/healthz")).await;
    assert_eq!(code, 200);
    server.set_status(500);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    own.restart();
    let registry = Registry::new(&own.url(), &p);
    assert!(
        wait_status(
            &registry,
            "web",
            "w1",
            HealthStatus::Critical,
            Duration::from_secs(15)
        )
        .await
    );
    let (code, body) = get_json(&health.at("/v1/services/web")).await;
    assert_eq!(code, 200);
    assert_eq!(body["status"], "critical");
}
