//! WebSocket through the proxy: an HTTP/1.1 upgrade handshake forwarded to
//! an instance that takes upgrades, and, once it answers 101, the two
//! upgraded connections spliced together until either side closes.
//!
//! The handshake is an ordinary `/svc` request until the answer: it went
//! through the policy, auth and rate-limit layers like any other, and the
//! proxy forwards it with `Upgrade: websocket` and `Connection: upgrade`
//! put back after the hop-by-hop headers went (the only two it keeps, and
//! only when [`allowed`]), through the HTTP/1.1-only client (`Via::Upgrade`:
//! an `https` instance's ALPN cannot pick HTTP/2, which has no 101). The
//! 101 goes back to the client with the upstream's `Upgrade` and
//! `Sec-WebSocket-*` headers; a task owned by
//! [`WebSockets`] then waits for both sides' upgraded streams (the client's
//! only after hyper has written the 101) and copies bytes both ways
//! ([`Splice`]) without reading frames: extensions, subprotocols and pings
//! pass as the two ends agreed them. The splice ends when both sides have
//! closed, either side fails, no byte has passed for the idle timeout, the
//! total duration is over, or the gateway shuts down (the connections are
//! then dropped, without a close frame: the gateway never parses frames).
//!
//! Any other answer to the handshake passes through as usual. Only HTTP/1.1
//! client connections upgrade: an HTTP/2 client's WebSocket (RFC 8441's
//! extended CONNECT) is not recognised and goes upstream as a plain request.
//!
//! Metrics: `gateway_websocket_connections` (open splices),
//! `gateway_websocket_bytes_total{direction}` (`upstream`: client to
//! instance; `downstream`: back), reported in batches (every 64 KiB or
//! second of traffic, and at the end), and
//! `gateway_websocket_upgrades_total{result}`: `switched` (spliced),
//! `refused` (the instance answered, not 101), `failed` (a 101 that could
//! not become a splice) or `full` (`WEBSOCKET_MAX_CONNECTIONS` open already:
//! 503, no instance asked).

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header, request::Parts},
    response::Response,
};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use hyper_util::rt::TokioIo;
use mcp_shared::{policy::UpstreamProtocol, problem::PassThrough};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument as _;

use super::{headers::strip_hop_by_hop, response::pass_through};
use crate::{
    balance::{Endpoint, InFlight},
    counters,
    error::GatewayError,
    policy::Applied,
};

/// How long a spliced connection may live.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// No byte either way for this long closes it.
    pub idle_timeout: Duration,
    /// It closes after this long, whatever passes.
    pub max_duration: Duration,
    /// Open at once, at most (upgraded connections leave the server's
    /// connection count, so this is what bounds them).
    pub max_connections: u32,
}

/// The WebSocket connections the proxy splices: their limits, the shutdown
/// they end at, and the tasks that carry them (cheap to clone).
#[derive(Clone)]
pub struct WebSockets {
    limits: Limits,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// One permit per open WebSocket (`Limits::max_connections`).
    slots: Arc<Semaphore>,
}

