//! Entries: put/get/list/delete/history/rollback round trips, preconditions,
//! dry runs, who wrote a value and the write metrics (blocking reads are in
//! `blocking`, bad input in `bad_input`).

use std::time::Duration;

use crate::common::{etag, key_url, problem, put, start};
use mcp_testkit::{prefix, redis};
use serde_json::{Value, json};

#[tokio::test]
async fn put_and_get_round_trip_with_versions_revisions_and_etags() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();

    let created = http
        .put(key_url(&svc, "app", "db/pool"))
        .header(
            "authorization",
            mcp_testkit::internal_bearer("alice", "admin"),
        )
        .json(&json!({"value": {"max": 10}, "message": "first"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(etag(&created), "\"1\"");
    let first: Value = created.json().await.unwrap();
    assert_eq!(first["namespace"], "app");
    assert_eq!(first["key"], "db/pool");
    assert_eq!(first["value"], json!({"max": 10}));
    assert_eq!(first["version"], 1);
    assert_eq!(first["updated_by"], "alice");
    assert_eq!(first["message"], "first");
    assert!(first["updated_at"].as_str().unwrap().ends_with('Z'));
    let r1 = first["revision"].as_u64().unwrap();

    let read = http
        .get(key_url(&svc, "app", "db/pool"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(etag(&read), "\"1\"");
    assert_eq!(read.json::<Value>().await.unwrap(), first);

    let updated = put(&http, &svc, "app", "db/pool", json!({"max": 20})).await;
    assert_eq!(updated.status(), 200);
    assert_eq!(etag(&updated), "\"2\"");
    let second: Value = updated.json().await.unwrap();
    assert_eq!(second["version"], 2);
    assert!(second["revision"].as_u64().unwrap() > r1);
    assert_eq!(
        second["updated_by"], "test",
        "the testkit client's credential"
    );
    assert_eq!(second["message"], Value::Null);
}

#[tokio::test]
async fn values_are_stored_as_sent_without_reencoding() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    let body =
        r#"{"value": {"empty": [], "obj": {}, "big": 123456789012345678901234567890, "f": 1.10}}"#;
    let response = http
        .put(key_url(&svc, "app", "raw"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let text = http
        .get(key_url(&svc, "app", "raw"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#""value":{"empty":[],"obj":{},"big":123456789012345678901234567890,"f":1.10}"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn list_filters_by_prefix_and_namespaces_are_listed() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    for key in ["db/host", "db/port", "cache/ttl"] {
        assert_eq!(put(&http, &svc, "app", key, json!(key)).await.status(), 201);
    }
    assert_eq!(put(&http, &svc, "web", "x", json!(1)).await.status(), 201);

    let listed: Value = http
        .get(svc.at("/v1/namespaces/app/keys?prefix=db/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["namespace"], "app");
    assert!(listed["revision"].as_u64().unwrap() >= 4);
    let keys: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["db/host", "db/port"]);

    let all: Value = http
        .get(svc.at("/v1/namespaces/app/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["entries"].as_array().unwrap().len(), 3);

    let names: Value = http
        .get(svc.at("/v1/namespaces"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // `gateway` holds the gateway policy schema config-svc installs.
    assert_eq!(names["namespaces"], json!(["app", "gateway", "web"]));
}

#[tokio::test]
async fn delete_removes_the_key_but_keeps_its_history_and_version_count() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "k", json!(1)).await;
    put(&http, &svc, "app", "k", json!(2)).await;

    let stale = http
        .delete(key_url(&svc, "app", "k"))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    let body = problem(stale, 412).await;
    assert_eq!(body["current_version"], 2);

    let deleted = http.delete(key_url(&svc, "app", "k")).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    problem(
        http.get(key_url(&svc, "app", "k")).send().await.unwrap(),
        404,
    )
    .await;
    problem(
        http.delete(key_url(&svc, "app", "k")).send().await.unwrap(),
        404,
    )
    .await;

    let history: Value = http
        .get(format!("{}/history", key_url(&svc, "app", "k")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<u64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 1]);

    let again = put(&http, &svc, "app", "k", json!(3)).await;
    assert_eq!(again.status(), 201);
    assert_eq!(etag(&again), "\"3\"");
}

#[tokio::test]
async fn rollback_to_version_two_of_five_makes_version_six_and_keeps_history() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    for n in 1..=5 {
        put(&http, &svc, "app", "k", json!({"n": n, "list": []})).await;
    }
    let rolled = http
        .post(format!("{}/rollback", key_url(&svc, "app", "k")))
        .header(
            "authorization",
            mcp_testkit::internal_bearer("bob", "admin"),
        )
        .json(&json!({"version": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(rolled.status(), 200);
    assert_eq!(etag(&rolled), "\"6\"");
    let entry: Value = rolled.json().await.unwrap();
    assert_eq!(entry["version"], 6);
    assert_eq!(entry["value"], json!({"n": 2, "list": []}));
    assert_eq!(entry["updated_by"], "bob");
    assert_eq!(entry["message"], "rollback to version 2");

    let history: Value = http
        .get(format!("{}/history", key_url(&svc, "app", "k")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<u64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [6, 5, 4, 3, 2, 1]);

    let unknown = http
        .post(format!("{}/rollback", key_url(&svc, "app", "k")))
        .json(&json!({"version": 99}))
        .send()
        .await
        .unwrap();
    problem(unknown, 404).await;
}

#[tokio::test]
async fn if_none_match_star_only_creates() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    let create = |value: i64| {
        http.put(key_url(&svc, "app", "once"))
            .header("if-none-match", "*")
            .json(&json!({"value": value}))
            .send()
    };
    assert_eq!(create(1).await.unwrap().status(), 201);
    let second = problem(create(2).await.unwrap(), 412).await;
    assert_eq!(second["current_version"], 1);
}

#[tokio::test]
async fn if_match_on_a_missing_key_fails_and_writes_nothing() {
    let server = redis();
    let prefix = prefix();
    let svc = start(&server.url(), &prefix, &[]).await;
    let http = mcp_testkit::client();
    // Only config-svc's gateway policy schema is there (installed before
    // the first request is served).
    http.get(svc.at("/readyz")).send().await.unwrap();
    let before = server.snapshot(&prefix);
    let response = http
        .put(key_url(&svc, "app", "ghost"))
        .header("if-match", "\"1\"")
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap();
    let body = problem(response, 412).await;
    assert_eq!(body["current_version"], Value::Null);
    assert_eq!(server.snapshot(&prefix), before);
}

#[tokio::test]
async fn get_with_a_matching_if_none_match_is_not_modified() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "k", json!(1)).await;
    let response = http
        .get(key_url(&svc, "app", "k"))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(etag(&response), "\"1\"");
}

#[tokio::test]
async fn dry_run_answers_without_writing() {
    let server = redis();
    let prefix = prefix();
    let svc = start(&server.url(), &prefix, &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "k", json!(1)).await;
    let before = server.snapshot(&prefix);
    let response = http
        .put(format!("{}?dry_run=true", key_url(&svc, "app", "k")))
        .json(&json!({"value": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["version"], 2);
    assert_eq!(server.snapshot(&prefix), before);
}

#[tokio::test]
async fn metrics_count_writes_entries_and_watchers() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "k", json!(1)).await;
    http.put(key_url(&svc, "app", "k"))
        .header("if-match", "\"9\"")
        .json(&json!({"value": 2}))
        .send()
        .await
        .unwrap();
    let scraped = mcp_testkit::eventually(Duration::from_secs(5), || async {
        let text = http
            .get(svc.at("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains(r#"config_writes_total{result="ok"}"#)
            && text.contains(r#"config_writes_total{result="conflict"}"#)
            && text.contains("config_entries ")
            && text.contains("config_watchers ")
    })
    .await;
    assert!(scraped, "metrics exported");
}

#[tokio::test]
async fn updated_by_is_the_credential_subject_and_a_forged_x_auth_subject_changes_nothing() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    let written: Value = http
        .put(key_url(&svc, "app", "who"))
        .header(
            "authorization",
            mcp_testkit::internal_bearer("alice", "config:write"),
        )
        .header("x-auth-subject", "mallory")
        .header("x-auth-scopes", "admin")
        .json(&json!({"value": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(written["updated_by"], "alice");

    // A credential without a subject is `anonymous`, whatever the header says.
    let key =
        mcp_shared::internal::InternalKey::new(mcp_testkit::INTERNAL_SECRET.as_bytes()).unwrap();
    let anonymous = key
        .token(None, "admin", std::time::Duration::from_secs(60))
        .unwrap();
    let written: Value = http
        .put(key_url(&svc, "app", "who"))
        .bearer_auth(anonymous)
        .header("x-auth-subject", "mallory")
        .json(&json!({"value": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(written["updated_by"], "anonymous");
}
