//! TLS termination: with `TLS_CERT_FILE`/`TLS_KEY_FILE` the gateway speaks
//! HTTPS (checked with a real rustls client trusting the test certificate;
//! HTTP/2 when the client offers `h2` by ALPN)
//! and tells the upstream `X-Forwarded-Proto: https`, a bad key file stops start-up with one line naming the settings, and a
//! slowloris client (over TLS, or stalling the handshake) is closed within
//! the header-read timeout.

use clap::Parser;
use mcp_testkit::{prefix, redis};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{self, key_file, tls_connect};

/// One HTTP/1.1 request over TLS; returns the raw response text.
async fn https_get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> String {
    https_get_with(addr, path, auth, "close").await
}

/// [`https_get`] with `connection` as the `Connection` header (which must
/// include `close`: the answer is read to its end), bounded to 10 s.
async fn https_get_with(
    addr: std::net::SocketAddr,
    path: &str,
    auth: Option<&str>,
    connection: &str,
) -> String {
    let mut tls = tls_connect(addr).await;
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: {connection}\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut response),
    )
    .await;
    assert!(read.is_ok(), "the gateway did not answer in time");
    String::from_utf8_lossy(&response).into_owned()
}

fn settings(cert: &str, key: &str) -> gateway::Settings {
    settings_with(cert, key, &[])
}

fn settings_with(cert: &str, key: &str, extra: &[&str]) -> gateway::Settings {
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
    args.extend(extra.iter().map(|a| (*a).to_owned()));
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
async fn behind_tls_the_upstream_is_told_https() {
    let upstream = common::echo("registry").await;
    let settings = settings_with(
        &key_file("tls-cert.pem"),
        &key_file("tls-key.pem"),
        &["--registry-url", &upstream.url],
    );
    let gw =
        mcp_testkit::spawn(|listener, shutdown| gateway::run(settings, listener, shutdown)).await;
    // The listener is bound before `run` starts: the request waits in its backlog.
    // A client's `Connection: x-forwarded-proto` must not strip it either.
    let response = https_get_with(
        gw.addr,
        "/api/v1/registry/services",
        Some(&common::token("reader", "registry:read")),
        "close, x-forwarded-proto",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""x-forwarded-proto":"https""#),
        "{response}"
    );
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

/// Read until the peer closes (end of stream or an error) or `bound` passes;
/// true when it closed.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    bound: std::time::Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_slowloris_client_over_tls_is_closed_within_the_header_read_timeout() {
    use std::time::{Duration, Instant};
    let settings = settings_with(
        &key_file("tls-cert.pem"),
        &key_file("tls-key.pem"),
        &["--http-header-read-timeout", "500ms"],
    );
    let gateway =
        mcp_testkit::spawn(|listener, shutdown| gateway::run(settings, listener, shutdown)).await;
    let up = mcp_testkit::eventually(Duration::from_secs(5), || async {
        https_get(gateway.addr, "/healthz", None)
            .await
            .starts_with("HTTP/1.1 200")
    })
    .await;
    assert!(up, "no HTTPS answer from the gateway");

    // Handshake done, half a header block, then nothing.
    let mut slow = tls_connect(gateway.addr).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    slow.flush().await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "a slowloris TLS connection was held past 3 s"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    // Connected, handshake never started: the same clock.
    let mut stalled = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut stalled, Duration::from_secs(3)).await,
        "a stalled TLS handshake was held past 3 s"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn alpn_h2_clients_speak_http2_over_tls() {
    use tokio_rustls::{
        TlsConnector,
        rustls::{
            ClientConfig, RootCertStore,
            pki_types::{CertificateDer, ServerName, pem::PemObject},
        },
    };
    let settings = settings(&key_file("tls-cert.pem"), &key_file("tls-key.pem"));
    let gateway =
        mcp_testkit::spawn(|listener, shutdown| gateway::run(settings, listener, shutdown)).await;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(key_file("tls-ca.pem")).unwrap())
        .unwrap();
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let tls = TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));

    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("https://localhost/healthz")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sender.send_request(request),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}
