//! Prometheus metrics: one process-wide recorder and the HTTP series the
//! scaffold counts every request in, by method, route template and status.
//!
//! The route label is axum's `MatchedPath` (the template, e.g.
//! `/v1/services/{service}/instances/{id}`), never the raw path, so a
//! thousand ids make one series. Unmatched requests share `route="unmatched"`.

use std::{cell::RefCell, collections::HashMap, sync::OnceLock};

use axum::{
    http::Method,
    response::{IntoResponse, Response},
};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets from 100 µs to 10 s: proxying is sub-millisecond, blocking queries are long.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus handle, installing the recorder on first use.
/// Several services in one process (tests, `mcpctl up`) share it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours
        // then renders nothing, which is still no reason to stop the service.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// `GET /metrics`: the Prometheus text exposition.
pub async fn render() -> Response {
    exposition(handle().render())
}

/// `text` (Prometheus text format) as a `/metrics` answer; for a binary that
/// adds series of its own to [`handle`]'s rendering (the gateway renders its
/// per-instance series from its routing table, so they end with it).
pub fn exposition(text: String) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The method label: the standard methods by name, any other as `_OTHER`
/// (OpenTelemetry's rule), so a client cannot mint series with made-up methods.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The two metric handles of one (route, method, status) series.
struct Series {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

thread_local! {
    /// Handles already looked up, by route template, on this thread.
    ///
    /// `counter!` with owned labels costs three `String`s, a label vector and
    /// a hash lookup in the shared registry per call, twice per request; a
    /// cached handle is one atomic add. Written by hand because the `metrics`
    /// crate leaves handle caching to its callers. Bounded: routes are
    /// templates, methods are ten labels and statuses are three digits.
    /// Hashed with foldhash: its keys are the app's own templates.
    static SERIES: RefCell<HashMap<Box<str>, Vec<Series>, foldhash::fast::RandomState>> =
        RefCell::new(HashMap::default());
}

/// Count a finished request in `http_server_requests_total` and
/// `http_server_request_duration_seconds` (the scaffold calls it once per request).
pub(crate) fn record(route: &str, method: &'static str, status: u16, seconds: f64) {
    let observe = |series: &mut Vec<Series>| {
        let index = match series
            .iter()
            .position(|s| s.status == status && s.method == method)
        {
            Some(index) => index,
            None => {
                let labels = [
                    ("method", method.to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ];
                series.push(Series {
                    method,
                    status,
                    requests: metrics::counter!("http_server_requests_total", &labels),
                    duration: metrics::histogram!("http_server_request_duration_seconds", &labels),
                });
                series.len() - 1
            }
        };
        if let Some(series) = series.get(index) {
            series.requests.increment(1);
            series.duration.record(seconds);
        }
    };
    SERIES.with_borrow_mut(|cache| match cache.get_mut(route) {
        Some(series) => observe(series),
        None => {
            let mut series = Vec::new();
            observe(&mut series);
            cache.insert(route.into(), series);
        }
    });
}
