//! Blocking queries (`index` + `wait`) across replicas.

use std::time::Duration;

use crate::common::{body, client, get, index_of, register, replica};
use mcp_testkit::{prefix, redis};

/// Whether the blocking query in `parked` is still unanswered 300 ms on.
async fn still_parked(parked: &mut tokio::task::JoinHandle<reqwest::Response>) -> bool {
    tokio::time::timeout(Duration::from_millis(300), parked)
        .await
        .is_err()
}

#[tokio::test]
async fn blocking_query_on_one_replica_returns_when_another_registers() {
    let prefix = prefix();
    let a = replica(&redis().url(), &prefix, &[]).await;
    let b = replica(&redis().url(), &prefix, &[]).await;
    assert_eq!(register(&b, "other", "x", body(30)).await.0, 201);
    let first = client()
        .get(a.at("/v1/services/web/instances"))
        .send()
        .await
        .unwrap();
    let index = index_of(&first);

    // Parked for up to 60 s; the client gives up after 10 s, so returning
    // at all proves the wake-up.
    let mut parked = tokio::spawn({
        let url = a.at(&format!(
            "/v1/services/web/instances?index={index}&wait=60s"
        ));
        async move { client().get(url).send().await.unwrap() }
    });
    assert!(
        still_parked(&mut parked).await,
        "answered before any change"
    );
    // A change to another service does not wake it.
    assert_eq!(register(&b, "other", "y", body(30)).await.0, 201);
    assert!(
        still_parked(&mut parked).await,
        "woken by another service's change"
    );

    let (status, created) = register(&b, "web", "w-1", body(30)).await;
    assert_eq!(status, 201);
    let response = parked.await.unwrap();
    assert_eq!(response.status(), 200);
    let revision = index_of(&response);
    assert!(revision >= created["revision"].as_u64().unwrap());
    let listed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(listed["revision"].as_u64().unwrap(), revision);
    assert_eq!(listed["instances"][0]["id"], "w-1");
}

#[tokio::test]
async fn blocking_services_listing_wakes_on_any_change() {
    let prefix = prefix();
    let a = replica(&redis().url(), &prefix, &[]).await;
    let b = replica(&redis().url(), &prefix, &[]).await;
    // Index 0 never blocks: start from a registry that has a revision.
    assert_eq!(register(&b, "zz-seed", "s-1", body(30)).await.0, 201);
    let (_, listed) = get(&a, "/v1/services").await;
    let index = listed["revision"].as_u64().unwrap();
    let mut parked = tokio::spawn({
        let url = a.at(&format!("/v1/services?index={index}&wait=60s"));
        async move { client().get(url).send().await.unwrap() }
    });
    assert!(
        still_parked(&mut parked).await,
        "answered before any change"
    );
    assert_eq!(register(&b, "api", "a-1", body(30)).await.0, 201);
    let response = parked.await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(index_of(&response) > index);
    let listed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(listed["services"][0]["name"], "api");
}

#[tokio::test]
async fn blocking_query_without_change_answers_at_wait_with_the_same_revision() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    assert_eq!(register(&app, "calm", "c-1", body(30)).await.0, 201);
    let (_, listed) = get(&app, "/v1/services/calm/instances").await;
    let index = listed["revision"].as_u64().unwrap();
    let response = client()
        .get(app.at(&format!(
            "/v1/services/calm/instances?index={index}&wait=500ms"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(index_of(&response), index);
}

#[tokio::test]
async fn blocking_query_behind_the_revision_answers_at_once() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    assert_eq!(register(&app, "past", "p-1", body(30)).await.0, 201);
    // index 0 is behind the service's registration: no waiting.
    let response = client()
        .get(app.at("/v1/services/past/instances?index=0&wait=60s"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let listed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(listed["instances"][0]["id"], "p-1");
}

#[tokio::test]
async fn index_zero_answers_at_once_even_where_nothing_ever_changed() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    // No event of this service exists: a blocking query on index 0 would
    // wait the whole default wait; index 0 never blocks (as in Consul).
    let started = std::time::Instant::now();
    let response = client()
        .get(app.at("/v1/services/never-seen/instances?index=0"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let response = client()
        .get(app.at("/v1/services?index=0&wait=60s"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_empty_wait_means_the_default_and_names_are_percent_decoded() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    assert_eq!(register(&app, "dflt", "d-1", body(30)).await.0, 201);
    assert_eq!(register(&app, "dflt", "d-2", body(30)).await.0, 201);
    // `wait=` is the default wait (the same rule as config-svc), not a 400;
    // behind the revision it answers at once.
    let response = client()
        .get(app.at("/v1/services/dflt/instances?index=1&wait="))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // `%77ait` is `wait`: checked like it.
    let response = client()
        .get(app.at("/v1/services/dflt/instances?index=1&%77ait=soon"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "wait", "{problem}");
    // And it holds the request like `wait` does.
    let index = index_of(
        &client()
            .get(app.at("/v1/services/dflt/instances"))
            .send()
            .await
            .unwrap(),
    );
    let started = std::time::Instant::now();
    let response = client()
        .get(app.at(&format!(
            "/v1/services/dflt/instances?index={index}&%77ait=300ms"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
}
