//! The proxy's connector: every new upstream connection passes the egress
//! rules ([`mcp_shared::egress`]) first.
//!
//! hyper-util's `HttpConnector` connects to IP literals without asking its
//! resolver, so the rules cannot live in a resolver alone: this connector
//! checks the destination itself, resolving a name through the rules with
//! the real port (so a protected endpoint is recognised behind a name), and
//! hands the inner `HttpConnector` the checked IP address only. It runs once
//! per new connection; pooled connections skip it, so the hot path pays
//! nothing.
//!
//! A refusal comes back as a connect error whose source is a
//! [`ResolveError::Refused`]; [`refusal_of`] finds it, and the proxy answers
//! 403 instead of 502.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::http::Uri;
use hyper_util::{client::legacy::connect::HttpConnector, rt::TokioIo};
use mcp_shared::egress::{Egress, Refusal, ResolveError};
use tokio::net::TcpStream;
use tower::Service;

/// What a connector error is boxed as.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An `HttpConnector` behind the egress rules.
#[derive(Clone)]
pub struct EgressConnector {
    inner: HttpConnector,
    egress: Arc<Egress>,
}

impl EgressConnector {
    /// Connect with `inner` wherever `egress` allows.
    pub fn new(inner: HttpConnector, egress: Arc<Egress>) -> Self {
        Self { inner, egress }
    }
}

impl Service<Uri> for EgressConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let egress = self.egress.clone();
        Box::pin(async move {
            let host = destination
                .host()
                .ok_or_else(|| BoxError::from("upstream URI without a host"))?;
            let port = destination.port_u16().unwrap_or(
                if destination.scheme() == Some(&axum::http::uri::Scheme::HTTPS) {
                    443
                } else {
                    80
                },
            );
            let addrs = egress.resolve(host, port).await.inspect_err(|e| {
                if e.refusal().is_some() {
                    metrics::counter!(crate::counters::EGRESS_REFUSED).increment(1);
                }
            })?;
            let addr = addrs
                .first()
                .copied()
                .ok_or_else(|| ResolveError::Refused(Refusal::Unresolved(host.to_owned())))?;
            // Where `/svc` connections really go (one count per new
            // connection, not per request), so a run can prove it stayed on loopback.
            let destination = if addr.ip().is_loopback() {
                "loopback"
            } else {
                "other"
            };
            metrics::counter!("gateway_upstream_connects_total", "destination" => destination)
                .increment(1);
            inner.call(address_uri(addr)?).await.map_err(Into::into)
        })
    }
}

/// `http://{addr}`: what the inner connector connects to.
fn address_uri(addr: SocketAddr) -> Result<Uri, BoxError> {
    Ok(Uri::builder()
        .scheme("http")
        .authority(addr.to_string())
        .path_and_query("/")
        .build()?)
}

/// The egress refusal behind a client error, if that is why it failed.
pub fn refusal_of<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    crate::error::cause_of::<ResolveError>(error).and_then(ResolveError::refusal)
}
