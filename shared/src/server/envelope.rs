//! The scaffold's per-request work as one service ([`EnvelopeLayer`]): the
//! request id (kept or made, and echoed on the answer), the request span
//! and its log line, the HTTP metrics, the body-size limit and problem+json
//! for every error answer.
//!
//! Written by hand as one future rather than as a stack of tower-http
//! layers and axum `from_fn` middlewares: each of those boxed its future,
//! axum boxed each layer's service again and cloned it per request, and
//! tower-http wrapped every body twice more. On the gateway's proxied path
//! that stack cost more user-space instructions than the proxy itself.
//! Only an error answer that is not problem+json yet (an extractor's
//! rejection, a 405) takes a boxed detour to be rewritten.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use axum::{
    body::Body,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use http_body::Body as _;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{REQUEST_ID, log_response, request_span};
use crate::{metrics, problem};

/// The route template of a request served outside an axum `Router` (the
/// gateway's proxied prefixes), for its metrics and span, as axum's
/// `MatchedPath` is for a routed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTemplate(pub &'static str);

/// A request's route label: the template that matched it, if any.
#[derive(Clone)]
pub(crate) enum RouteLabel {
    Matched(MatchedPath),
    Fixed(&'static str),
    Unmatched,
}

impl RouteLabel {
    pub(crate) fn of(request: &Request) -> Self {
        let extensions = request.extensions();
        if let Some(matched) = extensions.get::<MatchedPath>() {
            Self::Matched(matched.clone())
        } else if let Some(RouteTemplate(template)) = extensions.get::<RouteTemplate>() {
            Self::Fixed(template)
        } else {
            Self::Unmatched
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Matched(matched) => Some(matched.as_str()),
            Self::Fixed(template) => Some(template),
            Self::Unmatched => None,
        }
    }
}

/// Layer: the scaffold's per-request work (see the module docs), with
/// request bodies capped at `max_body_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeLayer {
    max_body_bytes: usize,
}

impl EnvelopeLayer {
    /// Bodies over `max_body_bytes` are refused with 413.
    pub fn new(max_body_bytes: usize) -> Self {
        Self { max_body_bytes }
    }
}

impl<S> Layer<S> for EnvelopeLayer {
    type Service = Envelope<<DefaultBodyLimit as Layer<S>>::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        Envelope {
            // axum's extractors read their limit from the request (no future of its own).
            inner: DefaultBodyLimit::max(self.max_body_bytes).layer(inner),
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// The service [`EnvelopeLayer`] builds.
#[derive(Debug, Clone)]
pub struct Envelope<S> {
    inner: S,
    max_body_bytes: usize,
}

impl<S> Service<Request> for Envelope<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EnvelopeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let start = Instant::now();
        let request_id = match request.headers().get(&REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        let route = RouteLabel::of(&request);
        let span = request_span(&request, route.as_str());
        let finish = Finish {
            start,
            request_id,
            method: metrics::method_label(request.method()),
            route,
            span,
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<usize>().ok());
        let limit = match declared {
            Some(length) if length > self.max_body_bytes => {
                return EnvelopeFuture::answered(body_too_large(self.max_body_bytes), finish);
            }
            Some(length) => length,
            None => self.max_body_bytes,
        };
        // A request without a body (most) keeps it as it is: nothing to limit.
        if !request.body().is_end_stream() {
            request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
        }
        let inner = {
            let _entered = finish.span.enter();
            self.inner.call(request)
        };
        EnvelopeFuture {
            state: State::Inner { future: inner },
            finish: Some(finish),
        }
    }
}

/// The 413 of a body declared larger than the limit.
fn body_too_large(limit: usize) -> Response {
    problem::Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
    .into_response()
}

/// A request id: a UUID v4 drawn from the thread's generator. (tower-http's
/// `MakeRequestUuid` calls `Uuid::new_v4`, which costs a `getrandom(2)`
/// syscall per request: one in five of the gateway's syscalls under load.)
/// Not a secret, only unique.
fn new_request_id() -> HeaderValue {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = id.hyphenated().encode_lower(&mut text);
    // Hyphenated hex is always a valid header value.
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

/// What is done once the answer is known.
struct Finish {
    start: Instant,
    request_id: HeaderValue,
    method: &'static str,
    route: RouteLabel,
    span: tracing::Span,
}

impl Finish {
    fn apply(self, mut response: Response) -> Response {
        if !response.headers().contains_key(&REQUEST_ID) {
            response.headers_mut().insert(REQUEST_ID, self.request_id);
        }
        let latency = self.start.elapsed();
        metrics::record(
            self.route.as_str().unwrap_or("unmatched"),
            self.method,
            response.status().as_u16(),
            latency.as_secs_f64(),
        );
        // Inside the span: the line carries its fields (route, request id, trace).
        self.span
            .in_scope(|| log_response(&response, latency, &self.span));
        response
    }
}

type BoxResponseFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

pin_project! {
    /// The future of [`Envelope`].
    pub struct EnvelopeFuture<F> {
        #[pin]
        state: State<F>,
        finish: Option<Finish>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F },
        Rewriting { future: BoxResponseFuture },
        Answered { response: Option<Response> },
    }
}

impl<F> EnvelopeFuture<F> {
    fn answered(response: Response, finish: Finish) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
            finish: Some(finish),
        }
    }
}

impl<F> Future for EnvelopeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let response = loop {
            match this.state.as_mut().project() {
                StateProj::Inner { future } => {
                    let polled = match this.finish {
                        Some(finish) => {
                            let _entered = finish.span.enter();
                            future.poll(cx)
                        }
                        None => future.poll(cx),
                    };
                    let Ok(response) = ready!(polled);
                    if !problem::needs_rewrite(&response) {
                        this.state.set(State::Answered { response: None });
                        break response;
                    }
                    this.state.set(State::Rewriting {
                        future: Box::pin(problem::rewrite(response)),
                    });
                }
                StateProj::Rewriting { future } => {
                    let response = ready!(future.as_mut().poll(cx));
                    this.state.set(State::Answered { response: None });
                    break response;
                }
                StateProj::Answered { response } => match response.take() {
                    Some(response) => break response,
                    // Polled after completion: a caller's bug, not a panic here.
                    None => return Poll::Pending,
                },
            }
        };
        Poll::Ready(Ok(match this.finish.take() {
            Some(finish) => finish.apply(response),
            None => response,
        }))
    }
}
