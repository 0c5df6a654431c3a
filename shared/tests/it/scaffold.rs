//! The server scaffold every service runs on, tested against a real
//! redis-server and real HTTP: health, readiness through a Redis outage,
//! metrics by route template, problem+json for unknown routes and
//! rejections, graceful shutdown with a request in flight, and the
//! connection limits (slowloris, header size, idle keep-alive, connection cap).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Extension, Json, Router, extract::Path, routing::get};
use mcp_shared::{
    Redis,
    server::{self, ConnectionLimits},
};
use mcp_testkit::{RedisServer, TestService, eventually, prefix, redis};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Answers after 800 ms; counts the requests that reached it in `started`.
async fn slow(Extension(started): Extension<Arc<AtomicUsize>>) -> &'static str {
    started.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    "done"
}

/// Answers the serving worker it runs on (`-` off the workers).
async fn which_worker() -> String {
    server::worker().map_or_else(|| "-".to_owned(), |w| w.to_string())
}

async fn item(Path(id): Path<u32>) -> Json<u32> {
    Json(id)
}

async fn echo(Json(v): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(v)
}

fn with_grace() -> ConnectionLimits {
    ConnectionLimits {
        shutdown_grace: Duration::from_secs(5),
        ..ConnectionLimits::default()
    }
}

async fn spawn_app(redis_url: String) -> TestService {
    spawn_limited(redis_url, with_grace()).await
}

async fn spawn_limited(redis_url: String, limits: ConnectionLimits) -> TestService {
    spawn_counted(redis_url, limits, Arc::default()).await
}

/// The app, with `started` counting the requests that reached `/slow`.
async fn spawn_counted(
    redis_url: String,
    limits: ConnectionLimits,
    started: Arc<AtomicUsize>,
) -> TestService {
    mcp_testkit::spawn(move |listener, shutdown| async move {
        let redis = Redis::new(&redis_url, &prefix(), Duration::from_secs(1)).unwrap();
        let routes = Router::new()
            .route("/slow", get(slow))
            .route("/worker", get(which_worker))
            .route("/items/{id}", get(item))
            .route("/echo", axum::routing::post(echo))
            .layer(Extension(started));
        let app = server::scaffold(routes, redis, 1024);
        server::serve(listener, app, shutdown, limits).await
    })
    .await
}

fn is_problem(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json")
}

