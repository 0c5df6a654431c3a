//! Routing and forwarding: the table follows the registry, requests and
//! answers pass through as they should, streams are not buffered, paths
//! cannot escape their prefix, and breakers keep traffic off dead instances.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::common::{self, Registry, bearer, client, echo, gateway, get as get_json, token};
use axum::{
    Router,
    body::Body,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{any, get},
};
use futures_util::StreamExt as _;
use mcp_shared::registry::HealthStatus;
use mcp_testkit::{RedisServer, eventually, prefix, redis};

fn admin() -> String {
    token("ops", "admin")
}

async fn svc_status(url: &str) -> u16 {
    client()
        .get(url)
        .header("authorization", bearer(&token("u", "")))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_registered_service_is_routable_within_a_second_and_a_deregistered_one_gets_no_traffic() {
    let prefix = prefix();
    let gw = gateway(&redis().url(), &prefix, &[]).await;
    let registry = Registry::new(&redis().url(), &prefix);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let upstream = common::upstream(Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "hello from echo" }
    })))
    .await;
    let url = gw.at("/svc/echo/hello");
    assert_eq!(svc_status(&url).await, 404, "unknown before registration");

    registry
        .register_at("echo", "echo-1", upstream.addr, HealthStatus::Passing)
        .await;
    assert!(
        eventually(Duration::from_secs(1), || async {
            svc_status(&url).await == 200
        })
        .await
    );

    registry.deregister("echo", "echo-1").await;
    assert!(
        eventually(Duration::from_secs(1), || async {
            svc_status(&url).await == 404
        })
        .await
    );
    let before = hits.load(Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(svc_status(&url).await, 404);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before,
        "no traffic after deregistration"
    );
}

#[tokio::test]
async fn instances_registered_before_start_are_routed_and_only_passing_ones_get_traffic() {
    let prefix = prefix();
    let registry = Registry::new(&redis().url(), &prefix);
    let good = echo("good").await;
    let sick = echo("sick").await;
    registry
        .register_at("api", "good", good.addr, HealthStatus::Passing)
        .await;
    registry
        .register_at("api", "sick", sick.addr, HealthStatus::Critical)
        .await;
    let gw = gateway(&redis().url(), &prefix, &[]).await;
    let url = gw.at("/svc/api/x");
    assert!(
        eventually(Duration::from_secs(2), || async {
            svc_status(&url).await == 200
        })
        .await
    );
    for _ in 0..10 {
        let (status, _, body) = get_json(&url, &token("u", "")).await;
        assert_eq!(status, 200);
        assert_eq!(body["upstream"], "good");
    }
    // Health flips: the critical one recovers, the good one fails.
    registry
        .register_at("api", "good", good.addr, HealthStatus::Critical)
        .await;
    registry
        .register_at("api", "sick", sick.addr, HealthStatus::Passing)
        .await;
    assert!(
        eventually(Duration::from_secs(1), || async {
            get_json(&url, &token("u", "")).await.2["upstream"] == "sick"
        })
        .await
    );
    // Nothing passing → 503.
    registry
        .register_at("api", "sick", sick.addr, HealthStatus::Warning)
        .await;
    assert!(
        eventually(Duration::from_secs(1), || async {
            svc_status(&url).await == 503
        })
        .await
    );
}

#[tokio::test]
async fn with_redis_killed_svc_keeps_routing() {
    let server = RedisServer::start();
    let prefix = prefix();
    let registry = Registry::new(&server.url(), &prefix);
    let upstream = echo("echo").await;
    let gw = gateway(&server.url(), &prefix, &[]).await;
    registry
        .register_at("echo", "e1", upstream.addr, HealthStatus::Passing)
        .await;
    let url = gw.at("/svc/echo/ping");
    assert!(
        eventually(Duration::from_secs(1), || async {
            svc_status(&url).await == 200
        })
        .await
    );
    server.stop();
    for _ in 0..5 {
        assert_eq!(svc_status(&url).await, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reqwest::get(gw.at("/readyz")).await.unwrap().status(),
        503,
        "readiness does report Redis down"
    );
    // And the table follows again once Redis is back.
    server.restart();
    registry.deregister("echo", "e1").await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            svc_status(&url).await == 404
        })
        .await
    );
}

