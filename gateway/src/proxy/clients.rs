//! The proxy's pooled upstream clients, one per way of speaking.
//!
//! hyper-util's pooled client speaks one set of protocols per client, so the
//! gateway keeps a few, each with its own pool, all over the same connector
//! (the egress rules first, then TLS for `https` URIs through hyper-rustls):
//!
//! | client | instances | wire |
//! |---|---|---|
//! | `http1_pool` (ours, see [`super::pool`]) | `protocol=http` (the default) | HTTP/1.1 |
//! | `auto` | `protocol=https` | HTTP/1.1, or HTTP/2 when the instance's ALPN picks `h2` |
//! | `h2c` | `protocol=h2c` (gRPC services) | HTTP/2 with prior knowledge |
//! | `http1` | WebSocket upgrades to `http`/`https` instances | HTTP/1.1 only, so ALPN cannot pick `h2` for a request that must upgrade |
//! | `control` | the configured control-plane URLs | HTTP/1.1, TLS for `https://` ones; no egress rules (they protect the control plane) |
//!
//! A pool is keyed by scheme and authority (ours: one pool, one scheme),
//! so an instance reached over two protocols (a policy changed) never
//! mixes connections.
//!
//! Each serving worker (see `mcp_shared::server::worker`) has a set of its
//! own: a pooled connection's task runs on the worker that opened it, so a
//! request never waits on a connection driven by another thread. The
//! shared runtime (no workers, or a call from a background task) has one
//! more set. Ours is per thread by construction.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Version, uri::Scheme},
};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Builder, Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use mcp_shared::policy::UpstreamProtocol;
use tokio_rustls::rustls::ClientConfig;

use super::pool::Http1Pool;
use crate::{egress::EgressConnector, upstream_tls::UpstreamTls};

/// A pooled client behind the egress rules.
type ServiceClient = Client<HttpsConnector<EgressConnector>, Body>;

/// What a failed send is: no connection (the proxy may try another
/// instance, and answers 502, or 403 for an egress refusal), or a failed
/// exchange on one. The cause is the source, for the proxy to look into.
#[derive(Debug)]
pub(super) enum SendError {
    Connect(BoxError),
    Exchange(BoxError),
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl SendError {
    pub(super) fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }

    fn cause(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            Self::Connect(cause) | Self::Exchange(cause) => cause.as_ref(),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(cause) => write!(f, "cannot connect: {cause}"),
            Self::Exchange(cause) => write!(f, "exchange failed: {cause}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.cause())
    }
}

impl From<hyper_util::client::legacy::Error> for SendError {
    fn from(error: hyper_util::client::legacy::Error) -> Self {
        if error.is_connect() {
            Self::Connect(error.into())
        } else {
            Self::Exchange(error.into())
        }
    }
}

/// The proxy's clients, a set per serving worker (see the module docs).
#[derive(Clone)]
pub struct Clients {
    sets: std::sync::Arc<Sets>,
    /// Plain `http` instances' (per thread, see [`super::pool`]).
    http1: std::sync::Arc<Http1Pool>,
}

struct Sets {
    /// The shared runtime's.
    shared: ClientSet,
    /// Worker `i`'s at `i`.
    workers: Vec<ClientSet>,
}

/// One of each client.
struct ClientSet {
    auto: ServiceClient,
    h2c: ServiceClient,
    http1: ServiceClient,
    control: Client<HttpsConnector<HttpConnector>, Body>,
}

/// How a request is written for an instance spoken to with a protocol.
pub(super) struct Wire {
    pub(super) scheme: Scheme,
    pub(super) version: Version,
    /// Whether the request carries a `Host` header (HTTP/2 says `:authority`).
    pub(super) host_header: bool,
}

impl Wire {
    /// The wire of `protocol`.
    pub(super) fn of(protocol: UpstreamProtocol) -> Self {
        match protocol {
            UpstreamProtocol::Http => Self {
                scheme: Scheme::HTTP,
                version: Version::HTTP_11,
                host_header: true,
            },
            UpstreamProtocol::Https => Self {
                scheme: Scheme::HTTPS,
                version: Version::HTTP_11,
                host_header: true,
            },
            UpstreamProtocol::H2c => Self {
                scheme: Scheme::HTTP,
                version: Version::HTTP_2,
                host_header: false,
            },
        }
    }
}

/// Which client sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// The configured control-plane URLs.
    ControlPlane,
    /// A service instance spoken to with this protocol.
    Service(UpstreamProtocol),
    /// A WebSocket handshake to an `http` or `https` instance.
    Upgrade,
}

impl Clients {
    /// Clients that connect to services where `egress` allows (checked in
    /// `connector`), verifying TLS with `tls`, giving up a connect after
    /// `connect_timeout`; a set for each of `workers` serving workers.
    pub fn new(
        egress: std::sync::Arc<mcp_shared::egress::Egress>,
        tls: UpstreamTls,
        connect_timeout: Duration,
        workers: usize,
    ) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        // hyper-rustls refuses plain `http` URIs unless told (`https_or_http`),
        // and needs the inner connector to pass any scheme (`enforce_http`).
        tcp.enforce_http(false);
        let services = EgressConnector::new(tcp.clone(), egress);
        let connector = |config: ClientConfig, h1: bool, h2: bool| {
            let builder = HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http();
            match (h1, h2) {
                (true, true) => builder
                    .enable_all_versions()
                    .wrap_connector(services.clone()),
                (true, false) => builder.enable_http1().wrap_connector(services.clone()),
                _ => builder.enable_http2().wrap_connector(services.clone()),
            }
        };
        let set = || ClientSet {
            auto: pool().build(connector(tls.services.clone(), true, true)),
            http1: pool().build(connector(tls.services.clone(), true, false)),
            h2c: {
                let mut builder = pool();
                builder.http2_only(true);
                builder.build(connector(tls.services.clone(), false, true))
            },
            control: pool().build(
                HttpsConnectorBuilder::new()
                    .with_tls_config(tls.control_plane.clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(tcp.clone()),
            ),
        };
        Self {
            sets: std::sync::Arc::new(Sets {
                shared: set(),
                workers: (0..workers).map(|_| set()).collect(),
            }),
            http1: std::sync::Arc::new(Http1Pool::new(services.clone())),
        }
    }

    /// Send `request` with the client `via` names (this worker's).
    pub(super) async fn send(
        &self,
        via: Via,
        request: axum::http::Request<Body>,
    ) -> Result<hyper::Response<Incoming>, SendError> {
        if via == Via::Service(UpstreamProtocol::Http) {
            return self.http1.send(request).await;
        }
        let set = mcp_shared::server::worker()
            .and_then(|worker| self.sets.workers.get(worker))
            .unwrap_or(&self.sets.shared);
        let sending = match via {
            Via::ControlPlane => set.control.request(request),
            Via::Service(UpstreamProtocol::H2c) => set.h2c.request(request),
            Via::Service(_) => set.auto.request(request),
            Via::Upgrade => set.http1.request(request),
        };
        Ok(sending.await?)
    }
}

/// The pool settings every client shares.
fn pool() -> Builder {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256);
    builder
}
