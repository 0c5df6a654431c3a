//! Entries: put/get/list/delete/history/rollback round trips, preconditions,
//! dry runs, blocking reads and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{etag, key_url, problem, put, raw_request, start};
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

    let waiting = tokio::spawn({
        let http = http.clone();
        let url = format!("{}?index={index}&wait=30s", key_url(&svc, "app", "k"));
        async move { http.get(url).send().await.unwrap() }
    });
    // A change to another key does not answer it; the change to this key does.
    put(&http, &svc, "app", "other", json!(0)).await;
    put(&http, &svc, "app", "k", json!(2)).await;
    let changed = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
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

/// (method, path, header, body, status, field named in the problem)
type Case<'a> = (
    &'a str,
    String,
    Option<(&'a str, &'a str)>,
    String,
    u16,
    Option<&'a str>,
);

#[tokio::test]
async fn bad_inputs_are_problem_json_and_write_nothing() {
    let server = redis();
    let prefix = prefix();
    let svc = start(
        &server.url(),
        &prefix,
        &["--max-value-bytes", "1024", "--max-body-bytes", "4096"],
    )
    .await;
    let http = mcp_testkit::client();
    put(&http, &svc, "app", "k", json!(1)).await;
    let before = server.snapshot(&prefix);

    let big_value = format!(r#"{{"value":"{}"}}"#, "x".repeat(2000));
    let huge_body = format!(r#"{{"value":"{}"}}"#, "x".repeat(8000));
    let long_message = format!(r#"{{"value":1,"message":"{}"}}"#, "m".repeat(2000));
    let k = "/v1/namespaces/app/keys/k";
    let cases: Vec<Case<'_>> = vec![
        ("PUT", k.into(), None, "not json".into(), 400, None),
        ("PUT", k.into(), None, "".into(), 400, None),
        (
            "PUT",
            k.into(),
            None,
            r#"{"message":"no value"}"#.into(),
            400,
            Some("value"),
        ),
        (
            "PUT",
            k.into(),
            None,
            r#"{"value":1,"valeu":2}"#.into(),
            400,
            None,
        ),
        ("PUT", k.into(), None, r#"[1]"#.into(), 400, None),
        (
            "PUT",
            "/v1/namespaces/app/keys/a%20b".into(),
            None,
            r#"{"value":1}"#.into(),
            400,
            Some("key"),
        ),
        (
            "PUT",
            "/v1/namespaces/a%20b/keys/k".into(),
            None,
            r#"{"value":1}"#.into(),
            400,
            Some("namespace"),
        ),
        // `…/history` is the key's history, which takes GET only.
        (
            "PUT",
            "/v1/namespaces/app/keys/a/history".into(),
            None,
            r#"{"value":1}"#.into(),
            405,
            None,
        ),
        (
            "PUT",
            k.into(),
            Some(("if-match", "garbage")),
            r#"{"value":1}"#.into(),
            400,
            Some("If-Match"),
        ),
        (
            "PUT",
            k.into(),
            Some(("if-match", "W/\"1\"")),
            r#"{"value":1}"#.into(),
            400,
            Some("If-Match"),
        ),
        (
            "PUT",
            k.into(),
            Some(("if-none-match", "\"1\"")),
            r#"{"value":1}"#.into(),
            400,
            Some("If-None-Match"),
        ),
        (
            "PUT",
            format!("{k}?dry_run=maybe"),
            None,
            r#"{"value":1}"#.into(),
            400,
            Some("dry_run"),
        ),
        ("PUT", k.into(), None, long_message, 400, Some("message")),
        ("PUT", k.into(), None, big_value, 413, None),
        ("PUT", k.into(), None, huge_body, 413, None),
        (
            "DELETE",
            k.into(),
            Some(("if-match", "nope")),
            String::new(),
            400,
            Some("If-Match"),
        ),
        (
            "POST",
            format!("{k}/rollback"),
            None,
            r#"{"version":"x"}"#.into(),
            400,
            None,
        ),
        (
            "POST",
            format!("{k}/rollback"),
            None,
            r#"{"version":7}"#.into(),
            404,
            None,
        ),
        ("POST", k.into(), None, r#"{}"#.into(), 405, None),
        (
            "GET",
            format!("{k}?index=abc"),
            None,
            String::new(),
            400,
            Some("index"),
        ),
        (
            "GET",
            format!("{k}?wait=forever"),
            None,
            String::new(),
            400,
            Some("wait"),
        ),
        (
            "GET",
            format!("{k}?index=1&wait=forever"),
            None,
            String::new(),
            400,
            Some("wait"),
        ),
        (
            "GET",
            "/v1/namespaces/app/keys?prefix=a%20b".into(),
            None,
            String::new(),
            400,
            Some("prefix"),
        ),
        (
            "PUT",
            "/v1/namespaces/app/schema".into(),
            None,
            "{not json".into(),
            400,
            None,
        ),
        (
            "PUT",
            "/v1/namespaces/app/schema".into(),
            None,
            r#"{"type": 12}"#.into(),
            422,
            None,
        ),
        (
            "GET",
            "/v1/watch?namespace=a%20b".into(),
            None,
            String::new(),
            400,
            Some("namespace"),
        ),
        (
            "GET",
            "/v1/watch?client_id=..".into(),
            None,
            String::new(),
            400,
            Some("client_id"),
        ),
    ];
    for (method, path, header, body, status, field) in cases {
        let mut request = http
            .request(method.parse().unwrap(), svc.at(&path))
            .body(body.clone());
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        assert_eq!(
            got,
            status,
            "{method} {path} {header:?} {}",
            &body[..body.len().min(60)]
        );
        let problem = problem(response, status).await;
        if let Some(field) = field {
            assert_eq!(
                problem["errors"][0]["field"], field,
                "{method} {path}: {problem}"
            );
        }
    }
    // Dot segments, sent as is (HTTP clients would normalize them away).
    for (path, field) in [
        ("/v1/namespaces/app/keys/a/../b", "key"),
        ("/v1/namespaces/app/keys/a/%2E%2E/b", "key"),
        ("/v1/namespaces/app/keys/..", "key"),
        ("/v1/namespaces/%2E%2E/keys/k", "namespace"),
        ("/v1/namespaces/../keys/k", "namespace"),
    ] {
        let (status, body) = raw_request(&svc, "PUT", path, r#"{"value":1}"#).await;
        assert_eq!(status, 400, "{path}: {body}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {body}");
    }
    assert_eq!(
        server.snapshot(&prefix),
        before,
        "a bad request wrote to redis"
    );
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
async fn too_deep_values_and_schemas_are_refused_and_change_nothing() {
    let server = redis();
    let prefix = prefix();
    let svc = start(&server.url(), &prefix, &[]).await;
    let http = mcp_testkit::client();
    put(&http, &svc, "deep", "k", json!(1)).await;
    let before = server.snapshot(&prefix);
    let array = format!(r#"{{"value": {}{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
    let object = format!(
        r#"{{"value": {}1{}}}"#,
        r#"{"a":"#.repeat(65),
        "}".repeat(65)
    );
    for body in [array.clone(), object] {
        let response = http
            .put(key_url(&svc, "deep", "k"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = problem(response, 400).await;
        assert_eq!(problem["errors"][0]["field"], "value", "{problem}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("64 levels")
        );
    }
    // A schema is a body too.
    let response = http
        .put(svc.at("/v1/namespaces/deep/schema"))
        .header("content-type", "application/json")
        .body(array.replace(r#"{"value": "#, r#"{"items": "#))
        .send()
        .await
        .unwrap();
    let problem = problem(response, 400).await;
    assert_eq!(problem["errors"][0]["field"], "items", "{problem}");
    assert_eq!(server.snapshot(&prefix), before);

    // 10 levels are fine.
    let value: Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(10), "]".repeat(10))).unwrap();
    let response = put(&http, &svc, "deep", "k", value.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["value"], value);
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
