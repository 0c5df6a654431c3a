//! The OpenAPI document is the contract: served at `/openapi.json`, built
//! from the same list as the router, and listing exactly the operations the
//! service answers, no more and no fewer; its bodies are the shared types of
//! `mcp_shared::health` (which the SDK and `mcpctl` use too), and so are the
//! service's real answers, member for member.

use std::time::Duration;

use crate::common::{self, FakeServer, Registry, get_json, http_check, instance, wait_status};
use mcp_shared::{
    health::{Explain, HealthSummary, ServiceHealth},
    registry::HealthStatus,
};
use mcp_testkit::{
    internal_layer,
    openapi::{
        assert_answer_schema, assert_body_is, assert_service_contract, client, served_document,
    },
    prefix, redis,
};

#[tokio::test]
async fn the_document_is_exactly_what_the_service_routes() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let router = health_svc::api::router(internal_layer());
    let document = health_svc::api::openapi();
    assert_service_contract(&app.url, "health-svc", &document, &router, 7, |p| p).await;
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
    let registry = Registry::new(&redis().url(), &p);
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
    assert!(wait_status(&registry, "web", "w1", HealthStatus::Passing, within).await);

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
