//! The proxy: the innermost service of the stack, which forwards a request
//! to an instance and streams the answer back untouched.
//!
//! `/api/v1/{area}/{rest}` goes to `{area}`'s control-plane upstream at
//! `/v1/{rest}`, `/svc/{service}/{rest}` to a passing instance of `service`
//! at `/{rest}`; query strings are kept. Hop-by-hop headers are dropped both
//! ways, the client's `Authorization` stays at the gateway, and only then
//! are `X-Forwarded-For/-Proto/-Host` and `X-Auth-Subject`/`X-Auth-Scopes`
//! (from the verified [`Principal`]) set, so no header a client names in
//! `Connection` can remove them. `X-Forwarded-Proto` is `https` when the
//! gateway terminates TLS. The control plane also gets the internal
//! credential the gateway mints per request ([`mcp_shared::internal`]) as
//! its `Authorization`.
//!
//! A service's policy ([`crate::policy`], put on the request by the edge
//! layer) changes the timeout, retries (attempts, failures, methods, a
//! budget), the instance choice (a traffic split over tags, breaker
//! thresholds) and adds the request header rules after the gateway's own
//! headers; each in one helper below, none when the service has no policy.
//!
//! Tracing: while traces are exported, each attempt is a client span (the
//! OpenTelemetry HTTP client attributes: `http.request.method`, `url.full`,
//! `server.address`/`server.port`, `http.response.status_code`) under the
//! request's server span, and the upstream gets that span as its
//! `traceparent`. Otherwise no span is made and a client's `traceparent`
//! passes through as it came.
//!
//! Bodies stream both ways (SSE, blocking queries, uploads) without
//! buffering. `UPSTREAM_TIMEOUT_MS` bounds only the wait for response
//! headers, and a blocking query gets its `wait` on top, read by the
//! services' own parser ([`Blocking`]: percent-decoded, the default wait
//! when `wait` is absent, none for `index=0`). Failures: connect error →
//! 502, timeout → 504, every circuit open → 503 with `Retry-After`; an
//! idempotent request without a body is retried once on another instance
//! after a connect error. Breaker failures are connect errors, broken
//! exchanges, 5xx and timeouts of ordinary requests; a client's 4xx and a
//! blocking query that outlives its time are not (see [`Outcome`]), so no
//! client can open a circuit for everyone with requests of its own making.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    http::{
        HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header,
        uri::{PathAndQuery, Scheme},
    },
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mcp_shared::{
    egress::Egress, http::Blocking, internal::InternalKey, problem::PassThrough, server, telemetry,
};
use tower::Service;
use tracing::Instrument as _;

use crate::{
    auth::{Principal, X_AUTH_SCOPES, X_AUTH_SUBJECT},
    balance::{InFlight, Outcome, Unavailable, Upstream},
    egress::{EgressConnector, refusal_of},
    error::GatewayError,
    policy::{Applied, Failure, Retry},
    routing::{ControlPlane, Routes},
};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The forwarding service (cheap to clone).
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    /// `/svc`: connections only where the egress rules allow.
    client: Client<EgressConnector, Body>,
    /// `/api`: the configured control-plane URLs, which the rules protect.
    control_client: Client<HttpConnector, Body>,
    routes: Arc<Routes>,
    control: Arc<ControlPlane>,
    internal: Arc<InternalKey>,
    timeout: Duration,
    /// `X-Forwarded-Proto`: `https` when the gateway terminates TLS.
    forwarded_proto: HeaderValue,
}

impl Proxy {
    /// A proxy over the routing table and the control plane, with one pooled
    /// HTTP/1 client that opens connections only where `egress` allows;
    /// `internal` signs the control plane's credential; `tls` says whether
    /// clients reach the gateway over TLS (one listener, so it is known at
    /// construction, not per request).
    pub fn new(
        routes: Arc<Routes>,
        control: Arc<ControlPlane>,
        internal: Arc<InternalKey>,
        timeout: Duration,
        egress: Arc<Egress>,
        tls: bool,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout.min(Duration::from_secs(5))));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256);
        Self {
            inner: Arc::new(Inner {
                client: builder.build(EgressConnector::new(connector.clone(), egress)),
                control_client: builder.build(connector),
                routes,
                control,
                internal,
                timeout,
                forwarded_proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
            }),
        }
    }
}

impl Service<Request> for Proxy {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            Ok(match inner.forward(request).await {
                Ok(response) => response,
                Err(error) => error.into_response(),
            })
        })
    }
}

