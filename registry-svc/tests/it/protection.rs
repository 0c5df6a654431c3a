//! Mass-expiry protection. The scenario runs alone in a process of its own
//! (see `common::alone`) because it asserts on the process-wide
//! `registry_protected_services` gauge, which every replica in a process sets.

use std::time::Duration;

use crate::common::{Watch, alone, body, client, get, ids, keep_alive, register, replica};
use mcp_testkit::{eventually, prefix, redis};

async fn protected(app: &mcp_testkit::TestService, service: &str) -> bool {
    let (_, body) = get(app, "/v1/services").await;
    body["services"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == service && s["protected"] == true)
}

async fn metric(app: &mcp_testkit::TestService) -> String {
    let text = client()
        .get(app.at("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("registry_protected_services "))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn five_of_six_stopping_at_once_trips_protection_and_none_is_removed() {
    alone(
        "protection::five_of_six_stopping_at_once_trips_protection_and_none_is_removed_alone",
        Duration::from_secs(60),
    )
    .await;
}

/// The scenario, run by the test above in a process where no other replica runs.
#[tokio::test]
#[ignore = "runs alone in a process of its own, started by the test above"]
async fn five_of_six_stopping_at_once_trips_protection_and_none_is_removed_alone() {
    let prefix = prefix();
    // A short window: held instances that never return go 1 s after the lift.
    let a = replica(&redis().url(), &prefix, &["--protect-window", "1s"]).await;
    let b = replica(&redis().url(), &prefix, &["--protect-window", "1s"]).await;
    let all = ["p1", "p2", "p3", "p4", "p5", "p6"];
    for id in all {
        assert_eq!(register(&a, "fleet", id, body(1)).await.0, 201);
    }
    let mut watch = Watch::open(&b, "?service=fleet", None).await;
    let survivor = keep_alive(&a, "fleet", &["p6"]);

    assert!(
        eventually(Duration::from_secs(5), || protected(&b, "fleet")).await,
        "5 of 6 leases running out together must trip protection"
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            metric(&a).await == "registry_protected_services 1"
        })
        .await
    );
    // Several reaper passes later, still nobody removed and no event.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ids(&a, "fleet").await, all);
    assert!(protected(&a, "fleet").await);
    assert_eq!(watch.next(Duration::from_millis(100)).await, None);

    // An operator's deregistration is honoured during protection.
    let response = client()
        .delete(a.at("/v1/services/fleet/instances/p5"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        watch.next(Duration::from_secs(2)).await.unwrap().event,
        "deregistered"
    );

    // Heartbeats return for all but p4: protection lifts, and p4, given one
    // more window to heartbeat, expires after it.
    let returned = keep_alive(&b, "fleet", &["p1", "p2", "p3"]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            !protected(&a, "fleet").await
        })
        .await,
        "protection must lift once heartbeats return"
    );
    assert!(
        eventually(Duration::from_secs(2), || async {
            metric(&b).await == "registry_protected_services 0"
        })
        .await
    );
    let expired = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(expired.event, "expired");
    assert_eq!(expired.json()["id"], "p4");
    assert_eq!(ids(&a, "fleet").await, ["p1", "p2", "p3", "p6"]);
    returned.cancel();
    survivor.cancel();
}
