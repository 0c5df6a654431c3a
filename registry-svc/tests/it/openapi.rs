//! The OpenAPI document is the contract: served at `/openapi.json`, built
//! from the same list as the router, and listing exactly the operations the
//! service answers, no more and no fewer; its bodies are the shared types of
//! `mcp_shared::registry` (which the SDK and `mcpctl` use too), and so are
//! the service's real answers, member for member.

use std::{collections::BTreeMap, time::Duration};

use crate::common::{Watch, get, register, replica};
use mcp_shared::registry::{
    Check, CheckType, Instance, InstanceList, InstanceSpec, RegistryEvent, ServiceList,
};
use mcp_testkit::{
    internal_layer,
    openapi::{
        assert_answer_schema, assert_body_is, assert_component_schema, assert_request_schema,
        assert_service_contract, client, served_document,
    },
    prefix, redis,
};

#[tokio::test]
async fn the_document_is_exactly_what_the_service_routes() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let router = registry_svc::api::router(internal_layer());
    let document = registry_svc::api::openapi();
    assert_service_contract(&app.url, "registry-svc", &document, &router, 10, |p| p).await;
}

const INSTANCE: &str = "/v1/services/{service}/instances/{id}";

#[tokio::test]
async fn the_document_describes_every_body_with_the_shared_type() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let document = served_document(&client(), &app.url).await;
    assert_request_schema::<InstanceSpec>(&document, "put", INSTANCE);
    assert_answer_schema::<Instance>(&document, "put", INSTANCE, 200);
    assert_answer_schema::<Instance>(&document, "put", INSTANCE, 201);
    let heartbeat = format!("{INSTANCE}/heartbeat");
    assert_answer_schema::<Instance>(&document, "put", &heartbeat, 200);
    let instances = "/v1/services/{service}/instances";
    assert_answer_schema::<InstanceList>(&document, "get", instances, 200);
    assert_answer_schema::<ServiceList>(&document, "get", "/v1/services", 200);
    assert_component_schema::<RegistryEvent>(&document);
}

#[tokio::test]
async fn every_answer_is_exactly_the_shared_type() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    // Registered as the SDK does it: the shared body, every member set.
    let mut spec = InstanceSpec::new("127.0.0.1", 9000);
    spec.tags = vec!["v2".into()];
    spec.metadata = BTreeMap::from([("zone".into(), "a".into())]);
    spec.ttl_seconds = Some(30);
    spec.check = Some(Check {
        kind: CheckType::Http,
        path: Some("/health".into()),
        interval_seconds: 5,
        timeout_ms: 1000,
        deregister_critical_after_seconds: Some(60),
    });
    let body = serde_json::to_value(&spec).unwrap();
    let (status, registered) = register(&app, "echo", "echo-1", body).await;
    assert_eq!(status, 201, "{registered}");
    let registered: Instance = assert_body_is(&registered);
    assert_eq!(registered.check, spec.check);
    let plain = serde_json::to_value(InstanceSpec::new("127.0.0.1", 9001)).unwrap();
    let (status, replaced) = register(&app, "echo", "echo-2", plain.clone()).await;
    assert_eq!(status, 201);
    assert_body_is::<Instance>(&replaced);
    let (status, replaced) = register(&app, "echo", "echo-2", plain).await;
    assert_eq!(status, 200);
    assert_body_is::<Instance>(&replaced);

    let renewed = client()
        .put(app.at("/v1/services/echo/instances/echo-1/heartbeat"))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), 200);
    let renewed: Instance = assert_body_is(&renewed.json().await.unwrap());
    assert!(renewed.expires_at.is_some());

    let (status, list) = get(&app, "/v1/services/echo/instances").await;
    assert_eq!(status, 200);
    let list: InstanceList = assert_body_is(&list);
    assert_eq!(list.instances.len(), 2);
    let (status, services) = get(&app, "/v1/services").await;
    assert_eq!(status, 200);
    let services: ServiceList = assert_body_is(&services);
    assert_eq!(services.services.len(), 1);

    // The watch's events carry the shared `RegistryEvent`.
    let mut watch = Watch::open(&app, "?service=echo", Some(0)).await;
    let event = watch.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(event.event, "registered");
    let event: RegistryEvent = assert_body_is(&event.json());
    assert!(event.instance.is_some());
}