/// The path prefix of the control-plane services' APIs.
const CONTROL_PLANE_PREFIX: &str = "/v1";

/// Where a request goes: the upstream, and the path on it (without base path).
struct Target<'a> {
    upstream: Arc<Upstream>,
    /// `/v1` for the control plane, `""` for services.
    prefix: &'static str,
    /// The rest of the path (`/…`, may be empty).
    rest: &'a str,
}

impl Inner {
    fn resolve<'a>(&self, path: &'a str) -> Result<Target<'a>, GatewayError> {
        if let Some(after) = path.strip_prefix("/api/v1/") {
            let (area, rest) = split_first(after);
            let upstream = self.control.area(area).ok_or(GatewayError::NoRoute)?;
            return Ok(Target {
                upstream: upstream.clone(),
                prefix: CONTROL_PLANE_PREFIX,
                rest,
            });
        }
        if let Some(after) = path.strip_prefix("/svc/") {
            let (service, rest) = split_first(after);
            let table = self.routes.current();
            let upstream = table
                .services
                .get(service)
                .ok_or_else(|| GatewayError::UnknownService(service.to_owned()))?;
            return Ok(Target {
                upstream: upstream.clone(),
                prefix: "",
                rest,
            });
        }
        Err(GatewayError::NoRoute)
    }

    /// The control plane's `Authorization`: an internal credential for the
    /// verified client (one HMAC per request; see [`InternalKey::mint`]).
    fn internal_credential(
        &self,
        extensions: &axum::http::Extensions,
        headers: &HeaderMap,
    ) -> Result<HeaderValue, GatewayError> {
        let identity = extensions.get::<Principal>().map(|p| &p.identity);
        let request_id = headers
            .get(&server::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.internal
            .mint(
                identity.and_then(|i| i.subject.as_deref()),
                identity.map_or("", |i| &i.scope),
                request_id,
            )
            .map_err(|e| GatewayError::BadGateway(e.to_string()))
    }

    async fn forward(&self, request: Request) -> Result<Response, GatewayError> {
        let (mut parts, body) = request.into_parts();
        let target = self.resolve(parts.uri.path())?;
        let upstream = target.upstream.clone();
        // The service's policy, set by the edge layer (`/svc` only).
        let policy = parts.extensions.get::<Arc<Applied>>().cloned();
        let policy = policy.as_deref();
        // Only the control plane's blocking queries are known to hold a
        // request; a `/svc` upstream gets `UPSTREAM_TIMEOUT_MS` whatever its
        // query says, so `?index=1` cannot stretch any request to 5 minutes.
        let long_poll = if target.prefix == CONTROL_PLANE_PREFIX {
            wait_of(parts.uri.query())
        } else {
            None
        };
        let header_timeout =
            policy.and_then(|p| p.timeout).unwrap_or(self.timeout) + long_poll.unwrap_or_default();
        let tag = policy.and_then(|p| split_tag(p, &parts.headers, &parts.extensions));
        let breaker = policy.and_then(|p| p.breaker);

        let mut headers = std::mem::take(&mut parts.headers);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        prepare_request_headers(
            &mut headers,
            Forwarded {
                peer,
                uri_host: parts.uri.authority().map(|a| a.as_str()),
                proto: &self.forwarded_proto,
                principal: parts.extensions.get::<Principal>(),
            },
        );
        if target.prefix == CONTROL_PLANE_PREFIX {
            let credential = self.internal_credential(&parts.extensions, &headers)?;
            headers.insert(header::AUTHORIZATION, credential);
        }
        // After the gateway's own headers: the rules cannot touch those
        // (config-svc refuses such rules at write time).
        if let Some(rules) = policy.and_then(|p| p.request_headers.as_ref()) {
            rules.apply(&mut headers);
        }

        // Only a request without a body can be sent twice (it is not buffered).
        let bodiless = body.is_end_stream() || body.size_hint().exact() == Some(0);
        let mut plan = RetryPlan::new(policy, &parts.method, bodiless);
        let replayable = plan.left > 0;
        let mut body = Some(body);
        let mut tried = None;
        loop {
            let lease = match upstream.pick_with(tag.as_deref(), tried.as_ref(), breaker) {
                Ok(lease) => lease,
                Err(Unavailable::NoInstance) if tried.is_some() => {
                    return Err(GatewayError::BadGateway(format!(
                        "cannot connect to any instance of `{}`",
                        upstream.name
                    )));
                }
                Err(Unavailable::NoInstance) => {
                    return Err(GatewayError::NoPassingInstance(upstream.name.clone()));
                }
                Err(Unavailable::AllOpen(ms)) => {
                    return Err(GatewayError::AllOpen {
                        upstream: upstream.name.clone(),
                        retry_after: ms.div_ceil(1000).max(1),
                    });
                }
            };
            let endpoint = lease.endpoint().clone();
            let may_retry = plan.left > 0 && upstream.routable_len() > 1;
            // The headers are cloned only when a retry may need them again.
            let mut attempt_headers = if may_retry {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            attempt_headers.insert(header::HOST, endpoint.host_header.clone());
            let attempt_body = if replayable {
                Body::empty()
            } else {
                body.take().unwrap_or_else(Body::empty)
            };
            let uri = upstream_uri(
                &endpoint.authority,
                &endpoint.base_path,
                &target,
                parts.uri.query(),
            )?;
            let span = client_span(&parts.method, &uri, &endpoint.id);
            server::inject_context(&span, &mut attempt_headers);
            let mut outgoing = axum::http::Request::new(attempt_body);
            *outgoing.method_mut() = parts.method.clone();
            *outgoing.uri_mut() = uri;
            *outgoing.version_mut() = Version::HTTP_11;
            *outgoing.headers_mut() = attempt_headers;

            let sending = if target.prefix == CONTROL_PLANE_PREFIX {
                self.control_client.request(outgoing)
            } else {
                self.client.request(outgoing)
            };
            let sent = tokio::time::timeout(header_timeout, sending)
                .instrument(span.clone())
                .await;
            record_outcome(&span, &sent);
            match sent {
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    // Every control-plane replica shares one Redis: a 503 from one
                    // says Redis is down, not that replica. Counting it would open
                    // every replica's circuit and keep `/api` shut for
                    // CB_OPEN_SECONDS after Redis is back.
                    let outcome = if status == 503 && target.prefix == CONTROL_PLANE_PREFIX {
                        Outcome::DependencyDown
                    } else {
                        Outcome::of_status(status)
                    };
                    if may_retry && status >= 500 && plan.take(Failure::Status(status)) {
                        // The answer is dropped unread: a retry policy asked for another try.
                        let _ = lease.finish(outcome);
                        tracing::debug!(upstream = %upstream.name, instance = %endpoint.id, status, "retrying");
                        tried = Some(endpoint);
                        continue;
                    }
                    let in_flight = lease.finish(outcome);
                    return Ok(pass_through(response, in_flight));
                }
                Err(_) => {
                    // A blocking query that outlives its wait says nothing
                    // about the instance's health: the client chose the wait.
                    let outcome = if long_poll.is_some() {
                        Outcome::LongPollTimeout
                    } else {
                        Outcome::Timeout
                    };
                    let _ = lease.finish(outcome);
                    tracing::warn!(upstream = %upstream.name, instance = %endpoint.id, ?header_timeout, "upstream timed out");
                    if may_retry && long_poll.is_none() && plan.take(Failure::Timeout) {
                        tried = Some(endpoint);
                        continue;
                    }
                    return Err(GatewayError::Timeout(header_timeout));
                }
                Ok(Err(error)) if error.is_connect() => {
                    // A refused address is the registration's fault, not the
                    // instance's health: 403, and no breaker failure.
                    if let Some(refusal) = refusal_of(&error) {
                        let _ = lease.finish(Outcome::ClientError);
                        tracing::warn!(upstream = %upstream.name, instance = %endpoint.id, %refusal, "egress refused");
                        return Err(GatewayError::EgressRefused(format!(
                            "`{}` instance `{}`: {refusal}",
                            upstream.name, endpoint.id
                        )));
                    }
                    let _ = lease.finish(Outcome::ConnectError);
                    tracing::warn!(upstream = %upstream.name, instance = %endpoint.id, %error, "cannot connect to upstream");
                    if may_retry && plan.take(Failure::Connect) {
                        tried = Some(endpoint);
                        continue;
                    }
                    return Err(GatewayError::BadGateway(format!(
                        "cannot connect to `{}` instance `{}`",
                        upstream.name, endpoint.id
                    )));
                }
                Ok(Err(error)) => {
                    if is_body_too_large(&error) {
                        let _ = lease.finish(Outcome::ClientError);
                        return Err(GatewayError::TooLarge);
                    }
                    let _ = lease.finish(Outcome::Error);
                    tracing::warn!(upstream = %upstream.name, instance = %endpoint.id, %error, "upstream exchange failed");
                    return Err(GatewayError::BadGateway(format!(
                        "the exchange with `{}` instance `{}` failed",
                        upstream.name, endpoint.id
                    )));
                }
            }
        }
    }
}

