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
//! requests, under [`ConnectionLimits`] (header-read and idle timeouts, a
//! header size cap, a cap on concurrent connections) so slow or idle
//! clients cannot hold the descriptors; [`main`] is the whole body of each
//! binary's `main`.
//!
//! The parts: [`envelope`] is the per-request work of the scaffold as one
//! service, [`trace`] makes the request span and its log line and carries
//! the trace context in and out, [`accept`] is the accept loop and each
//! connection's task, [`workers`] the serving runtimes a connection may
//! be handed to, [`connection`] counts a connection's requests in
//! flight, and [`deadlines`] closes connections that are too slow or idle.

mod accept;
mod affinity;
mod connection;
mod deadlines;
mod envelope;
mod trace;
mod workers;

use std::{future::Future, net::SocketAddr, process::ExitCode, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::HeaderName,
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use accept::{Handshake, PlainTcp, serve, serve_with};
pub use connection::App;
pub use envelope::{Envelope, EnvelopeLayer, RouteTemplate};
pub use trace::{extract_context, inject_context, log_response, request_span};
pub use workers::worker;

use crate::{problem, settings::CommonSettings, store::Redis};

/// The request id header, kept when the client sends one, made otherwise.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The endpoints every binary answers: `/healthz`, `/readyz`, `/metrics`.
pub fn common_routes() -> Router<Redis> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::render))
}

/// Wrap `routes` with the common endpoints and layers.
pub fn scaffold(routes: Router, redis: Redis, max_body_bytes: usize) -> Router {
    // Install the recorder before the first request is counted.
    crate::metrics::handle();
    routes
        .merge(common_routes().with_state(redis))
        .fallback(problem::not_found_fallback)
        .layer(EnvelopeLayer::new(max_body_bytes))
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

/// The limits every listener applies to its connections (the `HTTP_*`
/// settings, see [`CommonSettings::connection_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time to receive a request's header block: from the accept (TLS
    /// handshake included) for the first request, from its first byte for
    /// a later one on a kept-alive connection. Slower → the connection closes.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection with no request in flight stays open.
    pub idle_timeout: Duration,
    /// Largest request header block (HTTP/1 read buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// Connections served at once; the next ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// Serving runtimes (a thread each) the connections are spread over;
    /// 0 serves them on the caller's runtime (see [`worker`]).
    pub workers: usize,
    /// Pin each serving worker to a CPU of its own (`HTTP_CPU_AFFINITY`).
    pub cpu_affinity: bool,
}

impl Default for ConnectionLimits {
    /// The settings' defaults.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(25),
            workers: 0,
            cpu_affinity: false,
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

/// A binary's whole `main`: [`main`] on [`runtime`].
pub fn start<F, Fut>(
    name: &str,
    common: &CommonSettings,
    addr: SocketAddr,
    worker_threads: Option<usize>,
    run: F,
) -> ExitCode
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    match runtime(common, worker_threads) {
        Ok(runtime) => runtime.block_on(main(name, common, addr, run)),
        Err(e) => {
            eprintln!("{name}: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// The runtime a binary's [`main`] runs on: tokio's work-stealing runtime
/// (`worker_threads` of them, one per core when `None`), its threads pinned
/// to CPUs in turn with `HTTP_CPU_AFFINITY=auto` (its workers start first,
/// so they get a CPU each; see `affinity`).
pub fn runtime(
    common: &CommonSettings,
    worker_threads: Option<usize>,
) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads.max(1));
    }
    if common.http_cpu_affinity == crate::settings::CpuAffinity::Auto {
        let pinning = affinity::Pinning::new();
        builder.on_thread_start(move || pinning.pin_current_thread());
    }
    builder.enable_all().build()
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
