//! The authentication and authorization layer.
//!
//! Every request behind it needs `Authorization: Bearer <JWT>` that the
//! [`Verifier`] accepts (401 otherwise) and the scope its route needs (403
//! otherwise). Client-sent `X-Auth-*` headers are dropped first, so only the
//! gateway ever sets `X-Auth-Subject` and `X-Auth-Scopes`. The verified
//! [`Principal`] rides on in the request's extensions for the rate limiter
//! and the proxy, which sets `X-Auth-*` on the upstream request only after
//! it removed the hop-by-hop headers: set here, a client's
//! `Connection: x-auth-subject` would have the proxy remove them again.
//!
//! Runs after path normalisation, so the scope is decided on the same
//! canonical path the proxy routes on.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{HeaderName, Method, header},
    response::{IntoResponse, Response},
};
use tower::{Layer, Service};

use crate::{
    error::GatewayError,
    jwt::{AuthFailure, Identity, Verifier},
};

/// Set by the gateway: the token's `sub`.
pub const X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
/// Set by the gateway: the token's scopes, space-separated.
pub const X_AUTH_SCOPES: HeaderName = HeaderName::from_static("x-auth-scopes");

/// Who made the request, once verified.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub`, when it has one.
    pub subject: Option<Arc<str>>,
    /// The verified token, with the `X-Auth-*` values the proxy forwards.
    pub identity: Arc<Identity>,
}

/// What a route needs beyond a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// A valid token is enough (`/svc/…`, unknown areas that will 404).
    Token,
    /// This scope, or `admin`.
    Scope(&'static str),
}

impl Requirement {
    /// The requirement of `method` on (normalised) `path`: `GET`/`HEAD` on
    /// `/api/v1/{area}/…` need `{area}:read`, other methods `{area}:write`;
    /// `/admin/…` needs `admin`; the gateway's own `/metrics` needs
    /// `metrics:read` (see `admin::guard_metrics`).
    pub fn of(method: &Method, path: &str) -> Self {
        if path.starts_with("/admin/") || path == "/admin" {
            return Self::Scope("admin");
        }
        if path == "/metrics" {
            return Self::Scope("metrics:read");
        }
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return Self::Token;
        };
        let area = rest.split('/').next().unwrap_or("");
        let read = method == Method::GET || method == Method::HEAD;
        match (area, read) {
            ("registry", true) => Self::Scope("registry:read"),
            ("registry", false) => Self::Scope("registry:write"),
            ("config", true) => Self::Scope("config:read"),
            ("config", false) => Self::Scope("config:write"),
            ("health", true) => Self::Scope("health:read"),
            ("health", false) => Self::Scope("health:write"),
            _ => Self::Token,
        }
    }

    fn allows(self, scopes: &str) -> bool {
        match self {
            Self::Token => true,
            Self::Scope(needed) => scopes
                .split(' ')
                .any(|scope| scope == needed || scope == "admin"),
        }
    }
}

/// Layer: authenticate and authorize every request (see the module docs).
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
}

impl AuthLayer {
    /// Verify with `verifier`.
    pub fn new(verifier: Arc<Verifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service [`AuthLayer`] builds.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    verifier: Arc<Verifier>,
}

impl<S> Service<Request> for Auth<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            match check(&verifier, &mut request).await {
                Ok(()) => inner.call(request).await,
                Err(refusal) => Ok(refusal),
            }
        })
    }
}

/// Authenticate and authorize `request` as [`AuthLayer`] does, for a route
/// outside its stack (the gateway's `/metrics`): the refusal is the
/// problem+json response to send, and a 401 is counted in
/// `gateway_auth_failures_total`.
pub async fn check(verifier: &Verifier, request: &mut Request) -> Result<(), Response> {
    authorize(verifier, request).await.map_err(|error| {
        if let GatewayError::Unauthorized(failure) = &error {
            metrics::counter!("gateway_auth_failures_total", "reason" => failure.reason())
                .increment(1);
        }
        error.into_response()
    })
}

async fn authorize(verifier: &Verifier, request: &mut Request) -> Result<(), GatewayError> {
    strip_auth_headers(request.headers_mut());
    let token = bearer_token(request).ok_or(GatewayError::Unauthorized(AuthFailure::Missing))?;
    let identity = verifier
        .identify(token)
        .await
        .map_err(GatewayError::Unauthorized)?;
    let requirement = Requirement::of(request.method(), request.uri().path());
    if let Requirement::Scope(needed) = requirement
        && !requirement.allows(&identity.scope)
    {
        return Err(GatewayError::Forbidden(needed));
    }
    // No `X-Auth-*` header is set here: the proxy sets them (see the module docs).
    request.extensions_mut().insert(Principal {
        subject: identity.subject.clone(),
        identity,
    });
    Ok(())
}

/// `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer_token(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Drop every client-sent `X-Auth-*` header. Allocates only when there is one.
fn strip_auth_headers(headers: &mut axum::http::HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("x-auth-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_method_and_area() {
        assert_eq!(
            Requirement::of(&Method::GET, "/api/v1/registry/services"),
            Requirement::Scope("registry:read")
        );
        assert_eq!(
            Requirement::of(&Method::PUT, "/api/v1/config/namespaces/a/keys/b"),
            Requirement::Scope("config:write")
        );
        assert_eq!(
            Requirement::of(&Method::GET, "/admin/upstreams"),
            Requirement::Scope("admin")
        );
        assert_eq!(
            Requirement::of(&Method::POST, "/svc/echo/x"),
            Requirement::Token
        );
        assert_eq!(
            Requirement::of(&Method::GET, "/metrics"),
            Requirement::Scope("metrics:read")
        );
        assert!(Requirement::Scope("metrics:read").allows("admin"));
        assert!(Requirement::Scope("config:read").allows("registry:read admin"));
        assert!(!Requirement::Scope("config:read").allows("config:write"));
    }
}
