//! The OpenAPI document is the contract: served at `/openapi.json`, built
//! from the same list as the router, and listing exactly the operations the
//! service answers, no more and no fewer; its bodies are the shared types of
//! `mcp_shared::health` (which the SDK and `mcpctl` use too), and so are the
//! service's real answers, member for member.

use std::time::Duration;

use crate::common::{self, FakeServer, Registry, get_json, http_check, instance, wait_status};
use mcp_shared::{
    health::{Explain, HealthSummary, ServiceHealth},
    openapi::{lint, operations},
    registry::HealthStatus,
};
use mcp_testkit::{
    openapi::{
        Probe, assert_answer_schema, assert_body_is, assert_documented_operations_routed,
        assert_no_undocumented_method, assert_routes_documented, client, documented_paths,
        registered_routes, served_document,
    },
    prefix, redis,
};

/// Sources that register routes: this crate's and the shared scaffold's.
const SOURCES: &[&str] = &[
    include_str!("../../src/lib.rs"),
    include_str!("../../src/api.rs"),
    include_str!("../../../shared/src/server.rs"),
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

#[tokio::test]
async fn the_document_describes_every_body_with_the_shared_type() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let document = served_document(&client(), &app.url).await;
    assert_answer_schema::<HealthSummary>(&document, "get", "/v1/summary", 200);
    assert_answer_schema::<ServiceHealth>(&document, "get", "/v1/services/{service}", 200);
    let explain = "/v1/services/{service}/instances/{id}";
    assert_answer_schema::<Explain>(&document, "get", explain, 200);
}

#[tokio::test]
async fn every_answer_is_exactly_the_shared_type() {
    let (server, p) = (FakeServer::start().await, prefix());
    let mut registry = Registry::new(&redis().url(), &p).await;
    // One instance checked (every member set), one without a check (the
    // members that stay `null` until a check).
    registry
        .register(&instance(
            "web",
            "w1",
            server.port(),
            Some(http_check("/health")),
        ))
        .await;
    registry
        .register(&instance("web", "w2", server.port(), None))
        .await;
    let app = common::start(&redis().url(), &p, &[]).await;
    let within = Duration::from_secs(8);
    assert!(wait_status(&mut registry, "web", "w1", HealthStatus::Passing, within).await);

    let (status, summary) = get_json(&app.at("/v1/summary")).await;
    assert_eq!(status, 200);
    let summary: HealthSummary = assert_body_is(&summary);
    assert_eq!(summary.services.len(), 1);
    let (status, health) = get_json(&app.at("/v1/services/web")).await;
    assert_eq!(status, 200);
    let health: ServiceHealth = assert_body_is(&health);
    assert!(health.instances[0].output.is_some());
    assert!(health.instances[1].output.is_none());
    for id in ["w1", "w2"] {
        let (status, explain) =
            get_json(&app.at(&format!("/v1/services/web/instances/{id}"))).await;
        assert_eq!(status, 200);
        assert_body_is::<Explain>(&explain);
    }
}
