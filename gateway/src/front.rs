//! The front door: where the proxied prefixes leave the app's router.
//!
//! `/api/{*rest}` and `/svc/{*rest}` (nearly every request the gateway
//! serves) go straight to the proxied stack: the scaffold's envelope
//! (`mcp_shared::server::EnvelopeLayer`), then normalisation, the service's
//! policy, auth, the rate limit and the proxy, one concrete service. The
//! router routes the same two templates to the same layers around the same
//! proxy (which is what the OpenAPI checks read), but through axum's boxed
//! routes, which cost a boxed service clone and a boxed future per layer
//! per request. Everything else (admin, Consul, the documents, the
//! console, `/metrics`, the probes) goes to the router.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use axum::{Router, extract::Request, response::Response, routing::future::RouteFuture};
use futures_util::future::Either;
use mcp_shared::server::RouteTemplate;
use tower::Service;

/// The templates the front door serves, by prefix (as the router names them).
const PROXIED: [(&str, RouteTemplate); 2] = [
    ("/svc/", RouteTemplate("/svc/{*rest}")),
    ("/api/", RouteTemplate("/api/{*rest}")),
];

/// The proxied prefixes' template a path matches, as the router's
/// `{*rest}` would: the prefix and at least one character after it.
fn proxied(path: &str) -> Option<RouteTemplate> {
    PROXIED.iter().find_map(|(prefix, template)| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty())
            .then_some(*template)
    })
}

/// `/api/…` and `/svc/…` to `proxied`, the rest to `app` (see the module docs).
#[derive(Clone)]
pub struct FrontDoor<P> {
    proxied: P,
    app: Router,
}

impl<P> FrontDoor<P> {
    /// The proxied prefixes to `proxied`, every other path to `app`.
    pub fn new(proxied: P, app: Router) -> Self {
        Self { proxied, app }
    }
}

impl<P> Service<Request> for FrontDoor<P>
where
    P: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<P::Future, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both are always ready (the proxy's stack has no backpressure of
        // its own; the router never has).
        match self.proxied.poll_ready(cx) {
            Poll::Ready(Ok(())) => Service::<Request>::poll_ready(&mut self.app, cx),
            other => other,
        }
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match proxied(request.uri().path()) {
            Some(template) => {
                request.extensions_mut().insert(template);
                Either::Left(self.proxied.call(request))
            }
            None => Either::Right(self.app.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_prefix_with_something_after_it_is_proxied() {
        assert_eq!(proxied("/svc/a"), Some(RouteTemplate("/svc/{*rest}")));
        assert_eq!(proxied("/svc/a/b?c"), Some(RouteTemplate("/svc/{*rest}")));
        assert_eq!(
            proxied("/api/v1/registry/services"),
            Some(RouteTemplate("/api/{*rest}"))
        );
        for other in [
            "/svc/", "/svc", "/api/", "/apix/a", "/svcx/a", "/", "/v1/kv/a", "/metrics",
        ] {
            assert_eq!(proxied(other), None, "{other}");
        }
    }
}
