//! The upstream's answer as the client gets it: hop-by-hop headers gone,
//! marked pass-through, the body streamed while the request stays counted
//! in flight.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use mcp_shared::problem::PassThrough;

use super::headers::strip_hop_by_hop;
use crate::balance::InFlight;

/// The upstream's response as the client gets it: hop-by-hop headers gone,
/// marked [`PassThrough`] so no error is rewritten, the body streaming and
/// counting the request in flight until it ends.
pub(super) fn pass_through(
    response: hyper::Response<Incoming>,
    in_flight: Option<InFlight>,
) -> Response {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.extensions = axum::http::Extensions::new();
    parts.extensions.insert(PassThrough);
    let body = Body::new(TrackedBody {
        inner: body,
        _in_flight: in_flight,
    });
    Response::from_parts(parts, body)
}

/// Whether the request body broke the size limit (the body limit layer's error).
pub(super) fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    crate::error::cause_of::<http_body_util::LengthLimitError>(error).is_some()
}

/// A response body that keeps its request counted in flight until it is dropped.
pub(super) struct TrackedBody {
    inner: Incoming,
    _in_flight: Option<InFlight>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
