//! The gateway's own errors, each one problem+json response.
//!
//! Upstream answers (even 4xx/5xx) are not errors here: they pass through
//! untouched. These are what the gateway itself decides: a bad path, a bad
//! token, a missing scope, a client over its limit, an upstream that cannot
//! be reached.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_shared::Problem;

use crate::jwt::AuthFailure;

/// Everything the gateway answers on its own.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The path cannot be routed safely (`..`, encoded slash, …).
    #[error("bad path: {0}")]
    BadPath(&'static str),
    /// No bearer token, or one that does not verify.
    #[error("unauthorized: {0:?}")]
    Unauthorized(AuthFailure),
    /// A valid token without the scope this route needs (named: `registry:write:shop`).
    #[error("missing scope {0}")]
    Forbidden(std::borrow::Cow<'static, str>),
    /// The client is over its rate limit.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until the next request would pass.
        retry_after: u64,
    },
    /// No route for this path.
    #[error("no route")]
    NoRoute,
    /// `/svc/{service}` names a service that has no instance.
    #[error("unknown service {0}")]
    UnknownService(String),
    /// The service has instances, none of them passing.
    #[error("no passing instance of {0}")]
    NoPassingInstance(String),
    /// Every instance's circuit is open.
    #[error("every instance of {upstream} is open")]
    AllOpen {
        /// The upstream's name.
        upstream: String,
        /// Seconds until the first circuit lets a trial through.
        retry_after: u64,
    },
    /// The upstream could not be reached or broke the exchange.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// The upstream did not answer in time.
    #[error("upstream timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The request body was over `MAX_BODY_BYTES`.
    #[error("request body too large")]
    TooLarge,
    /// The egress rules refuse the instance's address (see `egress`).
    #[error("egress refused: {0}")]
    EgressRefused(String),
    /// `WEBSOCKET_MAX_CONNECTIONS` WebSockets are open already.
    #[error("too many WebSocket connections")]
    TooManyWebSockets,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let problem = match &self {
            Self::BadPath(why) => Problem::invalid_field("path", *why),
            Self::Unauthorized(failure) => {
                let mut response =
                    Problem::new(StatusCode::UNAUTHORIZED, failure.detail()).into_response();
                let challenge = if matches!(failure, AuthFailure::Missing) {
                    HeaderValue::from_static("Bearer")
                } else {
                    HeaderValue::from_static(r#"Bearer error="invalid_token""#)
                };
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
                return response;
            }
            Self::Forbidden(scope) => Problem::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this request needs the `{scope}` scope (or one that covers it, or `admin`)"
                ),
            )
            .with_extension("required_scope", scope.as_ref()),
            Self::RateLimited { retry_after } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate limit exceeded; slow down",
            )
            .with_retry_after(*retry_after),
            Self::NoRoute => Problem::not_found("no route for this path"),
            Self::UnknownService(service) => {
                Problem::not_found(format!("no service `{service}` is registered"))
            }
            Self::NoPassingInstance(service) => {
                Problem::unavailable(format!("service `{service}` has no passing instance"))
            }
            Self::AllOpen {
                upstream,
                retry_after,
            } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("every instance of `{upstream}` is failing (circuit open)"),
            )
            .with_retry_after(*retry_after),
            Self::BadGateway(detail) => Problem::new(StatusCode::BAD_GATEWAY, detail.clone()),
            Self::Timeout(after) => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the upstream did not answer within {} ms",
                    after.as_millis()
                ),
            ),
            Self::TooLarge => Problem::too_large("the request body is over the size limit"),
            Self::EgressRefused(detail) => Problem::new(
                StatusCode::FORBIDDEN,
                format!("the gateway does not connect there: {detail}"),
            ),
            Self::TooManyWebSockets => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway holds as many WebSocket connections as it takes; try again later",
            )
            .with_retry_after(1),
        };
        problem.into_response()
    }
}

/// The first error of type `T` behind `error`: `error` itself or one of its
/// sources. An `io::Error` is stepped into (its `source()` skips the error
/// it carries), since the connectors wrap their causes in them.
pub fn cause_of<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut source = Some(error);
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<T>() {
            return Some(found);
        }
        source = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => cause.source(),
        };
    }
    None
}
