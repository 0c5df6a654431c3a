//! TLS to upstreams: instances registered with `protocol=https` are reached
//! over TLS, verified against `UPSTREAM_CA_FILE` (the test CA of
//! `tests/keys/make-upstream-certs.sh`); an instance whose certificate that
//! CA did not sign is a 502 problem naming the failure, and an instance that
//! asks for a client certificate gets the gateway's; the egress rules hold
//! for every protocol. The upstreams are real TLS servers (axum-server over
//! rustls) on 127.0.0.1:0.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::{Router, extract::Request, routing::any};
use axum_server::tls_rustls::RustlsConfig;
use mcp_testkit::{TestService, prefix, redis};
use tokio_rustls::rustls::{
    RootCertStore, ServerConfig,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::common::{self, Registry, bearer, client, gateway, key_file};

/// How the upstream answers: what it saw of the request.
fn echo() -> Router {
    Router::new().fallback(any(|request: Request| async move {
        let client_cert = request.extensions().get::<ClientCert>().is_some();
        axum::Json(serde_json::json!({
            "path": request.uri().path(),
            "version": format!("{:?}", request.version()),
            "x_forwarded_for": request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            "client_cert": client_cert,
        }))
    }))
}

/// Marker: the connection presented a client certificate (only set by the
/// mTLS upstream, which refuses connections without one anyway).
#[derive(Clone)]
struct ClientCert;

fn pem_chain(name: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(key_file(name))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A TLS upstream with the certificate `cert`/`key`; when `client_ca` is set
/// it requires a client certificate signed by that CA. ALPN offers h2 and
/// http/1.1, so the gateway's client may pick either.
async fn tls_upstream(cert: &str, key: &str, client_ca: Option<&str>) -> TestService {
    let rustls = RustlsConfig::from_config(Arc::new(server_config(cert, key, client_ca)));
    let router = if client_ca.is_some() {
        echo().layer(axum::Extension(ClientCert))
    } else {
        echo()
    };
    mcp_testkit::spawn(
        move |listener: tokio::net::TcpListener, shutdown| async move {
            let handle = axum_server::Handle::new();
            let stopping = handle.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                stopping.graceful_shutdown(Some(Duration::from_secs(1)));
            });
            axum_server::from_tcp_rustls(listener.into_std()?, rustls)?
                .handle(handle)
                .serve(router.into_make_service())
                .await
        },
    )
    .await
}