impl WebSockets {
    /// Splices under `limits`, ending when `shutdown` fires.
    pub fn new(limits: Limits, shutdown: CancellationToken) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections as usize)),
            limits,
            shutdown,
            tasks: TaskTracker::new(),
        }
    }

    /// A place for one more WebSocket, taken before its handshake is
    /// forwarded and held until its splice ends; a 503 when they are all
    /// taken (no instance is asked).
    pub(super) fn slot(&self) -> Result<OwnedSemaphorePermit, GatewayError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!(counters::WEBSOCKET_UPGRADES, "result" => "full").increment(1);
            GatewayError::TooManyWebSockets
        })
    }

    /// Wait until every splice task has ended (after `shutdown` they end at
    /// once; call it then, as the owner of the tasks).
    pub async fn closed(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The answer to a forwarded upgrade: a 101 is switched and spliced
    /// (see the module doc), anything else passes through as usual.
    ///
    /// The request's in-flight count ends at the 101 rather than with the
    /// WebSocket: the count steers the instance choice towards instances
    /// that answer quickly, and a connection that stays open for an hour is
    /// not a request waiting on its instance (held, it would mark the
    /// instance busy for good). `gateway_websocket_connections` counts
    /// them instead. The breaker has already counted the 101 as a success.
    pub(super) fn answer(
        &self,
        mut response: hyper::Response<Incoming>,
        client: Option<OnUpgrade>,
        in_flight: Option<InFlight>,
        endpoint: &Endpoint,
        slot: OwnedSemaphorePermit,
    ) -> Result<Response, GatewayError> {
        let (StatusCode::SWITCHING_PROTOCOLS, Some(client)) = (response.status(), client) else {
            metrics::counter!(counters::WEBSOCKET_UPGRADES, "result" => "refused").increment(1);
            return Ok(pass_through(response, in_flight));
        };
        drop(in_flight);
        // The instance may only switch to what was asked for.
        let Some(protocol) = response
            .headers()
            .get(header::UPGRADE)
            .filter(|value| has_token(value, "websocket"))
            .cloned()
        else {
            metrics::counter!(counters::WEBSOCKET_UPGRADES, "result" => "failed").increment(1);
            tracing::warn!(instance = %endpoint.id, "101 without `Upgrade: websocket`");
            return Err(GatewayError::BadGateway(format!(
                "instance `{}` switched to a protocol other than websocket",
                endpoint.id
            )));
        };
        let upstream = hyper::upgrade::on(&mut response);
        let (mut parts, _empty) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.insert(header::UPGRADE, protocol);
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.extensions = axum::http::Extensions::new();
        parts.extensions.insert(PassThrough);

        // One span per WebSocket (not per request): its log lines name the instance.
        let span = tracing::info_span!("websocket", instance = %endpoint.id);
        self.tasks.spawn(
            splice(client, upstream, self.limits, self.shutdown.clone(), slot).instrument(span),
        );
        Ok(Response::from_parts(parts, Body::empty()))
    }
}

/// The client's side of the upgrade when the request asks for a WebSocket
/// over HTTP/1.1 (a `GET` with `Upgrade: websocket` and `Connection:
/// upgrade`); `None` for any other request (one method comparison and one
/// header lookup).
pub(super) fn requested(parts: &mut Parts) -> Option<OnUpgrade> {
    if !asks_for_websocket(parts) {
        return None;
    }
    parts.extensions.remove::<OnUpgrade>()
}

/// Whether the request is a WebSocket handshake over HTTP/1.1.
fn asks_for_websocket(parts: &Parts) -> bool {
    parts.method == Method::GET
        && parts.version == Version::HTTP_11
        && lists(&parts.headers, header::UPGRADE, "websocket")
        && lists(&parts.headers, header::CONNECTION, "upgrade")
}

/// Whether an upgrade may go to `endpoint`, spoken to with `protocol` (the
/// policy's, else its metadata's): the service's policy says (`websocket`),
/// else the instance's metadata (`websocket=true`); and only over HTTP/1.1
/// (`http`, `https`), never to an `h2c` instance.
pub(super) fn allowed(
    policy: Option<&Applied>,
    endpoint: &Endpoint,
    protocol: UpstreamProtocol,
) -> bool {
    let websocket = policy
        .and_then(|p| p.websocket)
        .unwrap_or(endpoint.websocket);
    websocket && protocol != UpstreamProtocol::H2c
}

/// Ask the instance for the upgrade: the two headers the hop-by-hop rule
/// removed, put back as the only ones (static values: no allocation).
pub(super) fn ask(headers: &mut HeaderMap) {
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// Whether any `name` header lists `token` (comma-separated, any case).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|value| has_token(value, token))
}

/// Whether a comma-separated header value holds `token` (any case).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|text| {
        text.split(',')
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    })
}

/// Why a splice ended (for the log line).
#[derive(Debug)]
enum End {
    /// Both sides closed.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// The total duration is over.
    MaxDuration,
    /// The gateway is shutting down.
    Shutdown,
    /// A side failed (reset, broken pipe).
    Failed(io::Error),
}

