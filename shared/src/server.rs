//! The scaffold every MCP service runs on.
//!
//! [`scaffold`] wraps a service's routes with what every service answers and
//! does the same way: `/healthz`, `/readyz` (pings Redis), `/metrics`, a
//! request id, a request span that continues an incoming W3C `traceparent`
//! (with the OpenTelemetry HTTP server attributes), one log line per
//! finished request, HTTP metrics, the body-size limit and problem+json for
//! every error. No header value is ever put on a span or a log line, so
//! tokens (`Authorization`) never reach a log.
//! [`serve`] runs it until the shutdown token fires, then drains in-flight
//! requests; [`main`] is the whole body of each binary's `main`.

use std::{future::Future, net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderMap, HeaderName},
    middleware,
    response::{IntoResponse, Response},
    routing::get,
    serve::ListenerExt as _,
};
use opentelemetry::trace::TraceContextExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::{
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::{problem, settings::CommonSettings, store::Redis};

/// The request id header, kept when the client sends one, made otherwise.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wrap `routes` with the common endpoints and layers.
pub fn scaffold(routes: Router, redis: Redis, max_body_bytes: usize) -> Router {
    // Install the recorder before the first request is counted.
    crate::metrics::handle();
    let common = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::render))
        .with_state(redis);
    // Read bottom-up: the innermost layers run last on the way in.
    routes
        .merge(common)
        .fallback(problem::not_found_fallback)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(log_response),
                )
                .layer(middleware::from_fn(crate::metrics::track))
                .layer(middleware::from_fn(problem::ensure_problem_json))
                .layer(DefaultBodyLimit::max(max_body_bytes))
                .layer(RequestBodyLimitLayer::new(max_body_bytes)),
        )
}

/// Makes the id of a request that came without one: a UUID v4 drawn from
/// the thread's generator. (tower-http's `MakeRequestUuid` calls
/// `Uuid::new_v4`, which costs a `getrandom(2)` syscall per request: one in
/// five of the gateway's syscalls under load.) Not a secret, only unique.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = id.hyphenated().encode_lower(&mut text);
        axum::http::HeaderValue::from_str(text)
            .ok()
            .map(RequestId::new)
    }
}

/// The span of one request; continues the caller's trace when it sent `traceparent`.
///
/// Its fields follow the OpenTelemetry HTTP server conventions
/// (`http.request.method`, `url.path`, `http.route` — the template — and,
/// once answered, `http.response.status_code`), plus `request_id`, and the
/// `trace_id`/`span_id` that log lines inside it carry.
pub fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let method = request.method().as_str();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        url.path = %request.uri().path(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        request_id,
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    // The name must be set before the OpenTelemetry span starts (at `context()` below).
    if crate::telemetry::exporting() {
        match route {
            Some(route) => span.record(
                "otel.name",
                tracing::field::display(format_args!("{method} {route}")),
            ),
            None => span.record("otel.name", method),
        };
    }
    let parent = extract_context(request.headers());
    let remote = parent.span().span_context().clone();
    let _ = span.set_parent(parent);
    let local = span.context().span().span_context().clone();
    if local.is_valid() {
        span.record("trace_id", tracing::field::display(local.trace_id()));
        span.record("span_id", tracing::field::display(local.span_id()));
    } else if remote.is_valid() {
        // Not exporting: the caller's trace id still joins this request's logs to its trace.
        span.record("trace_id", tracing::field::display(remote.trace_id()));
    }
    span
}

/// The one log line of a finished request (the `TraceLayer`'s `on_response`):
/// its status and latency, inside the request span, so the line also carries
/// the method, route, request id, `trace_id` and `span_id`. 5xx answers are
/// logged as warnings and mark the span as an error.
pub fn log_response<B>(response: &Response<B>, latency: Duration, span: &tracing::Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
        tracing::warn!(status, latency_ms, "request finished");
    } else {
        tracing::info!(status, latency_ms, "request finished");
    }
}

/// The OpenTelemetry context carried by `traceparent`/`tracestate`.
pub fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    struct Extractor<'a>(&'a HeaderMap);
    impl opentelemetry::propagation::Extractor for Extractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(HeaderName::as_str).collect()
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Extractor(headers)))
}

/// Write the current span's context into outgoing `headers` as `traceparent`.
pub fn inject_context(span: &tracing::Span, headers: &mut HeaderMap) {
    struct Injector<'a>(&'a mut HeaderMap);
    impl opentelemetry::propagation::Injector for Injector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(key.as_bytes()),
                axum::http::HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut Injector(headers))
    });
}

async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(redis): State<Redis>) -> Response {
    match redis.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => problem::Problem::from(e).into_response(),
    }
}

/// Serve `app` on `listener` until `shutdown` fires, then stop accepting and
/// let in-flight requests finish, for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let drain = shutdown.clone();
    // TCP_NODELAY, as nginx sets on keep-alive connections: a streamed answer
    // is written as headers then body, and Nagle would hold the second write
    // back until the client acknowledges the first.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { drain.cancelled().await });
    tokio::select! {
        result = server => result,
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "in-flight requests outlived the shutdown grace period");
            Ok(())
        }
    }
}

/// Cancel `token` on SIGTERM or SIGINT.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate => {}
        }
        tracing::info!("shutdown signal received; draining");
        token.cancel();
    });
}

/// The body of every binary's `main`: telemetry, bind, signals, run.
/// Start-up failures print one line naming the problem and exit non-zero.
pub async fn main<F, Fut>(name: &str, common: &CommonSettings, addr: SocketAddr, run: F) -> ExitCode
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    let _telemetry = match crate::telemetry::init(common, name) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("{name}: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(%addr, service = name, "listening");
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    match run(listener, shutdown).await {
        Ok(()) => {
            tracing::info!(service = name, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, service = name, "server failed");
            eprintln!("{name}: {e}");
            ExitCode::from(1)
        }
    }
}
