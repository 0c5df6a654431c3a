//! Namespace schemas: validation on write, checks of present values, and no
//! stale schema across replicas.

use crate::common::{etag, key_url, problem, put, start};
use mcp_testkit::{TestService, prefix, redis};
use serde_json::{Value, json};

fn port_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"port": {"type": "integer", "maximum": 65535}},
        "required": ["port"]
    })
}

async fn put_schema(
    http: &reqwest::Client,
    svc: &TestService,
    ns: &str,
    schema: &Value,
) -> reqwest::Response {
    http.put(svc.at(&format!("/v1/namespaces/{ns}/schema")))
        .json(schema)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_value_breaking_the_schema_is_422_with_its_pointer_and_nothing_written() {
    let server = redis();
    let prefix = prefix();
    let svc = start(&server.url(), &prefix, &[]).await;
    let http = mcp_testkit::client();
    let stored = put_schema(&http, &svc, "app", &port_schema()).await;
    assert_eq!(stored.status(), 201);
    // Id 1 is the gateway policy schema config-svc installs at start.
    assert_eq!(etag(&stored), "\"2\"");
    assert_eq!(
        put(&http, &svc, "app", "ok", json!({"port": 80}))
            .await
            .status(),
        201
    );
    let before = server.snapshot(&prefix);

    let body = problem(
        put(&http, &svc, "app", "bad", json!({"port": 70000})).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "/value/port", "{body}");
    let dry = http
        .put(format!("{}?dry_run=true", key_url(&svc, "app", "bad")))
        .json(&json!({"value": {"port": "x"}}))
        .send()
        .await
        .unwrap();
    let body = problem(dry, 422).await;
    assert_eq!(body["errors"][0]["field"], "/value/port", "{body}");
    assert_eq!(server.snapshot(&prefix), before);
}

#[tokio::test]
async fn a_schema_that_present_values_break_is_422_naming_the_keys() {
    let server = redis();
    let prefix = prefix();
    let svc = start(&server.url(), &prefix, &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "good", json!({"port": 80})).await;
    put(&http, &svc, "app", "svc/bad", json!({"port": "eighty"})).await;
    put(&http, &svc, "app", "worse", json!({})).await;
    let before = server.snapshot(&prefix);

    let body = problem(put_schema(&http, &svc, "app", &port_schema()).await, 422).await;
    let keys: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["svc/bad", "worse"]);
    assert!(body["detail"].as_str().unwrap().contains("svc/bad"));
    assert_eq!(server.snapshot(&prefix), before);
}

#[tokio::test]
async fn an_invalid_schema_is_422() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    for schema in [
        json!({"type": "nope"}),
        json!({"minimum": "ten"}),
        json!(12),
    ] {
        problem(put_schema(&http, &svc, "app", &schema).await, 422).await;
    }
}

#[tokio::test]
async fn schema_get_and_delete_round_trip() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    let url = svc.at("/v1/namespaces/app/schema");
    problem(http.get(&url).send().await.unwrap(), 404).await;
    put_schema(&http, &svc, "app", &port_schema()).await;
    let read = http.get(&url).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), port_schema());
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(
        put(&http, &svc, "app", "free", json!("anything"))
            .await
            .status(),
        201
    );
    problem(http.delete(&url).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn a_replica_never_validates_against_a_stale_schema() {
    let server = redis();
    let prefix = prefix();
    let a = start(&server.url(), &prefix, &[]).await;
    let b = start(&server.url(), &prefix, &[]).await;
    let http = mcp_testkit::client();
    // A writes while the namespace has no schema (and caches that).
    assert_eq!(
        put(&http, &a, "app", "k", json!({"port": 1}))
            .await
            .status(),
        201
    );
    // B sets a schema; A must enforce it at once.
    assert_eq!(
        put_schema(&http, &b, "app", &port_schema()).await.status(),
        201
    );
    problem(put(&http, &a, "app", "k", json!({"port": "x"})).await, 422).await;
    assert_eq!(
        put(&http, &a, "app", "k", json!({"port": 2}))
            .await
            .status(),
        200
    );
    // B replaces it with a stricter one; A enforces the new one.
    let stricter = json!({"type": "object", "properties": {"port": {"maximum": 10}}});
    let replaced = put_schema(&http, &b, "app", &stricter).await;
    assert_eq!(replaced.status(), 200, "{}", replaced.text().await.unwrap());
    problem(put(&http, &a, "app", "k", json!({"port": 11})).await, 422).await;
    // B removes it; A accepts anything again.
    let removed = http
        .delete(b.at("/v1/namespaces/app/schema"))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(
        put(&http, &a, "app", "k", json!("free")).await.status(),
        200
    );
}

#[tokio::test]
async fn rollback_to_a_value_the_schema_now_forbids_is_422() {
    let svc = start(&redis().url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "k", json!({"port": "old"})).await;
    put(&http, &svc, "app", "k", json!({"port": 80})).await;
    put_schema(&http, &svc, "app", &port_schema()).await;
    let rolled = http
        .post(format!("{}/rollback", key_url(&svc, "app", "k")))
        .json(&json!({"version": 1}))
        .send()
        .await
        .unwrap();
    problem(rolled, 422).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pathological_pattern_answers_promptly_and_reads_go_on() {
    let server = redis();
    let prefix = prefix();
    let svc = start(&server.url(), &prefix, &[]).await;
    let http = mcp_testkit::client_builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    put(&http, &svc, "re-other", "plain", json!("x")).await;
    // `^(a+)+$` runs on the linear engine; the backreference forces
    // fancy-regex's backtracking engine, whose steps are capped.
    let schema = json!({"type": "object", "properties": {
        "a": {"type": "string", "pattern": "^(a+)+$"},
        "b": {"type": "string", "pattern": r"^(a+)+\1$"}
    }});
    assert_eq!(put_schema(&http, &svc, "re", &schema).await.status(), 201);
    let before = server.snapshot(&prefix);
    let evil = format!("{}!", "a".repeat(30));
    let values: Vec<Value> = (0..20).map(|_| json!({"a": evil, "b": evil})).collect();
    let started = std::time::Instant::now();
    let writes = values
        .iter()
        .map(|v| put(&http, &svc, "re", "evil", v.clone()));
    let reads = (0..20).map(|_| http.get(key_url(&svc, "re-other", "plain")).send());
    let (writes, reads) = tokio::join!(
        futures_util::future::join_all(writes),
        futures_util::future::join_all(reads)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for read in reads {
        assert_eq!(read.unwrap().status(), 200);
    }
    for write in writes {
        let body = problem(write, 422).await;
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["/value/a", "/value/b"], "{body}");
    }
    assert_eq!(server.snapshot(&prefix), before);
}
