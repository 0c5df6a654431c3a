//! TLS termination (rustls, ring provider) when `TLS_CERT_FILE` and
//! `TLS_KEY_FILE` are set.
//!
//! axum-server does the TLS accept loop and the graceful drain; this module
//! only loads the PEM files with a clear error and maps the shutdown token
//! onto axum-server's handle, so a TLS gateway drains on SIGTERM exactly as
//! a plain one does.

use std::{net::SocketAddr, path::Path, time::Duration};

use axum::Router;
use axum_server::{Handle, tls_rustls::RustlsConfig};
use tokio::net::TcpListener;
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

/// Serve `app` over TLS on `listener` until `shutdown`, then drain in-flight
/// requests for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: RustlsConfig,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let handle: Handle<SocketAddr> = Handle::new();
    let drain = handle.clone();
    let stop = shutdown.clone();
    let watcher = tokio::spawn(async move {
        stop.cancelled().await;
        drain.graceful_shutdown(Some(grace));
    });
    let served = axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await;
    watcher.abort();
    served
}
