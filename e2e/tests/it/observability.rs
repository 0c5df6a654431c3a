//! Traces and logs end to end, across real processes (started as in
//! `processes`): the gateway and registry-svc export OTLP/HTTP to a real
//! receiver in the test, one request is one trace across both down to
//! Redis, and their JSON log lines carry the trace ids and never a token;
//! with the collector down, requests still succeed and the dropped spans
//! are counted. Metrics and profiles are in `metrics`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::post,
};
use mcp_testkit::{TestService, eventually, free_port, prefix};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, any_value},
    trace::v1::span::SpanKind,
};
use prost::Message as _;

use crate::processes::{Process, bearer, gateway, sample};

/// One span as the receiver decoded it.
#[derive(Debug, Clone)]
struct ExportedSpan {
    service: String,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    name: String,
    kind: SpanKind,
    attributes: BTreeMap<String, String>,
}

impl ExportedSpan {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A real OTLP/HTTP receiver: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, as a collector takes it.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<ExportedSpan>>>,
    _server: TestService,
}

impl Collector {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let server = mcp_testkit::spawn(|listener, shutdown| async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
        })
        .await;
        Self {
            url: server.url.clone(),
            spans,
            _server: server,
        }
    }

    fn spans(&self) -> Vec<ExportedSpan> {
        self.spans.lock().unwrap().clone()
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn receive(
    State(spans): State<Arc<Mutex<Vec<ExportedSpan>>>>,
    body: Bytes,
) -> impl IntoResponse {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new()).into_response();
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            received.push(ExportedSpan {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                kind: span.kind(),
                name: span.name,
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect(),
            });
        }
    }
    spans.lock().unwrap().extend(received);
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

/// The spans of one request through the gateway into registry-svc.
struct RequestTrace {
    gateway_server: ExportedSpan,
    gateway_client: ExportedSpan,
    registry_server: ExportedSpan,
    redis: Vec<ExportedSpan>,
}

/// Wait for the spans of the gateway request to `gateway_path` (a GET to
/// registry-svc's `registry_path`), from both processes.
async fn trace_of(collector: &Collector, gateway_path: &str, registry_path: &str) -> RequestTrace {
    let mut found = None;
    let complete = eventually(Duration::from_secs(10), || {
        let spans = collector.spans();
        let trace = (|| {
            let gateway_server = spans.iter().find(|s| {
                s.service == "gateway"
                    && s.kind == SpanKind::Server
                    && s.attr("url.path") == Some(gateway_path)
            })?;
            let same_trace = |s: &&ExportedSpan| s.trace_id == gateway_server.trace_id;
            let gateway_client = spans
                .iter()
                .filter(same_trace)
                .find(|s| s.service == "gateway" && s.kind == SpanKind::Client)?;
            let registry_server = spans.iter().filter(same_trace).find(|s| {
                s.service == "registry-svc"
                    && s.kind == SpanKind::Server
                    && s.attr("url.path") == Some(registry_path)
            })?;
            let redis: Vec<_> = spans
                .iter()
                .filter(same_trace)
                .filter(|s| {
                    s.service == "registry-svc" && s.attr("db.system.name") == Some("redis")
                })
                .cloned()
                .collect();
            if redis.is_empty() {
                return None;
            }
            Some(RequestTrace {
                gateway_server: gateway_server.clone(),
                gateway_client: gateway_client.clone(),
                registry_server: registry_server.clone(),
                redis,
            })
        })();
        let done = trace.is_some();
        if done {
            found = trace;
        }
        async move { done }
    })
    .await;
    assert!(
        complete,
        "spans of the request did not all arrive; got: {:#?}",
        collector.spans()
    );
    found.unwrap()
}

async fn otel_stack() -> (Collector, Process, Process) {
    otel_stack_with(&[]).await
}

