//! The authentication and authorization layer.
//!
//! Every request behind it needs `Authorization: Bearer <JWT>` (on the
//! Consul-compatible `/v1/…` also `X-Consul-Token: <JWT>`) that the
//! [`Verifier`] accepts (401 otherwise) and the scope its route needs (403
//! otherwise). Client-sent `X-Auth-*` headers are dropped first, so only the
//! gateway ever sets `X-Auth-Subject` and `X-Auth-Scopes`. The verified
//! [`Principal`] rides on in the request's extensions for the rate limiter
//! and the proxy, which sets `X-Auth-*` on the upstream request only after
//! it removed the hop-by-hop headers: set here, a client's
//! `Connection: x-auth-subject` would have the proxy remove them again.
//!
//! A service whose policy says `auth: {mode: none}` takes requests without
//! a token on its `/svc` paths (a token that is sent is still verified);
//! `auth.scopes` are required on top of a valid token (or `admin`).
//!
//! Runs after path normalisation, so the scope is decided on the same
//! canonical path the proxy routes on.

use std::{
    borrow::Cow,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    extract::Request,
    http::{HeaderName, Method},
    response::{IntoResponse, Response},
};
use futures_util::future::Either;
use mcp_shared::{
    internal::bearer_token,
    scope::{self, Access},
};
use tower::{Layer, Service};

use crate::{
    error::GatewayError,
    jwt::{AuthFailure, Identity, Verifier},
    policy::Applied,
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
    /// The verified token (shared with the token cache: no copy per
    /// request): the proxy sets `X-Auth-*` and mints the internal
    /// credential from it.
    pub identity: Arc<Identity>,
}

/// What a route needs beyond a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement<'a> {
    /// A valid token is enough (`/svc/…`, unknown areas that will 404).
    Token,
    /// `admin` (`/admin/…`).
    Admin,
    /// `{area}:{access}` covering `name` (see [`mcp_shared::scope`]), or `admin`.
    Scope {
        /// `registry`, `config` or `health`.
        area: &'static str,
        /// `GET`/`HEAD` read, other methods write.
        access: Access,
        /// The service or namespace the request is about; `None` for a
        /// listing or another request not about one name.
        name: Option<&'a str>,
    },
}

impl<'a> Requirement<'a> {
    /// The requirement of `method` on (normalised) `path` with `query`:
    /// `GET`/`HEAD` on `/api/v1/{area}/…` need `{area}:read`, other methods
    /// `{area}:write`, narrowed to the name the path is about:
    /// `/api/v1/registry/services/{service}/…`,
    /// `/api/v1/health/services/{service}…`,
    /// `/api/v1/config/namespaces/{ns}/…` and config's
    /// `/api/v1/config/watch?namespace={ns}`; `/admin/…` needs `admin`; the
    /// gateway's own `/metrics` needs `metrics:read` (see `admin::guard_metrics`).
    ///
    /// The name is taken as the path spells it. A percent-encoded name
    /// cannot widen a grant: names in scopes hold no `%`, so a grant that
    /// covers the spelled name covers the decoded one the service sees.
    pub fn of(method: &Method, path: &'a str, query: Option<&'a str>) -> Self {
        if path.starts_with("/admin/") || path == "/admin" {
            return Self::Admin;
        }
        if path == "/metrics" {
            return Self::Scope {
                area: "metrics",
                access: Access::Read,
                name: None,
            };
        }
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return Self::Token;
        };
        let (area, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let area = match area {
            "registry" => "registry",
            "config" => "config",
            "health" => "health",
            _ => return Self::Token,
        };
        let access = if method == Method::GET || method == Method::HEAD {
            Access::Read
        } else {
            Access::Write
        };
        let collection = if area == "config" {
            "namespaces/"
        } else {
            "services/"
        };
        let name = match rest.strip_prefix(collection) {
            Some(after) => after.split('/').next(),
            None if area == "config" && rest == "watch" => query_value(query, "namespace"),
            None => None,
        }
        .filter(|name| !name.is_empty());
        Self::Scope { area, access, name }
    }

    /// Whether a token with `scopes` (space-separated) meets it.
    pub fn allows(self, scopes: &str) -> bool {
        match self {
            Self::Token => true,
            Self::Admin => scope::grants(scopes).any(|g| g == scope::Grant::Admin),
            Self::Scope { area, access, name } => scope::allows(scopes, area, access, name),
        }
    }

