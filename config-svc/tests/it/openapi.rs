//! The OpenAPI document is the contract: served at `/openapi.json`, built
//! from the same list as the router, and listing exactly the operations the
//! service answers, no more and no fewer; its bodies are the shared types of
//! `mcp_shared::config` (which the SDK and `mcpctl` use too), and so are the
//! service's real answers (entries served as the JSON text Redis holds
//! included), member for member.

use std::time::Duration;

use crate::common::{self, SseReader, key_url};
use config_svc::api::{KEY_PATH, KEY_ROUTE};
use mcp_shared::config::{
    ClientList, ConfigDeletion, ConfigEntry, ConfigHistory, ConfigList, ConfigRollback,
    ConfigWrite, DryRunEntry, NamespaceList, SchemaDryRun,
};
use mcp_testkit::{
    eventually, internal_layer,
    openapi::{
        assert_answer_schema, assert_body_is, assert_component_schema, assert_request_schema,
        assert_service_contract, client, served_document,
    },
    prefix, redis,
};
use reqwest::Method;
use serde_json::{Value, json};
use utoipa::PartialSchema;

#[tokio::test]
async fn the_document_is_exactly_what_the_service_routes() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let router = config_svc::api::router(internal_layer());
    let document = config_svc::api::openapi();
    // The key sub-resources are served by the one catch-all `KEY_ROUTE`,
    // documented as `KEY_PATH` (and each sub-resource under its own path).
    assert_service_contract(&app.url, "config-svc", &document, &router, 16, |route| {
        if route == KEY_ROUTE { KEY_PATH } else { route }
    })
    .await;
}

#[tokio::test]
async fn the_key_catch_all_is_documented_as_the_key_parameter() {
    let document = serde_json::to_value(config_svc::api::openapi()).unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.contains_key(KEY_PATH));
    assert!(paths.keys().all(|p| !p.contains('*')), "{:?}", paths.keys());
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

#[tokio::test]
async fn the_document_describes_every_body_with_the_shared_type() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let document = served_document(&client(), &app.url).await;
    assert_request_schema::<ConfigWrite>(&document, "put", KEY_PATH);
    assert_answer_schema::<ConfigEntry>(&document, "put", KEY_PATH, 201);
    assert_answer_schema::<ConfigEntry>(&document, "get", KEY_PATH, 200);
    assert_component_schema::<DryRunEntry>(&document);
    let rollback = format!("{KEY_PATH}/rollback");
    assert_request_schema::<ConfigRollback>(&document, "post", &rollback);
    assert_answer_schema::<ConfigEntry>(&document, "post", &rollback, 200);
    assert_answer_schema::<ConfigEntry>(&document, "post", &rollback, 201);
    let history = format!("{KEY_PATH}/history");
    assert_answer_schema::<ConfigHistory>(&document, "get", &history, 200);
    let keys = "/v1/namespaces/{ns}/keys";
    assert_answer_schema::<ConfigList>(&document, "get", keys, 200);
    assert_answer_schema::<NamespaceList>(&document, "get", "/v1/namespaces", 200);
    let clients = "/v1/namespaces/{ns}/clients";
    assert_answer_schema::<ClientList>(&document, "get", clients, 200);
    assert_component_schema::<SchemaDryRun>(&document);
    // The watch: a `put` carries the entry, a `delete` a `ConfigDeletion`
    // (its own schema, closed so that a `put` does not match it too).
    let data = &document["components"]["schemas"]["WatchEvent"]["properties"]["data"];
    let variants = data["contentSchema"]["oneOf"].as_array().unwrap();
    let put = variants.iter().find(|v| v["title"] == "put").unwrap();
    assert_eq!(put["allOf"][0]["$ref"], "#/components/schemas/ConfigEntry");
    assert_component_schema::<ConfigEntry>(&document);
    let delete = variants.iter().find(|v| v["title"] == "delete").unwrap();
    let mut own = serde_json::to_value(<ConfigDeletion as PartialSchema>::schema()).unwrap();
    own["title"] = json!("delete");
    own["additionalProperties"] = json!(false);
    assert_eq!(delete, &own);
}