/// The tag a service's traffic split sends this request to (an `Arc`
/// clone of the policy's tag: no allocation).
fn split_tag(
    policy: &Applied,
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
) -> Option<Arc<str>> {
    let split = policy.split.as_ref()?;
    let subject = extensions
        .get::<Principal>()
        .and_then(|p| p.subject.as_deref());
    split.choose(headers, subject).cloned()
}

/// How many more tries a request may make, and on which failures: a
/// service's retry policy (methods, failures, attempts, budget), or by
/// default one retry of an idempotent request after a connect error.
/// Either way only a request without a body is retried.
struct RetryPlan<'a> {
    /// Retries left.
    left: u32,
    policy: Option<&'a Retry>,
}

impl<'a> RetryPlan<'a> {
    fn new(policy: Option<&'a Applied>, method: &Method, bodiless: bool) -> Self {
        match policy.and_then(|p| p.retry.as_ref()) {
            Some(retry) => {
                retry.deposit();
                let allowed = bodiless && retry.method_allowed(method);
                Self {
                    left: if allowed { retry.attempts } else { 0 },
                    policy: Some(retry),
                }
            }
            None => Self {
                left: u32::from(bodiless && is_idempotent(method)),
                policy: None,
            },
        }
    }

    /// Whether `failure` is retried now (and the retry counted against the budget).
    fn take(&mut self, failure: Failure) -> bool {
        let retried = match self.policy {
            Some(retry) => retry.retries(failure),
            None => matches!(failure, Failure::Connect),
        };
        if self.left == 0 || !retried {
            return false;
        }
        if self.policy.is_some_and(|retry| !retry.withdraw()) {
            self.left = 0;
            return false;
        }
        self.left -= 1;
        true
    }
}