#[tokio::test]
async fn forwarding_sets_forwarded_headers_keeps_request_id_and_continues_the_trace() {
    let registry = echo("registry").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--registry-url", &registry.url],
    )
    .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = client()
        .get(gw.at("/api/v1/registry/services?healthy=true"))
        .header("authorization", bearer(&token("frank", "registry:read")))
        .header("x-request-id", "req-123")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-forwarded-for", "10.1.1.1")
        .header("connection", "x-hop")
        .header("x-hop", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-123");
    let body: serde_json::Value = response.json().await.unwrap();
    let headers = &body["headers"];
    assert_eq!(body["path"], "/v1/services");
    assert_eq!(body["query"], "healthy=true");
    assert_eq!(headers["x-request-id"], "req-123");
    assert_eq!(headers["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(headers["host"], registry.addr.to_string());
    assert!(
        headers.get("x-hop").is_none(),
        "hop-by-hop header forwarded"
    );
    let traceparent = headers["traceparent"].as_str().unwrap_or("");
    assert!(
        traceparent.contains(trace_id),
        "trace not continued: {traceparent:?}"
    );

    // Without an id, one is made and echoed.
    let response = client()
        .get(gw.at("/api/v1/registry/services"))
        .header("authorization", bearer(&token("frank", "registry:read")))
        .send()
        .await
        .unwrap();
    let made = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(!made.is_empty());
    assert_eq!(body["headers"]["x-request-id"], made.as_str());
}

#[tokio::test]
async fn upstream_errors_pass_through_untouched() {
    let registry = common::upstream(Router::new().fallback(any(|| async {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            "boom",
        )
            .into_response()
    })))
    .await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--registry-url", &registry.url],
    )
    .await;
    let response = client()
        .get(gw.at("/api/v1/registry/services"))
        .header("authorization", bearer(&admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert!(response.headers().contains_key("ratelimit-limit"));
    assert_eq!(response.text().await.unwrap(), "boom");
}

#[tokio::test]
async fn an_sse_stream_delivers_its_first_event_before_it_ends() {
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let upstream = common::upstream(Router::new().route(
        "/v1/watch",
        get(move || {
            let release_rx = release_rx.clone();
            async move {
                let release = release_rx.lock().await.take();
                let stream = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(bytes::Bytes::from(
                        "id: 1\nevent: registered\ndata: {}\n\n",
                    ))
                })
                .chain(futures_util::stream::once(async move {
                    // The stream ends only when the test has seen the first event.
                    if let Some(release) = release {
                        let _ = release.await;
                    }
                    Ok(bytes::Bytes::from("id: 2\nevent: registered\ndata: {}\n\n"))
                }));
                (
                    [("content-type", "text/event-stream")],
                    Body::from_stream(stream),
                )
            }
        }),
    ))
    .await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--registry-url", &upstream.url],
    )
    .await;
    let response = client()
        .get(gw.at("/api/v1/registry/watch"))
        .header("authorization", bearer(&admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut seen = String::new();
    let first = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains("\n\n") {
            seen.push_str(&String::from_utf8_lossy(
                &stream.next().await.unwrap().unwrap(),
            ));
        }
    })
    .await;
    assert!(
        first.is_ok(),
        "first event did not arrive while the stream was open"
    );
    assert!(seen.starts_with("id: 1\n"));
    release_tx.send(()).unwrap();
    let mut rest = String::new();
    while let Some(chunk) = stream.next().await {
        rest.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(rest.contains("id: 2"));
}

