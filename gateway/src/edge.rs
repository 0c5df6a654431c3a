//! The policy at the gateway's edge: extra routes, and what a service's
//! policy answers before any token is looked at.
//!
//! - [`ExtraRoutes`] wraps the whole app: a request whose host and path
//!   match a route of config (`routes/{name}`) and that is not for one of
//!   the gateway's own paths is rewritten to `/svc/{service}{rest}` before
//!   routing, so every later layer treats it as the `/svc` request it is.
//!   The path is canonicalised first (the same rules as `normalize`), so a
//!   `..` cannot climb out of a route's prefix. A gRPC call that no route
//!   takes goes by its gRPC service instead: `/package.Service/Method` to
//!   the service whose instances name `package.Service` in their
//!   `grpc_services` metadata ([`crate::routing::GRPC_SERVICES`]).
//! - [`PolicyLayer`] sits after normalisation and before auth. For
//!   `/svc/{service}/…` with a policy it puts the compiled policy
//!   (`Arc<Applied>`) into the request's extensions for auth, the rate
//!   limiter and the proxy; answers CORS preflights (no token needed);
//!   refuses a method the policy does not allow (405 with `Allow`) and a body
//!   over `max_body_bytes` (413); and on the way out applies the response
//!   header rules and CORS headers and counts `gateway_requests_total`.
//!   Without a policy it costs one snapshot load and one hash lookup.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, Method, StatusCode, header, uri::PathAndQuery},
    response::{IntoResponse, Response},
};
use http_body_util::Limited;
use mcp_shared::{Problem, policy::RESERVED_PATHS};
use tower::{Layer, Service};

use crate::{
    error::GatewayError,
    grpc,
    normalize::normalize,
    policy::{Applied, Cors, ExtraRoute, Policies},
    routing::Routes,
};

/// The service behind `/svc/{service}/…` (canonical path), if it is one.
pub fn service_of(path: &str) -> Option<&str> {
    let after = path.strip_prefix("/svc/")?;
    let service = after.split('/').next().unwrap_or(after);
    (!service.is_empty()).then_some(service)
}

fn is_reserved(path: &str) -> bool {
    RESERVED_PATHS.iter().any(|reserved| {
        path.strip_prefix(reserved)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Wraps the app: rewrites requests of extra routes (see the module docs).
#[derive(Clone)]
pub struct ExtraRoutes<S> {
    inner: S,
    policies: Arc<Policies>,
    routes: Arc<Routes>,
}

impl<S> ExtraRoutes<S> {
    /// Route by `policies` (and, for gRPC calls, the gRPC services the
    /// instances in `routes` name) in front of `inner`.
    pub fn new(policies: Arc<Policies>, routes: Arc<Routes>, inner: S) -> Self {
        Self {
            inner,
            policies,
            routes,
        }
    }
}

impl<S> Service<Request> for ExtraRoutes<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if !is_reserved(request.uri().path())
            && !reroute(&self.policies, &mut request)
            && grpc::is_grpc(request.headers())
        {
            reroute_grpc(&self.routes, &mut request);
        }
        self.inner.call(request)
    }
}

/// Rewrite a gRPC call `/package.Service/Method` to
/// `/svc/{service}/package.Service/Method` when an instance of `service`
/// names `package.Service` in its `grpc_services` metadata.
fn reroute_grpc(routes: &Routes, request: &mut Request) {
    let path = request.uri().path();
    let Some(grpc_service) = path
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .map(|(service, _)| service)
    else {
        return;
    };
    let table = routes.current();
    let Some(service) = table.grpc.get(grpc_service) else {
        return;
    };
    let mut target = String::with_capacity(5 + service.len() + path.len());
    target.push_str("/svc/");
    target.push_str(service);
    target.push_str(path);
    rewrite(request, target);
}

/// Point `request` at `target` (a path), keeping its query and authority.
fn rewrite(request: &mut Request, mut target: String) -> bool {
    if let Some(query) = request.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    let Ok(path_and_query) = PathAndQuery::try_from(target) else {
        return false;
    };
    let mut parts = request.uri().clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    match axum::http::Uri::from_parts(parts) {
        Ok(uri) => {
            *request.uri_mut() = uri;
            true
        }
        Err(_) => false,
    }
}

/// Rewrite `request` to `/svc/{service}{rest}` when a route takes it;
/// whether one did.
fn reroute(policies: &Policies, request: &mut Request) -> bool {
    let snapshot = policies.current();
    if snapshot.routes.is_empty() {
        return false;
    }
    let Ok(path) = normalize(request.uri().path()) else {
        return false;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .map(|h| {
            // Without the port; host names compare in lower case.
            let h = h.rsplit_once(':').map_or(h, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    h
                }
            });
            h.to_ascii_lowercase()
        });
    let Some((route, rest)) = snapshot.route(host.as_deref(), &path) else {
        return false;
    };
    let mut target = String::with_capacity(6 + route.route.service.len() + rest.len() + 1);
    target.push_str("/svc/");
    target.push_str(&route.route.service);
    target.push_str(if rest.is_empty() { "/" } else { rest });
    let route = route.clone();
    if !rewrite(request, target) {
        return false;
    }
    request.extensions_mut().insert(route);
    true
}

