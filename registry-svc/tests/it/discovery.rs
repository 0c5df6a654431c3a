//! Discovery from memory: every replica answers listings from its in-memory
//! view after one round trip that learns Redis's revision (so a write
//! acknowledged by any replica is read at once on every other), with the
//! very bytes a read of Redis makes; blocking queries wake on the view;
//! `?stale` answers from memory alone, also while Redis is down.

use std::time::{Duration, Instant};

use mcp_shared::{
    Redis,
    events::EventLog,
    names::Name,
    registry::{self, InstanceList},
};
use mcp_testkit::{RedisServer, TestService, eventually, prefix, redis};
use registry_svc::{model::InstanceQuery, store::Store};
use serde_json::{Value, json};

use crate::common::{body, client, get, heartbeat, index_of, register, replica};

/// The ids and `expires_at` of a listing, in order.
fn listed(list: &Value) -> Vec<(String, Value)> {
    list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_owned(),
                i["expires_at"].clone(),
            )
        })
        .collect()
}

/// Cut every replica's event tail on `server` (the connections blocked in
/// `XREAD`): until each reconnects (after ~200 ms) its view hears of no
/// write, so a read that did not wait for Redis's revision would miss one.
async fn cut_tails(server: &RedisServer) {
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let clients: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    for line in clients.lines().filter(|l| l.contains(" cmd=xread")) {
        let id = line
            .split(' ')
            .find_map(|field| field.strip_prefix("id="))
            .unwrap();
        let _: ::redis::Value = ::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_write_acknowledged_by_one_replica_is_read_at_once_on_another() {
    // A Redis of its own: the test cuts every event tail on it.
    let own = RedisServer::start();
    let prefix = prefix();
    let a = replica(&own.url(), &prefix, &[]).await;
    let b = replica(&own.url(), &prefix, &[]).await;
    let mut expected: Vec<String> = Vec::new();
    for round in 0..50 {
        // A registration, a heartbeat (no event: only the lease moves) and,
        // every fifth round, a deregistration, each acknowledged by A and
        // then read on B right away, with no retry. Before the registration
        // B's view is cut off from the event stream, so only a read that
        // waits for Redis's revision can see it.
        let id = format!("i-{round:02}");
        cut_tails(&own).await;
        let (status, created) = register(&a, "ack", &id, body(30)).await;
        assert_eq!(status, 201);
        expected.push(id.clone());
        let response = client()
            .get(b.at("/v1/services/ack/instances"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let index = index_of(&response);
        assert!(
            index >= created["revision"].as_u64().unwrap(),
            "round {round}"
        );
        let list: Value = response.json().await.unwrap();
        let ids: Vec<String> = listed(&list).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, expected, "round {round}: B misses A's registration");

        let beat = client()
            .put(a.at(&format!("/v1/services/ack/instances/{id}/heartbeat")))
            .send()
            .await
            .unwrap();
        assert_eq!(beat.status(), 200);
        let beat: Value = beat.json().await.unwrap();
        let (_, list) = get(&b, "/v1/services/ack/instances").await;
        let seen = listed(&list)
            .into_iter()
            .find(|(listed, _)| *listed == id)
            .unwrap();
        assert_eq!(
            seen.1, beat["expires_at"],
            "round {round}: B shows an older lease than A renewed"
        );

        if round % 5 == 4 {
            let gone = expected.remove(0);
            let deleted = client()
                .delete(a.at(&format!("/v1/services/ack/instances/{gone}")))
                .send()
                .await
                .unwrap();
            assert_eq!(deleted.status(), 204);
            let (_, list) = get(&b, "/v1/services/ack/instances").await;
            let ids: Vec<String> = listed(&list).into_iter().map(|(id, _)| id).collect();
            assert_eq!(ids, expected, "round {round}: B still lists {gone}");
            let (_, services) = get(&b, "/v1/services").await;
            assert_eq!(
                services["services"],
                json!([{"name": "ack", "instances": expected.len(), "passing": expected.len(),
                        "protected": false}]),
                "round {round}"
            );
        }
    }
}

#[tokio::test]
async fn listings_from_memory_are_the_bytes_a_read_of_redis_makes() {
    let prefix = prefix();
    let app = replica(&redis().url(), &prefix, &[]).await;
    let bodies = [
        json!({"host": "127.0.0.1", "port": 9001, "tags": ["v1", "blue"], "metadata": {"zone": "a"}}),
        json!({"host": "::1", "port": 9002, "tags": ["v2"], "metadata": {"zone": "b", "x": "y"},
               "ttl_seconds": 60}),
        json!({"host": "localhost", "port": 9003,
               "check": {"type": "tcp", "interval_seconds": 5, "timeout_ms": 1000}}),
    ];
    for (n, body) in bodies.into_iter().enumerate() {
        assert_eq!(register(&app, "same", &format!("s-{n}"), body).await.0, 201);
    }
    assert_eq!(heartbeat(&app, "same", "s-1").await, 200);

    let redis = Redis::new(&redis().url(), &prefix, Duration::from_secs(2)).unwrap();
    let store = Store::new(
        redis.clone(),
        EventLog::new(redis, registry::LOG_NAME, 10_000),
    );
    let service = Name::parse("same").unwrap();
    for query in [
        "",
        "?healthy=true",
        "?tag=v1",
        "?tag=v2&meta.zone=b",
        "?meta.zone=a",
        "?stale",
        "?healthy=true&stale=true",
    ] {
        // Twice: rendered, then from the cache.
        for _ in 0..2 {
            let response = client()
                .get(app.at(&format!("/v1/services/same/instances{query}")))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{query}");
            assert_eq!(response.headers()["content-type"], "application/json");
            let index = index_of(&response);
            let served = response.bytes().await.unwrap();

            let pairs: Vec<(String, String)> =
                url_pairs(query.strip_prefix('?').unwrap_or_default());
            let filter = InstanceQuery::parse(&pairs).unwrap();
            let (revision, mut instances) = store.instances(&service).await.unwrap();
            instances.retain(|i| filter.matches(i));
            let from_redis = serde_json::to_vec(&InstanceList {
                service: "same".into(),
                revision,
                instances,
            })
            .unwrap();
            assert_eq!(index, revision, "{query}");
            assert_eq!(
                String::from_utf8_lossy(&served),
                String::from_utf8_lossy(&from_redis),
                "{query}"
            );
        }
    }
}

/// `a=1&b` as decoded pairs (the tests' queries need no escapes).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// Park a blocking query on `app`, returning its task.
fn park(app: &TestService, path: String) -> tokio::task::JoinHandle<reqwest::Response> {
    let url = app.at(&path);
    tokio::spawn(async move { client().get(url).send().await.unwrap() })
}

#[tokio::test]
async fn a_blocking_query_on_the_view_wakes_on_the_first_change_with_its_index() {
    let prefix = prefix();
    let a = replica(&redis().url(), &prefix, &[]).await;
    let b = replica(&redis().url(), &prefix, &[]).await;
    assert_eq!(register(&a, "wake", "w-0", body(30)).await.0, 201);
    for stale in ["", "&stale"] {
        let response = client()
            .get(b.at("/v1/services/wake/instances"))
            .send()
            .await
            .unwrap();
        let index = index_of(&response);
        let parked = park(
            &b,
            format!("/v1/services/wake/instances?index={index}&wait=60s{stale}"),
        );
        let services = park(&b, format!("/v1/services?index={index}&wait=60s{stale}"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!parked.is_finished(), "answered before any change");
        assert!(!services.is_finished(), "answered before any change");

        let id = format!("w-{}", if stale.is_empty() { 1 } else { 2 });
        let (status, created) = register(&a, "wake", &id, body(30)).await;
        assert_eq!(status, 201);
        let revision = created["revision"].as_u64().unwrap();
        // The client gives up after 10 s, the query after 60: an answer at
        // all is the wake-up, and nothing else writes to this prefix.
        let response = parked.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(index_of(&response), revision, "{stale}");
        let list: Value = response.json().await.unwrap();
        assert_eq!(list["revision"], revision);
        assert!(listed(&list).iter().any(|(listed, _)| *listed == id));
        let response = services.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(index_of(&response), revision, "{stale}");
    }
}

#[tokio::test]
async fn stale_reads_answer_while_redis_is_down_and_fenced_reads_heal() {
    let own = RedisServer::start();
    let prefix = prefix();
    let app = replica(&own.url(), &prefix, &[]).await;
    for id in ["d-1", "d-2"] {
        assert_eq!(register(&app, "down", id, body(300)).await.0, 201);
    }
    // Fenced: the view has both, with their deadlines.
    let (status, fenced) = get(&app, "/v1/services/down/instances").await;
    assert_eq!(status, 200);
    let (_, services) = get(&app, "/v1/services").await;
    let (_, targets) = get(&app, "/v1/sd/prometheus").await;

    own.stop();
    let client = client();
    // ?stale: from memory, the same answers as before Redis went.
    for (path, before) in [
        ("/v1/services/down/instances?stale", &fenced),
        ("/v1/services?stale", &services),
        ("/v1/sd/prometheus?stale", &targets),
    ] {
        let started = Instant::now();
        let response = client.get(app.at(path)).send().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(&body, before, "{path}");
    }
    // A stale blocking query answers from memory too (index 1 is behind).
    let response = client
        .get(app.at("/v1/services/down/instances?stale&index=1&wait=30s"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Fenced reads cannot learn Redis's revision: a fast 503, as before.
    for path in [
        "/v1/services/down/instances",
        "/v1/services",
        "/v1/sd/prometheus",
    ] {
        let started = Instant::now();
        let response = client.get(app.at(path)).send().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(3), "{path}");
        assert_eq!(response.status(), 503, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }

    own.restart();
    let healed = eventually(Duration::from_secs(10), || async {
        get(&app, "/v1/services/down/instances").await.0 == 200
    })
    .await;
    assert!(healed, "fenced reads must serve again once Redis is back");
    // And the view follows writes again.
    let healed = eventually(Duration::from_secs(10), || async {
        register(&app, "down", "d-3", body(300)).await.0 == 201
    })
    .await;
    assert!(healed);
    let (_, list) = get(&app, "/v1/services/down/instances").await;
    let ids: Vec<String> = listed(&list).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["d-1", "d-2", "d-3"]);
}