    /// The scope a 403 names: `admin`, `registry:write:shop`, `config:read`;
    /// `None` for [`Self::Token`].
    pub fn missing_scope(self) -> Option<Cow<'static, str>> {
        match self {
            Self::Token => None,
            Self::Admin => Some(Cow::Borrowed("admin")),
            Self::Scope { area, access, name } => {
                Some(Cow::Owned(scope::required(area, access, name)))
            }
        }
    }

    /// The scope that covers the whole route whatever the name (`registry:write`,
    /// `admin`), as the OpenAPI document lists it; `None` for [`Self::Token`].
    pub fn area_scope(self) -> Option<String> {
        match self {
            Self::Token => None,
            Self::Admin => Some("admin".to_owned()),
            Self::Scope { area, access, .. } => Some(scope::required(area, access, None)),
        }
    }
}

/// The first value of `name` in a query string, as it is spelled.
fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
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
    /// The inner service's own future when the request is settled at once
    /// (see [`settle`]); a box around a verification or a refusal.
    type Future =
        Either<S::Future, Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // A token in the cache of verified tokens (nearly every request) or
        // none at all is settled here: the inner service is called at once,
        // no box. Only a verification (which may fetch the JWKS) waits.
        match settle(&self.verifier, &mut request) {
            Some(Ok(())) => return Either::Left(self.inner.call(request)),
            Some(Err(error)) => {
                return Either::Right(Box::pin(std::future::ready(Ok(refusal(error)))));
            }
            None => {}
        }
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Either::Right(Box::pin(async move {
            match verify_and_admit(&verifier, &mut request).await {
                Ok(()) => inner.call(request).await,
                Err(error) => Ok(refusal(error)),
            }
        }))
    }
}

/// Authenticate and authorize `request` as [`AuthLayer`] does, for a route
/// outside its stack (the gateway's `/metrics`): the refusal is the
/// problem+json response to send, and a 401 is counted in
/// `gateway_auth_failures_total`.
pub async fn check(verifier: &Verifier, request: &mut Request) -> Result<(), Response> {
    authorize(verifier, request).await.map_err(refusal)
}

/// The problem+json answer to a refused request; a 401 is counted.
fn refusal(error: GatewayError) -> Response {
    if let GatewayError::Unauthorized(failure) = &error {
        metrics::counter!(crate::counters::AUTH_FAILURES, "reason" => failure.reason())
            .increment(1);
    }
    error.into_response()
}

async fn authorize(verifier: &Verifier, request: &mut Request) -> Result<(), GatewayError> {
    match settle(verifier, request) {
        Some(settled) => settled,
        None => verify_and_admit(verifier, request).await,
    }
}

/// Verify the token [`settle`] found and could not settle (not in the
/// cache), then authorize it.
async fn verify_and_admit(verifier: &Verifier, request: &mut Request) -> Result<(), GatewayError> {
    let token = token_of(request).ok_or(GatewayError::Unauthorized(AuthFailure::Missing))?;
    let identity = verifier
        .identify(token)
        .await
        .map_err(GatewayError::Unauthorized)?;
    admit(request, identity)
}

/// What the request's credentials settle without verifying a token: no
/// token (a public service's request passes, any other is a 401), or a
/// token the cache has verified; `None` when the token must be verified.
/// Client-sent `X-Auth-*` headers are gone either way.
fn settle(verifier: &Verifier, request: &mut Request) -> Option<Result<(), GatewayError>> {
    strip_auth_headers(request.headers_mut());
    let Some(token) = token_of(request) else {
        // A public service needs no token (one sent is still verified).
        let public = request
            .extensions()
            .get::<Arc<Applied>>()
            .is_some_and(|p| p.public);
        return Some(if public {
            Ok(())
        } else {
            Err(GatewayError::Unauthorized(AuthFailure::Missing))
        });
    };
    let identity = verifier.cached(token)?;
    Some(admit(request, identity))
}

/// The request's JWT: `Authorization: Bearer`, else (Consul API) `X-Consul-Token`.
fn token_of(request: &Request) -> Option<&str> {
    bearer_token(request).or_else(|| consul_token(request))
}

