//! A registry-svc replica killed under load (`TestService::kill`: its task
//! aborted at once, listener gone, connections dropped).
//!
//! The gateway's contract (gateway/README-section.md, `proxy.rs`): after a
//! *connect error* an idempotent request without a body is retried once on
//! another instance; any other failure is answered (502 when the exchange
//! broke) and not retried. So what is asserted:
//! - every bodiless idempotent request (GET, bodiless PUT heartbeat) that
//!   starts at least [`SETTLE`] after the kill succeeds: the dead replica
//!   refuses connections and the retry sends it to the other replica. The
//!   breaker threshold is set out of reach, so the dead replica keeps being
//!   picked and the retry alone has to carry it (with the default breaker it
//!   opens after 5 connect errors and only its trial requests need the retry);
//! - a request caught by the kill itself (in flight on the dying replica, or
//!   sent on one of its pooled connections as it closes) may fail, but only
//!   with a 502 problem, and only if it started before `kill + SETTLE`.
//!
//! And leases keep expiring on time: the survivor's reaper takes over.

use std::time::{Duration, Instant};

use mcp_testkit::{eventually, prefix, redis};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::{
    self, ControlPlane, UNUSED, admin_instance, client, collect, load, sample, sse_events, token,
};

/// How long after the kill a request may still be caught by it.
const SETTLE: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_registry_replica_leaves_its_requests_to_the_other() {
    let (url, prefix) = (redis().url(), prefix());
    let doomed = common::registry(&url, &prefix, &[]).await;
    let survivor = common::registry(&url, &prefix, &[]).await;
    let doomed_url = doomed.service.url.clone();
    let both = format!("{},{}", doomed.service.url, survivor.service.url);
    let gateway = common::gateway(
        &url,
        &prefix,
        ControlPlane {
            registry: &both,
            config: UNUSED,
            health: UNUSED,
        },
        // The dead replica's circuit stays closed, so every request that
        // picks it after the kill relies on the retry alone.
        &["--cb-failure-threshold", "10000"],
    )
    .await;
    let bearer = token("registry:read registry:write");
    let http = client();
    let registered = http
        .put(gateway.at("/api/v1/registry/services/echo/instances/echo-1"))
        .bearer_auth(&bearer)
        .json(&json!({"host": "127.0.0.1", "port": 9000, "ttl_seconds": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);

    let stop = CancellationToken::new();
    let targets = [
        (
            "GET /api/v1/registry/services",
            "GET",
            "/api/v1/registry/services",
        ),
        (
            "GET /api/v1/registry/services/echo/instances",
            "GET",
            "/api/v1/registry/services/echo/instances",
        ),
        (
            "PUT /api/v1/registry/services/echo/instances/echo-1/heartbeat",
            "PUT",
            "/api/v1/registry/services/echo/instances/echo-1/heartbeat",
        ),
    ];
    let loops: Vec<_> = targets
        .into_iter()
        .map(|(target, method, path)| {
            let (http, url, bearer) = (client(), gateway.at(path), bearer.clone());
            load(2_000, Duration::from_millis(5), stop.clone(), move |_| {
                let request = match method {
                    "GET" => http.get(&url),
                    _ => http.put(&url),
                }
                .bearer_auth(&bearer);
                async move { vec![sample(target, request).await.0] }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    doomed.service.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.cancel();
    let samples = collect(loops).await;

    let settled = killed + SETTLE;
    let after: Vec<_> = samples.iter().filter(|s| s.started >= settled).collect();
    assert!(
        after.len() >= 50,
        "only {} requests after the kill",
        after.len()
    );
    let failed: Vec<_> = after.iter().filter(|s| !s.ok()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests after the kill failed, e.g. {} {:?} {}",
        failed.len(),
        after.len(),
        failed[0].target,
        failed[0].status,
        failed[0].body
    );
    for s in samples.iter().filter(|s| s.started < settled && !s.ok()) {
        assert!(
            s.started >= killed - Duration::from_millis(100)
                && s.status == Some(502)
                && s.problem_json,
            "{} {:?} before the kill settled: {:?} {}",
            s.target,
            s.started.checked_duration_since(killed),
            s.status,
            s.body
        );
    }
    eprintln!(
        "{} requests, {} failed while the kill happened",
        samples.len(),
        samples.iter().filter(|s| !s.ok()).count()
    );
    // The retry path was taken: the gateway kept trying the dead replica.
    let dead = admin_instance(&gateway, "registry", &doomed_url)
        .await
        .unwrap();
    assert!(
        dead["consecutive_failures"].as_u64() >= Some(10),
        "the gateway hardly tried the killed replica: {dead}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_still_expire_on_time_after_a_replica_is_killed() {
    let (url, prefix) = (redis().url(), prefix());
    let doomed = common::registry(&url, &prefix, &[]).await;
    let survivor = common::registry(&url, &prefix, &[]).await;
    let stop = CancellationToken::new();
    let mut events = sse_events(survivor.at("/v1/watch?service=lease"), stop.clone()).await;
    // Wait for the watch to be live before the registration it must see.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let registered_at = Instant::now();
    assert_eq!(
        common::register(&doomed.service.url, "lease", "l-1", 9000, 1).await,
        201
    );
    doomed.service.kill();

    let mut expired = Vec::new();
    let deadline = registered_at + Duration::from_secs(4);
    while let Ok(Some((kind, data))) = tokio::time::timeout_at(deadline.into(), events.recv()).await
    {
        if kind == "expired" {
            expired.push((registered_at.elapsed(), data));
        }
    }
    stop.cancel();
    assert_eq!(expired.len(), 1, "expired events: {expired:?}");
    let (after, data) = &expired[0];
    assert_eq!(data["id"], "l-1");
    assert!(
        *after <= Duration::from_secs(2),
        "a 1 s lease expired only after {after:?}"
    );
    let gone = eventually(Duration::from_secs(1), || async {
        let listed: serde_json::Value = client()
            .get(survivor.at("/v1/services/lease/instances"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or_default();
        listed["instances"].as_array().is_some_and(|a| a.is_empty())
    })
    .await;
    assert!(gone, "the expired instance is still listed");
}
