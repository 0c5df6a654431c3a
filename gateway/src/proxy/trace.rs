//! The client span of each upstream attempt (OpenTelemetry HTTP client
//! attributes), made only while traces are exported.

use axum::http::{Method, Uri};
use hyper::body::Incoming;
use mcp_shared::telemetry;

/// The client span of one attempt, or none when traces are not exported
/// (then nothing is injected, and the span costs nothing).
pub(super) fn client_span(method: &Method, uri: &Uri, instance: &str) -> tracing::Span {
    if !telemetry::exporting() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "upstream",
        otel.name = method.as_str(),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method.as_str(),
        url.full = %uri,
        server.address = uri.host(),
        server.port = uri.port_u16().unwrap_or(80),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        instance,
    )
}

/// Put the upstream's status (or why there is none) on the attempt's span.
pub(super) fn record_outcome<E: std::fmt::Display>(
    span: &tracing::Span,
    sent: &Result<Result<hyper::Response<Incoming>, E>, tokio::time::error::Elapsed>,
) {
    if span.is_none() {
        return;
    }
    match sent {
        Ok(Ok(response)) => {
            let status = response.status();
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.record("otel.status_code", "error");
                span.record("error.type", status.as_str());
            }
        }
        Ok(Err(_)) => {
            span.record("otel.status_code", "error");
            span.record("error.type", "connection_error");
        }
        Err(_) => {
            span.record("otel.status_code", "error");
            span.record("error.type", "timeout");
        }
    }
}
