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

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes, HttpBody},
    extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderMap, HeaderName, StatusCode},
    middleware,
    response::{IntoResponse, Response},
    routing::{future::RouteFuture, get},
};
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use opentelemetry::trace::TraceContextExt as _;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
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
        }
    }
}

/// Serve `app` on `listener` until `shutdown` fires, then stop accepting and
/// let in-flight requests finish, for at most `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, limits, PlainTcp).await
}

/// How an accepted TCP connection becomes the byte stream HTTP runs on: as
/// it is ([`PlainTcp`]) or after a TLS handshake (the gateway's `tls`).
pub trait Handshake: Clone + Send + Sync + 'static {
    /// The stream HTTP is spoken on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Turn `tcp` into the stream (bounded by the header-read timeout by the caller).
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Plain HTTP: the TCP stream as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainTcp;

impl Handshake for PlainTcp {
    type Io = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// [`serve`] on the streams `handshake` makes of the accepted connections.
///
/// The accept loop, as mini-redis's: a connection slot (a semaphore permit,
/// `max_connections` of them) is taken *before* accepting, so past the cap
/// new connections wait in the kernel's backlog instead of costing a
/// descriptor and a task each. Each connection runs in its own task with
/// hyper-util's auto (HTTP/1 + HTTP/2) builder; the header-read and idle
/// timeouts are enforced by [`Deadlines`] around the stream (hyper's own
/// `header_read_timeout` also cuts idle keep-alive connections at the same
/// mark, and does not cover the protocol detection or a TLS handshake).
/// On `shutdown`: stop accepting, ask every connection to finish (HTTP/1
/// closes after its in-flight request, HTTP/2 sends GOAWAY), wait for at
/// most the grace period, then drop what is left.
pub async fn serve_with<H: Handshake>(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
    handshake: H,
) -> std::io::Result<()> {
    let builder = Arc::new(http_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let abandon = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // Never closed; if it were, stop serving rather than spin.
                Err(_) => break,
            },
        };
        let (tcp, remote) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e, &shutdown).await;
                    continue;
                }
            },
        };
        // TCP_NODELAY, as nginx sets on keep-alive connections: a streamed answer
        // is written as headers then body, and Nagle would hold the second write
        // back until the client acknowledges the first.
        let _ = tcp.set_nodelay(true);
        connections.spawn(connection(Connection {
            tcp,
            remote,
            handshake: handshake.clone(),
            app: app.clone(),
            builder: builder.clone(),
            limits,
            shutdown: shutdown.clone(),
            abandon: abandon.clone(),
            _slot: permit,
        }));
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(limits.shutdown_grace, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?limits.shutdown_grace,
            "in-flight requests outlived the shutdown grace period"
        );
        abandon.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// The HTTP/1 + HTTP/2 connection builder with the limits applied.
fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // `Deadlines` does it (see `serve_with`).
        .header_read_timeout(None)
        .keep_alive(true)
        // The read buffer caps the header block: past it hyper answers 431
        // and closes. hyper refuses a buffer under 8 KiB (the setting's floor).
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// An accept error: a connection that died in the backlog is skipped; any
/// other (out of descriptors, `EMFILE`) is logged and retried after a pause,
/// as axum's `serve` does, so the loop does not spin.
async fn accept_failed(error: std::io::Error, shutdown: &CancellationToken) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying in 1s");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
}

/// What one connection's task owns.
struct Connection<H> {
    tcp: TcpStream,
    remote: SocketAddr,
    handshake: H,
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    /// Fires when the shutdown grace is over: drop the connection.
    abandon: CancellationToken,
    /// The connection's slot, given back when the task ends.
    _slot: OwnedSemaphorePermit,
}

/// Serve one connection until it closes, times out or is shut down.
async fn connection<H: Handshake>(c: Connection<H>) {
    // One clock for the handshake and the first header block: a TLS client
    // gets no more time than a plain one.
    let first_deadline = Instant::now() + c.limits.header_read_timeout;
    let io = match tokio::time::timeout_at(first_deadline, c.handshake.handshake(c.tcp)).await {
        Ok(Ok(io)) => io,
        Ok(Err(error)) => {
            tracing::debug!(remote = %c.remote, %error, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(remote = %c.remote, "handshake timed out");
            return;
        }
    };
    let state = Arc::new(ConnectionState::default());
    let io = TokioIo::new(Deadlines::new(io, state.clone(), &c.limits, first_deadline));
    let service = ConnectionService {
        app: c.app,
        remote: c.remote,
        state,
    };
    let conn = c.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let finished = tokio::select! {
        finished = conn.as_mut() => finished,
        _ = c.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                finished = conn.as_mut() => finished,
                _ = c.abandon.cancelled() => Ok(()),
            }
        }
    };
    if let Err(error) = finished {
        // Timeouts, resets and malformed requests end here: routine, not alarming.
        tracing::debug!(remote = %c.remote, %error, "connection ended with an error");
    }
}

/// What a connection's stream wrapper and its requests share.
#[derive(Default)]
struct ConnectionState {
    /// Requests whose response body is not finished (HTTP/2 has several).
    in_flight: AtomicUsize,
    /// The connection was upgraded (101): its bytes are no longer HTTP.
    upgraded: AtomicBool,
    /// Woken when `in_flight` drops to zero, so an HTTP/2 connection starts
    /// its idle clock even when no byte arrives.
    idle: AtomicWaker,
}