/// Send a raw HTTP/1.1 request (reqwest would normalise the path itself).
fn raw_get(addr: SocketAddr, path: &str, token: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

#[tokio::test]
async fn dot_dot_and_encoded_slashes_cannot_reach_the_admin_route() {
    let prefix = prefix();
    let upstream = echo("echo").await;
    let gw = gateway(&redis().url(), &prefix, &[]).await;
    Registry::new(&redis().url(), &prefix)
        .register_at("echo", "e1", upstream.addr, HealthStatus::Passing)
        .await;
    let url = gw.at("/svc/echo/");
    assert!(
        eventually(Duration::from_secs(1), || async {
            svc_status(&url).await == 200
        })
        .await
    );
    let admin = admin();
    let addr = gw.addr;
    for path in [
        "/svc/echo/../../admin/upstreams",
        "/svc/echo/%2e%2e/%2e%2e/admin/upstreams",
        "/svc/echo/..%2f..%2fadmin/upstreams",
        "/svc/echo%2f..%2f..%2fadmin%2fupstreams",
    ] {
        let response = tokio::task::spawn_blocking({
            let admin = admin.clone();
            move || raw_get(addr, path, &admin)
        })
        .await
        .unwrap();
        let status_line = response.lines().next().unwrap_or("");
        assert!(status_line.contains(" 400 "), "{path}: {status_line}");
        assert!(!response.contains("\"upstreams\""), "{path} reached admin");
    }
    // Inside a route, empty and `.` segments collapse to the canonical path;
    // before a route prefix, they match no route at all.
    let admin2 = admin.clone();
    let response = tokio::task::spawn_blocking(move || raw_get(addr, "/svc/echo//a/./b", &admin2))
        .await
        .unwrap();
    assert!(response.contains("\"path\":\"/a/b\""), "{response}");
    let response = tokio::task::spawn_blocking(move || raw_get(addr, "//admin/upstreams", &admin))
        .await
        .unwrap();
    assert!(
        response.lines().next().unwrap_or("").contains(" 404 "),
        "{response}"
    );
}

#[tokio::test]
async fn a_refusing_instance_trips_its_circuit_and_one_trial_closes_it() {
    let prefix = prefix();
    let gw = gateway(
        &redis().url(),
        &prefix,
        &["--cb-failure-threshold", "2", "--cb-open-seconds", "1"],
    )
    .await;
    let registry = Registry::new(&redis().url(), &prefix);
    let port = mcp_testkit::free_port();
    let dead: SocketAddr = ([127, 0, 0, 1], port).into();
    registry
        .register_at("solo", "s1", dead, HealthStatus::Passing)
        .await;
    let url = gw.at("/svc/solo/work");
    let http = client();
    let post = || async {
        let response = http
            .post(&url)
            .header("authorization", bearer(&token("u", "")))
            .body("x")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.headers().clone())
    };
    assert!(eventually(Duration::from_secs(1), || async { post().await.0 == 502 }).await);
    assert_eq!(post().await.0, 502);
    // Open: no attempt at all, an immediate 503 with Retry-After.
    let started = Instant::now();
    let (status, headers) = post().await;
    assert_eq!(status, 503);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(headers["retry-after"], "1");
    let (_, _, view) = get_json(&gw.at("/admin/upstreams"), &admin()).await;
    let solo = view["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "solo")
        .unwrap()
        .clone();
    assert_eq!(solo["instances"][0]["circuit"], "open");

    // The instance comes back; after CB_OPEN_SECONDS one trial closes the circuit.
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let listener = tokio::net::TcpListener::bind(dead).await.unwrap();
    let app = Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "back" }
    }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    assert_eq!(post().await.0, 503, "still open: no traffic");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post().await.0, 200, "the trial passes");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let (_, _, view) = get_json(&gw.at("/admin/upstreams"), &admin()).await;
    let solo = view["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "solo")
        .unwrap()
        .clone();
    assert_eq!(solo["instances"][0]["circuit"], "closed");
    assert_eq!(post().await.0, 200);
    server.abort();
}

