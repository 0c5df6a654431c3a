//! Tracing of served requests: the request span (OpenTelemetry HTTP server
//! attributes, continuing an incoming `traceparent`), its one log line, and
//! the W3C trace context read from and written into headers.

use std::time::Duration;

use axum::{
    extract::Request,
    http::{HeaderMap, HeaderName},
    response::Response,
};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::REQUEST_ID;

/// The span of one request; continues the caller's trace when it sent `traceparent`.
///
/// Its fields follow the OpenTelemetry HTTP server conventions
/// (`http.request.method`, `url.path`, `http.route` — the template — and,
/// once answered, `http.response.status_code`), plus `request_id`, and the
/// `trace_id`/`span_id` that log lines inside it carry.
/// `route` is the template that matched it, if any.
pub fn request_span(request: &Request, route: Option<&str>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let method = request.method().as_str();
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

/// The one log line of a finished request:
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