/// The client span of one attempt, or none when traces are not exported
/// (then nothing is injected, and the span costs nothing).
fn client_span(method: &Method, uri: &Uri, instance: &str) -> tracing::Span {
    if !telemetry::exporting() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "upstream",
        otel.name = method.as_str(),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method.as_str(),
        url.full = %uri,
        server.address = uri.host(),
        server.port = uri.port_u16().unwrap_or(80),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        instance,
    )
}

/// Put the upstream's status (or why there is none) on the attempt's span.
fn record_outcome<E: std::fmt::Display>(
    span: &tracing::Span,
    sent: &Result<Result<hyper::Response<Incoming>, E>, tokio::time::error::Elapsed>,
) {
    if span.is_none() {
        return;
    }
    match sent {
        Ok(Ok(response)) => {
            let status = response.status();
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.record("otel.status_code", "error");
                span.record("error.type", status.as_str());
            }
        }
        Ok(Err(_)) => {
            span.record("otel.status_code", "error");
            span.record("error.type", "connection_error");
        }
        Err(_) => {
            span.record("otel.status_code", "error");
            span.record("error.type", "timeout");
        }
    }
}

/// `("first", "/rest")` of `"first/rest"`.
fn split_first(path: &str) -> (&str, &str) {
    match path.find('/') {
        Some(at) => (&path[..at], &path[at..]),
        None => (path, ""),
    }
}

fn upstream_uri(
    authority: &axum::http::uri::Authority,
    base_path: &str,
    target: &Target<'_>,
    query: Option<&str>,
) -> Result<Uri, GatewayError> {
    let rest = if target.rest.is_empty() && target.prefix.is_empty() {
        "/"
    } else {
        target.rest
    };
    let mut path = String::with_capacity(
        base_path.len() + target.prefix.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
    );
    path.push_str(base_path);
    path.push_str(target.prefix);
    path.push_str(rest);
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    let path_and_query = PathAndQuery::try_from(path)
        .map_err(|_| GatewayError::BadPath("the path is not a valid URI path"))?;
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(authority.clone())
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| GatewayError::BadPath("the path is not a valid URI path"))
}

/// The `wait` of a blocking query, as the services read it (default
/// included); `None` when the request does not block. A query the services
/// will refuse (400 at once) needs no extra time.
fn wait_of(query: Option<&str>) -> Option<Duration> {
    Blocking::parse(query).ok().flatten().map(|b| b.wait)
}

