//! The SSE watch: resume with `Last-Event-ID` without loss or repeats,
//! `reset` when the stream no longer holds the asked-for revision.

use std::time::Duration;

use crate::common::{Watch, body, client, register, replica};
use mcp_testkit::{prefix, redis};

#[tokio::test]
async fn reconnecting_with_last_event_id_gets_exactly_the_missed_events_in_order() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let mut watch = Watch::open(&app, "", None).await;
    assert_eq!(register(&app, "svc", "first", body(30)).await.0, 201);
    let seen = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(seen.event, "registered");
    let last = seen.id.unwrap();
    drop(watch);

    // 20 changes while disconnected: registrations, an update, a removal.
    for i in 0..18 {
        assert_eq!(
            register(&app, "svc", &format!("i-{i}"), body(30)).await.0,
            201
        );
    }
    assert_eq!(register(&app, "svc", "i-0", body(60)).await.0, 200);
    let deleted = client()
        .delete(app.at("/v1/services/svc/instances/i-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let mut watch = Watch::open(&app, "", Some(last)).await;
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(watch.next(Duration::from_secs(5)).await.unwrap());
    }
    let revisions: Vec<u64> = got.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(revisions, (last + 1..=last + 20).collect::<Vec<_>>());
    for (i, event) in got[..18].iter().enumerate() {
        assert_eq!(event.event, "registered");
        assert_eq!(event.json()["id"], format!("i-{i}"));
        assert_eq!(event.json()["instance"]["revision"], event.id.unwrap());
    }
    assert_eq!(got[18].event, "updated");
    assert_eq!(got[19].event, "deregistered");
    assert_eq!(
        got[19].json(),
        serde_json::json!({"service": "svc", "id": "i-1"})
    );

    // Nothing repeated: the next event is the next change.
    assert_eq!(register(&app, "svc", "after", body(30)).await.0, 201);
    let next = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(next.id, Some(last + 21));
    assert_eq!(next.json()["id"], "after");
}

#[tokio::test]
async fn a_revision_older_than_the_stream_gets_reset() {
    let app = replica(&redis().url(), &prefix(), &["--events-max", "10"]).await;
    // Redis trims approximately (whole stream nodes of 100 entries), so make
    // enough changes for the first ones to be trimmed for sure.
    for i in 0..250 {
        assert_eq!(
            register(&app, "churn", &format!("c-{i}"), body(30)).await.0,
            201
        );
    }
    let mut watch = Watch::open(&app, "", Some(1)).await;
    let reset = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(reset.event, "reset");
    assert_eq!(reset.id, Some(250));
    assert_eq!(reset.json()["revision"], 250);
    // Then live from there.
    assert_eq!(register(&app, "churn", "new", body(30)).await.0, 201);
    let next = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!((next.event.as_str(), next.id), ("registered", Some(251)));
}

#[tokio::test]
async fn a_service_filter_passes_only_that_service() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let mut watch = Watch::open(&app, "?service=mine", None).await;
    assert_eq!(register(&app, "theirs", "t-1", body(30)).await.0, 201);
    assert_eq!(register(&app, "mine", "m-1", body(30)).await.0, 201);
    let event = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(event.json()["service"], "mine");
    assert_eq!(event.id, Some(2));
}
