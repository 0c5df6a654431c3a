//! Observability end to end, across real processes: the gateway binary and
//! the control-plane services (this test binary re-executes itself as each
//! of them, see [`child_service`]) export OTLP/HTTP to a real receiver in
//! the test, log JSON lines to stdout, and serve `/metrics`.
//!
//! Each service is its own process because `telemetry::init` installs a
//! process-wide subscriber, exporter and propagator, exactly as in production.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::BTreeMap,
    process::{ExitCode, Stdio},
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
use clap::Parser as _;
use futures_util::{StreamExt as _, stream};
use mcp_testkit::{JWT_SECRET, TestService, eventually, free_port, prefix, redis};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, any_value},
    trace::v1::span::SpanKind,
};
use prost::Message as _;
use tokio::{
    io::{AsyncBufReadExt as _, BufReader},
    process::{Child, Command},
};

/// Set on a child process: which service this test binary runs as.
const CHILD_ENV: &str = "MCP_OBSERVABILITY_CHILD";

/// Not a test: the `main` of a control-plane service when this binary is
/// started as a child process (with [`CHILD_ENV`] set and the service's
/// settings in its environment). It does what the service's own `main` does.
#[test]
#[ignore = "runs only as a child process of the other tests"]
fn child_service() {
    let Ok(service) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = runtime.block_on(async move {
        use mcp_shared::server::main;
        match service.as_str() {
            "registry-svc" => {
                let settings = registry_svc::Settings::try_parse_from(["registry-svc"]).unwrap();
                let (common, addr) = (settings.common.clone(), settings.addr);
                main("registry-svc", &common, addr, |l, s| {
                    registry_svc::run(settings, l, s)
                })
                .await
            }
            "config-svc" => {
                let settings = config_svc::Settings::try_parse_from(["config-svc"]).unwrap();
                let (common, addr) = (settings.common.clone(), settings.addr);
                main("config-svc", &common, addr, |l, s| {
                    config_svc::run(settings, l, s)
                })
                .await
            }
            "health-svc" => {
                let settings = health_svc::Settings::try_parse_from(["health-svc"]).unwrap();
                let (common, addr) = (settings.common.clone(), settings.addr);
                main("health-svc", &common, addr, |l, s| {
                    health_svc::run(settings, l, s)
                })
                .await
            }
            other => panic!("unknown child service {other}"),
        }
    });
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// A service running as a child process, its stdout and stderr collected.
struct Process {
    name: &'static str,
    url: String,
    port: u16,
    output: Arc<Mutex<String>>,
    _child: Child,
}

impl Process {
    /// Start `name` (`gateway` or a control-plane service) on a free port
    /// with `env` (plus Redis, prefix, JSON logs) and wait until it is live.
    async fn start(name: &'static str, redis_prefix: &str, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut command = if name == "gateway" {
            Command::new(env!("CARGO_BIN_EXE_gateway"))
        } else {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.args(["child_service", "--exact", "--ignored", "--nocapture"]);
            command
        };
        command.env_clear();
        if name != "gateway" {
            command.env(CHILD_ENV, name);
        }
        let addr_var = match name {
            "gateway" => "GATEWAY_ADDR",
            "registry-svc" => "REGISTRY_ADDR",
            "config-svc" => "CONFIG_ADDR",
            "health-svc" => "HEALTH_ADDR",
            other => panic!("unknown service {other}"),
        };
        command
            .env(addr_var, format!("127.0.0.1:{port}"))
            .env("REDIS_URL", redis().url())
            .env("MCP_REDIS_PREFIX", redis_prefix)
            // Loopback only, no DNS (ignored by config-svc, which connects nowhere).
            .env("EGRESS_ALLOW_CIDRS", "127.0.0.0/8")
            .env("EGRESS_ALLOW_HOSTNAMES", "false")
            .env("MCP_INTERNAL_SECRET", mcp_testkit::INTERNAL_SECRET)
            .env("LOG_FORMAT", "json")
            .env(
                "RUST_LOG",
                "info,gateway=debug,mcp_shared=debug,registry_svc=debug,tower_http=debug",
            )
            // Export batches every 100 ms instead of every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for pipe in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let process = Self {
            name,
            url: format!("http://127.0.0.1:{port}"),
            port,
            output,
            _child: child,
        };
        let live = eventually(Duration::from_secs(15), || async {
            reqwest::get(process.at("/healthz"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(
            live,
            "{name} did not come up; its output:\n{}",
            process.output()
        );
        process
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Everything it wrote so far (stdout and stderr).
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Its JSON log lines so far.
    fn log_lines(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    async fn metrics(&self) -> String {
        // The gateway's `/metrics` needs `metrics:read`; the services' are open.
        let response = reqwest::Client::new()
            .get(self.at("/metrics"))
            .header("authorization", bearer("metrics:read"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{} /metrics", self.name);
        response.text().await.unwrap()
    }
}

/// A gateway in front of `registry`, with the test JWT secret and `env`.
async fn gateway(redis_prefix: &str, registry: &Process, env: &[(&str, String)]) -> Process {
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut all = vec![
        ("REGISTRY_URL", registry.url.clone()),
        ("CONFIG_URL", nowhere.clone()),
        ("HEALTH_URL", nowhere),
        ("JWT_SECRET", JWT_SECRET.to_owned()),
    ];
    all.extend(env.iter().cloned());
    Process::start("gateway", redis_prefix, &all).await
}

fn bearer(scopes: &str) -> String {
    format!(
        "Bearer {}",
        mcp_testkit::token(JWT_SECRET, "tester", scopes)
    )
}

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

/// The value of the series `name{labels}` (exactly as rendered), or 0.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
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
async fn every_service_exposes_the_metrics_design_md_names() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let config = Process::start("config-svc", &prefix, &[]).await;
    let health = Process::start("health-svc", &prefix, &[]).await;
    let gateway = gateway(
        &prefix,
        &registry,
        &[
            ("RATE_LIMIT_RPS", "1".to_owned()),
            ("RATE_LIMIT_BURST", "1".to_owned()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    // An auth failure, a proxied request, then rate-limited ones.
    let anonymous = client
        .get(gateway.at("/api/v1/registry/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let token = bearer("registry:read");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(gateway.at("/api/v1/registry/services"))
            .header("authorization", &token)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");

    let http = [
        "http_server_requests_total{",
        "http_server_request_duration_seconds_bucket{",
        // Buckets from 100 µs to 10 s.
        r#"le="0.0001"}"#,
        r#"le="10"}"#,
    ];
    let own: [(&Process, &[&str]); 4] = [
        (
            &gateway,
            &[
                "gateway_upstream_requests_total{",
                "gateway_circuit_state{",
                "gateway_rate_limited_total",
                r#"gateway_auth_failures_total{reason=""#,
            ],
        ),
        (
            &registry,
            &[
                "registry_expired_total",
                "registry_protected_services",
                "registry_watchers",
            ],
        ),
        (&config, &["config_watchers"]),
        (&health, &["health_watchers"]),
    ];
    for (process, names) in own {
        // Every service has answered a request (its readiness probe at least).
        reqwest::get(process.at("/healthz")).await.unwrap();
        let metrics = process.metrics().await;
        for name in http.iter().chain(names.iter()) {
            assert!(
                metrics.contains(name),
                "{} lacks {name}:\n{metrics}",
                process.name
            );
        }
        assert!(
            metrics.contains(r#"route="/healthz""#),
            "{}:\n{metrics}",
            process.name
        );
    }
}

#[tokio::test]
async fn a_thousand_requests_to_a_thousand_ids_add_one_series_not_a_thousand() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let gateway = gateway(&prefix, &registry, &[("RATE_LIMIT_RPS", "0".to_owned())]).await;
    let client = reqwest::Client::new();
    let token = bearer("registry:write");
    let statuses: Vec<u16> = stream::iter(0..1000)
        .map(|i| {
            let request = client
                .put(gateway.at(&format!(
                    "/api/v1/registry/services/billing/instances/id-{i}/heartbeat"
                )))
                .header("authorization", &token)
                .send();
            async move { request.await.unwrap().status().as_u16() }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|&s| s == statuses[0]),
        "one status for every unknown id: {statuses:?}"
    );

    for (process, route) in [
        (&gateway, "/api/{*rest}"),
        (&registry, "/v1/services/{service}/instances/{id}/heartbeat"),
    ] {
        let metrics = process.metrics().await;
        let series: Vec<&str> = metrics
            .lines()
            .filter(|l| {
                l.starts_with("http_server_requests_total{") && l.contains(r#"method="PUT""#)
            })
            .collect();
        assert_eq!(series.len(), 1, "{}: {series:#?}", process.name);
        assert!(
            series[0].contains(&format!(r#"route="{route}""#)),
            "{series:?}"
        );
        assert!(series[0].ends_with(" 1000"), "{series:?}");
        assert!(
            !metrics.contains("id-1"),
            "{}: a raw id leaked into a label",
            process.name
        );
    }
}

#[tokio::test]
async fn cpu_profiles_are_served_to_admins_when_enabled() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let gateway = gateway(
        &prefix,
        &registry,
        &[
            ("PROFILING_ENABLED", "true".to_owned()),
            ("RATE_LIMIT_RPS", "0".to_owned()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let profile = |query: &str, scopes: &str| {
        client
            .get(gateway.at(&format!("/admin/profile?{query}")))
            .header("authorization", bearer(scopes))
            .send()
    };

    let forbidden = profile("seconds=1", "registry:read").await.unwrap();
    assert_eq!(forbidden.status(), 403);
    let bad = profile("seconds=0", "admin").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert!(body.to_string().contains("seconds"), "{body}");

    // Some work to sample while profiling (the sampler counts CPU time).
    let load = {
        let client = client.clone();
        let url = gateway.at("/api/v1/registry/services");
        let token = bearer("registry:read");
        tokio::spawn(async move {
            for _ in 0..2_000 {
                let _ = client
                    .get(&url)
                    .header("authorization", &token)
                    .send()
                    .await;
            }
        })
    };
    let svg = profile("seconds=1", "admin").await.unwrap();
    load.abort();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.contains("<svg"), "{}", &svg[..svg.len().min(200)]);
    assert!(!svg.contains("no CPU samples"), "the gateway was busy");

    let pprof = profile("seconds=1&format=pprof", "admin").await.unwrap();
    assert_eq!(pprof.status(), 200);
    assert_eq!(pprof.headers()["content-type"], "application/octet-stream");
    assert!(!pprof.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn cpu_profiling_is_off_unless_enabled() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let gateway = gateway(&prefix, &registry, &[]).await;
    let response = reqwest::Client::new()
        .get(gateway.at("/admin/profile?seconds=1"))
        .header("authorization", bearer("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
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

#[tokio::test]
async fn counters_that_alerts_read_are_at_zero_right_after_start() {
    let prefix = prefix();
    let registry = Process::start("registry-svc", &prefix, &[]).await;
    let config = Process::start("config-svc", &prefix, &[]).await;
    let health = Process::start("health-svc", &prefix, &[]).await;
    let gateway = gateway(&prefix, &registry, &[]).await;

    let mut expected: Vec<(&Process, String)> = [
        "gateway_rate_limited_total",
        "gateway_rate_limit_fail_open_total",
        "gateway_egress_refused_total",
    ]
    .into_iter()
    .map(|series| (&gateway, series.to_owned()))
    .collect();
    for reason in [
        "missing",
        "malformed",
        "signature",
        "algorithm",
        "unknown_key",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "claims",
    ] {
        expected.push((
            &gateway,
            format!(r#"gateway_auth_failures_total{{reason="{reason}"}}"#),
        ));
    }
    for result in ["ok", "conflict", "rejected", "error"] {
        expected.push((
            &config,
            format!(r#"config_writes_total{{result="{result}"}}"#),
        ));
    }
    for kind in ["http", "tcp"] {
        for result in ["passing", "warning", "critical"] {
            expected.push((
                &health,
                format!(r#"health_checks_total{{type="{kind}",result="{result}"}}"#),
            ));
        }
    }
    for (process, series) in expected {
        let metrics = process.metrics().await;
        assert_eq!(
            sample(&metrics, &series),
            0.0,
            "{} should list {series} at 0:\n{metrics}",
            process.name
        );
        assert!(
            metrics.lines().any(|line| line.starts_with(&series)),
            "{} lacks {series}:\n{metrics}",
            process.name
        );
    }
}
