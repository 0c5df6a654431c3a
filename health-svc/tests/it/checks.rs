//! Checks against real HTTP servers and ports: statuses, hysteresis,
//! timeouts, and what lands in the registry's Redis keys.

use std::time::Duration;

use crate::common::{
    self, FakeServer, Registry, closed_port, http_check, instance, start, tcp_check, wait_status,
};
use mcp_shared::registry::{HealthStatus, Instance};
use mcp_testkit::{eventually, prefix, redis};

const WITHIN: Duration = Duration::from_secs(8);

#[tokio::test]
async fn http_200_becomes_passing() {
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
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);
    assert!(!server.hits("/health").is_empty());
}

#[tokio::test]
async fn http_500_is_critical_after_two_failures_then_passing_again() {
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
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);

    server.set_status(500);
    let failing_since = server.hits("/health").len();
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Critical, WITHIN).await);
    // Hysteresis: it took at least two failing checks.
    assert!(server.hits("/health").len() >= failing_since + 2);
    // The stored instance (what `healthy=true` discovery reads) says critical,
    // and its JSON is still intact (tags stay an array).
    let json = registry.stored_json("web", "w1").await.unwrap();
    assert!(
        json.starts_with(r#"{"status":"critical","revision":"#),
        "{json}"
    );
    assert!(json.contains(r#""tags":[]"#), "{json}");
    let events = registry.events().await;
    let health: Vec<_> = events.iter().filter(|(kind, _)| kind == "health").collect();
    assert_eq!(health.len(), 2, "passing then critical: {events:?}");
    let data: serde_json::Value = serde_json::from_str(&health[1].1).unwrap();
    assert_eq!(data["instance"]["status"], "critical");
    assert_eq!(data["id"], "w1");
    // The event's revision is the instance's new revision.
    let stored: Instance = registry.stored("web", "w1").await.unwrap();
    assert_eq!(data["instance"]["revision"], stored.revision);

    server.set_status(200);
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);
}

#[tokio::test]
async fn http_429_gives_warning() {
    let (server, p) = (FakeServer::start().await, prefix());
    server.set_status(429);
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance("web", "w1", server.port(), Some(http_check("/"))))
        .await;
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Warning, WITHIN).await);
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_fails() {
    let (server, p) = (FakeServer::start().await, prefix());
    server.set_status(302);
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance("web", "w1", server.port(), Some(http_check("/"))))
        .await;
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Critical, WITHIN).await);
}

#[tokio::test]
async fn closed_port_is_critical_through_tcp_and_http() {
    let p = prefix();
    let port = closed_port();
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance("svc", "tcp", port, Some(tcp_check())))
        .await;
    registry
        .register(&instance("svc", "http", port, Some(http_check("/health"))))
        .await;
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "svc", "tcp", HealthStatus::Critical, WITHIN).await);
    assert!(wait_status(&registry, "svc", "http", HealthStatus::Critical, WITHIN).await);
}

#[tokio::test]
async fn open_port_passes_the_tcp_check() {
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance("svc", "tcp", server.port(), Some(tcp_check())))
        .await;
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "svc", "tcp", HealthStatus::Passing, WITHIN).await);
}

#[tokio::test]
async fn slow_server_past_the_timeout_is_critical() {
    let (server, p) = (FakeServer::start().await, prefix());
    server.set_delay(Duration::from_millis(700));
    let registry = Registry::new(&redis().url(), &p);
    registry
        .register(&instance(
            "web",
            "slow",
            server.port(),
            Some(http_check("/")),
        ))
        .await;
    let health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "slow", HealthStatus::Critical, WITHIN).await);
    let (_, body) = common::get_json(&health.at("/v1/services/web")).await;
    let output = body["instances"][0]["output"].as_str().unwrap();
    assert!(output.contains("timed out"), "{output}");
}

