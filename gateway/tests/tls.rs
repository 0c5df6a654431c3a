//! TLS termination: with `TLS_CERT_FILE`/`TLS_KEY_FILE` the gateway speaks
//! HTTPS (checked with a real rustls client trusting the test certificate),
//! and a bad key file stops start-up with one line naming the settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{path::PathBuf, sync::Arc};

use clap::Parser;

use mcp_testkit::{prefix, redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{
    TlsConnector,
    rustls::{
        ClientConfig, RootCertStore,
        pki_types::{CertificateDer, ServerName, pem::PemObject},
    },
};

fn key_file(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// One HTTP/1.1 request over TLS; returns the raw response text.
async fn https_get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(key_file("tls-ca.pem")).unwrap())
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

fn settings(cert: &str, key: &str) -> gateway::Settings {
    let mut args = vec!["gateway".to_owned()];
    args.extend(mcp_testkit::common_args(&redis().url(), &prefix()));
    args.extend(mcp_testkit::egress_args());
    args.extend(
        [
            "--jwt-secret",
            mcp_testkit::JWT_SECRET,
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
        ]
        .map(str::to_owned),
    );
    gateway::Settings::try_parse_from(args).unwrap()
}

#[tokio::test]
async fn tls_is_terminated_when_cert_and_key_are_set() {
    let settings = settings(&key_file("tls-cert.pem"), &key_file("tls-key.pem"));
    let gateway =
        mcp_testkit::spawn(|listener, shutdown| gateway::run(settings, listener, shutdown)).await;
    let up = mcp_testkit::eventually(std::time::Duration::from_secs(5), || async {
        https_get(gateway.addr, "/healthz", None)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(up, "no HTTPS answer from the gateway");

    // Policy still applies over TLS: no token → 401 problem+json; a token → through auth.
    let denied = https_get(gateway.addr, "/svc/echo/", None).await;
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(
        denied
            .to_ascii_lowercase()
            .contains("application/problem+json")
    );
    let token = common::token("alice", "admin");
    let admin = https_get(gateway.addr, "/admin/upstreams", Some(&token)).await;
    assert!(admin.starts_with("HTTP/1.1 200"), "{admin}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(gateway.at("/healthz"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
}

#[tokio::test]
async fn an_unreadable_key_stops_start_up_with_a_line_naming_the_settings() {
    let settings = settings(&key_file("tls-cert.pem"), "/nonexistent/key.pem");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = gateway::run(
        settings,
        listener,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("TLS_CERT_FILE/TLS_KEY_FILE"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");
}
