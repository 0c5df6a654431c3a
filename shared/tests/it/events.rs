//! The event feed when Redis loses its data: a watcher open across the loss
//! gets a `reset` (re-list) instead of silently missing the new history.

use std::time::Duration;

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use futures_util::StreamExt;
use mcp_shared::{
    Redis,
    events::{EventFeed, EventLog, script},
};
use mcp_testkit::{RedisServer, prefix};
use tokio_util::sync::CancellationToken;

const APPEND: &str = "local rev = mcp_next_revision(KEYS[1])
mcp_append(KEYS[2], ARGV[1], rev, 'put', 'x', '{}')
return rev";

async fn try_append(log: &EventLog) -> redis::RedisResult<u64> {
    let mut conn = log.redis().conn();
    script(APPEND)
        .key(log.revision_key())
        .key(log.stream_key())
        .arg(100)
        .invoke_async(&mut conn)
        .await
}

async fn append(log: &EventLog) -> u64 {
    try_append(log).await.unwrap()
}

/// Read SSE frames until one with `event: {kind}` (at most 20 s, heartbeats
/// included); returns its `id`.
async fn next_of_kind(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    kind: &str,
) -> u64 {
    tokio::time::timeout(Duration::from_secs(20), read_until(stream, buffer, kind))
        .await
        .unwrap_or_else(|_| panic!("no `{kind}` event within 20 s"))
}

async fn read_until(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    kind: &str,
) -> u64 {
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if frame.lines().any(|l| l == format!("event: {kind}")) {
                let id = frame.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
                return id.parse().unwrap();
            }
        }
        let chunk = stream.next().await.expect("stream ended").unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn a_watcher_gets_reset_when_redis_comes_back_without_its_history() {
    let server = RedisServer::start();
    let (log, shutdown, service) = served_feed(&server.url(), 100).await;

    let response = reqwest::get(service.at("/watch")).await.unwrap();
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    for expected in 1..=3 {
        assert_eq!(append(&log).await, expected);
        assert_eq!(
            next_of_kind(&mut stream, &mut buffer, "put").await,
            expected
        );
    }

    // Redis loses everything (the flush is in the AOF, so it survives the restart).
    server.command(&["FLUSHALL"]);
    server.restart();
    assert_eq!(next_of_kind(&mut stream, &mut buffer, "reset").await, 0);

    // The new history reaches the watcher from its first revision.
    let mut first = None;
    for _ in 0..100 {
        if let Ok(rev) = try_append(&log).await {
            first = Some(rev);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = first.expect("Redis did not take a write after its restart");
    assert_eq!(first, 1);
    assert_eq!(next_of_kind(&mut stream, &mut buffer, "put").await, 1);
    shutdown.cancel();
}

const APPEND_IN: &str = "local rev = mcp_next_revision(KEYS[1])
mcp_append(KEYS[2], ARGV[1], rev, 'put', ARGV[2], ARGV[3])
return rev";

/// Append one `put` of `scope` carrying `data`; returns its revision.
async fn append_in(log: &EventLog, scope: &str, data: &str) -> u64 {
    let mut conn = log.redis().conn();
    script(APPEND_IN)
        .key(log.revision_key())
        .key(log.stream_key())
        .arg(log.max_len())
        .arg(scope)
        .arg(data)
        .invoke_async(&mut conn)
        .await
        .unwrap()
}

#[derive(serde::Deserialize)]
struct WatchParams {
    scope: Option<String>,
}

async fn watch(
    State(feed): State<EventFeed>,
    axum::extract::Query(params): axum::extract::Query<WatchParams>,
) -> impl IntoResponse {
    feed.open_watch(None, params.scope, |_| true, None)
        .await
        .unwrap()
}

/// A feed of a log on the Redis at `redis_url` (its own prefix), served at
/// `/watch?scope=`.
async fn served_feed(
    redis_url: &str,
    max_len: u64,
) -> (EventLog, CancellationToken, mcp_testkit::TestService) {
    let redis = Redis::new(redis_url, &prefix(), Duration::from_millis(750)).unwrap();
    let log = EventLog::new(redis, "t", max_len);
    let shutdown = CancellationToken::new();
    let (feed, _tail) = EventFeed::spawn(log.clone(), "test_watchers", shutdown.clone());
    let app = Router::new().route("/watch", get(watch)).with_state(feed);
    let service = mcp_testkit::spawn(|listener, stop| async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    })
    .await;
    (log, shutdown, service)
}

/// The next `count` events (heartbeats skipped) as (kind, id, data), at most 20 s.
async fn next_events(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    count: usize,
) -> Vec<(String, u64, String)> {
    let read = async {
        let mut events = Vec::new();
        while events.len() < count {
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    frame
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .map(str::to_owned)
                };
                if let Some(kind) = field("event: ") {
                    let id = field("id: ").unwrap().parse().unwrap();
                    events.push((kind, id, field("data: ").unwrap_or_default()));
                }
            }
            if events.len() >= count {
                break;
            }
            let chunk = stream.next().await.expect("stream ended").unwrap();
            buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
        events
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("fewer than {count} events within 20 s"))
}

#[tokio::test]
async fn a_watch_of_one_scope_gets_exactly_its_events_in_order_through_a_burst() {
    let (log, shutdown, service) = served_feed(&mcp_testkit::redis().url(), 10_000).await;
    let response = reqwest::get(service.at("/watch?scope=a")).await.unwrap();
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    // A burst: frames pile up faster than the body is polled, so they leave
    // several to a chunk; the other scope's events are interleaved.
    let mut expected = Vec::new();
    for i in 0..300 {
        let scope = if i % 3 == 0 { "a" } else { "b" };
        let revision = append_in(&log, scope, &format!(r#"{{"i":{i}}}"#)).await;
        if scope == "a" {
            expected.push((revision, format!(r#"{{"i":{i}}}"#)));
        }
    }
    let got = next_events(&mut stream, &mut buffer, expected.len()).await;
    let got: Vec<(u64, String)> = got
        .into_iter()
        .map(|(kind, id, data)| {
            assert_eq!(kind, "put");
            (id, data)
        })
        .collect();
    assert_eq!(got, expected);
    // Nothing else is pending: the next event is the next write of `a`.
    append_in(&log, "b", "{}").await;
    let next = append_in(&log, "a", "{}").await;
    assert_eq!(next_events(&mut stream, &mut buffer, 1).await[0].1, next);
    shutdown.cancel();
}

#[tokio::test]
async fn shutdown_ends_an_open_watch() {
    let (log, shutdown, service) = served_feed(&mcp_testkit::redis().url(), 100).await;
    let response = reqwest::get(service.at("/watch?scope=a")).await.unwrap();
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let revision = append_in(&log, "a", "{}").await;
    assert_eq!(
        next_events(&mut stream, &mut buffer, 1).await[0].1,
        revision
    );
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the watch was still open 10 s after shutdown"
    );
}
