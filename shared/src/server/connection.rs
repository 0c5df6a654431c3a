//! One connection's hyper service: the app with `ConnectInfo`, and the
//! count of its requests in flight (until each response body ends), which
//! tells [`Deadlines`](super::deadlines::Deadlines) when the connection is idle.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{ConnectInfo, Request},
    http::StatusCode,
    response::Response,
};
use futures_util::task::AtomicWaker;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::Service;

/// What a connection's stream wrapper and its requests share.
#[derive(Default)]
pub(super) struct ConnectionState {
    /// Requests whose response body is not finished (HTTP/2 has several).
    pub(super) in_flight: AtomicUsize,
    /// The connection was upgraded (101): its bytes are no longer HTTP.
    pub(super) upgraded: AtomicBool,
    /// Woken when `in_flight` drops to zero, so an HTTP/2 connection starts
    /// its idle clock even when no byte arrives.
    pub(super) idle: AtomicWaker,
}

/// What a listener serves: an axum `Router`, or any tower service of the
/// same shape (the gateway's front service, which keeps its common path
/// out of the router's boxed routes).
pub trait App:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The hyper service of one connection: the app, with `ConnectInfo` (as
/// axum's `into_make_service_with_connect_info` adds it) and in-flight counting.
#[derive(Clone)]
pub(super) struct ConnectionService<S> {
    pub(super) app: S,
    pub(super) remote: SocketAddr,
    pub(super) state: Arc<ConnectionState>,
}

impl<S: App> hyper::service::Service<Request<Incoming>> for ConnectionService<S> {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = TrackedResponse<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        // Per request: two atomic increments (the count and the `Arc` the
        // body carries) and the app's clone axum's own `serve` makes too.
        let in_flight = InFlight::start(&self.state);
        request.extensions_mut().insert(ConnectInfo(self.remote));
        let inner = self.app.clone().call(request.map(Body::new));
        TrackedResponse {
            inner,
            in_flight: Some(in_flight),
        }
    }
}

/// One request counted in [`ConnectionState::in_flight`] until dropped.
pub(super) struct InFlight(Arc<ConnectionState>);

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

pin_project! {
    /// The app's response future; its body carries the request's [`InFlight`].
    pub(super) struct TrackedResponse<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Future for TrackedResponse<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
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
pub(super) struct TrackedBody {
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
