//! Shared arrangement for the gateway's tests: a gateway in-process and axum
//! upstreams on 127.0.0.1:0 (`mcp_testkit::gateway`), instances written into
//! Redis by the registry's own writer (`mcp_testkit::registry`; registry-svc
//! itself is not needed), and the test keys and certificates.

use mcp_testkit::TestService;

pub use mcp_testkit::{
    gateway::{bearer, client, echo, token, upstream},
    registry::Registry,
};

/// Start a gateway with the test secret, `prefix` on `redis_url`, and `extra` flags.
pub async fn gateway(redis_url: &str, prefix: &str, extra: &[&str]) -> TestService {
    mcp_testkit::gateway::start(redis_url, prefix, extra, gateway::run).await
}

/// GET `url` with `token`; returns status and JSON body (Null if not JSON).
pub async fn get(url: &str, token: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = client()
        .get(url)
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, headers, body)
}

/// The gateway's `/metrics` text, read with a `metrics:read` token.
pub async fn metrics(gw: &TestService) -> String {
    client()
        .get(gw.at("/metrics"))
        .header("authorization", bearer(&token("scraper", "metrics:read")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The path of `name` among the test keys and certificates (`tests/keys/`).
pub fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A TLS connection to the gateway at `addr`, trusting the test CA.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::{
        TlsConnector,
        rustls::{
            ClientConfig, RootCertStore,
            pki_types::{CertificateDer, ServerName, pem::PemObject},
        },
    };
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(key_file("tls-ca.pem")).unwrap())
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}
