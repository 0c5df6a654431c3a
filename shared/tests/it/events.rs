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

async fn watch(
    State((feed, shutdown)): State<(EventFeed, CancellationToken)>,
) -> impl IntoResponse {
    feed.open_watch(None, |_| true, None, shutdown)
        .await
        .unwrap()
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
    let redis = Redis::new(&server.url(), &prefix(), Duration::from_millis(750)).unwrap();
    let log = EventLog::new(redis, "t", 100);
    let shutdown = CancellationToken::new();
    let (feed, _tail) = EventFeed::spawn(log.clone(), "test_watchers", shutdown.clone());
    let app = Router::new()
        .route("/watch", get(watch))
        .with_state((feed, shutdown.clone()));
    let service = mcp_testkit::spawn(|listener, stop| async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    })
    .await;

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
