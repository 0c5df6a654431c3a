//! Watches (SSE) and the propagation status of watching clients.

use std::time::Duration;

use crate::common::{SseReader, put, start};
use mcp_testkit::{eventually, prefix, redis};
use serde_json::{Value, json};

#[tokio::test]
async fn a_watcher_sees_a_put_without_polling() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    let mut watch = SseReader::open(&http, &svc.at("/v1/watch?namespace=app"), None).await;
    put(&http, &svc, "other", "k", json!(0)).await;
    let written: Value = put(&http, &svc, "app", "k", json!({"on": true}))
        .await
        .json()
        .await
        .unwrap();
    let event = watch.next().await;
    assert_eq!(event.event, "put");
    assert_eq!(
        event.id.as_deref(),
        Some(written["revision"].to_string().as_str())
    );
    assert_eq!(event.json(), written);

    http.delete(svc.at("/v1/namespaces/app/keys/k"))
        .send()
        .await
        .unwrap();
    let deleted = watch.next().await;
    assert_eq!(deleted.event, "delete");
    let data = deleted.json();
    assert_eq!(
        (data["namespace"].as_str(), data["key"].as_str()),
        (Some("app"), Some("k"))
    );
    assert_eq!(data["version"], 1);
}

#[tokio::test]
async fn a_watcher_resumes_losslessly_with_last_event_id() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    let url = svc.at("/v1/watch?namespace=app");
    let mut watch = SseReader::open(&http, &url, None).await;
    put(&http, &svc, "app", "a", json!(1)).await;
    let first = watch.next().await;
    drop(watch);

    // Changes while disconnected.
    for key in ["b", "c", "d"] {
        put(&http, &svc, "app", key, json!(key)).await;
    }
    let mut resumed = SseReader::open(&http, &url, first.id.as_deref()).await;
    let mut keys = Vec::new();
    let mut last: u64 = first.id.unwrap().parse().unwrap();
    for _ in 0..3 {
        let event = resumed.next().await;
        let id: u64 = event.id.clone().unwrap().parse().unwrap();
        assert!(id > last, "revisions increase");
        last = id;
        keys.push(event.json()["key"].as_str().unwrap().to_owned());
    }
    assert_eq!(keys, ["b", "c", "d"]);
    put(&http, &svc, "app", "e", json!(5)).await;
    assert_eq!(resumed.next().await.json()["key"], "e");
}

#[tokio::test]
async fn a_last_event_id_beyond_the_log_gets_a_reset() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "a", json!(1)).await;
    let mut watch = SseReader::open(&http, &svc.at("/v1/watch"), Some("999999")).await;
    let event = watch.next().await;
    assert_eq!(event.event, "reset");
    assert_eq!(event.json()["revision"], 1);
}

async fn client_status(http: &reqwest::Client, url: &str, client: &str) -> Option<Value> {
    let listing: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    listing["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == client)
        .cloned()
}

#[tokio::test]
async fn the_clients_listing_shows_a_stopped_watcher_as_lagging() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    let clients = svc.at("/v1/namespaces/app/clients");
    let mut watch = SseReader::open(
        &http,
        &svc.at("/v1/watch?namespace=app&client_id=web-1"),
        None,
    )
    .await;
    let written: Value = put(&http, &svc, "app", "k", json!(1))
        .await
        .json()
        .await
        .unwrap();
    watch.next().await;
    let revision = written["revision"].as_u64().unwrap();
    let synced = eventually(Duration::from_secs(5), || async {
        client_status(&http, &clients, "web-1")
            .await
            .is_some_and(|c| c["revision"] == revision && c["in_sync"] == true)
    })
    .await;
    assert!(synced, "the watcher shows in sync");

    drop(watch);
    put(&http, &svc, "app", "k", json!(2)).await;
    let lagging = eventually(Duration::from_secs(5), || async {
        client_status(&http, &clients, "web-1")
            .await
            .is_some_and(|c| {
                c["status"] == "lagging" && c["in_sync"] == false && c["revision"] == revision
            })
    })
    .await;
    assert!(lagging, "the stopped watcher shows lagging");
}
