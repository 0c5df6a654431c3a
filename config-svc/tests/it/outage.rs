//! Redis outages: fast 503s, self-healing, no acknowledged write lost.

use std::time::{Duration, Instant};

use crate::common::{key_url, problem, put, start};
use mcp_testkit::{RedisServer, eventually, prefix};
use serde_json::{Value, json};

#[tokio::test]
async fn redis_down_is_503_fast_and_the_service_heals_with_every_write_kept() {
    let server = RedisServer::start();
    let svc = start(&server.url(), &prefix(), &[]).await;
    let http = mcp_testkit::client();
    for n in 0..5 {
        assert_eq!(
            put(&http, &svc, "app", &format!("k{n}"), json!(n))
                .await
                .status(),
            201
        );
    }
    assert_eq!(
        put(&http, &svc, "app", "k0", json!("updated"))
            .await
            .status(),
        200
    );

    server.stop();
    let started = Instant::now();
    let read = http.get(key_url(&svc, "app", "k1")).send().await.unwrap();
    let read_took = started.elapsed();
    problem(read, 503).await;
    let started = Instant::now();
    let write = put(&http, &svc, "app", "k9", json!(9)).await;
    let write_took = started.elapsed();
    problem(write, 503).await;
    assert!(
        read_took < Duration::from_secs(1),
        "read 503 took {read_took:?}"
    );
    assert!(
        write_took < Duration::from_secs(1),
        "write 503 took {write_took:?}"
    );

    server.restart();
    let healed = eventually(Duration::from_secs(10), || async {
        http.get(key_url(&svc, "app", "k1"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(healed, "serves again without a restart");
    let listed: Value = http
        .get(svc.at("/v1/namespaces/app/keys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = listed["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["value"], "updated");
    assert_eq!(entries[0]["version"], 2);
    assert_eq!(put(&http, &svc, "app", "k9", json!(9)).await.status(), 201);
}