/// The TLS server side of an upstream with the certificate `cert`/`key`,
/// requiring a client certificate signed by `client_ca` when set; ALPN
/// offers h2 and http/1.1.
pub fn server_config(cert: &str, key: &str, client_ca: Option<&str>) -> ServerConfig {
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in pem_chain(ca) {
                roots.add(cert).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(
            pem_chain(cert),
            PrivateKeyDer::from_pem_file(key_file(key)).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
}

/// A gateway that trusts the upstream test CA and presents the test client
/// certificate.
pub async fn gateway_trusting_the_test_ca(prefix: &str) -> TestService {
    gateway(
        &redis().url(),
        prefix,
        &[
            "--upstream-ca-file",
            &key_file("upstream-ca.pem"),
            "--upstream-client-cert-file",
            &key_file("upstream-client-cert.pem"),
            "--upstream-client-key-file",
            &key_file("upstream-client-key.pem"),
        ],
    )
    .await
}

/// Register `service` at `upstream` with `protocol=https`.
async fn register_https(registry: &Registry, service: &str, upstream: &TestService) {
    let mut instance = mcp_testkit::registry::instance_at(service, "i-1", upstream.addr);
    instance.metadata = BTreeMap::from([("protocol".to_owned(), "https".to_owned())]);
    registry.register(&instance).await;
}

/// A TLS upstream with `cert`/`key` (requiring a client certificate signed
/// by `client_ca` when set), registered as `service` with `protocol=https`
/// behind a gateway that trusts the upstream test CA: the gateway, the
/// upstream and the test's prefix.
async fn https_service(
    service: &str,
    (cert, key): (&str, &str),
    client_ca: Option<&str>,
) -> (TestService, TestService, String) {
    let prefix = prefix();
    let upstream = tls_upstream(cert, key, client_ca).await;
    let gw = gateway_trusting_the_test_ca(&prefix).await;
    register_https(&Registry::new(&redis().url(), &prefix), service, &upstream).await;
    (gw, upstream, prefix)
}

/// The upstream test CA's server certificate and key.
const TRUSTED: (&str, &str) = ("upstream-server-cert.pem", "upstream-server-key.pem");

/// `GET /svc/{service}/hello` until it is routed (not 404; bounded: 3 s),
/// then its status and body.
async fn call(gateway: &TestService, service: &str) -> (u16, serde_json::Value) {
    let token = common::token("alice", "");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let response = client()
            .get(gateway.at(&format!("/svc/{service}/hello")))
            .header("authorization", bearer(&token))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or_default();
        if status != 404 || tokio::time::Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_https_upstream_signed_by_the_configured_ca_answers() {
    let (gw, _upstream, _) = https_service("secure", TRUSTED, None).await;

    let (status, body) = call(&gw, "secure").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/hello");
    // The upstream's ALPN offered h2, and the gateway's pooled client took it.
    assert_eq!(body["version"], "HTTP/2.0");
    assert_eq!(body["x_forwarded_for"], "127.0.0.1");
}

#[tokio::test]
async fn an_untrusted_upstream_certificate_is_a_502_problem() {
    // Signed by the gateway's listener test CA, not the upstream CA it trusts.
    let (gw, _upstream, _) = https_service("impostor", ("tls-cert.pem", "tls-key.pem"), None).await;

    let (status, body) = call(&gw, "impostor").await;
    assert_eq!(status, 502, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("TLS") && detail.contains("certificate"),
        "the detail says the certificate was refused: {detail}"
    );
}

#[tokio::test]
async fn an_upstream_requiring_a_client_certificate_accepts_the_gateways() {
    let (gw, _upstream, prefix) = https_service("mutual", TRUSTED, Some("upstream-ca.pem")).await;

    let (status, body) = call(&gw, "mutual").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["client_cert"], true);

    // A gateway without the client certificate is refused by the same upstream.
    let bare = gateway(
        &redis().url(),
        &prefix,
        &["--upstream-ca-file", &key_file("upstream-ca.pem")],
    )
    .await;
    let (status, body) = call(&bare, "mutual").await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test]
async fn an_unreadable_ca_file_stops_start_up_naming_the_setting() {
    let prefix = prefix();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut args = vec!["gateway".to_owned()];
    args.extend(mcp_testkit::common_args(&redis().url(), &prefix));
    args.extend(mcp_testkit::egress_args());
    args.extend(
        [
            "--jwt-secret",
            mcp_testkit::JWT_SECRET,
            "--upstream-ca-file",
            "/nonexistent/ca.pem",
        ]
        .map(str::to_owned),
    );
    let settings = <gateway::Settings as clap::Parser>::try_parse_from(args).unwrap();
    let error = gateway::run(
        settings,
        listener,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let error = error.to_string();
    assert!(error.starts_with("UPSTREAM_CA_FILE"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");
}

#[tokio::test]
async fn an_https_control_plane_url_is_verified_against_its_own_ca() {
    let prefix = prefix();
    // A TLS server plays config-svc (the echo answers any path).
    let config = tls_upstream(TRUSTED.0, TRUSTED.1, None).await;
    let config_url = format!("https://localhost:{}", config.addr.port());
    let gw = gateway(
        &redis().url(),
        &prefix,
        &[
            "--config-url",
            &config_url,
            "--control-plane-ca-file",
            &key_file("upstream-ca.pem"),
        ],
    )
    .await;
    let reader = common::token("alice", "config:read");
    let (status, _, body) = common::get(&gw.at("/api/v1/config/namespaces"), &reader).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/v1/namespaces");

    // Without that CA the same URL is not trusted (the system roots do not know it).
    let untrusting = gateway(&redis().url(), &prefix, &["--config-url", &config_url]).await;
    let (status, _, body) = common::get(&untrusting.at("/api/v1/config/namespaces"), &reader).await;
    assert_eq!(status, 502, "{body}");
}

#[tokio::test]
async fn the_egress_rules_hold_for_every_protocol() {
    let prefix = prefix();
    let gw = gateway_trusting_the_test_ca(&prefix).await;
    let registry = Registry::new(&redis().url(), &prefix);
    let redis_addr: std::net::SocketAddr = format!("127.0.0.1:{}", redis().port()).parse().unwrap();
    for protocol in ["https", "h2c"] {
        let service = format!("at-redis-{protocol}");
        let mut instance = mcp_testkit::registry::instance_at(&service, "i-1", redis_addr);
        instance.metadata = BTreeMap::from([("protocol".to_owned(), protocol.to_owned())]);
        registry.register(&instance).await;
        let (status, body) = call(&gw, &service).await;
        assert_eq!(status, 403, "{protocol}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("Redis"),
            "{protocol}: {body}"
        );
    }
}