/// Authorize the verified `identity` for `request` (the route's scope,
/// then the service policy's `auth.scopes`) and attach it as the
/// [`Principal`].
fn admit(request: &mut Request, identity: Arc<Identity>) -> Result<(), GatewayError> {
    let requirement = Requirement::of(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    if !requirement.allows(&identity.scope) {
        // Allocates only on this refusal.
        let missing = requirement
            .missing_scope()
            .unwrap_or(Cow::Borrowed("admin"));
        return Err(GatewayError::Forbidden(missing));
    }
    // A service's policy (set by the edge layer for `/svc/{service}`).
    if let Some(missing) = request
        .extensions()
        .get::<Arc<Applied>>()
        .and_then(|p| missing_policy_scope(p, &identity.scope))
    {
        return Err(GatewayError::Forbidden(Cow::Owned(missing.to_owned())));
    }
    // No `X-Auth-*` header is set here: the proxy sets them (see the module docs).
    request.extensions_mut().insert(Principal {
        subject: identity.subject.clone(),
        identity,
    });
    Ok(())
}

/// The header Consul clients send their token in.
const X_CONSUL_TOKEN: HeaderName = HeaderName::from_static("x-consul-token");

/// On the Consul-compatible API (`/v1/…`) only: the JWT of
/// `X-Consul-Token`, when there is no `Authorization: Bearer`. Borrowed
/// from the request: no allocation.
fn consul_token(request: &Request) -> Option<&str> {
    if !request.uri().path().starts_with("/v1/") {
        return None;
    }
    let token = request.headers().get(X_CONSUL_TOKEN)?.to_str().ok()?.trim();
    (!token.is_empty()).then_some(token)
}

/// The first of the policy's `auth.scopes` that `scopes` lacks (`admin` grants all).
fn missing_policy_scope<'a>(policy: &'a Applied, scopes: &str) -> Option<&'a str> {
    if policy.scopes.is_empty() || scopes.split(' ').any(|s| s == "admin") {
        return None;
    }
    policy
        .scopes
        .iter()
        .find(|want| !scopes.split(' ').any(|have| have == want.as_str()))
        .map(String::as_str)
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

    fn scope(method: &Method, path: &str, query: Option<&str>) -> Option<String> {
        Requirement::of(method, path, query)
            .missing_scope()
            .map(Cow::into_owned)
    }

    #[test]
    fn scopes_follow_method_and_area() {
        assert_eq!(
            scope(&Method::GET, "/api/v1/registry/services", None).as_deref(),
            Some("registry:read")
        );
        assert_eq!(
            Requirement::of(&Method::GET, "/admin/upstreams", None),
            Requirement::Admin
        );
        assert_eq!(
            Requirement::of(&Method::POST, "/svc/echo/x", None),
            Requirement::Token
        );
        assert_eq!(
            Requirement::of(&Method::GET, "/api/v1/other/x", None),
            Requirement::Token
        );
        let read = Requirement::of(&Method::GET, "/api/v1/config/namespaces/a/keys/b", None);
        assert!(read.allows("registry:read admin"));
        assert!(!read.allows("config:write"));
        assert!(!Requirement::Admin.allows("config:write registry:write"));
        let metrics = Requirement::of(&Method::GET, "/metrics", None);
        assert_eq!(metrics.missing_scope().as_deref(), Some("metrics:read"));
        assert!(metrics.allows("metrics:read"));
        assert!(metrics.allows("admin"));
        assert!(!metrics.allows("registry:read config:read"));
    }

    #[test]
    fn the_name_comes_from_the_path_or_the_watch_query() {
        let cases = [
            (
                Method::PUT,
                "/api/v1/registry/services/billing/instances/b-1",
                None,
                "registry:write:billing",
            ),
            (
                Method::GET,
                "/api/v1/health/services/shop",
                None,
                "health:read:shop",
            ),
            (
                Method::GET,
                "/api/v1/health/services/shop/instances/s-1",
                None,
                "health:read:shop",
            ),
            (
                Method::PUT,
                "/api/v1/config/namespaces/prod/keys/db/url",
                None,
                "config:write:prod",
            ),
            (
                Method::GET,
                "/api/v1/config/watch",
                Some("client_id=c&namespace=shop"),
                "config:read:shop",
            ),
            (Method::GET, "/api/v1/config/watch", None, "config:read"),
            (
                Method::GET,
                "/api/v1/config/watch",
                Some("namespace="),
                "config:read",
            ),
            (
                Method::GET,
                "/api/v1/config/namespaces",
                None,
                "config:read",
            ),
            (Method::GET, "/api/v1/health/summary", None, "health:read"),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(
                scope(&method, path, query).as_deref(),
                Some(expected),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_narrowed_scope_allows_its_names_only() {
        let billing = "registry:write:billing";
        let put = |service: &str| {
            Requirement::of(
                &Method::PUT,
                &format!("/api/v1/registry/services/{service}/instances/x"),
                None,
            )
            .allows(billing)
        };
        assert!(put("billing"));
        assert!(!put("shop"));
        let team = "config:write:team-a-*";
        assert!(
            Requirement::of(
                &Method::PUT,
                "/api/v1/config/namespaces/team-a-x/keys/k",
                None
            )
            .allows(team)
        );
        assert!(
            !Requirement::of(
                &Method::PUT,
                "/api/v1/config/namespaces/team-b/keys/k",
                None
            )
            .allows(team)
        );
        // A listing needs some read grant of the area (the service filters it).
        assert!(
            Requirement::of(&Method::GET, "/api/v1/config/namespaces", None)
                .allows("config:read:shop")
        );
    }
}