/// GET, HEAD, OPTIONS, PUT, DELETE, TRACE (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The hop-by-hop headers (RFC 9110 §7.6.1), besides those `Connection` names.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Remove hop-by-hop headers (RFC 9110 §7.6.1), including those `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) headers present, instead of a hashed removal
    // of each of the nine names: most messages carry none of them.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the proxy tells the upstream about the client's request.
struct Forwarded<'a> {
    /// The client's address.
    peer: Option<SocketAddr>,
    /// The authority of an absolute-form request target, when there is one.
    uri_host: Option<&'a str>,
    /// `http` or `https`.
    proto: &'a HeaderValue,
    /// The verified token (none only in unit tests: the proxy is behind auth).
    principal: Option<&'a Principal>,
}

/// The upstream request's headers: the hop-by-hop ones and the token go,
/// then the gateway's own are set. The order matters: a header inserted
/// before [`strip_hop_by_hop`] could be removed by a client that names it in
/// `Connection` (`Connection: keep-alive, x-auth-subject`).
fn prepare_request_headers(headers: &mut HeaderMap, forwarded: Forwarded<'_>) {
    strip_hop_by_hop(headers);
    // The token stays here: upstreams trust X-Auth-* from the gateway instead.
    headers.remove(header::AUTHORIZATION);
    // From here on, only insertions.
    if let Some(principal) = forwarded.principal {
        let identity = &principal.identity;
        match &identity.subject_header {
            Some(subject) => headers.insert(X_AUTH_SUBJECT, subject.clone()),
            None => headers.remove(X_AUTH_SUBJECT),
        };
        headers.insert(X_AUTH_SCOPES, identity.scopes_header.clone());
    }
    let host = headers.remove(header::HOST).or_else(|| {
        forwarded
            .uri_host
            .and_then(|h| HeaderValue::from_str(h).ok())
    });
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(X_FORWARDED_PROTO, forwarded.proto.clone());
    if let Some(peer) = forwarded.peer {
        let ip = peer.ip().to_string();
        let value = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(previous) => format!("{previous}, {ip}"),
            None => ip,
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
}

/// The upstream's response as the client gets it: hop-by-hop headers gone,
/// marked [`PassThrough`] so no error is rewritten, the body streaming and
/// counting the request in flight until it ends.
fn pass_through(response: hyper::Response<Incoming>, in_flight: Option<InFlight>) -> Response {
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
fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(current) = source {
        if current.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// A response body that keeps its request counted in flight until it is dropped.
struct TrackedBody {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_read_as_the_services_read_it() {
        use mcp_shared::http::{DEFAULT_WAIT, MAX_WAIT};
        assert_eq!(
            wait_of(Some("index=3&wait=30s")),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            wait_of(Some("index=3&%77ait=10")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(wait_of(Some("index=3&wait=1h")), Some(MAX_WAIT));
        // No `wait`: the services hold it for the default wait.
        assert_eq!(wait_of(Some("index=3")), Some(DEFAULT_WAIT));
        // Not blocking: no `index`, `index=0`, or a query the services refuse.
        assert_eq!(wait_of(Some("wait=10")), None);
        assert_eq!(wait_of(Some("index=0&wait=10")), None);
        assert_eq!(wait_of(Some("index=3&wait=soon")), None);
        assert_eq!(wait_of(None), None);
    }

    #[test]
    fn gateway_headers_are_set_after_the_hop_by_hop_ones_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static(
                "keep-alive, x-auth-subject, x-auth-scopes, x-forwarded-for, x-forwarded-proto",
            ),
        );
        headers.insert(header::HOST, HeaderValue::from_static("gw.example"));
        let proto = HeaderValue::from_static("https");
        prepare_request_headers(
            &mut headers,
            Forwarded {
                peer: Some(SocketAddr::from(([127, 0, 0, 9], 5000))),
                uri_host: None,
                proto: &proto,
                principal: None,
            },
        );
        assert_eq!(headers[X_FORWARDED_PROTO], "https");
        assert_eq!(headers[X_FORWARDED_FOR], "127.0.0.9");
        assert_eq!(headers[X_FORWARDED_HOST], "gw.example");
        assert!(!headers.contains_key(header::CONNECTION));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("5"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));

        // Without `Connection`, each hop-by-hop header still goes.
        let mut headers = HeaderMap::new();
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }
}