#[tokio::test]
async fn healthz_and_readyz_answer_with_redis_up() {
    let app = spawn_app(redis().url()).await;
    let health = reqwest::get(app.at("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(app.at("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn readyz_is_503_within_a_second_while_redis_is_down_and_heals_after() {
    let own = RedisServer::start();
    let app = spawn_app(own.url()).await;
    assert_eq!(reqwest::get(app.at("/readyz")).await.unwrap().status(), 200);

    own.stop();
    let started = Instant::now();
    let down = reqwest::get(app.at("/readyz")).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(down.status(), 503);
    assert!(is_problem(&down));
    assert_eq!(down.headers().get("retry-after").unwrap(), "1");
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!(body["status"], 503);
    // Liveness does not depend on Redis.
    assert_eq!(
        reqwest::get(app.at("/healthz")).await.unwrap().status(),
        200
    );

    own.restart();
    let healed = eventually(Duration::from_secs(2), || async {
        reqwest::get(app.at("/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(
        healed,
        "/readyz did not recover within 2 s of Redis returning"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app(redis().url()).await;
    for id in [1, 2, 3] {
        assert_eq!(
            reqwest::get(app.at(&format!("/items/{id}")))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let text = reqwest::get(app.at("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_requests_total{") && l.contains("/items/"))
        .collect();
    assert_eq!(
        series.len(),
        1,
        "one series for the template, got {series:?}"
    );
    assert!(
        series[0].contains(r#"route="/items/{id}""#),
        "{}",
        series[0]
    );
    assert!(series[0].contains(r#"method="GET""#) && series[0].contains(r#"status="200""#));
    let count: f64 = series[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "counted {count}");
    assert!(text.contains("http_server_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn unknown_route_is_a_problem_json_404() {
    let app = spawn_app(redis().url()).await;
    let response = reqwest::get(app.at("/no/such/route")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(is_problem(&response));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 404);
    assert_eq!(body["title"], "Not Found");
    assert!(body["detail"].as_str().unwrap().contains("/no/such/route"));
}

#[tokio::test]
async fn rejections_and_limits_become_problem_json() {
    let app = spawn_app(redis().url()).await;
    let client = reqwest::Client::new();
    let bad_json = client
        .post(app.at("/echo"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status(), 400);
    assert!(is_problem(&bad_json));

    let too_large = client
        .post(app.at("/echo"))
        .header("content-type", "application/json")
        .body(format!("\"{}\"", "x".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    assert!(is_problem(&too_large));

    let wrong_method = client.delete(app.at("/echo")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert!(is_problem(&wrong_method));
}

#[tokio::test]
async fn request_id_is_kept_or_made() {
    let app = spawn_app(redis().url()).await;
    let client = reqwest::Client::new();
    let kept = client
        .get(app.at("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers().get("x-request-id").unwrap(), "abc-123");
    let made = client.get(app.at("/healthz")).send().await.unwrap();
    assert!(!made.headers().get("x-request-id").unwrap().is_empty());
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let started = Arc::new(AtomicUsize::new(0));
    let app = spawn_counted(redis().url(), with_grace(), started.clone()).await;
    stop_with_a_request_in_flight(app, &started).await;
}

/// Stop `app` while a `/slow` request is in its handler: the request is
/// answered in full, then the server stops.
async fn stop_with_a_request_in_flight(app: TestService, started: &AtomicUsize) {
    let url = app.at("/slow");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await });
    // The shutdown starts only once the request is in the handler.
    let reached = eventually(Duration::from_secs(5), || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(reached, "the request never reached the handler");
    let stopped = tokio::spawn(app.stop());
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    stopped.await.unwrap().unwrap();
}

#[tokio::test]
async fn workers_serve_each_connection_on_one_of_them_and_drain_on_shutdown() {
    let started = Arc::new(AtomicUsize::new(0));
    let limits = ConnectionLimits {
        workers: 2,
        ..with_grace()
    };
    let app = spawn_counted(redis().url(), limits, started.clone()).await;
    // A fresh connection per request: round robin hands them out in turn,
    // and every request of one connection stays on its worker.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let client = reqwest::Client::new();
        let first = client.get(app.at("/worker")).send().await.unwrap();
        let first = first.text().await.unwrap();
        let again = client.get(app.at("/worker")).send().await.unwrap();
        assert_eq!(again.text().await.unwrap(), first, "a connection moved");
        seen.push(first);
    }
    seen.sort();
    assert_eq!(seen, ["0", "0", "1", "1"]);
    stop_with_a_request_in_flight(app, &started).await;
}

/// Read from `stream` until the server closes it or `bound` passes: what
/// was read, and whether it closed (end of stream or reset).
async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + bound;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
            Err(_) => return (seen, false),
        }
    }
}

/// Read from `stream` until `seen` holds `marker` (bounded by `bound`).
async fn read_until(stream: &mut TcpStream, marker: &str, bound: Duration) -> String {
    let deadline = tokio::time::Instant::now() + bound;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(marker) {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn short(header_read_timeout_ms: u64, idle_timeout_ms: u64) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(header_read_timeout_ms),
        idle_timeout: Duration::from_millis(idle_timeout_ms),
        shutdown_grace: Duration::from_secs(2),
        ..ConnectionLimits::default()
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_slowloris_connection_is_closed_within_the_header_read_timeout() {
    let app = spawn_limited(redis().url(), short(500, 30_000)).await;

    // Half a header block, then nothing: closed at the header-read timeout.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(3)).await;
    assert!(closed, "a slowloris connection was held past 3 s");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed too early: {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "closed late: {:?}",
        started.elapsed()
    );

    // Connected, never a byte (not even enough to pick HTTP/1 or HTTP/2): the same.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(3)).await;
    assert!(closed, "a silent connection was held past 3 s");
    assert!(started.elapsed() < Duration::from_millis(1500));

    // A prompt client on a kept-alive connection is served twice.
    let mut prompt = TcpStream::connect(app.addr).await.unwrap();
    for _ in 0..2 {
        prompt.write_all(HEALTHZ).await.unwrap();
        let answer = read_until(&mut prompt, "\"ok\"}", Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[tokio::test]
async fn an_oversized_header_block_is_refused_with_431() {
    let limits = ConnectionLimits {
        max_header_bytes: 16 * 1024,
        ..short(5_000, 30_000)
    };
    let app = spawn_limited(redis().url(), limits).await;

    let mut big = TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    // The server may close before reading it all: a failed write is fine.
    let _ = big.write_all(request.as_bytes()).await;
    let (answer, closed) = read_until_closed(&mut big, Duration::from_secs(3)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(closed, "the connection must close after 431");

    // Under the cap: served.
    let fits = reqwest::Client::new()
        .get(app.at("/healthz"))
        .header("x-big", "a".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    // The idle timeout (400 ms) is well under the header-read one (5 s), so
    // the close below is the idle clock's.
    let app = spawn_limited(redis().url(), short(5_000, 400)).await;
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(HEALTHZ).await.unwrap();
    let answer = read_until(&mut kept, "\"ok\"}", Duration::from_secs(3)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let started = Instant::now();
    let (rest, closed) = read_until_closed(&mut kept, Duration::from_secs(3)).await;
    assert!(closed, "an idle keep-alive connection was held past 3 s");
    assert!(rest.is_empty(), "nothing more is sent before the close");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed too early: {:?}",
        started.elapsed()
    );

    // HTTP/2: the connection ends once no stream is open for the idle timeout.
    let tcp = TcpStream::connect(app.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::get("/healthz")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    use http_body_util::BodyExt as _;
    response.into_body().collect().await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(3), connection).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection was held past 3 s");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let limits = ConnectionLimits {
        max_connections: 2,
        ..short(10_000, 30_000)
    };
    let app = spawn_limited(redis().url(), limits).await;

    // Two kept-alive connections, each served once, hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(HEALTHZ).await.unwrap();
        let answer = read_until(&mut stream, "\"ok\"}", Duration::from_secs(3)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    }

    // The third connects (the kernel's backlog) but is not served...
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third.write_all(HEALTHZ).await.unwrap();
    let waiting = read_until(&mut third, "\"ok\"}", Duration::from_millis(500)).await;
    assert!(waiting.is_empty(), "served past the cap: {waiting}");

    // ...until one of the two closes.
    drop(held.pop());
    let answer = read_until(&mut third, "\"ok\"}", Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_response_slower_than_both_timeouts_is_not_cut() {
    // `/slow` takes 800 ms: longer than either timeout, but in flight throughout.
    let app = spawn_limited(redis().url(), short(300, 300)).await;
    let response = reqwest::get(app.at("/slow")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
}
