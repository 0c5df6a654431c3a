//! Redis killed: 503 problem+json at once; Redis back: the service serves
//! again without a restart.

use std::time::{Duration, Instant};

use crate::common::{self, body, client, register, replica};
use mcp_testkit::{RedisServer, eventually, prefix};

#[tokio::test]
async fn redis_down_is_503_problem_and_service_heals_when_it_returns() {
    let own = RedisServer::start();
    let app = replica(&own.url(), &prefix(), &[]).await;
    assert_eq!(register(&app, "echo", "e-1", body(300)).await.0, 201);

    own.stop();
    let client = client();
    let requests = [
        client
            .put(app.at("/v1/services/echo/instances/e-2"))
            .json(&body(30)),
        client.put(app.at("/v1/services/echo/instances/e-1/heartbeat")),
        client.delete(app.at("/v1/services/echo/instances/e-1")),
        client.get(app.at("/v1/services/echo/instances")),
        client.get(app.at("/v1/services/echo/instances?index=1&wait=30s")),
        client.get(app.at("/v1/services")),
        client.get(app.at("/v1/watch")),
    ];
    for request in requests {
        let started = Instant::now();
        let response = request.send().await.unwrap();
        // A generous bound: the point is "no hang", not speed.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 503);
    }

    own.restart();
    let healed = eventually(Duration::from_secs(10), || async {
        register(&app, "echo", "e-2", body(30)).await.0 == 201
    })
    .await;
    assert!(healed, "the service must serve again once Redis is back");
    let (status, listed) = common::get(&app, "/v1/services/echo/instances").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["instances"].as_array().unwrap().len(),
        2,
        "AOF kept e-1"
    );
}