/// Send `body` with `method` to `url`; the status and the JSON answer.
async fn send(method: Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn every_answer_is_exactly_the_shared_type() {
    let app = common::start(&redis().url(), &prefix(), &[]).await;
    let url = key_url(&app, "app", "db/pool");
    let watcher = app.at("/v1/watch?namespace=app&client_id=web-1");
    let mut watch = SseReader::open(&client(), &watcher, None).await;

    // Written as the SDK writes: the shared bodies.
    let first = ConfigWrite::new(&json!({"max": 10, "idle": [1, 2.5]}), Some("first".into()));
    let first = serde_json::to_value(first.unwrap()).unwrap();
    let (status, created) = send(Method::PUT, &url, Some(first)).await;
    assert_eq!(status, 201, "{created}");
    let created: ConfigEntry = assert_body_is(&created);
    assert_eq!(created.message.as_deref(), Some("first"));
    let second = serde_json::to_value(ConfigWrite::new(&json!(null), None).unwrap()).unwrap();
    let (status, replaced) = send(Method::PUT, &url, Some(second.clone())).await;
    assert_eq!(status, 200);
    assert_body_is::<ConfigEntry>(&replaced);
    let (status, dry_run) = send(Method::PUT, &format!("{url}?dry_run=true"), Some(second)).await;
    assert_eq!(status, 200);
    assert_body_is::<DryRunEntry>(&dry_run);
    let back = ConfigRollback {
        version: 1,
        message: None,
    };
    let back = serde_json::to_value(back).unwrap();
    let (status, rolled_back) = send(Method::POST, &format!("{url}/rollback"), Some(back)).await;
    assert_eq!(status, 200);
    let rolled_back: ConfigEntry = assert_body_is(&rolled_back);
    assert_eq!(rolled_back.value, created.value);

    // Reads: the JSON text Redis holds, as served.
    let (status, entry) = send(Method::GET, &url, None).await;
    assert_eq!(status, 200);
    assert_eq!(assert_body_is::<ConfigEntry>(&entry), rolled_back);
    let (status, list) = send(Method::GET, &app.at("/v1/namespaces/app/keys"), None).await;
    assert_eq!(status, 200);
    assert_body_is::<ConfigList>(&list);
    let (status, history) = send(Method::GET, &format!("{url}/history"), None).await;
    assert_eq!(status, 200);
    let history: ConfigHistory = assert_body_is(&history);
    assert_eq!(history.versions.len(), 3);
    let (status, namespaces) = send(Method::GET, &app.at("/v1/namespaces"), None).await;
    assert_eq!(status, 200);
    assert_body_is::<NamespaceList>(&namespaces);
    let schema_url = app.at("/v1/namespaces/app/schema?dry_run=true");
    let (status, verdict) = send(Method::PUT, &schema_url, Some(json!({}))).await;
    assert_eq!(status, 200);
    assert_body_is::<SchemaDryRun>(&verdict);

    // The watch's `put` events carry the entry.
    let event = watch.next().await;
    assert_eq!(event.event, "put");
    assert_eq!(assert_body_is::<ConfigEntry>(&event.json()), created);
    let clients = app.at("/v1/namespaces/app/clients");
    let listed = eventually(Duration::from_secs(5), || async {
        let (_, listing) = send(Method::GET, &clients, None).await;
        let listing: ClientList = assert_body_is(&listing);
        !listing.clients.is_empty()
    })
    .await;
    assert!(listed, "the watcher shows in the clients listing");

    // And its `delete` events a `ConfigDeletion`.
    let deleted = client().delete(&url).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let deletion = loop {
        let event = watch.next().await;
        if event.event == "delete" {
            break event;
        }
    };
    let deletion: ConfigDeletion = assert_body_is(&deletion.json());
    assert_eq!((deletion.key.as_str(), deletion.version), ("db/pool", 3));
}
