//! Traffic policies on both replicas: a weighted split lands near its
//! weights and a header match pins a version, a retry policy turns a failing
//! instance into a success, header rules reach the upstream and the client,
//! an extra route serves a service under its prefix and its host, and a
//! policy's `protocol` changes how the gateway speaks to the instances and
//! its `websocket` switch lets upgrades through.

use std::collections::HashMap;

use crate::common::{bearer, client, echo, token, upstream};
use axum::{Router, extract::Request, http::StatusCode, routing::any};
use mcp_testkit::{TestService, redis};
use serde_json::{Value, json};

use super::{stack, status_of};

/// Which upstream answered each of `n` GETs of `path` on `gateway` with `headers`.
async fn tally(
    gateway: &TestService,
    path: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let token = token("splitter", "");
    let mut counts = HashMap::new();
    let http = client();
    for _ in 0..n {
        let mut request = http
            .get(gateway.at(path))
            .header("authorization", bearer(&token));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        *counts
            .entry(body["upstream"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_90_10_split_lands_near_10_percent_and_a_header_match_pins_to_v2() {
    let stack = stack().await;
    let (v1, v2) = (echo("v1").await, echo("v2").await);
    stack.register("cart", "cart-v1", &v1, &["v1"]).await;
    stack.register("cart", "cart-v2", &v2, &["v2"]).await;
    stack.routed("cart", 2).await;
    let (status, body) = stack
        .write(
            "services/cart",
            json!({"split": {"weights": {"v1": 90, "v2": 10},
                             "match": [{"header": "x-canary", "value": "1", "tag": "v2"}]}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    stack
        .on_both("the header match", |url| async move {
            let response = client()
                .get(format!("{url}/svc/cart/x"))
                .header("authorization", bearer(&token("splitter", "")))
                .header("x-canary", "1")
                .send()
                .await
                .unwrap();
            let body: Value = response.json().await.unwrap_or_default();
            body["upstream"] == "v2"
        })
        .await;
    for gateway in &stack.gateways {
        let pinned = tally(gateway, "/svc/cart/x", 50, &[("x-canary", "1")]).await;
        assert_eq!(pinned.get("v2"), Some(&50), "{pinned:?}");
    }
    let counts = tally(&stack.gateways[0], "/svc/cart/x", 1000, &[]).await;
    let to_v2 = counts.get("v2").copied().unwrap_or(0);
    assert!(
        (60..=140).contains(&to_v2),
        "v2 got {to_v2} of 1000: {counts:?}"
    );
}

#[tokio::test]
async fn a_retry_policy_turns_a_failing_instance_into_a_success() {
    let stack = stack().await;
    let failing = upstream(Router::new().fallback(any(|| async {
        (StatusCode::INTERNAL_SERVER_ERROR, "broken")
    })))
    .await;
    let good = echo("good").await;
    stack.register("flaky", "flaky-bad", &failing, &[]).await;
    stack.register("flaky", "flaky-good", &good, &[]).await;
    stack.routed("flaky", 2).await;
    let user = token("u", "");
    let url = stack.gateways[0].at("/svc/flaky/x");
    let mut failures = 0;
    for _ in 0..30 {
        if status_of(&url, Some(&user)).await == 500 {
            failures += 1;
        }
    }
    assert!(
        failures > 0,
        "without a policy the broken instance answers some requests"
    );
    // Keep the breaker out of it: the failing instance stays in rotation.
    let (status, body) = stack
        .write(
            "services/flaky",
            json!({"retries": {"attempts": 2, "on": ["5xx"], "min_per_second": 1000},
                   "circuit_breaker": {"failure_threshold": 1000}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    stack
        .on_both("retries", |url| {
            let user = user.clone();
            async move {
                let mut ok = true;
                for _ in 0..30 {
                    ok &= status_of(&format!("{url}/svc/flaky/x"), Some(&user)).await == 200;
                }
                ok
            }
        })
        .await;
}

#[tokio::test]
async fn header_rules_reach_the_upstream_and_the_client() {
    let stack = stack().await;
    let hdr = echo("hdr").await;
    stack.register("hdr", "hdr-1", &hdr, &[]).await;
    stack.routed("hdr", 1).await;
    let (status, body) = stack
        .write(
            "services/hdr",
            json!({"request_headers": {"set": {"x-env": "prod"}, "remove": ["x-debug"]},
                   "response_headers": {"set": {"x-served-by": "gateway"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let user = token("u", "");
    stack
        .on_both("the header rules", |url| {
            let user = user.clone();
            async move {
                let response = client()
                    .get(format!("{url}/svc/hdr/x"))
                    .header("authorization", bearer(&user))
                    .header("x-debug", "1")
                    .send()
                    .await
                    .unwrap();
                let served_by = response.headers().get("x-served-by").cloned();
                let body: Value = response.json().await.unwrap_or_default();
                body["headers"]["x-env"] == "prod"
                    && body["headers"].get("x-debug").is_none()
                    && served_by.is_some_and(|v| v == "gateway")
            }
        })
        .await;
}

#[tokio::test]
async fn an_extra_route_serves_a_service_under_its_prefix_and_its_host() {
    let stack = stack().await;
    let billing = echo("billing").await;
    stack.register("billing", "b-1", &billing, &[]).await;
    stack.routed("billing", 1).await;
    let (status, body) = stack
        .write(
            "routes/billing",
            json!({"service": "billing", "path_prefix": "/billing", "strip_prefix": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack
        .write(
            "routes/billing-host",
            json!({"service": "billing", "hosts": ["api.example.com"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let user = token("u", "");
    stack
        .on_both("the prefix route", |url| {
            let user = user.clone();
            async move {
                let response = client()
                    .get(format!("{url}/billing/invoices/7?x=1"))
                    .header("authorization", bearer(&user))
                    .send()
                    .await
                    .unwrap();
                let body: Value = response.json().await.unwrap_or_default();
                body["upstream"] == "billing"
                    && body["path"] == "/invoices/7"
                    && body["query"] == "x=1"
            }
        })
        .await;
    // The host route: the whole path goes through (no prefix to strip).
    let response = client()
        .get(stack.gateways[1].at("/reports/1"))
        .header("authorization", bearer(&user))
        .header("host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["path"], "/reports/1");
    // The routes need a token like `/svc`.
    assert_eq!(
        status_of(&stack.gateways[0].at("/billing/x"), None).await,
        401
    );
    // A route answering the same requests is refused at write time, and nothing changes.
    let before = redis().snapshot(&stack.prefix);
    let (status, problem) = stack
        .write(
            "routes/billing-again",
            json!({"service": "other", "path_prefix": "/billing"}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("billing"));
    // The gateway's own paths cannot be claimed.
    let (status, problem) = stack
        .write(
            "routes/grab",
            json!({"service": "x", "path_prefix": "/admin"}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "/value/path_prefix");
    assert_eq!(redis().snapshot(&stack.prefix), before);
}

#[tokio::test]
async fn a_policy_protocol_moves_a_service_to_http2_and_back_on_rollback() {
    let stack = stack().await;
    // axum's server takes HTTP/1.1 and HTTP/2 with prior knowledge alike, and
    // says which one each request came over.
    let wire = upstream(Router::new().fallback(any(|request: Request| async move {
        format!("{:?}", request.version())
    })))
    .await;
    stack.register("wire", "w-1", &wire, &[]).await;
    stack.routed("wire", 1).await;
    let user = token("u", "");
    let version_on = |url: String| {
        let user = user.clone();
        async move {
            client()
                .get(format!("{url}/svc/wire/x"))
                .header("authorization", bearer(&user))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap_or_default()
        }
    };
    assert_eq!(version_on(stack.gateways[0].url.clone()).await, "HTTP/1.1");

    let (status, body) = stack
        .write("services/wire", json!({"protocol": "http"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack
        .write("services/wire", json!({"protocol": "h2c"}))
        .await;
    assert_eq!(status, 200, "{body}");
    stack
        .on_both("protocol h2c", |url| {
            let version = version_on(url);
            async move { version.await == "HTTP/2.0" }
        })
        .await;

    let (status, body) = stack.rollback("services/wire", 1).await;
    assert_eq!(status, 200, "{body}");
    stack
        .on_both("rolled back to HTTP/1.1", |url| {
            let version = version_on(url);
            async move { version.await == "HTTP/1.1" }
        })
        .await;
}

/// A WebSocket-ish upstream on raw TCP: a handshake with `Upgrade:
/// websocket` gets 101 and then every byte echoed; anything else a plain 200.
async fn upgrade_echo() -> TestService {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    mcp_testkit::spawn(|listener: tokio::net::TcpListener, shutdown| async move {
        loop {
            let (mut tcp, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                () = shutdown.cancelled() => return Ok(()),
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                    if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if head.contains("upgrade: websocket") {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
                        .await;
                    let (mut read, mut write) = tcp.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                } else {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nplain")
                        .await;
                }
            });
        }
    })
    .await
}

/// A WebSocket handshake to `path` on `url`'s gateway as `token`: the status
/// line, and whether bytes then came back through the connection.
async fn handshake(url: &str, path: &str, token: &str) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: {}\r\n\r\n",
        bearer(token)
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let bound = std::time::Duration::from_secs(5);
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(bound, tcp.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    let status = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if !status.contains(" 101 ") {
        return (status, false);
    }
    tcp.write_all(b"frames").await.unwrap();
    let mut echoed = [0u8; 6];
    let spliced = matches!(
        tokio::time::timeout(bound, tcp.read_exact(&mut echoed)).await,
        Ok(Ok(_))
    ) && &echoed == b"frames";
    (status, spliced)
}

#[tokio::test]
async fn a_policy_websocket_switch_lets_upgrades_through_and_back_on_rollback() {
    let stack = stack().await;
    let socket = upgrade_echo().await;
    // No `websocket` metadata: upgrades pass only when the policy says so.
    stack.register("sock", "s-1", &socket, &[]).await;
    stack.routed("sock", 1).await;
    let user = token("u", "");
    let (status, spliced) = handshake(&stack.gateways[0].url, "/svc/sock/ws", &user).await;
    assert!(status.contains(" 200 ") && !spliced, "{status}");

    let (status, body) = stack
        .write("services/sock", json!({"websocket": false}))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = stack
        .write("services/sock", json!({"websocket": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    stack
        .on_both("websocket switched on", |url| {
            let user = user.clone();
            async move { handshake(&url, "/svc/sock/ws", &user).await.1 }
        })
        .await;

    let (status, body) = stack.rollback("services/sock", 1).await;
    assert_eq!(status, 200, "{body}");
    stack
        .on_both("websocket switched off again", |url| {
            let user = user.clone();
            async move {
                let (status, spliced) = handshake(&url, "/svc/sock/ws", &user).await;
                status.contains(" 200 ") && !spliced
            }
        })
        .await;
}
