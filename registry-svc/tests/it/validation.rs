//! Bad input is refused with a problem+json that names the field, and
//! leaves Redis exactly as it was.

use std::time::Duration;

use crate::common::{body, client, register, replica};
use mcp_testkit::{prefix, redis};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The expected answer: status and the field the problem must name.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    body: Option<String>,
    status: u16,
    field: &'static str,
}

fn put(what: &'static str, body: Value, field: &'static str) -> Case {
    Case {
        what,
        method: "PUT",
        path: "/v1/services/echo/instances/echo-1".into(),
        body: Some(body.to_string()),
        status: 422,
        field,
    }
}

fn request(
    what: &'static str,
    method: &'static str,
    path: &str,
    status: u16,
    field: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.into(),
        body: Some(json!({"host": "127.0.0.1", "port": 80}).to_string()),
        status,
        field,
    }
}

fn cases() -> Vec<Case> {
    let host = |v: Value| json!({"host": v, "port": 80});
    let with = |k: &str, v: Value| {
        let mut b = json!({"host": "127.0.0.1", "port": 80});
        b[k] = v;
        b
    };
    let check = |c: Value| with("check", c);
    let many_tags: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let many_meta: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    vec![
        Case {
            what: "not JSON",
            body: Some("host=a&port=1".into()),
            status: 400,
            ..put("", json!(null), "body")
        },
        Case {
            what: "a JSON array",
            body: Some("[1,2]".into()),
            status: 400,
            ..put("", json!(null), "body")
        },
        Case {
            what: "metadata nested 5,000 deep",
            body: Some(format!(
                r#"{{"host": "a", "port": 80, "metadata": {}{}}}"#,
                "[".repeat(5_000),
                "]".repeat(5_000)
            )),
            status: 400,
            ..put("", json!(null), "metadata")
        },
        put("missing host", json!({"port": 80}), "host"),
        put("missing port", json!({"host": "a"}), "port"),
        put("host with a space", host(json!("a b")), "host"),
        put("empty host", host(json!("")), "host"),
        put("host with a scheme", host(json!("http://a")), "host"),
        put("host too long", host(json!("a".repeat(254))), "host"),
        put("host not a string", host(json!(7)), "host"),
        put("port 0", json!({"host": "a", "port": 0}), "port"),
        put("port too big", json!({"host": "a", "port": 65536}), "port"),
        put("port as text", json!({"host": "a", "port": "80"}), "port"),
        put("ttl 0", with("ttl_seconds", json!(0)), "ttl_seconds"),
        put(
            "ttl too long",
            with("ttl_seconds", json!(3601)),
            "ttl_seconds",
        ),
        put(
            "ttl negative",
            with("ttl_seconds", json!(-5)),
            "ttl_seconds",
        ),
        put("tags not an array", with("tags", json!("v2")), "tags"),
        put("too many tags", with("tags", json!(many_tags)), "tags"),
        put(
            "tag too long",
            with("tags", json!(["x".repeat(129)])),
            "tags[0]",
        ),
        put("empty tag", with("tags", json!(["ok", ""])), "tags[1]"),
        put(
            "metadata not an object",
            with("metadata", json!(["a"])),
            "metadata",
        ),
        put(
            "too much metadata",
            with("metadata", Value::Object(many_meta)),
            "metadata",
        ),
        put(
            "metadata value too long",
            with("metadata", json!({"k": "v".repeat(513)})),
            "metadata.k",
        ),
        put(
            "metadata value not text",
            with("metadata", json!({"k": 1})),
            "metadata.k",
        ),
        put(
            "metadata key with a space",
            with("metadata", json!({"a b": "v"})),
            "metadata.a b",
        ),
        put(
            "metadata key ..",
            with("metadata", json!({"..": "v"})),
            "metadata...",
        ),
        put("unknown field", with("colour", json!("red")), "colour"),
        put(
            "client-set status",
            with("status", json!("passing")),
            "status",
        ),
        put("check not an object", check(json!("http")), "check"),
        put(
            "check type unknown",
            check(json!({"type": "icmp"})),
            "check.type",
        ),
        put(
            "http check without path",
            check(json!({"type": "http"})),
            "check.path",
        ),
        put(
            "http check with a URL",
            check(json!({"type": "http", "path": "http://evil/x"})),
            "check.path",
        ),
        put(
            "http check with //host",
            check(json!({"type": "http", "path": "//evil/x"})),
            "check.path",
        ),
        // The egress rules (tests run with loopback only and no names):
        // refused at registration, as the proxy and the probes refuse them.
        put(
            "a link-local host (cloud metadata)",
            host(json!("169.254.169.254")),
            "host",
        ),
        put("an IPv6 link-local host", host(json!("fe80::1")), "host"),
        put(
            "a host outside the allow list",
            host(json!("10.0.0.7")),
            "host",
        ),
        put(
            "a host name while names are off",
            host(json!("db.internal.invalid")),
            "host",
        ),
        put(
            "the registry's Redis",
            json!({"host": "127.0.0.1", "port": redis().port()}),
            "host",
        ),
        put(
            "tcp check with a path",
            check(json!({"type": "tcp", "path": "/x"})),
            "check.path",
        ),
        put(
            "check interval 0",
            check(json!({"type": "tcp", "interval_seconds": 0})),
            "check.interval_seconds",
        ),
        put(
            "check timeout 0",
            check(json!({"type": "tcp", "timeout_ms": 0})),
            "check.timeout_ms",
        ),
        put(
            "check timeout not under the interval",
            check(json!({"type": "tcp", "interval_seconds": 1, "timeout_ms": 1000})),
            "check.timeout_ms",
        ),
        put(
            "check unknown field",
            check(json!({"type": "tcp", "port": 1})),
            "check.port",
        ),
        request(
            "service with a space",
            "PUT",
            "/v1/services/a%20b/instances/x",
            400,
            "service",
        ),
        request(
            "service *",
            "PUT",
            "/v1/services/*/instances/x",
            400,
            "service",
        ),
        request("id *", "PUT", "/v1/services/echo/instances/*", 400, "id"),
        request(
            "id too long",
            "PUT",
            &format!("/v1/services/echo/instances/{}", "a".repeat(129)),
            400,
            "id",
        ),
        request(
            "heartbeat id with a space",
            "PUT",
            "/v1/services/echo/instances/a%20b/heartbeat",
            400,
            "id",
        ),
        request(
            "delete service *",
            "DELETE",
            "/v1/services/*/instances/x",
            400,
            "service",
        ),
        request(
            "delete unknown",
            "DELETE",
            "/v1/services/echo/instances/nobody",
            404,
            "",
        ),
        request(
            "heartbeat unknown",
            "PUT",
            "/v1/services/echo/instances/nobody/heartbeat",
            404,
            "",
        ),
        request(
            "list with healthy=maybe",
            "GET",
            "/v1/services/echo/instances?healthy=maybe",
            400,
            "healthy",
        ),
        request(
            "list with a bad index",
            "GET",
            "/v1/services/echo/instances?index=x",
            400,
            "index",
        ),
        request(
            "list with a bad wait",
            "GET",
            "/v1/services/echo/instances?index=1&wait=soon",
            400,
            "wait",
        ),
        request(
            "list with an unknown parameter",
            "GET",
            "/v1/services/echo/instances?helthy=true",
            400,
            "helthy",
        ),
        request(
            "services with a bad index",
            "GET",
            "/v1/services?index=-1",
            400,
            "index",
        ),
        request(
            "watch of a bad service",
            "GET",
            "/v1/watch?service=a%20b",
            400,
            "service",
        ),
    ]
}