/// The hyper service of one connection: the app, with `ConnectInfo` (as
/// axum's `into_make_service_with_connect_info` adds it) and in-flight counting.
#[derive(Clone)]
struct ConnectionService {
    app: Router,
    remote: SocketAddr,
    state: Arc<ConnectionState>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedResponse;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        // Per request: two atomic increments (the count and the `Arc` the
        // body carries) and the `Router` clone axum's own `serve` makes too.
        let in_flight = InFlight::start(&self.state);
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let inner = tower::Service::call(&mut self.app.clone(), request);
        TrackedResponse {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

/// One request counted in [`ConnectionState::in_flight`] until dropped.
struct InFlight(Arc<ConnectionState>);

impl InFlight {
    fn start(state: &Arc<ConnectionState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.wake();
        }
    }
}

/// The app's response future; its body carries the request's [`InFlight`].
struct TrackedResponse {
    inner: RouteFuture<Infallible>,
    in_flight: Option<InFlight>,
}

impl Future for TrackedResponse {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Ok(response) = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        let Some(in_flight) = this.in_flight.take() else {
            // Polled again after completion: a bug in the caller, not a panic here.
            return Poll::Pending;
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            in_flight.0.upgraded.store(true, Ordering::Release);
        }
        Poll::Ready(Ok(response.map(|body| TrackedBody {
            inner: body,
            _in_flight: in_flight,
        })))
    }
}

/// A response body that keeps its request counted until it is finished.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a connection is, for [`Deadlines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a header block: closed at the header-read deadline.
    Head,
    /// A request in flight: no deadline from here (handlers bound their own work).
    Busy,
    /// Kept alive, nothing in flight: closed quietly at the idle deadline.
    Idle,
}

/// Which HTTP the client speaks, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Not known yet: this many bytes matched the HTTP/2 preface's `PRI `.
    Unknown(u8),
    /// HTTP/1: any byte after idle starts a header block.
    Http1,
    /// HTTP/2: bytes while idle are frames (PING, SETTINGS), not a request.
    Http2,
}

/// The stream wrapper that closes a connection which is too slow to send its
/// header block or idle too long: slowloris clients, and kept-alive
/// connections nobody uses, stop holding a descriptor.
///
/// Reads decide: a read that would wait while a deadline has passed ends the
/// connection (an error mid-header, end-of-stream when idle). Writes pass
/// through. Hot-path cost per request: one atomic load per read, and
/// `Instant::now()` when the phase changes; the timer is re-armed only when a
/// read would wait past a changed deadline (about once per kept-alive request).
struct Deadlines<T> {
    io: T,
    state: Arc<ConnectionState>,
    phase: Phase,
    protocol: Protocol,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    deadline: Instant,
    /// Armed at `deadline` lazily (see above); allocated once per connection.
    timer: Pin<Box<Sleep>>,
}

impl<T> Deadlines<T> {
    fn new(
        io: T,
        state: Arc<ConnectionState>,
        limits: &ConnectionLimits,
        first_deadline: Instant,
    ) -> Self {
        Self {
            io,
            state,
            phase: Phase::Head,
            protocol: Protocol::Unknown(0),
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            deadline: first_deadline,
            timer: Box::pin(tokio::time::sleep_until(first_deadline)),
        }
    }

    /// Bytes arrived while no request was in flight.
    fn on_bytes(&mut self, bytes: &[u8]) {
        if let Protocol::Unknown(matched) = self.protocol {
            const PREFACE: &[u8] = b"PRI ";
            let mut matched = usize::from(matched);
            let mut protocol = Protocol::Http1;
            for &byte in bytes {
                if PREFACE.get(matched) != Some(&byte) {
                    break;
                }
                matched += 1;
                if matched == PREFACE.len() {
                    protocol = Protocol::Http2;
                    break;
                }
            }
            self.protocol = match protocol {
                Protocol::Http1 if matched == bytes.len() && matched < PREFACE.len() => {
                    // Every byte so far matched: still undecided.
                    Protocol::Unknown(u8::try_from(matched).unwrap_or(u8::MAX))
                }
                decided => decided,
            };
            if self.protocol == Protocol::Http2 {
                // An HTTP/2 connection is idle until it opens a stream.
                self.phase = Phase::Idle;
                self.deadline = Instant::now() + self.idle_timeout;
            }
            return;
        }
        if self.phase == Phase::Idle && self.protocol == Protocol::Http1 {
            self.phase = Phase::Head;
            self.deadline = Instant::now() + self.header_read_timeout;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.state.upgraded.load(Ordering::Acquire) {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if this.state.in_flight.load(Ordering::Acquire) > 0 {
            this.phase = Phase::Busy;
            // Be woken when the last response ends (after hyper's last read
            // of it, or in another task for HTTP/2), to start the idle clock:
            // one extra poll of the connection per response.
            this.state.idle.register(cx.waker());
            if this.state.in_flight.load(Ordering::Acquire) == 0 {
                cx.waker().wake_by_ref();
            }
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        if this.phase == Phase::Busy {
            this.phase = Phase::Idle;
            this.deadline = Instant::now() + this.idle_timeout;
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let filled = buf.filled().len();
                if filled > before {
                    // Copy out of `buf` first: `on_bytes` borrows `this` mutably.
                    let mut head = [0u8; 4];
                    let n = (filled - before).min(head.len());
                    head[..n].copy_from_slice(&buf.filled()[before..before + n]);
                    this.on_bytes(&head[..n]);
                }
                return Poll::Ready(Ok(()));
            }
            other => {
                if matches!(other, Poll::Ready(_)) {
                    return other;
                }
            }
        }
        if this.timer.deadline() != this.deadline {
            this.timer.as_mut().reset(this.deadline);
        }
        if this.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        match this.phase {
            // Idle: end the stream; hyper closes a connection that ends between requests quietly.
            Phase::Idle => Poll::Ready(Ok(())),
            _ => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request header not received within HTTP_HEADER_READ_TIMEOUT",
            ))),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
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