/// A collector, registry-svc and a gateway exporting to it, all with `env`.
async fn otel_stack_with(env: &[(&str, String)]) -> (Collector, Process, Process) {
    let prefix = prefix();
    let collector = Collector::start().await;
    let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.clone())];
    all.extend(env.iter().cloned());
    let registry = Process::start("registry-svc", &prefix, &all).await;
    let gateway = gateway(&prefix, &registry, &all).await;
    (collector, registry, gateway)
}

/// `GET /api/v1/registry/services` through `gateway` answers 200.
async fn list_services(gateway: &Process) {
    let response = reqwest::Client::new()
        .get(gateway.at("/api/v1/registry/services"))
        .header("authorization", bearer("registry:read"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn one_request_through_the_gateway_is_one_trace_across_both_processes_down_to_redis() {
    let (collector, registry, gateway) = otel_stack().await;
    list_services(&gateway).await;

    let trace = trace_of(&collector, "/api/v1/registry/services", "/v1/services").await;
    let RequestTrace {
        gateway_server,
        gateway_client,
        registry_server,
        redis,
    } = &trace;
    assert_eq!(
        gateway_server.parent_span_id, "",
        "no traceparent came in: the gateway starts the trace"
    );
    assert_eq!(gateway_server.attr("http.route"), Some("/api/{*rest}"));
    assert_eq!(gateway_server.attr("http.request.method"), Some("GET"));
    assert_eq!(
        gateway_server.attr("http.response.status_code"),
        Some("200")
    );

    assert_eq!(gateway_client.parent_span_id, gateway_server.span_id);
    assert_eq!(gateway_client.name, "GET");
    assert_eq!(gateway_client.attr("http.request.method"), Some("GET"));
    assert_eq!(
        gateway_client.attr("http.response.status_code"),
        Some("200")
    );
    assert_eq!(gateway_client.attr("server.address"), Some("127.0.0.1"));
    assert_eq!(
        gateway_client.attr("server.port"),
        Some(registry.port.to_string().as_str())
    );
    assert_eq!(
        gateway_client.attr("url.full"),
        Some(registry.at("/v1/services").as_str())
    );

    assert_eq!(
        registry_server.parent_span_id, gateway_client.span_id,
        "registry-svc continues the gateway's client span"
    );
    assert_eq!(registry_server.name, "GET /v1/services");
    assert_eq!(registry_server.attr("http.route"), Some("/v1/services"));
    assert_eq!(
        registry_server.attr("http.response.status_code"),
        Some("200")
    );

    for span in redis {
        assert_eq!(span.parent_span_id, registry_server.span_id);
        assert_eq!(span.kind, SpanKind::Client);
        assert_eq!(span.attr("server.address"), Some("127.0.0.1"));
    }
}

#[tokio::test]
async fn a_traceparent_sent_by_the_client_is_continued_not_replaced() {
    let (collector, _registry, gateway) = otel_stack().await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .get(gateway.at("/api/v1/registry/services"))
        .header("authorization", bearer("registry:read"))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let trace = trace_of(&collector, "/api/v1/registry/services", "/v1/services").await;
    assert_eq!(trace.gateway_server.trace_id, trace_id);
    assert_eq!(trace.gateway_server.parent_span_id, parent_id);
    assert_eq!(trace.gateway_client.trace_id, trace_id);
    assert_eq!(trace.registry_server.trace_id, trace_id);
    assert_eq!(
        trace.registry_server.parent_span_id,
        trace.gateway_client.span_id
    );
}

/// The "request finished" line of the request to `path`, once written.
async fn request_line(process: &Process, path: &str) -> serde_json::Value {
    let mut line = None;
    let logged = eventually(Duration::from_secs(5), || {
        line = process
            .log_lines()
            .into_iter()
            .find(|l| l["message"] == "request finished" && l["span"]["url.path"] == path);
        let done = line.is_some();
        async move { done }
    })
    .await;
    assert!(
        logged,
        "{} logged no line for {path}:\n{}",
        process.name,
        process.output()
    );
    line.unwrap()
}

#[tokio::test]
async fn a_request_log_line_carries_its_trace_id_and_no_authorization_is_ever_logged() {
    let (collector, registry, gateway) = otel_stack().await;
    let token = bearer("registry:read");
    let client = reqwest::Client::new();
    let response = client
        .get(gateway.at("/api/v1/registry/services"))
        .header("authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A rejected token must not be logged either.
    let rejected = "Bearer not.a-valid.jwt-s3cr3t";
    let response = client
        .get(gateway.at("/api/v1/registry/services/rejected/instances"))
        .header("authorization", rejected)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let trace = trace_of(&collector, "/api/v1/registry/services", "/v1/services").await;
    let line = request_line(&gateway, "/api/v1/registry/services").await;
    assert_eq!(
        line["span"]["trace_id"],
        trace.gateway_server.trace_id.as_str()
    );
    assert_eq!(
        line["span"]["span_id"],
        trace.gateway_server.span_id.as_str()
    );
    assert_eq!(line["span"]["http.request.method"], "GET");
    assert_eq!(line["span"]["http.route"], "/api/{*rest}");
    assert!(
        line["span"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(line["status"], 200);
    assert!(line["latency_ms"].as_f64().is_some());
    let line = request_line(&registry, "/v1/services").await;
    assert_eq!(
        line["span"]["trace_id"],
        trace.registry_server.trace_id.as_str()
    );
    assert_eq!(
        line["span"]["span_id"],
        trace.registry_server.span_id.as_str()
    );

    for process in [&gateway, &registry] {
        let output = process.output();
        let lowered = output.to_lowercase();
        assert!(
            !lowered.contains("authorization"),
            "{}:\n{output}",
            process.name
        );
        assert!(!lowered.contains("bearer"), "{}:\n{output}", process.name);
        assert!(!output.contains(&token[7..]), "{}:\n{output}", process.name);
        assert!(!output.contains("s3cr3t"), "{}:\n{output}", process.name);
    }
}

#[tokio::test]
async fn with_the_collector_down_requests_succeed_and_the_dropped_spans_are_counted() {
    let prefix = prefix();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", closed)];
    let registry = Process::start("registry-svc", &prefix, &otel).await;
    let gateway = gateway(&prefix, &registry, &otel).await;
    let client = reqwest::Client::new();
    let token = bearer("registry:read");
    for _ in 0..20 {
        let response = client
            .get(gateway.at("/api/v1/registry/services"))
            .header("authorization", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for process in [&gateway, &registry] {
        let dropped = eventually(Duration::from_secs(10), || async {
            sample(
                &process.metrics().await,
                r#"otel_spans_dropped_total{reason="export_failed"}"#,
            ) >= 20.0
        })
        .await;
        assert!(dropped, "{}:\n{}", process.name, process.metrics().await);
        assert_eq!(
            sample(&process.metrics().await, "otel_spans_exported_total"),
            0.0
        );
    }
}

#[tokio::test]
async fn with_rust_log_at_warn_the_services_spans_are_still_exported() {
    // The prod overlay's log level: only warnings are logged, yet the
    // request spans (made at `info`) reach the collector.
    let (collector, _registry, gateway) = otel_stack_with(&[("RUST_LOG", "warn".to_owned())]).await;
    list_services(&gateway).await;

    let trace = trace_of(&collector, "/api/v1/registry/services", "/v1/services").await;
    assert_eq!(trace.registry_server.name, "GET /v1/services");
    assert_eq!(
        trace.registry_server.parent_span_id,
        trace.gateway_client.span_id
    );
    // …and the log level still holds for the log lines.
    assert!(
        gateway
            .log_lines()
            .iter()
            .all(|line| line["level"] != "INFO" && line["level"] != "DEBUG"),
        "{}",
        gateway.output()
    );
}