impl End {
    /// The log's word for it.
    fn reason(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Idle => "idle",
            Self::MaxDuration => "max_duration",
            Self::Shutdown => "shutdown",
            Self::Failed(_) => "failed",
        }
    }
}

/// One WebSocket's task: both sides' upgrades, then the splice.
async fn splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    limits: Limits,
    shutdown: CancellationToken,
    // Held until the splice ends: one of `Limits::max_connections`.
    _slot: OwnedSemaphorePermit,
) {
    // The client's upgrade completes once the 101 is written, the
    // instance's once its connection hands the stream over: both at once,
    // bounded so a client that never reads the 101 holds nothing for long.
    let joined = tokio::select! {
        joined = async { tokio::try_join!(client, upstream) } => joined.map_err(|e| e.to_string()),
        () = tokio::time::sleep(limits.idle_timeout) => Err("timed out".to_owned()),
        () = shutdown.cancelled() => Err("the gateway is shutting down".to_owned()),
    };
    let (client, upstream) = match joined {
        Ok(both) => both,
        Err(error) => {
            metrics::counter!(counters::WEBSOCKET_UPGRADES, "result" => "failed").increment(1);
            tracing::debug!(%error, "upgrade did not complete");
            return;
        }
    };
    metrics::counter!(counters::WEBSOCKET_UPGRADES, "result" => "switched").increment(1);
    let _open = Open::start();
    let mut splice = Splice::new(
        TokioIo::new(client),
        TokioIo::new(upstream),
        limits.idle_timeout,
    );
    let end = tokio::select! {
        end = &mut splice => end,
        () = tokio::time::sleep(limits.max_duration) => End::MaxDuration,
        () = shutdown.cancelled() => End::Shutdown,
    };
    splice.report();
    let error = match &end {
        End::Failed(error) => Some(tracing::field::display(error)),
        _ => None,
    };
    tracing::debug!(
        end = end.reason(),
        error,
        upstream_bytes = splice.up.bytes,
        downstream_bytes = splice.down.bytes,
        "websocket closed"
    );
}

/// `gateway_websocket_connections` up while it lives.
struct Open;

impl Open {
    fn start() -> Self {
        metrics::gauge!(counters::WEBSOCKET_CONNECTIONS).increment(1.0);
        Self
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!(counters::WEBSOCKET_CONNECTIONS).decrement(1.0);
    }
}

/// Bytes a direction reports at once at most (or once a second, whichever first).
const REPORT_BYTES: u64 = 64 * 1024;
/// How often a busy direction reports its bytes at least.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Each direction's buffer, allocated once per connection (as tokio's
/// `copy_bidirectional`).
const BUFFER_BYTES: usize = 8 * 1024;

/// One direction of a splice: read into its buffer, write it all out, and
/// at the reader's end shut the writer's side down (a half-close passes).
struct Transfer {
    buf: Box<[u8]>,
    /// Written up to here.
    pos: usize,
    /// Filled up to here.
    cap: usize,
    /// The reader has ended.
    read_done: bool,
    /// Written since the last flush.
    need_flush: bool,
    /// Bytes written in all.
    bytes: u64,
    /// Bytes not yet added to the counter.
    unreported: u64,
    /// Something moved since the splice last looked.
    moved: bool,
    /// `direction` of `gateway_websocket_bytes_total`.
    direction: &'static str,
}

impl Transfer {
    fn new(direction: &'static str) -> Self {
        Self {
            buf: vec![0; BUFFER_BYTES].into_boxed_slice(),
            pos: 0,
            cap: 0,
            read_done: false,
            need_flush: false,
            bytes: 0,
            unreported: 0,
            moved: false,
            direction,
        }
    }

