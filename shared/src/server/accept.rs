//! The accept loop and each connection's task: a bounded number of
//! connections, an optional handshake (TLS), HTTP/1 + HTTP/2 with the
//! header limits, and the graceful drain on shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::shutdown::Cancelled;

use super::{
    ConnectionLimits,
    connection::{App, ConnectionService, ConnectionState},
    deadlines::Deadlines,
    workers::Workers,
};

/// Serve `app` on `listener` until `shutdown` fires, then stop accepting and
/// let in-flight requests finish, for at most `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
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
pub async fn serve_with<H: Handshake, S: App>(
    listener: TcpListener,
    app: S,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
    handshake: H,
) -> std::io::Result<()> {
    let mut workers = match limits.workers {
        0 => None,
        count => Some(Workers::start(count, "http-worker", limits.cpu_affinity)?),
    };
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
        let served = Connection {
            remote,
            handshake: handshake.clone(),
            app: app.clone(),
            builder: builder.clone(),
            limits,
            shutdown: shutdown.clone(),
            abandon: abandon.clone(),
            _slot: permit,
        };
        let Some(workers) = &mut workers else {
            connections.spawn(connection(tcp, served));
            continue;
        };
        // The stream leaves this runtime's reactor for the worker's.
        match tcp.into_std() {
            Ok(tcp) => {
                workers.next().spawn(connections.track_future(async move {
                    match TcpStream::from_std(tcp) {
                        Ok(tcp) => connection(tcp, served).await,
                        Err(error) => {
                            tracing::debug!(%remote, %error, "cannot serve on a worker")
                        }
                    }
                }));
            }
            Err(error) => tracing::debug!(%remote, %error, "cannot hand to a worker"),
        }
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
    // Only now: a worker's tasks go with it.
    drop(workers);
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

/// What one connection's task owns besides its stream.
struct Connection<H, S> {
    remote: SocketAddr,
    handshake: H,
    app: S,
    builder: Arc<auto::Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    /// Fires when the shutdown grace is over: drop the connection.
    abandon: CancellationToken,
    /// The connection's slot, given back when the task ends.
    _slot: OwnedSemaphorePermit,
}

/// Serve one connection until it closes, times out or is shut down.
async fn connection<H: Handshake, S: App>(tcp: TcpStream, c: Connection<H, S>) {
    // One clock for the handshake and the first header block: a TLS client
    // gets no more time than a plain one.
    let first_deadline = Instant::now() + c.limits.header_read_timeout;
    let io = match tokio::time::timeout_at(first_deadline, c.handshake.handshake(tcp)).await {
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
    // Polled on every wake of the connection (each streamed frame): it looks
    // at the token, whose every clone shares one lock, only when signalled.
    let mut shutdown = Cancelled::new(c.shutdown);
    let finished = tokio::select! {
        biased;
        finished = conn.as_mut() => finished,
        _ = &mut shutdown => {
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
