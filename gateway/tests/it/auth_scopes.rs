//! Scopes and identity: a valid token without the scope is a 403, with it
//! the request reaches its upstream, and the identity an upstream sees
//! (`X-Auth-*`, the internal credential) is the gateway's, never one a
//! client sent.

use std::time::Duration;

use crate::common::{self, bearer, client, echo, gateway, token};
use mcp_testkit::{prefix, redis};

#[tokio::test]
async fn a_valid_token_without_the_scope_is_403_and_with_it_gets_the_upstream_answer() {
    let registry = echo("registry").await;
    let config = echo("config").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--registry-url", &registry.url, "--config-url", &config.url],
    )
    .await;
    let read_only = token("dave", "config:read");
    let http = client();
    let url = gw.at("/api/v1/config/namespaces/app/keys/db?x=1");
    let put = http
        .put(&url)
        .header("authorization", bearer(&read_only))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    assert_eq!(put.headers()["content-type"], "application/problem+json");
    let other_area = http
        .get(gw.at("/api/v1/registry/services"))
        .header("authorization", bearer(&read_only))
        .send()
        .await
        .unwrap();
    assert_eq!(other_area.status(), 403);
    let got: serde_json::Value = http
        .get(&url)
        .header("authorization", bearer(&read_only))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["upstream"], "config");
    assert_eq!(got["path"], "/v1/namespaces/app/keys/db");
    assert_eq!(got["query"], "x=1");
    let admin = token("root", "admin");
    let put = http
        .put(&url)
        .header("authorization", bearer(&admin))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "admin grants every scope");
    let admin_view = http
        .get(gw.at("/admin/upstreams"))
        .header("authorization", bearer(&read_only))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_view.status(), 403);
}

#[tokio::test]
async fn client_sent_x_auth_headers_never_reach_the_upstream() {
    let registry = echo("registry").await;
    let gw = gateway(
        &redis().url(),
        &prefix(),
        &["--registry-url", &registry.url],
    )
    .await;
    let got: serde_json::Value = client()
        .get(gw.at("/api/v1/registry/services"))
        .header("authorization", bearer(&token("eve", "registry:read")))
        .header("x-auth-subject", "admin")
        .header("x-auth-scopes", "admin")
        .header("x-auth-role", "root")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &got["headers"];
    assert_eq!(headers["x-auth-subject"], "eve");
    assert_eq!(headers["x-auth-scopes"], "registry:read");
    assert!(headers.get("x-auth-role").is_none());
    // The client's token stays at the gateway: the control plane gets the
    // internal credential minted for this request, which speaks for eve.
    let authorization = headers["authorization"].as_str().unwrap();
    let internal = authorization.strip_prefix("Bearer ").unwrap();
    let key =
        mcp_shared::internal::InternalKey::new(mcp_testkit::INTERNAL_SECRET.as_bytes()).unwrap();
    let caller = key.verify(internal).unwrap();
    assert_eq!(caller.subject.as_deref(), Some("eve"));
    assert_eq!(caller.scopes.as_str(), "registry:read");
}

#[tokio::test]
async fn svc_upstreams_get_x_auth_headers_and_no_authorization() {
    let echo = echo("echo").await;
    let prefix = prefix();
    let gw = gateway(&redis().url(), &prefix, &[]).await;
    common::Registry::new(&redis().url(), &prefix)
        .register_at(
            "echo",
            "echo-1",
            echo.addr,
            mcp_shared::registry::HealthStatus::Passing,
        )
        .await;
    let http = client();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let got: serde_json::Value = loop {
        let response = http
            .get(gw.at("/svc/echo/x"))
            .header("authorization", bearer(&token("eve", "registry:read")))
            .header("x-auth-subject", "admin")
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            break response.json().await.unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "echo was not routed");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let headers = &got["headers"];
    assert_eq!(headers["x-auth-subject"], "eve");
    assert_eq!(headers["x-auth-scopes"], "registry:read");
    assert!(headers.get("authorization").is_none());
}
