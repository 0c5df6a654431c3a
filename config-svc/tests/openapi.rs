//! The OpenAPI document is the contract: served at `/openapi.json`, built
//! from the same list as the router, and listing exactly the operations the
//! service answers, no more and no fewer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use config_svc::api::{KEY_PATH, KEY_ROUTE};
use mcp_shared::openapi::{OPENAPI_PATH, example_path, lint, operations, route_arguments};
use mcp_testkit::{prefix, redis};
use reqwest::Method;
use serde_json::Value;

/// Methods a route could be given; HEAD is answered wherever GET is (axum).
const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH"];

/// Sources that register routes: this crate's and the shared scaffold's.
const SOURCES: &[&str] = &[
    include_str!("../src/lib.rs"),
    include_str!("../src/api.rs"),
    include_str!("../../shared/src/server.rs"),
];

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Send `method` to `path`; returns the status and the problem `detail`.
async fn probe(url: &str, method: &str, path: &str) -> (u16, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method.clone(), format!("{url}{path}"));
    if method == Method::PUT || method == Method::POST || method == Method::PATCH {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    // `send` returns once the head arrives, so an SSE watch does not hang.
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let sse = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if sse {
        return (status, String::new());
    }
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn openapi_json_serves_the_generated_openapi_3_1_document() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let response = client().get(app.at("/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.unwrap();
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["info"]["title"], "config-svc");
    assert_eq!(
        served,
        serde_json::to_value(config_svc::api::openapi()).unwrap()
    );
}

#[tokio::test]
async fn the_document_holds_every_mcp_rule() {
    // Unique operationIds, tags, declared path parameters, and problem+json
    // on every 4xx/5xx.
    assert_eq!(lint(&config_svc::api::openapi()), Vec::<String>::new());
}

#[tokio::test]
async fn the_key_catch_all_is_documented_as_the_key_parameter() {
    let document = serde_json::to_value(config_svc::api::openapi()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key(KEY_PATH));
    assert!(paths.keys().all(|p| !p.contains('*')), "{:?}", paths.keys());
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let document = config_svc::api::openapi();
    let documented = operations(&document);
    assert!(documented.len() >= 16, "{documented:?}");
    for (method, path) in &documented {
        let (status, detail) = probe(&app.url, method, &example_path(&document, path)).await;
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        assert!(
            !(status == 404 && detail.starts_with("no route")),
            "{method} {path} is documented but not routed"
        );
    }
}

#[tokio::test]
async fn every_routed_operation_is_documented() {
    let document = config_svc::api::openapi();
    let documented = operations(&document);
    let paths: BTreeSet<&str> = documented.iter().map(|(_, p)| p.as_str()).collect();
    // Routes registered with `routes!(..)` are documented by construction;
    // any other `.route(..)` must name a documented path.
    for source in SOURCES {
        for route in route_arguments(source) {
            let route = match route.as_str() {
                "OPENAPI_PATH" => OPENAPI_PATH,
                "KEY_ROUTE" | KEY_ROUTE => KEY_PATH,
                other => other,
            };
            assert!(
                paths.contains(route),
                "route {route} is not in the document"
            );
        }
    }
    // And no documented path answers a method the document does not list
    // (the key sub-resources included, though one catch-all serves them).
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    for path in &paths {
        for method in METHODS {
            if documented.contains(&((*method).to_owned(), (*path).to_owned())) {
                continue;
            }
            let (status, _) = probe(&app.url, method, &example_path(&document, path)).await;
            assert_eq!(status, 405, "{method} {path} is routed but not documented");
        }
    }
}

#[tokio::test]
async fn a_method_a_key_sub_resource_does_not_take_is_405_with_allow() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let cases = [
        ("PUT", "/v1/namespaces/app/keys/a/b/history", "GET,HEAD"),
        ("DELETE", "/v1/namespaces/app/keys/a/history", "GET,HEAD"),
        ("GET", "/v1/namespaces/app/keys/a/b/rollback", "POST"),
        ("POST", "/v1/namespaces/app/keys/a", "GET,HEAD,PUT,DELETE"),
        ("PATCH", "/v1/namespaces/app/keys/a", "GET,HEAD,PUT,DELETE"),
        ("OPTIONS", "/v1/namespaces/app/keys/a/history", "GET,HEAD"),
        ("PATCH", "/v1/namespaces/app/keys/a/rollback", "POST"),
    ];
    for (method, path, allow) in cases {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = client()
            .request(method.clone(), app.at(path))
            .header("content-type", "application/json")
            .body(r#"{"value":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        common::problem(response, 405).await;
    }
}