fn assert_problem(
    what: &str,
    status: u16,
    content_type: &str,
    body: &Value,
    want: u16,
    field: &str,
) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(content_type, "application/problem+json", "{what}");
    assert_eq!(body["status"], want, "{what}");
    if !field.is_empty() {
        let named = body["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["field"] == field));
        assert!(named, "{what}: problem must name `{field}`: {body}");
    }
}

#[tokio::test]
async fn bad_inputs_are_named_problems_and_change_nothing() {
    let prefix = prefix();
    let app = replica(&redis().url(), &prefix, &[]).await;
    assert_eq!(register(&app, "echo", "echo-1", body(300)).await.0, 201);
    let before = redis().snapshot(&prefix);
    assert!(!before.is_empty());

    let client = client();
    for case in cases() {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = client.request(method, app.at(&case.path));
        if let (Some(body), true) = (&case.body, case.method == "PUT") {
            request = request
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        assert_problem(
            case.what,
            status,
            &content_type,
            &body,
            case.status,
            case.field,
        );
    }
    assert_eq!(
        redis().snapshot(&prefix),
        before,
        "a refused request wrote to Redis"
    );
}

/// Send a request line as is (HTTP clients normalise `..` away).
async fn raw(app: &mcp_testkit::TestService, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let body = r#"{"host":"127.0.0.1","port":80}"#;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        mcp_testkit::internal_bearer("test", "admin"),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

#[tokio::test]
async fn dot_dot_names_are_refused() {
    let prefix = prefix();
    let app = replica(&redis().url(), &prefix, &[]).await;
    let before = redis().snapshot(&prefix);
    for (method, path, field) in [
        ("PUT", "/v1/services/../instances/x", "service"),
        ("PUT", "/v1/services/echo/instances/..", "id"),
        ("PUT", "/v1/services/echo/instances/../heartbeat", "id"),
        ("DELETE", "/v1/services/./instances/x", "service"),
    ] {
        let (status, response) = raw(&app, method, path).await;
        assert_eq!(status, 400, "{method} {path}: {response}");
        assert!(response.contains("application/problem+json"), "{response}");
        assert!(
            response.contains(&format!(r#""field":"{field}""#)),
            "{response}"
        );
    }
    assert_eq!(redis().snapshot(&prefix), before);
}

#[tokio::test]
async fn an_oversized_body_is_413_and_changes_nothing() {
    let prefix = prefix();
    let app = replica(&redis().url(), &prefix, &["--max-body-bytes", "4096"]).await;
    let huge = json!({"host": "a", "port": 80, "metadata": {"k": "v".repeat(10_000)}});
    let response = client()
        .put(app.at("/v1/services/echo/instances/e"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(redis().keys(&prefix).is_empty());
}
