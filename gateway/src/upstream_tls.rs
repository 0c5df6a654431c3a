//! TLS to upstreams: the rustls client configurations the proxy's clients
//! connect to `https` instances and `https://` control-plane URLs with.
//!
//! Certificates are verified (chain and name: SNI and the check both use the
//! host the instance registered, an IP address or a DNS name) against a CA
//! bundle when one is set (`UPSTREAM_CA_FILE`, `CONTROL_PLANE_CA_FILE`),
//! else the system roots. A client certificate (`UPSTREAM_CLIENT_CERT_FILE`
//! and `UPSTREAM_CLIENT_KEY_FILE`) is presented to instances that ask for one.
//! Every file is read once at start; a bad one stops start-up with one line
//! naming the setting. There is no switch that turns verification off.

use std::{io, path::Path, sync::Arc};

use tokio_rustls::rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use crate::settings::UpstreamTlsSettings;

/// The two client configurations (no ALPN yet: each client sets its own).
pub struct UpstreamTls {
    /// For `https` service instances.
    pub services: ClientConfig,
    /// For `https://` control-plane URLs.
    pub control_plane: ClientConfig,
}

impl UpstreamTls {
    /// Load the CA bundles and the client identity the settings name.
    pub fn load(settings: &UpstreamTlsSettings) -> io::Result<Self> {
        let identity = match (
            &settings.upstream_client_cert_file,
            &settings.upstream_client_key_file,
        ) {
            (Some(cert), Some(key)) => Some(identity(cert, key)?),
            _ => None,
        };
        Ok(Self {
            services: config(
                roots(settings.upstream_ca_file.as_deref(), "UPSTREAM_CA_FILE")?,
                identity,
            )?,
            control_plane: config(
                roots(
                    settings.control_plane_ca_file.as_deref(),
                    "CONTROL_PLANE_CA_FILE",
                )?,
                None,
            )?,
        })
    }
}

/// A client configuration over `roots`, presenting `identity` when asked.
fn config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> io::Result<ClientConfig> {
    // The ring provider explicitly, as the TLS listener uses: the process
    // default would depend on which providers other crates enable.
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots);
    match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            io::Error::other(format!(
                "UPSTREAM_CLIENT_CERT_FILE/UPSTREAM_CLIENT_KEY_FILE: not a usable certificate and key: {e}"
            ))
        }),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The CAs of `file` (named by `setting` in errors), else the system's.
fn roots(file: Option<&Path>, setting: &str) -> io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match file {
        Some(path) => {
            let certs = certificates(path, setting)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(io::Error::other(format!(
                    "{setting}: no usable CA certificate in {}",
                    path.display()
                )));
            }
        }
        None => {
            // A missing system bundle is not fatal: only `https` upstreams need
            // it, and each such request then fails with a clear 502.
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "no system CA certificates found; set {setting} to reach https upstreams"
                );
            }
        }
    }
    Ok(roots)
}

/// Every certificate in the PEM file at `path`.
fn certificates(path: &Path, setting: &str) -> io::Result<Vec<CertificateDer<'static>>> {
    let unreadable = |e: &dyn std::fmt::Display| {
        io::Error::other(format!("{setting}: cannot read {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    if certs.is_empty() {
        return Err(io::Error::other(format!(
            "{setting}: no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

/// The client certificate chain and its key.
fn identity(
    cert: &Path,
    key: &Path,
) -> io::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = certificates(cert, "UPSTREAM_CLIENT_CERT_FILE")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        io::Error::other(format!(
            "UPSTREAM_CLIENT_KEY_FILE: cannot read a private key from {}: {e}",
            key.display()
        ))
    })?;
    Ok((chain, key))
}
