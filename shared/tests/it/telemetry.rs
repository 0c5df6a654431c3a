//! Telemetry in-process: the request span continues a `traceparent` and is
//! the parent of the Redis command spans, the request's log line carries its
//! ids and never a token, and spans that cannot be exported are dropped and
//! counted instead of blocking anyone.
//!
//! Each test uses its own tracer provider and a subscriber scoped to its
//! thread (`#[tokio::test]` runs server and client on that one thread); the
//! cross-process picture (gateway → service) is in `e2e/tests/it/observability.rs`.

use std::{
    io::Write,
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use axum::{Router, extract::State, routing::get};
use mcp_shared::{Redis, server, telemetry};
use mcp_testkit::{prefix, redis};
use opentelemetry::trace::{SpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::{
    error::{OTelSdkError, OTelSdkResult},
    propagation::TraceContextPropagator,
    trace::{SpanData, SpanExporter},
};
use tracing_subscriber::layer::SubscriberExt as _;

/// Keeps what it is given.
#[derive(Debug, Clone, Default)]
struct Keep(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Keep {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// A collector that is down.
#[derive(Debug)]
struct Refuse;

impl SpanExporter for Refuse {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Err(OTelSdkError::InternalFailure("connection refused".into()))
    }
}

/// A collector that hangs until `release` is dropped.
#[derive(Debug)]
struct Hang(Mutex<mpsc::Receiver<()>>);

impl SpanExporter for Hang {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        let _ = self.0.lock().unwrap().recv();
        Ok(())
    }
}

/// A `Write` into a shared buffer, for the JSON log lines.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn sample(series: &str) -> f64 {
    mcp_shared::metrics::handle()
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn item(State(redis): State<Redis>) -> &'static str {
    redis.ping().await.unwrap();
    let mut conn = redis.conn();
    let key = redis.key(&["item"]);
    redis
        .run(async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut conn)
                .await
        })
        .await
        .unwrap();
    "ok"
}

#[tokio::test]
async fn a_request_span_continues_traceparent_parents_its_redis_spans_and_its_log_line_joins_them()
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let kept = Keep::default();
    let provider = telemetry::tracer_provider(kept.clone(), "test-svc");
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(move || writer.clone()),
        )
        .with(telemetry::layer(&provider, "test-svc"));
    let _default = tracing::subscriber::set_default(subscriber);

    let store = Redis::new(&redis().url(), &prefix(), Duration::from_secs(1)).unwrap();
    let routes = Router::new()
        .route("/items/{id}", get(item))
        .with_state(store.clone());
    let app = mcp_testkit::spawn(move |listener, shutdown| {
        server::serve(
            listener,
            server::scaffold(routes, store, 1024),
            shutdown,
            server::ConnectionLimits {
                shutdown_grace: Duration::from_secs(1),
                ..server::ConnectionLimits::default()
            },
        )
    })
    .await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let parent_id = "b7ad6b7169203331";
    let token = "eyJhbGciOiJIUzI1NiJ9.secret-payload.signature";
    let response = reqwest::Client::new()
        .get(app.at("/items/42"))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
    app.stop().await.unwrap();
    provider.force_flush().unwrap();

    let spans = kept.0.lock().unwrap().clone();
    let request = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .expect("a server span");
    assert_eq!(request.span_context.trace_id().to_string(), trace_id);
    assert_eq!(request.parent_span_id.to_string(), parent_id);
    assert!(request.parent_span_is_remote);
    assert_eq!(request.name, "GET /items/{id}");
    let attribute = |span: &SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(
        attribute(request, "http.route").as_deref(),
        Some("/items/{id}")
    );
    assert_eq!(attribute(request, "url.path").as_deref(), Some("/items/42"));
    assert_eq!(
        attribute(request, "http.response.status_code").as_deref(),
        Some("200")
    );

    let commands: Vec<_> = spans
        .iter()
        .filter(|s| attribute(s, "db.system.name").as_deref() == Some("redis"))
        .collect();
    assert_eq!(commands.len(), 2, "{spans:#?}");
    for command in &commands {
        assert_eq!(command.span_kind, SpanKind::Client);
        assert_eq!(command.parent_span_id, request.span_context.span_id());
        assert_eq!(
            command.span_context.trace_id(),
            request.span_context.trace_id()
        );
        assert_eq!(
            attribute(command, "server.address").as_deref(),
            Some("127.0.0.1")
        );
    }
    assert!(commands.iter().any(|c| c.name == "PING"));

    let text = logs.text();
    let line: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "request finished")
        .unwrap_or_else(|| panic!("no request line in:\n{text}"));
    assert_eq!(line["span"]["trace_id"], trace_id);
    assert_eq!(
        line["span"]["span_id"],
        request.span_context.span_id().to_string()
    );
    assert_eq!(line["span"]["http.route"], "/items/{id}");
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].is_number());
    assert!(!text.to_lowercase().contains("authorization"), "{text}");
    assert!(!text.contains("secret-payload"), "{text}");
    provider.shutdown().unwrap();
}

#[test]
fn spans_the_collector_does_not_take_are_dropped_and_counted() {
    let series = r#"otel_spans_dropped_total{reason="export_failed"}"#;
    let before = sample(series);
    let provider = telemetry::tracer_provider(Refuse, "test-svc");
    let tracer = provider.tracer("test");
    for _ in 0..10 {
        tracer.in_span("work", |_| {});
    }
    let _ = provider.force_flush();
    assert!(sample(series) - before >= 10.0);
    let _ = provider.shutdown();
}

#[test]
fn spans_beyond_the_queue_are_dropped_and_counted_while_the_collector_hangs() {
    let series = r#"otel_spans_dropped_total{reason="queue_full"}"#;
    let before = sample(series);
    let (release, hang) = mpsc::channel();
    let provider = telemetry::tracer_provider_with_queue(Hang(Mutex::new(hang)), "test-svc", 4);
    let tracer = provider.tracer("test");
    // Ending a span never waits for the hung export: at most one batch is
    // being exported and 4 spans wait, the rest are dropped at once.
    for _ in 0..50 {
        tracer.in_span("work", |_| {});
    }
    assert!(
        sample(series) - before >= 42.0,
        "dropped {}",
        sample(series) - before
    );
    drop(release);
    let _ = provider.shutdown();
}
