//! TLS termination (rustls, ring provider) when `TLS_CERT_FILE` and
//! `TLS_KEY_FILE` are set.
//!
//! The connection handling is the shared one ([`server::serve_with`]): the
//! same connection cap, header-read and idle timeouts, header size cap and
//! graceful drain as a plain listener. This module only loads the PEM files
//! with a clear error and does the TLS handshake, which counts against the
//! header-read timeout (a client that connects and never finishes the
//! handshake is a slowloris too).

use std::{path::Path, sync::Arc};

use axum_server::tls_rustls::RustlsConfig;
use mcp_shared::server::{self, ConnectionLimits, Handshake};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tokio_util::sync::CancellationToken;

/// Read the certificate chain and private key (PEM).
pub async fn load(cert: &Path, key: &Path) -> std::io::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
        std::io::Error::other(format!(
            "TLS_CERT_FILE/TLS_KEY_FILE: cannot load {} and {}: {e}",
            cert.display(),
            key.display()
        ))
    })
}

/// The TLS handshake of an accepted connection (ALPN offers h2 and http/1.1,
/// as axum-server's loader sets them).
#[derive(Clone)]
struct Tls(TlsAcceptor);

impl Handshake for Tls {
    type Io = TlsStream<TcpStream>;

    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<Self::Io> {
        self.0.accept(tcp).await
    }
}

/// Serve `app` over TLS on `listener` until `shutdown`, then drain in-flight
/// requests for at most `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: impl server::App,
    config: RustlsConfig,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::clone(&config.get_inner()));
    server::serve_with(listener, app, shutdown, limits, Tls(acceptor)).await
}