/// Layer: a service's policy at the edge (see the module docs).
#[derive(Clone)]
pub struct PolicyLayer {
    policies: Arc<Policies>,
}

impl PolicyLayer {
    /// Apply the policies of `policies`.
    pub fn new(policies: Arc<Policies>) -> Self {
        Self { policies }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        PolicyService {
            inner,
            policies: self.policies.clone(),
        }
    }
}

/// The service [`PolicyLayer`] builds.
#[derive(Clone)]
pub struct PolicyService<S> {
    inner: S,
    policies: Arc<Policies>,
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for PolicyService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::Either<S::Future, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        use futures_util::future::Either;
        let applied = service_of(request.uri().path())
            .and_then(|service| self.policies.current().service(service).cloned());
        let Some(applied) = applied else {
            return Either::Left(self.inner.call(request));
        };
        let route = request.extensions().get::<Arc<ExtraRoute>>().cloned();
        let origin = request.headers().get(header::ORIGIN).cloned();
        if let Some(early) = answer_at_edge(&applied, &mut request, origin.as_ref()) {
            return Either::Right(Box::pin(async move {
                Ok(finish(&applied, route.as_deref(), origin.as_ref(), early))
            }));
        }
        request.extensions_mut().insert(applied.clone());
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(finish(
                &applied,
                route.as_deref(),
                origin.as_ref(),
                response,
            ))
        }))
    }
}

/// A preflight, a method not allowed or a body too large: the answer, at once.
/// Otherwise the body gets the policy's size limit.
fn answer_at_edge(
    applied: &Applied,
    request: &mut Request,
    origin: Option<&HeaderValue>,
) -> Option<Response> {
    if let (Some(cors), Some(origin)) = (&applied.cors, origin)
        && request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && cors.allows(origin)
    {
        return Some(preflight(cors));
    }
    if let Some((methods, allow)) = &applied.methods
        && !methods.contains(request.method())
    {
        let mut response = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is not allowed on service `{}`; allowed: {}",
                request.method(),
                applied.service,
                allow.to_str().unwrap_or("")
            ),
        )
        .into_response();
        response.headers_mut().insert(header::ALLOW, allow.clone());
        return Some(response);
    }
    if let Some(limit) = applied.max_body {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Some(GatewayError::TooLarge.into_response());
        }
        // A body without a length is cut at the limit; the proxy turns the
        // limit's error into a 413. (Boxing the body: only with a limit set.)
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let body = std::mem::replace(request.body_mut(), Body::empty());
        *request.body_mut() = Body::new(Limited::new(body, limit));
    }
    None
}

/// The 204 answer to a CORS preflight from an allowed origin (the origin
/// itself is set in [`finish`]).
fn preflight(cors: &Cors) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, cors.methods.clone());
    if let Some(allowed) = &cors.headers {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
    }
    if let Some(max_age) = &cors.max_age {
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
    }
    response
}

/// The way out: response header rules, CORS headers, the count.
fn finish(
    applied: &Applied,
    route: Option<&ExtraRoute>,
    origin: Option<&HeaderValue>,
    mut response: Response,
) -> Response {
    let headers = response.headers_mut();
    if let Some(rules) = &applied.response_headers {
        rules.apply(headers);
    }
    if let (Some(cors), Some(origin)) = (&applied.cors, origin)
        && cors.allows(origin)
    {
        let allowed = if cors.any_origin && !cors.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.append(header::VARY, HeaderValue::from_static("origin"));
        if cors.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &cors.expose {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
    let status = response.status().as_u16();
    match route {
        Some(route) => route.counters.count(status),
        None => applied.counters.count(status),
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_reserved_paths() {
        assert_eq!(service_of("/svc/shop/x"), Some("shop"));
        assert_eq!(service_of("/svc/shop"), Some("shop"));
        assert_eq!(service_of("/svc/"), None);
        assert_eq!(service_of("/api/v1/x"), None);
        assert!(is_reserved("/svc/shop"));
        assert!(is_reserved("/healthz"));
        assert!(!is_reserved("/svcx"));
        assert!(!is_reserved("/billing"));
    }
}
