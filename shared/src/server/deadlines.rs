//! The stream wrapper that enforces the header-read and idle timeouts of a
//! connection, telling HTTP/1 from HTTP/2 by the first bytes.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use super::{ConnectionLimits, connection::ConnectionState};

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
pub(super) struct Deadlines<T> {
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
    pub(super) fn new(
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
