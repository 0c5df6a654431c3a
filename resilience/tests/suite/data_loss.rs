//! Redis loses its data (`FLUSHALL`, as a failover to an empty replica
//! would) under running services: every follower of an event stream notices
//! the epoch change within 2 s and reloads, SSE watchers get `reset`, and a
//! write for an instance that vanished recreates nothing.
//!
//! Each test runs its own redis-server: `FLUSHALL` empties every prefix.

use std::time::{Duration, Instant};

use mcp_shared::{
    Redis,
    events::EventLog,
    registry::{self, HealthRecord, HealthStatus},
};
use mcp_testkit::{RedisServer, eventually, prefix};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::{
    self, ControlPlane, UNUSED, Upstream, client, register, sse_events, token, wait_routable,
};

/// The contract: followers notice lost data and serve the new data within this.
const NOTICE_WITHIN: Duration = Duration::from_secs(2);

/// Wait (bounded) for an SSE event of `kind`; the events before it are skipped.
async fn next_of_kind(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Value)>,
    kind: &str,
    within: Duration,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some((k, data))) if k == kind => return Some(data),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// `GET /svc/{service}/ping` through the gateway: the status and the upstream that answered.
async fn through_gateway(gateway: &common::Watched, service: &str) -> (u16, Value) {
    let response = client()
        .get(gateway.at(&format!("/svc/{service}/ping")))
        .bearer_auth(token("admin"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_and_watchers_follow_a_flushed_redis() {
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), prefix());
    let registry = common::registry(&url, &prefix, &[]).await;
    let gateway = common::gateway(
        &url,
        &prefix,
        ControlPlane {
            registry: &registry.service.url,
            config: UNUSED,
            health: UNUSED,
        },
        &[],
    )
    .await;
    let old = Upstream::echo("old").await;
    let fresh = Upstream::echo("fresh").await;
    // A history of 3 revisions before the loss.
    for id in ["old-1", "old-2", "old-3"] {
        assert_eq!(
            register(&registry.service.url, "old", id, old.addr.port(), 60).await,
            201
        );
    }
    assert!(wait_routable(&gateway, "old", "old-1").await);
    let stop = CancellationToken::new();
    let mut watch = sse_events(registry.at("/v1/watch"), stop.clone()).await;
    // The watch may not follow the feed yet when it answers: register until it sees one
    // (bounded), so the reset below is not a race with the watch's opening.
    let mut live = false;
    let mut old_revisions = 3;
    for n in 4..14 {
        old_revisions = n;
        let id = format!("old-{n}");
        assert_eq!(
            register(&registry.service.url, "old", &id, old.addr.port(), 60).await,
            201
        );
        if next_of_kind(&mut watch, "registered", Duration::from_millis(500))
            .await
            .is_some()
        {
            live = true;
            break;
        }
    }
    assert!(live, "the watch never saw a registration");

    assert_eq!(server.command(&["FLUSHALL"]).trim(), "OK");
    // More new revisions than the old history had: the new history
    // overtakes the old revision, the case a revision comparison alone misses.
    let services: Vec<String> = (0..=old_revisions).map(|n| format!("new{n}")).collect();
    for service in &services {
        assert_eq!(
            register(&registry.service.url, service, "n-1", fresh.addr.port(), 60).await,
            201
        );
    }
    let registered = Instant::now();

    let reset = next_of_kind(&mut watch, "reset", NOTICE_WITHIN).await;
    assert!(reset.is_some(), "no reset on the registry watch");
    assert!(reset.unwrap()["revision"].is_u64());

    let routed = eventually(NOTICE_WITHIN, || async {
        for service in &services {
            let (status, body) = through_gateway(&gateway, service).await;
            if status != 200 || body["upstream"] != "fresh" {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        routed,
        "services registered after FLUSHALL not all routed within 2 s ({:?} after): {:?}",
        registered.elapsed(),
        through_gateway(&gateway, &services[0]).await
    );
    // The old service is gone from the table too (no ghost routes).
    assert_eq!(through_gateway(&gateway, "old").await.0, 404);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_catalog_checks_an_instance_registered_after_a_flush() {
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), prefix());
    let registry = common::registry(&url, &prefix, &[]).await;
    let _health = common::health(&url, &prefix).await;
    let checked = Upstream::echo("checked").await;
    let with_check = |port: u16| {
        json!({"host": "127.0.0.1", "port": port, "ttl_seconds": 60,
               "check": {"type": "http", "path": "/health", "interval_seconds": 1, "timeout_ms": 500}})
    };
    let status_of = |service: &'static str, id: &'static str| {
        let url = registry.at(&format!("/v1/services/{service}/instances"));
        async move {
            let body: Value = client().get(url).send().await.ok()?.json().await.ok()?;
            body["instances"]
                .as_array()?
                .iter()
                .find(|i| i["id"] == id)
                .map(|i| i["status"].as_str().unwrap_or_default().to_owned())
        }
    };
    let put = |service: &str, id: &str| {
        client()
            .put(registry.at(&format!("/v1/services/{service}/instances/{id}")))
            .json(&with_check(checked.addr.port()))
            .send()
    };
    assert_eq!(put("hc-old", "o-1").await.unwrap().status(), 201);
    assert!(
        eventually(Duration::from_secs(10), || async {
            status_of("hc-old", "o-1").await.as_deref() == Some("passing")
        })
        .await,
        "the instance before the flush was never checked: {:?}",
        status_of("hc-old", "o-1").await
    );

    assert_eq!(server.command(&["FLUSHALL"]).trim(), "OK");
    assert_eq!(put("hc-new", "n-1").await.unwrap().status(), 201);
    // Reload (≤ 2 s) plus one check interval (1 s) and the check itself.
    assert!(
        eventually(Duration::from_secs(5), || async {
            status_of("hc-new", "n-1").await.as_deref() == Some("passing")
        })
        .await,
        "health-svc's catalog did not pick up the registration after FLUSHALL"
    );
    // The flushed instance was not brought back by a late check result.
    let keys = server.keys(&prefix);
    assert!(
        keys.iter().all(|k| !k.contains("hc-old")),
        "a flushed instance came back: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_for_a_flushed_instance_recreate_nothing() {
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), prefix());
    let registry = common::registry(&url, &prefix, &[]).await;
    assert_eq!(
        register(&registry.service.url, "gone", "g-1", 9, 60).await,
        201
    );
    assert_eq!(server.command(&["FLUSHALL"]).trim(), "OK");
    let before = server.snapshot(&prefix);

    // A heartbeat for the vanished instance: 404 problem, no lease back.
    let response = client()
        .put(registry.at("/v1/services/gone/instances/g-1/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(server.snapshot(&prefix), before);

    // A check result for it (health-svc's write path): nothing kept, no
    // partial instance, no event.
    let redis = Redis::new(&url, &prefix, Duration::from_secs(1)).unwrap();
    let store = health_svc::store::Store::new(EventLog::new(redis, registry::LOG_NAME, 1_000));
    let record = HealthRecord {
        status: HealthStatus::Passing,
        output: "200".to_owned(),
        last_checked_at: "2025-01-01T00:00:00Z".to_owned(),
        consecutive_failures: 0,
        consecutive_successes: 1,
        critical_since_ms: None,
    };
    let outcome = store
        .record("gone", "g-1", &record, Some(HealthStatus::Passing))
        .await
        .unwrap();
    assert_eq!(outcome, health_svc::store::Recorded::Gone);
    assert_eq!(server.snapshot(&prefix), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_watcher_gets_reset_after_a_flush() {
    let server = RedisServer::start();
    let (url, prefix) = (server.url(), prefix());
    let config = common::config(&url, &prefix).await;
    let put = |value: i64| {
        client()
            .put(config.at("/v1/namespaces/dl/keys/k"))
            .json(&json!({ "value": value }))
            .send()
    };
    assert!(put(1).await.unwrap().status().is_success());
    let stop = CancellationToken::new();
    let mut watch = sse_events(config.at("/v1/watch?namespace=dl"), stop.clone()).await;
    // The watch may not follow the feed yet when it answers: write until it sees a write
    // (bounded), so a write made before it subscribed cannot be waited for.
    let mut live = false;
    for value in 2..12 {
        assert!(put(value).await.unwrap().status().is_success());
        if next_of_kind(&mut watch, "put", Duration::from_millis(500))
            .await
            .is_some()
        {
            live = true;
            break;
        }
    }
    assert!(live, "the watch never saw a write");

    assert_eq!(server.command(&["FLUSHALL"]).trim(), "OK");
    let reset = next_of_kind(&mut watch, "reset", NOTICE_WITHIN).await;
    assert!(reset.is_some(), "no reset on the config watch");
    // The watch goes on in the new history.
    assert!(put(3).await.unwrap().status().is_success());
    let next = next_of_kind(&mut watch, "put", Duration::from_secs(5)).await;
    assert_eq!(next.unwrap()["value"], 3);
    stop.cancel();
}
