//! Bad input: malformed bodies, names, preconditions and query parameters,
//! oversized and too-deep values are problem+json and write nothing.

use crate::common::{key_url, problem, put, raw_request, start};
use mcp_testkit::{prefix, redis};
use serde_json::{Value, json};

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