    /// Copy until the reader ends (then `Ready(Ok)`, the writer shut down),
    /// a side fails, or neither can go on (`Pending`).
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            if self.pos == self.cap && !self.read_done {
                let mut buf = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *reader).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            self.pos = 0;
                            self.cap = n;
                            self.moved = true;
                        }
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Pending => {
                        // Nothing more to read now: what was written must
                        // not sit in a TLS or other buffered writer.
                        if self.need_flush {
                            ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.cap {
                let n =
                    ready!(Pin::new(&mut *writer).poll_write(cx, &self.buf[self.pos..self.cap]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.bytes += n as u64;
                self.unreported += n as u64;
                self.need_flush = true;
                self.moved = true;
            }
            if self.read_done {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Add the unreported bytes to the counter.
    fn report(&mut self) {
        if self.unreported > 0 {
            metrics::counter!(counters::WEBSOCKET_BYTES, "direction" => self.direction)
                .increment(self.unreported);
            self.unreported = 0;
        }
    }
}

/// The two upgraded connections joined both ways until both have closed,
/// one fails, or no byte passes for the idle timeout. Like tokio's
/// `copy_bidirectional`, plus the idle clock and the byte counters.
struct Splice<C, U> {
    client: C,
    upstream: U,
    /// Client → instance.
    up: Transfer,
    /// Instance → client.
    down: Transfer,
    up_done: bool,
    down_done: bool,
    idle_timeout: Duration,
    /// Fires at the idle deadline as it was when armed; re-armed lazily from
    /// `last_moved`, so traffic costs a clock read, not a timer update.
    idle: Pin<Box<Sleep>>,
    last_moved: Instant,
    last_report: Instant,
}

impl<C, U> Splice<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    fn new(client: C, upstream: U, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            client,
            upstream,
            up: Transfer::new("upstream"),
            down: Transfer::new("downstream"),
            up_done: false,
            down_done: false,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            last_moved: now,
            last_report: now,
        }
    }

    /// Add both directions' unreported bytes to the counters.
    fn report(&mut self) {
        self.up.report();
        self.down.report();
    }
}

impl<C, U> Future for Splice<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        if !this.up_done {
            match this.up.poll_copy(cx, &mut this.client, &mut this.upstream) {
                Poll::Ready(Ok(())) => this.up_done = true,
                Poll::Ready(Err(error)) => return Poll::Ready(End::Failed(error)),
                Poll::Pending => {}
            }
        }
        if !this.down_done {
            match this
                .down
                .poll_copy(cx, &mut this.upstream, &mut this.client)
            {
                Poll::Ready(Ok(())) => this.down_done = true,
                Poll::Ready(Err(error)) => return Poll::Ready(End::Failed(error)),
                Poll::Pending => {}
            }
        }
        if this.up_done && this.down_done {
            return Poll::Ready(End::Closed);
        }
        if std::mem::take(&mut this.up.moved) | std::mem::take(&mut this.down.moved) {
            let now = Instant::now();
            this.last_moved = now;
            let unreported = this.up.unreported.max(this.down.unreported);
            if unreported >= REPORT_BYTES || now - this.last_report >= REPORT_EVERY {
                this.report();
                this.last_report = now;
            }
        }
        // The timer fired: idle only if nothing moved since it was armed.
        while this.idle.as_mut().poll(cx).is_ready() {
            let deadline = this.last_moved + this.idle_timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(End::Idle);
            }
            this.idle.as_mut().reset(deadline);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: Method, version: Version, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::new(());
        *request.method_mut() = method;
        *request.version_mut() = version;
        for (name, value) in headers {
            request.headers_mut().append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        request.into_parts().0
    }

    #[test]
    fn only_an_http11_get_with_both_headers_asks_for_a_websocket() {
        let asks = [
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
        ];
        assert!(asks_for_websocket(&parts(
            Method::GET,
            Version::HTTP_11,
            &asks
        )));
        assert!(!asks_for_websocket(&parts(
            Method::POST,
            Version::HTTP_11,
            &asks
        )));
        assert!(!asks_for_websocket(&parts(
            Method::GET,
            Version::HTTP_2,
            &asks
        )));
        assert!(!asks_for_websocket(&parts(
            Method::GET,
            Version::HTTP_11,
            &[("upgrade", "h2c"), ("connection", "upgrade")]
        )));
        assert!(!asks_for_websocket(&parts(
            Method::GET,
            Version::HTTP_11,
            &[("upgrade", "websocket"), ("connection", "keep-alive")]
        )));
    }

    // A runtime only because the (unused) Redis handle wants one to exist.
    #[tokio::test]
    async fn the_policy_decides_over_the_metadata_and_h2c_never_upgrades() {
        use crate::{
            circuit::BreakerSettings,
            policy::{Defaults, Source},
            store::Store,
        };
        use UpstreamProtocol::{H2c, Http, Https};
        use mcp_shared::policy::ServicePolicy;

        let breaker = BreakerSettings {
            failure_threshold: 1,
            open_for: Duration::from_secs(1),
        };
        let endpoint = |websocket| {
            Endpoint::new(
                "chat",
                "chat-1".to_owned(),
                axum::http::uri::Authority::from_static("127.0.0.1:1"),
                String::new(),
                breaker,
            )
            .unwrap()
            .speaking(Http, websocket)
        };
        // Never connected: a policy without `rate_limit` does not use it.
        let store = Store::new(
            mcp_shared::Redis::new("redis://127.0.0.1:1", "t", Duration::from_secs(1)).unwrap(),
        );
        let defaults = Defaults { breaker, store };
        let policy = |websocket| {
            let policy = ServicePolicy {
                websocket,
                ..ServicePolicy::default()
            };
            let source = Source {
                version: 1,
                revision: 1,
                updated_by: String::new(),
                updated_at: String::new(),
            };
            Applied::compile("chat", policy, source, &defaults)
        };

        // The metadata, unless the policy says.
        assert!(allowed(None, &endpoint(true), Http));
        assert!(allowed(None, &endpoint(true), Https));
        assert!(!allowed(None, &endpoint(false), Http));
        assert!(allowed(Some(&policy(None)), &endpoint(true), Http));
        assert!(allowed(Some(&policy(Some(true))), &endpoint(false), Http));
        assert!(!allowed(Some(&policy(Some(false))), &endpoint(true), Http));
        // Never over HTTP/2 with prior knowledge.
        assert!(!allowed(None, &endpoint(true), H2c));
        assert!(!allowed(Some(&policy(Some(true))), &endpoint(true), H2c));
    }

    #[tokio::test]
    async fn a_splice_copies_both_ways_and_ends_when_both_sides_close() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, mut upstream_peer) = tokio::io::duplex(64);
        let splice = tokio::spawn(async move {
            let mut splice = Splice::new(client, upstream, Duration::from_secs(30));
            let end = (&mut splice).await;
            (end, splice.up.bytes, splice.down.bytes)
        });
        // More than the duplex buffers hold: the copy must keep going.
        let sent = vec![7u8; 1000];
        let mut got = vec![0u8; sent.len()];
        let (wrote, read) = tokio::join!(
            client_peer.write_all(&sent),
            upstream_peer.read_exact(&mut got)
        );
        wrote.unwrap();
        read.unwrap();
        assert_eq!(got, sent);
        upstream_peer.write_all(b"back").await.unwrap();
        let mut back = [0u8; 4];
        client_peer.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"back");
        drop(client_peer);
        // The client's end reaches the upstream as its end of stream.
        let mut rest = Vec::new();
        upstream_peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(upstream_peer);
        let (end, up, down) = tokio::time::timeout(Duration::from_secs(5), splice)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(end, End::Closed), "{end:?}");
        assert_eq!((up, down), (1000, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_splice_ends_at_the_idle_timeout_and_traffic_pushes_it_back() {
        use tokio::io::AsyncWriteExt as _;
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (upstream, _upstream_peer) = tokio::io::duplex(64);
        let splice = tokio::spawn(Splice::new(client, upstream, Duration::from_secs(10)));
        // Paused clock: time moves only as the timers ask, so "at 12 s"
        // below is a point in the test's own time, not a wall-clock race.
        tokio::time::sleep(Duration::from_secs(8)).await;
        client_peer.write_all(b"x").await.unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            !splice.is_finished(),
            "a byte at 8 s keeps it open past 10 s"
        );
        let end = splice.await.unwrap();
        assert!(matches!(end, End::Idle), "{end:?}");
    }
}
