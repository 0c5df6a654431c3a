//! The server scaffold every service runs on, tested against a real
//! redis-server and real HTTP: health, readiness through a Redis outage,
//! metrics by route template, problem+json for unknown routes and
//! rejections, and graceful shutdown with a request in flight.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use axum::{Json, Router, extract::Path, routing::get};
use mcp_shared::{Redis, server};
use mcp_testkit::{RedisServer, TestService, eventually, prefix, redis};

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(800)).await;
    "done"
}

async fn item(Path(id): Path<u32>) -> Json<u32> {
    Json(id)
}

async fn echo(Json(v): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(v)
}

async fn spawn_app(redis_url: String) -> TestService {
    mcp_testkit::spawn(move |listener, shutdown| async move {
        let redis = Redis::new(&redis_url, &prefix(), Duration::from_secs(1)).unwrap();
        let routes = Router::new()
            .route("/slow", get(slow))
            .route("/items/{id}", get(item))
            .route("/echo", axum::routing::post(echo));
        let app = server::scaffold(routes, redis, 1024);
        server::serve(listener, app, shutdown, Duration::from_secs(5)).await
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
    let app = spawn_app(redis().url()).await;
    let url = app.at("/slow");
    let in_flight = tokio::spawn(async move { reqwest::get(url).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = tokio::spawn(app.stop());
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    stopped.await.unwrap().unwrap();
}