#[tokio::test]
async fn idempotent_requests_retry_on_another_instance_after_a_connect_error() {
    let prefix = prefix();
    let gw = gateway(
        &redis().url(),
        &prefix,
        &["--cb-failure-threshold", "3", "--cb-open-seconds", "30"],
    )
    .await;
    let registry = Registry::new(&redis().url(), &prefix);
    let good = echo("good").await;
    let dead: SocketAddr = ([127, 0, 0, 1], mcp_testkit::free_port()).into();
    registry
        .register_at("pair", "a-dead", dead, HealthStatus::Passing)
        .await;
    registry
        .register_at("pair", "b-good", good.addr, HealthStatus::Passing)
        .await;
    let url = gw.at("/svc/pair/x");
    assert!(
        eventually(Duration::from_secs(1), || async {
            let (_, _, view) = get_json(&gw.at("/admin/upstreams"), &admin()).await;
            view["upstreams"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u["name"] == "pair" && u["instances"].as_array().unwrap().len() == 2)
        })
        .await
    );
    for _ in 0..20 {
        let (status, _, body) = get_json(&url, &token("u", "")).await;
        assert_eq!(status, 200);
        assert_eq!(body["upstream"], "good");
    }
    let (_, _, view) = get_json(&gw.at("/admin/upstreams"), &admin()).await;
    let pair = view["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "pair")
        .unwrap()
        .clone();
    assert_eq!(pair["instances"][0]["id"], "a-dead");
    assert_eq!(pair["instances"][0]["circuit"], "open");
    assert_eq!(pair["instances"][1]["circuit"], "closed");
    assert_eq!(pair["instances"][1]["status"], "passing");
}

#[tokio::test]
async fn a_slow_upstream_is_a_504_but_a_blocking_query_may_wait_longer() {
    let registry = common::upstream(Router::new().fallback(any(|headers: HeaderMap| async move {
        let _ = headers;
        tokio::time::sleep(Duration::from_millis(800)).await;
        "late"
    })))
    .await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &registry.url,
            "--upstream-timeout-ms",
            "300",
        ],
    )
    .await;
    let (status, _, body) = get_json(&gw.at("/api/v1/registry/services"), &admin()).await;
    assert_eq!(status, 504);
    assert_eq!(body["status"], 504);
    let response = client()
        .get(gw.at("/api/v1/registry/services?index=5&wait=2s"))
        .header("authorization", bearer(&admin()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "late");
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let gw = gateway(&redis().url(), &prefix(), &[]).await;
    for path in ["/svc/nope/x", "/api/v1/nothing/x", "/api/v2/registry/x"] {
        let (status, headers, _) = get_json(&gw.at(path), &admin()).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(headers["content-type"], "application/problem+json");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_even_when_streamed() {
    let config = echo("config").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--config-url", &config.url, "--max-body-bytes", "16"],
    )
    .await;
    let url = gw.at("/api/v1/config/namespaces/a/keys/b");
    let sized = client()
        .put(&url)
        .header("authorization", bearer(&admin()))
        .body("x".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(sized.status(), 413);
    let chunks = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from("0123456789"))),
    );
    let streamed = client()
        .put(&url)
        .header("authorization", bearer(&admin()))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert_eq!(
        streamed.headers()["content-type"],
        "application/problem+json"
    );
}

/// An HTTP/1.1 instance on a bare socket that counts the connections it
/// accepts and answers `Connection: close` on every `close_every`-th
/// request of a connection (0: never), as nginx does after
/// `keepalive_requests`.
async fn counting_instance(close_every: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut served = 0;
                let mut chunk = [0u8; 4096];
                // Bounded: a connection serves at most 1,000 requests.
                while served < 1000 {
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    buffer.drain(..end + 4);
                    served += 1;
                    let close = close_every > 0 && served % close_every == 0;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: {}\r\n\r\nok",
                        if close { "close" } else { "keep-alive" }
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn connections_to_an_instance_are_reused_and_one_it_closes_is_replaced_without_a_failure() {
    let prefix = prefix();
    let gw = gateway(&redis().url(), &prefix, &[]).await;
    let registry = Registry::new(&redis().url(), &prefix);
    let (kept, kept_accepted) = counting_instance(0).await;
    let (closing, closing_accepted) = counting_instance(3).await;
    registry
        .register_at("kept", "kept-1", kept, HealthStatus::Passing)
        .await;
    registry
        .register_at("closing", "closing-1", closing, HealthStatus::Passing)
        .await;
    for service in ["kept", "closing"] {
        let url = gw.at(&format!("/svc/{service}/x"));
        assert!(
            eventually(Duration::from_secs(2), || async {
                svc_status(&url).await == 200
            })
            .await,
            "{service} is routed"
        );
    }
    let routed = (
        kept_accepted.load(Ordering::SeqCst),
        closing_accepted.load(Ordering::SeqCst),
    );
    // One request after another: each finds the last one's connection ready.
    for _ in 0..12 {
        assert_eq!(svc_status(&gw.at("/svc/kept/x")).await, 200);
        assert_eq!(svc_status(&gw.at("/svc/closing/x")).await, 200);
    }
    assert_eq!(
        kept_accepted.load(Ordering::SeqCst),
        routed.0,
        "every request on the connection already open"
    );
    // Closed after every third answer: four more connections for twelve requests.
    assert_eq!(closing_accepted.load(Ordering::SeqCst) - routed.1, 4);
}
