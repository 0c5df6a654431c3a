//! Lease expiry with several replicas sharing one Redis.

use std::time::Duration;

use crate::common::{Watch, body, ids, keep_alive, register, replica};
use mcp_testkit::{eventually, prefix, redis};

#[tokio::test]
async fn expired_lease_emits_one_event_with_two_replicas() {
    let prefix = prefix();
    let a = replica(&redis().url(), &prefix, &[]).await;
    let b = replica(&redis().url(), &prefix, &[]).await;
    let mut watch = Watch::open(&b, "?service=lease", None).await;

    let (status, instance) = register(&a, "lease", "l-1", body(1)).await;
    assert_eq!(status, 201);
    let registered = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(registered.event, "registered");
    assert_eq!(registered.id, instance["revision"].as_u64());

    let expired = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(expired.event, "expired");
    assert_eq!(expired.id, Some(registered.id.unwrap() + 1));
    assert_eq!(
        expired.json(),
        serde_json::json!({"service": "lease", "id": "l-1"})
    );
    assert!(ids(&a, "lease").await.is_empty());
    assert!(ids(&b, "lease").await.is_empty());

    // Let both reapers run several more passes, then mark the stream: the
    // marker must be the very next event, so nothing expired twice.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(register(&b, "lease", "marker", body(30)).await.0, 201);
    let next = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(next.event, "registered");
    assert_eq!(next.json()["id"], "marker");
    assert_eq!(next.id, Some(expired.id.unwrap() + 1));
}

#[tokio::test]
async fn a_lease_expires_although_the_replica_that_took_it_is_gone() {
    let prefix = prefix();
    let a = replica(&redis().url(), &prefix, &[]).await;
    let b = replica(&redis().url(), &prefix, &[]).await;
    assert_eq!(register(&a, "orphan", "o-1", body(1)).await.0, 201);
    a.kill();
    let gone = eventually(Duration::from_secs(5), || async {
        ids(&b, "orphan").await.is_empty()
    })
    .await;
    assert!(gone);
}

#[tokio::test]
async fn one_instance_stopping_alone_is_removed() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    for id in ["a", "b", "c", "d"] {
        assert_eq!(register(&app, "solo", id, body(1)).await.0, 201);
    }
    let beating = keep_alive(&app, "solo", &["a", "b", "c"]);
    let removed = eventually(Duration::from_secs(5), || async {
        ids(&app, "solo").await == ["a", "b", "c"]
    })
    .await;
    beating.cancel();
    assert!(removed, "the one that stopped must expire; the others stay");
}
