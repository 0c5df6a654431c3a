//! Several replicas share the checks: each instance is checked by one
//! replica per interval, and a dead replica's share is taken over at once.

use std::time::{Duration, Instant};

use crate::common::{FakeServer, Registry, http_check, instance, start};
use mcp_testkit::{eventually, prefix, redis};

const INSTANCES: usize = 50;

async fn register_fleet(registry: &Registry, server: &FakeServer) {
    for n in 0..INSTANCES {
        registry
            .register(&instance(
                "fleet",
                &format!("i{n}"),
                server.port(),
                Some(http_check(&format!("/h/{n}"))),
            ))
            .await;
    }
}

fn paths() -> Vec<String> {
    (0..INSTANCES).map(|n| format!("/h/{n}")).collect()
}

/// Hits of each instance after `since`.
fn hits_since(server: &FakeServer, since: Instant) -> Vec<Vec<Instant>> {
    paths()
        .iter()
        .map(|path| {
            server
                .hits(path)
                .into_iter()
                .filter(|hit| *hit >= since)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn two_replicas_check_every_instance_once_per_interval() {
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    register_fleet(&registry, &server).await;
    let _a = start(&redis().url(), &p, &["--replica-id", "a"]).await;
    let _b = start(&redis().url(), &p, &["--replica-id", "b"]).await;
    // Both replicas in the live set.
    assert!(
        eventually(Duration::from_secs(5), || {
            let (url, p) = (redis().url(), p.clone());
            async move {
                let registry = Registry::new(&url, &p);
                let live = registry
                    .raw(&["ZCARD", &format!("{p}:health:replicas")])
                    .await;
                live == redis::Value::Int(2)
            }
        })
        .await
    );
    // Let the membership settle for a couple of intervals, then observe.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let hits = hits_since(&server, since);
    for (n, hits) in hits.iter().enumerate() {
        assert!(
            hits.len() >= 3,
            "instance {n} checked only {} times in 4 intervals",
            hits.len()
        );
        assert!(
            hits.len() <= 5,
            "instance {n} checked {} times in 4 intervals",
            hits.len()
        );
        for pair in hits.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(500),
                "instance {n} checked twice within {gap:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_killed_replicas_share_is_taken_over_within_an_interval() {
    let (server, p) = (FakeServer::start().await, prefix());
    let registry = Registry::new(&redis().url(), &p);
    register_fleet(&registry, &server).await;
    // A long TTL: the dead replica stays in the live set for the whole test,
    // so only the backup path can keep its instances checked.
    let ttl = ["--replica-ttl", "30s"];
    let a = start(&redis().url(), &p, &["--replica-id", "a", ttl[0], ttl[1]]).await;
    let _b = start(&redis().url(), &p, &["--replica-id", "b", ttl[0], ttl[1]]).await;
    let replicas = format!("{p}:health:replicas");
    assert!(
        eventually(Duration::from_secs(5), || {
            let (url, p, replicas) = (redis().url(), p.clone(), replicas.clone());
            async move {
                let registry = Registry::new(&url, &p);
                registry.raw(&["ZCARD", &replicas]).await == redis::Value::Int(2)
            }
        })
        .await
    );
    let settle = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            hits_since(&server, settle).iter().all(|h| !h.is_empty())
        })
        .await
    );

    // Crash `a`: stop it, then put its heartbeat back as if it had never
    // left, as a crashed process leaves it behind.
    a.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let time = registry.raw(&["TIME"]).await;
    let now_ms = match time {
        redis::Value::Array(parts) => {
            let part = |v: &redis::Value| match v {
                redis::Value::BulkString(b) => String::from_utf8(b.clone())
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                other => panic!("{other:?}"),
            };
            part(&parts[0]) * 1000 + part(&parts[1]) / 1000
        }
        other => panic!("{other:?}"),
    };
    registry
        .raw(&["ZADD", &replicas, &now_ms.to_string(), "a"])
        .await;
    let killed = Instant::now();

    // Every instance is checked again within the next slot or so (one
    // interval plus the half-interval backup delay, plus slack).
    let all = eventually(Duration::from_millis(2500), || async {
        hits_since(&server, killed).iter().all(|h| !h.is_empty())
    })
    .await;
    let missing: Vec<usize> = hits_since(&server, killed)
        .iter()
        .enumerate()
        .filter(|(_, h)| h.is_empty())
        .map(|(n, _)| n)
        .collect();
    assert!(all, "instances not checked after the kill: {missing:?}");
    // And they keep being checked once per interval.
    let since = Instant::now();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for (n, hits) in hits_since(&server, since).iter().enumerate() {
        assert!(
            (2..=4).contains(&hits.len()),
            "instance {n}: {} checks in 3 intervals",
            hits.len()
        );
    }
}
