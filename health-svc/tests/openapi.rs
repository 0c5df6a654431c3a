//! The OpenAPI document is the contract: served at `/openapi.json`, built
//! from the same list as the router, and listing exactly the operations the
//! service answers, no more and no fewer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use mcp_shared::openapi::{lint, operations};
use mcp_testkit::{
    openapi::{
        Probe, assert_documented_operations_routed, assert_no_undocumented_method,
        assert_routes_documented, client, documented_paths, registered_routes, served_document,
    },
    prefix, redis,
};

/// Sources that register routes: this crate's and the shared scaffold's.
const SOURCES: &[&str] = &[
    include_str!("../src/lib.rs"),
    include_str!("../src/api.rs"),
    include_str!("../../shared/src/server.rs"),
];

#[tokio::test]
async fn openapi_json_serves_the_generated_openapi_3_1_document() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let served = served_document(&client(), &app.url).await;
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["info"]["title"], "health-svc");
    assert_eq!(
        served,
        serde_json::to_value(health_svc::api::openapi()).unwrap()
    );
}

#[tokio::test]
async fn the_document_holds_every_mcp_rule() {
    // Unique operationIds, tags, declared path parameters, and problem+json
    // on every 4xx/5xx.
    assert_eq!(lint(&health_svc::api::openapi()), Vec::<String>::new());
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let document = health_svc::api::openapi();
    let documented = operations(&document);
    assert!(documented.len() >= 7, "{documented:?}");
    assert_documented_operations_routed(&Probe::new(&app.url), &document, &documented).await;
}

#[tokio::test]
async fn every_routed_operation_is_documented() {
    let document = health_svc::api::openapi();
    let documented = operations(&document);
    let paths = documented_paths(&documented);
    // Routes registered with `routes!(..)` are documented by construction;
    // any other `.route(..)` must name a documented path.
    assert_routes_documented(&registered_routes(SOURCES), |route| paths.contains(route));
    // And no documented path answers a method the document does not list.
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let probe = Probe::new(&app.url);
    assert_no_undocumented_method(&probe, &document, &documented, paths).await;
}
