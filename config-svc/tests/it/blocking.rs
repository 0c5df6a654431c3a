//! Blocking reads of an entry (`?index=&wait=`): a read behind the current
//! revision answers at once, one at it waits for a change to that key.

use std::time::Duration;

use crate::common::{etag, key_url, put, start};
use mcp_testkit::{prefix, redis};
use serde_json::{Value, json};

#[tokio::test]
async fn blocking_get_returns_when_the_key_changes() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "k", json!(1)).await;
    let first = http.get(key_url(&svc, "app", "k")).send().await.unwrap();
    let index: u64 = first.headers()["x-mcp-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    // Nothing changes: the query answers at `wait` with the same entry.
    let idle = http
        .get(format!(
            "{}?index={index}&wait=100ms",
            key_url(&svc, "app", "k")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(etag(&idle), "\"1\"");

    let mut waiting = tokio::spawn({
        let http = http.clone();
        let url = format!("{}?index={index}&wait=30s", key_url(&svc, "app", "k"));
        async move { http.get(url).send().await.unwrap() }
    });
    // It waits: nothing answers it before a write.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "a blocking read at the current index answered before any write"
    );
    // A change to another key does not answer it; the change to this key does.
    put(&http, &svc, "app", "other", json!(0)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err(),
        "a write to another key answered the blocking read"
    );
    put(&http, &svc, "app", "k", json!(2)).await;
    let changed = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the blocking read answers within 10 s of the write")
        .unwrap();
    assert_eq!(etag(&changed), "\"2\"");
    let next: u64 = changed.headers()["x-mcp-index"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(next > index);
}

#[tokio::test]
async fn index_zero_answers_at_once_and_an_empty_wait_is_the_default() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client_builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    // A namespace nothing was ever written to: index 0 would otherwise wait
    // the whole default wait. It never blocks (as in Consul).
    let started = std::time::Instant::now();
    let listed = http
        .get(svc.at("/v1/namespaces/quiet/keys?index=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));

    put(&http, &svc, "app", "k", json!(1)).await;
    put(&http, &svc, "app", "k", json!(2)).await;
    // An empty `wait` is the default (registry-svc reads it the same way);
    // behind the revision it answers at once. `%77ait` is `wait`.
    for query in ["index=1&wait=", "index=1&%77ait=1s"] {
        let read = http
            .get(format!("{}?{query}", key_url(&svc, "app", "k")))
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "{query}");
    }
    let bad = http
        .get(format!("{}?index=1&%77ait=soon", key_url(&svc, "app", "k")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "wait", "{problem}");
}
