//! gRPC at the gateway: what it does for a request whose `content-type` is
//! `application/grpc…`, beyond proxying it as the HTTP/2 request it is.
//!
//! - [`GrpcErrorsLayer`] wraps the whole app. An error the gateway answers itself
//!   (no token, a scope missing, a rate limit, no route, no instance, a
//!   timeout) is a problem+json response for HTTP clients; a gRPC client
//!   cannot read that, so for a gRPC request it becomes a *trailers-only*
//!   response (gRPC over HTTP/2): status 200, `content-type:
//!   application/grpc`, `grpc-status` with the code of the error and
//!   `grpc-message` with the problem's detail, no body. An upstream's own
//!   answer ([`PassThrough`]) is never touched.
//! - [`deadline`] reads the client's `grpc-timeout`: the proxy waits that
//!   long for the upstream's response headers instead of
//!   `UPSTREAM_TIMEOUT_MS` (at most [`MAX_WAIT`]), and its expiry is the
//!   client's choice, not a breaker failure.
//!
//! The `grpc-status` an upstream puts in its trailers is the upstream's
//! answer to the call, like an HTTP 4xx: it is passed through as it came
//! and never counted as a breaker failure (the HTTP status of a gRPC
//! answer is 200; a gRPC server that is down still counts, as a connect
//! error, a timeout or a 5xx).

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use futures_util::future::Either;
use mcp_shared::{http::MAX_WAIT, problem::PassThrough};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use tower::{Layer, Service};

/// `grpc-status`.
pub const GRPC_STATUS: header::HeaderName = header::HeaderName::from_static("grpc-status");
/// `grpc-message`.
pub const GRPC_MESSAGE: header::HeaderName = header::HeaderName::from_static("grpc-message");
/// `grpc-timeout`.
pub const GRPC_TIMEOUT: header::HeaderName = header::HeaderName::from_static("grpc-timeout");

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, …).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The deadline a gRPC call's `grpc-timeout` sets (at most [`MAX_WAIT`]);
/// `None` when the request is not gRPC or names no valid timeout.
pub fn deadline(headers: &HeaderMap) -> Option<Duration> {
    if !is_grpc(headers) {
        return None;
    }
    parse_timeout(headers.get(GRPC_TIMEOUT)?.as_bytes()).map(|d| d.min(MAX_WAIT))
}

/// `TimeoutValue TimeoutUnit` of the gRPC over HTTP/2 spec: at most eight
/// ASCII digits, then `H`, `M`, `S`, `m`, `u` or `n`. By hand: no crate
/// outside tonic's stack parses it, and tonic is not a dependency.
fn parse_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The gRPC status code of an error the gateway answers with `status`
/// (the codes of gRPC's HTTP-to-gRPC mapping, except where the gateway
/// knows better: 429 and 413 are limits, 504 is the deadline).
fn code_of(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 | 405 => 12, // UNIMPLEMENTED
        413 | 429 => 8,  // RESOURCE_EXHAUSTED
        504 => 4,        // DEADLINE_EXCEEDED
        502 | 503 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

/// `grpc-message` is percent-encoded: controls, `%` and anything outside ASCII.
const GRPC_MESSAGE_ESCAPED: &AsciiSet = &CONTROLS.add(b'%');

/// The longest problem body read for its detail (the gateway's problems are short).
const PROBLEM_READ_LIMIT: usize = 8 * 1024;

/// The trailers-only answer of a gRPC call the gateway refused with `response`.
async fn trailers_only(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let code = code_of(parts.status);
    let detail = axum::body::to_bytes(body, PROBLEM_READ_LIMIT)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|problem| {
            problem
                .get("detail")
                .or_else(|| problem.get("title"))
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| {
            parts
                .status
                .canonical_reason()
                .unwrap_or("error")
                .to_owned()
        });
    let mut answer = Response::new(Body::empty());
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(GRPC_STATUS, HeaderValue::from(code));
    if let Ok(message) =
        HeaderValue::try_from(utf8_percent_encode(&detail, GRPC_MESSAGE_ESCAPED).to_string())
    {
        headers.insert(GRPC_MESSAGE, message);
    }
    // What a client needs to retry well stays: when, and who asked.
    for name in [header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    if let Some(id) = parts.headers.get(&mcp_shared::server::REQUEST_ID) {
        headers.insert(mcp_shared::server::REQUEST_ID, id.clone());
    }
    answer
}

/// Layer around the whole app: gRPC errors for gRPC calls (see the module
/// docs). Any other request goes through at no cost: its future is the
/// inner one, unboxed.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcErrorsLayer;

impl<S> Layer<S> for GrpcErrorsLayer {
    type Service = GrpcErrors<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcErrors { inner }
    }
}

/// The service [`GrpcErrorsLayer`] builds.
#[derive(Debug, Clone)]
pub struct GrpcErrors<S> {
    inner: S,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for GrpcErrors<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if !is_grpc(request.headers()) {
            return Either::Left(self.inner.call(request));
        }
        let answer = self.inner.call(request);
        Either::Right(Box::pin(async move {
            let Ok(response) = answer.await;
            if response.status() != StatusCode::OK
                && response.extensions().get::<PassThrough>().is_none()
            {
                return Ok(trailers_only(response).await);
            }
            Ok(response)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(parse_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_timeout(b"5n"), Some(Duration::from_nanos(5)));
        // Nine digits, no digits, a sign, an unknown unit: not a timeout.
        for bad in [&b"123456789S"[..], b"S", b"-1S", b"10s", b"", b"1.5S"] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn only_grpc_requests_have_a_deadline_and_it_is_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("2S"));
        assert_eq!(deadline(&headers), None, "not a gRPC request");
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert_eq!(deadline(&headers), Some(Duration::from_secs(2)));
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static("99999999H"));
        assert_eq!(deadline(&headers), Some(MAX_WAIT));
    }

    #[tokio::test]
    async fn a_problem_becomes_a_trailers_only_answer() {
        let problem = mcp_shared::Problem::new(StatusCode::TOO_MANY_REQUESTS, "slow down 100%");
        let mut refused = axum::response::IntoResponse::into_response(problem);
        refused
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        let answer = trailers_only(refused).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/grpc");
        assert_eq!(answer.headers()[GRPC_STATUS], "8");
        assert_eq!(answer.headers()[GRPC_MESSAGE], "slow down 100%25");
        assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(answer.into_body(), 16).await.unwrap();
        assert!(body.is_empty());
    }
}
