//! The registry's lifecycle against a real redis-server: register, replace,
//! list and filter, heartbeat, deregister, expiry, statuses and metrics.

use std::time::Duration;

use crate::common::{body, client, get, heartbeat, ids, register, replica};
use mcp_testkit::{eventually, prefix, redis};
use serde_json::json;

#[tokio::test]
async fn register_replace_list_filter_heartbeat_deregister() {
    let app = replica(&redis().url(), &prefix(), &[]).await;

    // Register: 201 with the instance as stored.
    let (status, first) = register(
        &app,
        "echo",
        "echo-1",
        json!({"host": "127.0.0.7", "port": 9000, "tags": ["v2", "canary"],
               "metadata": {"zone": "a"}, "ttl_seconds": 30}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(first["id"], "echo-1");
    assert_eq!(first["service"], "echo");
    assert_eq!(
        first["status"], "passing",
        "no check: the lease alone decides"
    );
    assert_eq!(first["ttl_seconds"], 30);
    assert!(first["expires_at"].is_string());
    assert!(first["registered_at"].is_string());
    let rev1 = first["revision"].as_u64().unwrap();

    // Replace: 200, a new revision.
    let (status, replaced) = register(
        &app,
        "echo",
        "echo-1",
        json!({"host": "127.0.0.7", "port": 9001, "tags": ["v2"], "metadata": {"zone": "a"}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(replaced["port"], 9001);
    assert!(replaced["revision"].as_u64().unwrap() > rev1);
    assert_eq!(replaced["ttl_seconds"], 30, "ttl defaults to 30 s");

    let (status, _) = register(
        &app,
        "echo",
        "echo-2",
        json!({"host": "localhost", "port": 9000, "tags": ["v1"], "metadata": {"zone": "b"}}),
    )
    .await;
    assert_eq!(status, 201);

    // List, with the revision in the body and the header.
    let response = client()
        .get(app.at("/v1/services/echo/instances"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header: u64 = response.headers()["x-mcp-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let listed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(listed["service"], "echo");
    assert_eq!(listed["revision"].as_u64().unwrap(), header);
    assert_eq!(ids(&app, "echo").await, ["echo-1", "echo-2"]);
    assert!(listed["instances"][0]["expires_at"].is_string());

    // Filters: tag, metadata, both, and an unknown service.
    let filtered = |query: &'static str| {
        let app = &app;
        async move {
            let (status, body) = get(app, &format!("/v1/services/echo/instances?{query}")).await;
            assert_eq!(status, 200, "{query}");
            body["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(filtered("tag=v2").await, ["echo-1"]);
    assert_eq!(filtered("tag=v2&tag=v1").await, Vec::<String>::new());
    assert_eq!(filtered("meta.zone=b").await, ["echo-2"]);
    assert_eq!(filtered("tag=v1&meta.zone=b").await, ["echo-2"]);
    assert_eq!(filtered("healthy=true").await, ["echo-1", "echo-2"]);
    assert!(ids(&app, "nobody").await.is_empty());

    // The services listing.
    let (status, services) = get(&app, "/v1/services").await;
    assert_eq!(status, 200);
    assert_eq!(
        services["services"],
        json!([{"name": "echo", "instances": 2, "passing": 2, "protected": false}])
    );

    // Heartbeat: 200 with a new expires_at.
    let response = client()
        .put(app.at("/v1/services/echo/instances/echo-1/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let beat: serde_json::Value = response.json().await.unwrap();
    assert_eq!(beat["id"], "echo-1");
    assert!(beat["expires_at"].as_str().unwrap() >= replaced["expires_at"].as_str().unwrap());

    // Deregister: 204, then 404 for it and its heartbeat.
    let delete = |id: &'static str| {
        let url = app.at(&format!("/v1/services/echo/instances/{id}"));
        async move { client().delete(url).send().await.unwrap().status() }
    };
    assert_eq!(delete("echo-1").await, 204);
    assert_eq!(delete("echo-1").await, 404);
    assert_eq!(heartbeat(&app, "echo", "echo-1").await, 404);
    assert_eq!(ids(&app, "echo").await, ["echo-2"]);
    assert_eq!(delete("echo-2").await, 204);
    let (_, services) = get(&app, "/v1/services").await;
    assert_eq!(services["services"], json!([]), "an empty service is gone");
}

#[tokio::test]
async fn heartbeat_after_the_lease_ran_out_is_404() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    assert_eq!(register(&app, "short", "s-1", body(1)).await.0, 201);
    assert_eq!(heartbeat(&app, "short", "s-1").await, 200);
    let gone = eventually(Duration::from_secs(5), || async {
        ids(&app, "short").await.is_empty()
    })
    .await;
    assert!(gone, "a 1 s lease without heartbeats must run out");
    assert_eq!(heartbeat(&app, "short", "s-1").await, 404);
    // Registering again brings it back.
    assert_eq!(register(&app, "short", "s-1", body(30)).await.0, 201);
}

#[tokio::test]
async fn a_heartbeat_after_the_deadline_is_404_even_before_the_reaper_runs() {
    // The reaper is slowed down so the instance is still stored, lease run out.
    let app = replica(&redis().url(), &prefix(), &["--reap-interval", "30s"]).await;
    assert_eq!(register(&app, "late", "l-1", body(1)).await.0, 201);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        ids(&app, "late").await,
        vec!["l-1".to_owned()],
        "not reaped yet"
    );
    assert_eq!(
        heartbeat(&app, "late", "l-1").await,
        404,
        "an expired lease is not renewed"
    );
}

#[tokio::test]
async fn heartbeats_keep_an_instance_past_its_ttl() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    assert_eq!(register(&app, "kept", "k-1", body(1)).await.0, 201);
    for _ in 0..8 {
        assert_eq!(heartbeat(&app, "kept", "k-1").await, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(ids(&app, "kept").await, ["k-1"]);
}

#[tokio::test]
async fn a_checked_instance_is_unknown_until_health_svc_writes_a_status() {
    let prefix = prefix();
    let app = replica(&redis().url(), &prefix, &[]).await;
    let checked = json!({"host": "127.0.0.1", "port": 9000,
        "check": {"type": "http", "path": "/health", "interval_seconds": 5, "timeout_ms": 1000}});
    let (status, instance) = register(&app, "api", "api-1", checked.clone()).await;
    assert_eq!(status, 201);
    assert_eq!(instance["status"], "unknown");
    assert_eq!(instance["check"]["type"], "http");
    let (_, listed) = get(&app, "/v1/services/api/instances?healthy=true").await;
    assert_eq!(listed["instances"], json!([]), "unknown is not healthy");

    // health-svc rewrites the status prefix in place, through the registry's
    // shared writer (a `health` event with it, as every change has: the
    // replicas' in-memory views follow those events).
    let redis = mcp_shared::Redis::new(&redis().url(), &prefix, Duration::from_secs(2)).unwrap();
    let log = mcp_shared::events::EventLog::new(redis.clone(), "reg", 10_000);
    let record = serde_json::to_string(&mcp_shared::registry::HealthRecord {
        status: mcp_shared::registry::HealthStatus::Passing,
        output: "HTTP 200".into(),
        last_checked_at: "2026-01-01T00:00:00Z".into(),
        consecutive_failures: 0,
        consecutive_successes: 1,
        critical_since_ms: None,
    })
    .unwrap();
    let recorded = mcp_shared::registry::writes::RegistryWrites::new(redis, log)
        .record(
            "api",
            "api-1",
            &record,
            Some(mcp_shared::registry::HealthStatus::Passing),
        )
        .await
        .unwrap();
    assert_eq!(recorded, mcp_shared::registry::writes::Recorded::Changed);
    assert_eq!(ids(&app, "api").await, ["api-1"]);
    let (_, listed) = get(&app, "/v1/services/api/instances?healthy=true").await;
    assert_eq!(listed["instances"][0]["status"], "passing");
    let (_, services) = get(&app, "/v1/services").await;
    assert_eq!(services["services"][0]["passing"], 1);

    // Registering again keeps health-svc's verdict.
    let (status, again) = register(&app, "api", "api-1", checked).await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "passing");
}

#[tokio::test]
async fn instance_counts_reach_the_metrics() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let service = format!("metered-{}", &prefix()[1..7]);
    for id in ["m-1", "m-2"] {
        assert_eq!(register(&app, &service, id, body(30)).await.0, 201);
    }
    let line = format!(r#"registry_instances{{service="{service}",status="passing"}} 2"#);
    let seen = eventually(Duration::from_secs(5), || async {
        let text = client()
            .get(app.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains(&line) && text.contains("registry_expired_total")
    })
    .await;
    assert!(seen, "expected {line}");
}

#[tokio::test]
async fn null_optional_fields_count_as_absent() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let (status, instance) = register(
        &app,
        "nulls",
        "n-1",
        json!({"host": "127.0.0.1", "port": 1, "tags": null, "metadata": null,
               "ttl_seconds": null, "check": null}),
    )
    .await;
    assert_eq!(status, 201, "{instance}");
    assert_eq!(instance["ttl_seconds"], 30);
    assert_eq!(instance["tags"], json!([]));
}