#[tokio::test]
async fn critical_instance_is_deregistered_after_its_deadline() {
    let p = prefix();
    let registry = Registry::new(&redis().url(), &p);
    let mut check = tcp_check();
    check.deregister_critical_after_seconds = Some(2);
    registry
        .register(&instance("svc", "dead", closed_port(), Some(check)))
        .await;
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "svc", "dead", HealthStatus::Critical, WITHIN).await);
    let removed = eventually(Duration::from_secs(10), || {
        let url = redis().url();
        let p = p.clone();
        async move {
            let registry = Registry::new(&url, &p);
            registry.stored("svc", "dead").await.is_none()
        }
    })
    .await;
    assert!(removed);
    // Removed like a DELETE: lease, service, check result gone; one event.
    let lease = registry
        .raw(&["ZSCORE", &format!("{p}:reg:leases"), "svc/dead"])
        .await;
    assert_eq!(lease, redis::Value::Nil);
    let member = registry
        .raw(&["SISMEMBER", &format!("{p}:reg:services"), "svc"])
        .await;
    assert_eq!(member, redis::Value::Int(0));
    let record = registry
        .raw(&["HGET", &format!("{p}:health:svc:svc"), "dead"])
        .await;
    assert_eq!(record, redis::Value::Nil);
    let events = registry.events().await;
    assert_eq!(
        events.iter().filter(|(k, _)| k == "deregistered").count(),
        1,
        "{events:?}"
    );
}

#[tokio::test]
async fn a_deregistered_instance_is_no_longer_probed() {
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    let mut check = http_check("/gone");
    check.deregister_critical_after_seconds = Some(1);
    registry
        .register(&instance("web", "w1", server.port(), Some(check)))
        .await;
    let _health = start(&redis().url(), &p, &[]).await;
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, WITHIN).await);
    server.set_status(503);
    let removed = eventually(Duration::from_secs(10), || {
        let url = redis().url();
        let p = p.clone();
        async move {
            let registry = Registry::new(&url, &p);
            registry.stored("web", "w1").await.is_none()
        }
    })
    .await;
    assert!(removed);
    let hits = server.hits("/gone").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.hits("/gone").len(), hits, "probed after removal");
}

/// The output health-svc shows for `service`'s first instance, once its status is `status`.
async fn output_once(
    health: &mcp_testkit::TestService,
    registry: &Registry,
    service: &str,
    status: HealthStatus,
) -> String {
    assert!(wait_status(registry, service, "i1", status, WITHIN).await);
    let (_, body) = common::get_json(&health.at(&format!("/v1/services/{service}"))).await;
    body["instances"][0]["output"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn probes_never_reach_protected_link_local_or_outside_addresses() {
    let p = prefix();
    // A real server plays config-svc holding a secret: health-svc is told it
    // is protected (EGRESS_DENY_ADDRS), as compose and k8s tell it.
    let secret = FakeServer::start().await;
    let protected = format!("127.0.0.1:{}", secret.port());
    let registry = Registry::new(&redis().url(), &p);
    let health = start(&redis().url(), &p, &["--egress-deny-addrs", &protected]).await;

    // A check aimed at the protected endpoint's secret path: never sent.
    registry
        .register(&instance(
            "ssrf",
            "i1",
            secret.port(),
            Some(http_check("/v1/namespaces/prod/keys/db-password")),
        ))
        .await;
    let output = output_once(&health, &registry, "ssrf", HealthStatus::Critical).await;
    assert!(output.starts_with("not probed:"), "{output}");
    assert!(output.contains("EGRESS_DENY_ADDRS"), "{output}");
    assert!(
        secret
            .hits("/v1/namespaces/prod/keys/db-password")
            .is_empty()
    );

    // Redis, health-svc itself, link-local and (in tests) anything outside
    // loopback or any host name: refused before any connect or DNS lookup.
    let redis_port = redis().port();
    let own_port = health.addr.port();
    let refused: [(&str, &str, u16, &str); 5] = [
        ("redis", "127.0.0.1", redis_port, "Redis"),
        ("itself", "127.0.0.1", own_port, "health-svc"),
        ("metadata", "169.254.169.254", 80, "link-local"),
        ("outside", "10.0.0.7", 9000, "EGRESS_ALLOW_CIDRS"),
        (
            "named",
            "db.internal.invalid",
            5432,
            "EGRESS_ALLOW_HOSTNAMES",
        ),
    ];
    for (service, host, port, reason) in refused {
        let mut target = instance(service, "i1", port, Some(tcp_check()));
        target.host = host.to_owned();
        registry.register(&target).await;
        let output = output_once(&health, &registry, service, HealthStatus::Critical).await;
        assert!(output.starts_with("not probed:"), "{service}: {output}");
        assert!(output.contains(reason), "{service}: {output}");
    }

    // A loopback instance that is none of these is probed as usual.
    let fine = FakeServer::start().await;
    registry
        .register(&instance(
            "fine",
            "i1",
            fine.port(),
            Some(http_check("/health")),
        ))
        .await;
    assert!(wait_status(&registry, "fine", "i1", HealthStatus::Passing, WITHIN).await);
}
