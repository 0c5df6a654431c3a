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
//!
//! WebSocket: an HTTP/1.1 handshake to a service that takes upgrades keeps
//! its `Upgrade` and `Connection` headers, and a 101 is spliced (see
//! [`upgrade`]).
//!
//! The parts: [`clients`] sends each attempt over the pool of its way of
//! speaking ([`pool`], the gateway's own, for plain `http` instances),
//! [`headers`] prepares the upstream request's headers,
//! [`retry`] decides whether a failed try is tried again, [`uri`] builds the
//! upstream URI and reads a blocking query's wait, [`trace`] makes each
//! attempt's client span, [`response`] streams the answer back, and
//! [`upgrade`] joins a WebSocket's two connections.

mod clients;
mod headers;
mod pool;
mod response;
mod retry;
mod trace;
mod upgrade;
mod uri;

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
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use http_body::Body as HttpBody;
use mcp_shared::{internal::InternalKey, server};
use tower::Service;
use tracing::Instrument as _;

use crate::{
    auth::Principal,
    balance::{Outcome, Unavailable, Upstream},
    egress::refusal_of,
    error::GatewayError,
    grpc,
    policy::{Applied, Failure},
    routing::{ControlPlane, Routes},
};
use clients::{Via, Wire};
use headers::{Forwarded, prepare_request_headers};
use response::{is_body_too_large, pass_through};
use retry::RetryPlan;
use trace::{client_span, record_outcome};
use uri::{split_first, upstream_uri, wait_of};

pub use clients::Clients;
pub use retry::is_idempotent;
pub use upgrade::{Limits as WebSocketLimits, WebSockets};

/// The forwarding service (cheap to clone).
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    /// The pooled clients: `/svc` ones connect only where the egress rules
    /// allow; `/api`'s to the configured control-plane URLs, which the rules protect.
    clients: Clients,
    routes: Arc<Routes>,
    control: Arc<ControlPlane>,
    internal: Arc<InternalKey>,
    timeout: Duration,
    /// `X-Forwarded-Proto`: `https` when the gateway terminates TLS.
    forwarded_proto: HeaderValue,
    /// The spliced WebSocket connections.
    websockets: WebSockets,
}

impl Proxy {
    /// A proxy over the routing table and the control plane, sending with
    /// `clients`; `internal` signs the control plane's credential; `tls` says
    /// whether clients reach the gateway over TLS (one listener, so it is
    /// known at construction, not per request); `websockets` carries the
    /// upgraded connections.
    pub fn new(
        routes: Arc<Routes>,
        control: Arc<ControlPlane>,
        internal: Arc<InternalKey>,
        timeout: Duration,
        clients: Clients,
        tls: bool,
        websockets: WebSockets,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                clients,
                routes,
                control,
                internal,
                timeout,
                forwarded_proto: HeaderValue::from_static(if tls { "https" } else { "http" }),
                websockets,
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
        // A WebSocket handshake: the client's side of its upgrade.
        let mut client_upgrade = upgrade::requested(&mut parts);
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
        // A gRPC call's own deadline (`grpc-timeout`) replaces the timeout.
        let grpc_deadline = grpc::deadline(&parts.headers);
        let header_timeout = match grpc_deadline {
            Some(deadline) => deadline,
            None => {
                policy.and_then(|p| p.timeout).unwrap_or(self.timeout)
                    + long_poll.unwrap_or_default()
            }
        };
        // The client chose how long to wait (a long poll's `wait`, a gRPC
        // deadline): running out says nothing about the instance's health.
        let client_chosen = long_poll.is_some() || grpc_deadline.is_some();
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
            // A policy's protocol wins over the instances' metadata.
            let protocol = policy.and_then(|p| p.protocol).unwrap_or(endpoint.protocol);
            let wire = Wire::of(protocol);
            if wire.host_header {
                attempt_headers.insert(header::HOST, endpoint.host_header.clone());
            }
            let upgrading =
                client_upgrade.is_some() && upgrade::allowed(policy, &endpoint, protocol);
            let slot = if upgrading {
                upgrade::ask(&mut attempt_headers);
                Some(self.websockets.slot()?)
            } else {
                None
            };
            let attempt_body = if replayable {
                Body::empty()
            } else {
                body.take().unwrap_or_else(Body::empty)
            };
            let uri = upstream_uri(
                wire.scheme,
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
            *outgoing.version_mut() = wire.version;
            *outgoing.headers_mut() = attempt_headers;

            let via = if target.prefix == CONTROL_PLANE_PREFIX {
                Via::ControlPlane
            } else if upgrading {
                Via::Upgrade
            } else {
                Via::Service(protocol)
            };
            let sending = self.clients.send(via, outgoing);
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
                    if let Some(slot) = slot {
                        let client = client_upgrade.take();
                        return self
                            .websockets
                            .answer(response, client, in_flight, &endpoint, slot);
                    }
                    return Ok(pass_through(response, in_flight));
                }
                Err(_) => {
                    let outcome = if client_chosen {
                        Outcome::LongPollTimeout
                    } else {
                        Outcome::Timeout
                    };
                    let _ = lease.finish(outcome);
                    tracing::warn!(upstream = %upstream.name, instance = %endpoint.id, ?header_timeout, "upstream timed out");
                    if may_retry && !client_chosen && plan.take(Failure::Timeout) {
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
                    let tls = tls_failure_of(&error);
                    tracing::warn!(upstream = %upstream.name, instance = %endpoint.id, %error, tls, "cannot connect to upstream");
                    if may_retry && plan.take(Failure::Connect) {
                        tried = Some(endpoint);
                        continue;
                    }
                    return Err(GatewayError::BadGateway(match tls {
                        Some(why) => format!(
                            "TLS with `{}` instance `{}` failed: {why}",
                            upstream.name, endpoint.id
                        ),
                        None => format!(
                            "cannot connect to `{}` instance `{}`",
                            upstream.name, endpoint.id
                        ),
                    }));
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

/// Why the TLS handshake behind a connect error failed (a certificate the
/// gateway does not trust, a name that does not match, a client certificate
/// refused), if that is why; rustls's words, which name no secret.
fn tls_failure_of(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    crate::error::cause_of::<tokio_rustls::rustls::Error>(error).map(ToString::to_string)
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
