//! Metrics and profiles across real processes: every service exposes the
//! series DESIGN.md names, a path's ids never become labels, and the
//! gateway's CPU profiles are served to admins only when enabled. The
//! processes are started as in `processes`.

use futures_util::{StreamExt as _, stream};
use mcp_testkit::prefix;

use crate::processes::{Process, bearer, gateway, sample};

#[tokio::test]
async fn every_service_exposes_the_metrics_design_md_names() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let config = Process::start("config-svc", &prefix, &[]).await;
    let health = Process::start("health-svc", &prefix, &[]).await;
    let gateway = gateway(
        &prefix,
        &registry,
        &[
            ("RATE_LIMIT_RPS", "1".to_owned()),
            ("RATE_LIMIT_BURST", "1".to_owned()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    // An auth failure, a proxied request, then rate-limited ones.
    let anonymous = client
        .get(gateway.at("/api/v1/registry/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let token = bearer("registry:read");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(gateway.at("/api/v1/registry/services"))
            .header("authorization", &token)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");

    let http = [
        "http_server_requests_total{",
        "http_server_request_duration_seconds_bucket{",
        // Buckets from 100 µs to 10 s.
        r#"le="0.0001"}"#,
        r#"le="10"}"#,
    ];
    let own: [(&Process, &[&str]); 4] = [
        (
            &gateway,
            &[
                "gateway_upstream_requests_total{",
                "gateway_circuit_state{",
                "gateway_rate_limited_total",
                r#"gateway_auth_failures_total{reason=""#,
            ],
        ),
        (
            &registry,
            &[
                "registry_expired_total",
                "registry_protected_services",
                "registry_watchers",
            ],
        ),
        (&config, &["config_watchers"]),
        (&health, &["health_watchers"]),
    ];
    for (process, names) in own {
        // Every service has answered a request (its readiness probe at least).
        reqwest::get(process.at("/healthz")).await.unwrap();
        let metrics = process.metrics().await;
        for name in http.iter().chain(names.iter()) {
            assert!(
                metrics.contains(name),
                "{} lacks {name}:\n{metrics}",
                process.name
            );
        }
        assert!(
            metrics.contains(r#"route="/healthz""#),
            "{}:\n{metrics}",
            process.name
        );
    }
}

#[tokio::test]
async fn a_thousand_requests_to_a_thousand_ids_add_one_series_not_a_thousand() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let gateway = gateway(&prefix, &registry, &[("RATE_LIMIT_RPS", "0".to_owned())]).await;
    let client = reqwest::Client::new();
    let token = bearer("registry:write");
    let statuses: Vec<u16> = stream::iter(0..1000)
        .map(|i| {
            let request = client
                .put(gateway.at(&format!(
                    "/api/v1/registry/services/billing/instances/id-{i}/heartbeat"
                )))
                .header("authorization", &token)
                .send();
            async move { request.await.unwrap().status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|&s| s == statuses[0]),
        "one status for every unknown id: {statuses:?}"
    );

    for (process, route) in [
        (&gateway, "/api/{*rest}"),
        (&registry, "/v1/services/{service}/instances/{id}/heartbeat"),
    ] {
        let metrics = process.metrics().await;
        let series: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("http_server_requests_total{") && l.contains(r#"method="PUT""#)
            })
            .collect();
        assert_eq!(series.len(), 1, "{}: {series:#?}", process.name);
        assert!(
            series[0].contains(&format!(r#"route="{route}""#)),
            "{series:?}"
        );
        assert!(series[0].ends_with(" 1000"), "{series:?}");
        assert!(
            !metrics.contains("id-1"),
            "{}: a raw id leaked into a label",
            process.name
        );
    }
}

#[tokio::test]
async fn cpu_profiles_are_served_to_admins_when_enabled() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let gateway = gateway(
        &prefix,
        &registry,
        &[
            ("PROFILING_ENABLED", "true".to_owned()),
            ("RATE_LIMIT_RPS", "0".to_owned()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let profile = |query: &str, scopes: &str| {
        client
            .get(gateway.at(&format!("/admin/profile?{query}")))
            .header("authorization", bearer(scopes))
            .send()
    };

    let forbidden = profile("seconds=1", "registry:read").await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let bad = profile("seconds=0", "admin").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert!(body.to_string().contains("seconds"), "{body}");

    // Some work to sample while profiling (the sampler counts CPU time).
    let load = {
        let client = client.clone();
        let url = gateway.at("/api/v1/registry/services");
        let token = bearer("registry:read");
        tokio::spawn(async move {
            for _ in 0..2_000 {
                let _ = client
                    .get(&url)
                    .header("authorization", &token)
                    .send()
                    .await;
            }
        })
    };
    let svg = profile("seconds=1", "admin").await.unwrap();
    load.abort();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.contains("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(!svg.contains("no CPU samples"), "the gateway was busy");

    let pprof = profile("seconds=1&format=pprof", "admin").await.unwrap();
    assert_eq!(pprof.status(), 200);
    assert_eq!(pprof.headers()["content-type"], "application/octet-stream");
    assert!(!pprof.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn cpu_profiling_is_off_unless_enabled() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let gateway = gateway(&prefix, &registry, &[]).await;
    let response = reqwest::Client::new()
        .get(gateway.at("/admin/profile?seconds=1"))
        .header("authorization", bearer("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn counters_that_alerts_read_are_at_zero_right_after_start() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let config = Process::start("config-svc", &prefix, &[]).await;
    let health = Process::start("health-svc", &prefix, &[]).await;
    let gateway = gateway(&prefix, &registry, &[]).await;

    let mut expected: Vec<(&Process, String)> = [
        "gateway_rate_limited_total",
        "gateway_rate_limit_fail_open_total",
        "gateway_egress_refused_total",
    ]
    .into_iter()
    .map(|series| (&gateway, series.to_owned()))
    .collect();
    for reason in [
        "missing",
        "malformed",
        "signature",
        "algorithm",
        "unknown_key",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "claims",
    ] {
        expected.push((
            &gateway,
            format!(r#"gateway_auth_failures_total{{reason="{reason}"}}"#),
        ));
    }
    for result in ["ok", "conflict", "rejected", "error"] {
        expected.push((
            &config,
            format!(r#"config_writes_total{{result="{result}"}}"#),
        ));
    }
    for kind in ["http", "tcp"] {
        for result in ["passing", "warning", "critical"] {
            expected.push((
                &health,
                format!(r#"health_checks_total{{type="{kind}",result="{result}"}}"#),
            ));
        }
    }
    for (process, series) in expected {
        let metrics = process.metrics().await;
        assert_eq!(
            sample(&metrics, &series),
            0.0,
            "{} should list {series} at 0:\n{metrics}",
            process.name
        );
        assert!(
            metrics.lines().any(|line| line.starts_with(&series)),
            "{} lacks {series}:\n{metrics}",
            process.name
        );
    }
}
