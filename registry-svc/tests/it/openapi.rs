//! The OpenAPI document is the contract: served at `/openapi.json`, built
//! from the same list as the router, and listing exactly the operations the
//! service answers, no more and no fewer; its bodies are the shared types of
//! `mcp_shared::registry` (which the SDK and `mcpctl` use too), and so are
//! the service's real answers, member for member.

use std::{collections::BTreeMap, time::Duration};

use crate::common::{Watch, get, register, replica};
use mcp_shared::{
    openapi::{lint, operations},
    registry::{
        Check, CheckType, Instance, InstanceList, InstanceSpec, RegistryEvent, ServiceList,
    },
};
use mcp_testkit::{
    openapi::{
        Probe, assert_answer_schema, assert_body_is, assert_component_schema,
        assert_documented_operations_routed, assert_no_undocumented_method, assert_request_schema,
        assert_routes_documented, client, documented_paths, registered_routes, served_document,
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
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let served = served_document(&client(), &app.url).await;
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["info"]["title"], "registry-svc");
    assert_eq!(
        served,
        serde_json::to_value(registry_svc::api::openapi()).unwrap()
    );
}

#[tokio::test]
async fn the_document_holds_every_mcp_rule() {
    // Unique operationIds, tags, declared path parameters, and problem+json
    // on every 4xx/5xx.
    assert_eq!(lint(&registry_svc::api::openapi()), Vec::<String>::new());
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let document = registry_svc::api::openapi();
    let documented = operations(&document);
    assert!(documented.len() >= 10, "{documented:?}");
    assert_documented_operations_routed(&Probe::new(&app.url), &document, &documented).await;
}

#[tokio::test]
async fn every_routed_operation_is_documented() {
    let document = registry_svc::api::openapi();
    let documented = operations(&document);
    let paths = documented_paths(&documented);
    // Routes registered with `routes!(..)` are documented by construction;
    // any other `.route(..)` must name a documented path.
    assert_routes_documented(&registered_routes(SOURCES), |route| paths.contains(route));
    // And no documented path answers a method the document does not list.
    let app = replica(&redis().url(), &prefix(), &[]).await;
    let probe = Probe::new(&app.url);
    assert_no_undocumented_method(&probe, &document, &documented, paths).await;
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
