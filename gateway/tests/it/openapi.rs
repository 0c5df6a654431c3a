//! The gateway's public OpenAPI document and docs page: served without a
//! token, OpenAPI 3.1, every control-plane operation re-rooted under
//! `/api/v1/{area}/` with its scope, the gateway's own routes and document
//! in step, and a docs page whose assets come from the gateway itself.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use crate::common::{bearer, client, echo, token};
use gateway::{docs::DOCS_PATH, openapi::CONTROL_PLANE};
use mcp_shared::openapi::{lint, operations, routed_paths};
use mcp_testkit::{
    TestService,
    openapi::{
        Probe, assert_documented_operations_routed, assert_no_undocumented_method,
        assert_routes_documented, documented_paths, served_document,
    },
    prefix, redis,
};
use serde_json::Value;

/// Docs and console assets (`/docs/swagger-ui.css`, `/ui/app.js`, …) are
/// files of the pages, not API operations: the routes the document leaves
/// out on purpose.
const UNDOCUMENTED: &[&str] = &["/docs/", "/docs/{*file}", "/ui/", "/ui/{*asset}"];

fn document() -> utoipa::openapi::OpenApi {
    gateway::openapi::document()
}

fn json() -> Value {
    serde_json::to_value(document()).unwrap()
}

/// A gateway whose control plane is three echo upstreams.
async fn arranged() -> (TestService, Vec<TestService>) {
    arranged_inspecting(|_| ()).await
}

/// [`arranged`], handing the router the gateway serves to `inspect`.
async fn arranged_inspecting(
    inspect: impl FnOnce(&axum::Router) + Send + 'static,
) -> (TestService, Vec<TestService>) {
    let upstreams = vec![
        echo("registry").await,
        echo("config").await,
        echo("health").await,
    ];
    let gateway = mcp_testkit::gateway::start(
        &redis().url(),
        &prefix(),
        &[
            "--registry-url",
            &upstreams[0].url,
            "--config-url",
            &upstreams[1].url,
            "--health-url",
            &upstreams[2].url,
        ],
        |settings, listener, shutdown| {
            gateway::run_inspecting(settings, listener, shutdown, inspect)
        },
    )
    .await;
    (gateway, upstreams)
}

/// Probes `gateway` with an admin token (every scope); each request gives
/// up after the probe's bound (10 s), so a hang fails the test.
fn probe(gateway: &TestService) -> Probe {
    Probe::new(&gateway.url).authorization(bearer(&token("probe", "admin")))
}

#[tokio::test]
async fn openapi_json_serves_the_merged_openapi_3_1_document_without_a_token() {
    let (gateway, _upstreams) = arranged().await;
    let served = served_document(&client(), &gateway.url).await;
    assert!(
        served["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        served["openapi"]
    );
    assert!(
        served["info"]["title"]
            .as_str()
            .unwrap()
            .contains("gateway")
    );
    assert_eq!(served, json());
}

#[tokio::test]
async fn the_document_holds_every_mcp_rule() {
    // Unique operationIds (prefixed by area across the services), tags,
    // declared path parameters, and problem+json on every 4xx/5xx.
    assert_eq!(lint(&document()), Vec::<String>::new());
}

#[tokio::test]
async fn every_control_plane_operation_appears_under_its_api_prefix_with_its_scope() {
    let merged = json();
    let mut expected = BTreeSet::new();
    for (area, build) in CONTROL_PLANE {
        let service = build();
        let api: Vec<_> = operations(&service)
            .into_iter()
            .filter(|(_, path)| path.starts_with("/v1/"))
            .collect();
        assert!(!api.is_empty(), "{area} documents no /v1 operation");
        for (method, path) in api {
            let public = format!("/api/v1/{area}/{}", &path["/v1/".len()..]);
            let operation = &merged["paths"][&public][method.to_lowercase()];
            assert!(
                operation.is_object(),
                "{method} {path} of {area} is not at {public}"
            );
            let scope = if method == "GET" || method == "HEAD" {
                format!("{area}:read")
            } else {
                format!("{area}:write")
            };
            assert_eq!(
                operation["security"],
                serde_json::json!([{ "bearer": [scope] }]),
                "{method} {public}"
            );
            let id = operation["operationId"].as_str().unwrap();
            assert!(id.starts_with(area), "{method} {public}: {id}");
            expected.insert((method, public));
        }
    }
    // Nothing else under /api/: the services' probes and documents are gone.
    let under_api: BTreeSet<_> = operations(&document())
        .into_iter()
        .filter(|(_, path)| path.starts_with("/api/"))
        .collect();
    assert_eq!(under_api, expected);
    for probe in ["healthz", "readyz", "metrics", "openapi.json"] {
        for (area, _) in CONTROL_PLANE {
            assert!(merged["paths"][format!("/api/v1/{area}/{probe}")].is_null());
        }
    }
}

#[tokio::test]
async fn gated_operations_require_a_bearer_token_and_document_the_gateways_answers() {
    let merged = json();
    let scheme = &merged["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    for (path, item) in merged["paths"].as_object().unwrap() {
        let gated = ["/api/", "/svc/", "/admin/"]
            .iter()
            .any(|p| path.starts_with(p));
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            if path == "/metrics" {
                // The gateway's own metrics need `metrics:read`, outside the stack.
                assert_eq!(
                    operation["security"],
                    serde_json::json!([{ "bearer": ["metrics:read"] }]),
                    "{at}"
                );
                for status in ["401", "403"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{at}: no {status}"
                    );
                }
                continue;
            }
            if !gated {
                assert!(operation["security"].is_null(), "{at} needs no token");
                continue;
            }
            let security = operation["security"].as_array().expect(&at);
            assert_eq!(security.len(), 1, "{at}");
            let scopes = security[0]["bearer"].as_array().expect(&at);
            if path.starts_with("/admin/") {
                assert_eq!(scopes, &[Value::from("admin")], "{at}");
            }
            if path.starts_with("/svc/") {
                assert!(scopes.is_empty(), "{at}: any valid token");
            }
            let responses = &operation["responses"];
            for status in ["401", "403", "429"] {
                assert!(responses[status].is_object(), "{at}: no {status}");
            }
            assert!(responses["401"]["headers"]["WWW-Authenticate"].is_object());
            let limited = &responses["429"]["headers"];
            for header in [
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ] {
                assert!(limited[header].is_object(), "{at}: 429 without {header}");
            }
            if path.starts_with("/api/") || path.starts_with("/svc/") {
                for status in ["502", "503", "504"] {
                    assert!(responses[status].is_object(), "{at}: no {status}");
                }
                assert!(responses["503"]["headers"]["Retry-After"].is_object());
            }
        }
    }
}

#[tokio::test]
async fn every_route_of_the_gateway_is_documented() {
    let routes = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = routes.clone();
    let _arranged = arranged_inspecting(move |router| {
        *seen.lock().unwrap() = routed_paths(router);
    })
    .await;
    let routes = routes.lock().unwrap().clone();
    assert!(routes.contains("/svc/{*rest}"), "{routes:?}");
    let documented = operations(&document());
    let paths = documented_paths(&documented);
    assert_routes_documented(&routes, |route| match route {
        // The control plane's operations, re-rooted (checked above).
        "/api/{*rest}" => paths.iter().any(|p| p.starts_with("/api/v1/")),
        "/svc/{*rest}" => paths.contains("/svc/{service}/{rest}"),
        // Consul's HTTP API, for Consul's clients: Consul documents it (the
        // README lists what the gateway answers of it).
        consul if consul.starts_with("/v1/") => true,
        other if UNDOCUMENTED.contains(&other) => true,
        other => paths.contains(other),
    });
}

#[tokio::test]
async fn every_documented_operation_is_routed() {
    let (gateway, _upstreams) = arranged().await;
    let document = document();
    assert_documented_operations_routed(&probe(&gateway), &document, &operations(&document)).await;
}

#[tokio::test]
async fn the_gateways_own_paths_answer_no_undocumented_method() {
    let (gateway, _upstreams) = arranged().await;
    let document = document();
    let documented = operations(&document);
    let own: BTreeSet<&str> = documented
        .iter()
        .map(|(_, p)| p.as_str())
        .filter(|p| !p.starts_with("/api/")) // the services' own tests check theirs
        .collect();
    assert_no_undocumented_method(&probe(&gateway), &document, &documented, own).await;
}

#[tokio::test]
async fn docs_serves_swagger_ui_and_its_assets_from_the_gateway_without_a_token() {
    let (gateway, _upstreams) = arranged().await;
    let response = client().get(gateway.at(DOCS_PATH)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"<div id="swagger-ui">"#), "{html}");
    assert!(html.contains(r#"<base href="/docs/">"#), "{html}");
    // Every stylesheet and script the page links, relative to /docs/.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".css") || s.ends_with(".js") || s.ends_with(".png"))
        .collect();
    assert!(assets.len() >= 5, "{assets:?}");
    for asset in &assets {
        assert!(
            !asset.contains("://"),
            "{asset} is not served by the gateway"
        );
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        let response = client().get(gateway.at(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let expected = if asset.ends_with(".css") {
            "text/css"
        } else if asset.ends_with(".js") {
            "javascript"
        } else {
            "image/png"
        };
        assert!(content_type.contains(expected), "{path}: {content_type}");
        assert!(!response.bytes().await.unwrap().is_empty(), "{path}");
    }
    // The page loads the gateway's own document.
    let initializer = client()
        .get(gateway.at("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains(r#""/openapi.json""#), "{initializer}");
    // `/docs/` is the same page; an unknown asset is a problem+json 404.
    let slash = client().get(gateway.at("/docs/")).send().await.unwrap();
    assert_eq!(slash.status(), 200);
    let missing = client()
        .get(gateway.at("/docs/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child.as_str()) {
                    ("$ref", Some(target)) => found.push(target),
                    _ => refs(child, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|child| refs(child, found)),
        _ => {}
    }
}

/// `value` with each `$ref` to `from` pointing at `to`.
fn retarget(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "$ref" && child.as_str() == Some(from) {
                    *child = to.into();
                } else {
                    retarget(child, from, to);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| retarget(c, from, to)),
        _ => {}
    }
}

#[tokio::test]
async fn every_schema_reference_resolves() {
    let merged = json();
    let mut found = Vec::new();
    refs(&merged, &mut found);
    assert!(found.len() > 20, "{found:?}");
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{target} is not a schema reference"));
        assert!(
            merged["components"]["schemas"][name].is_object(),
            "{target} does not resolve"
        );
    }
}

#[tokio::test]
async fn each_services_schemas_keep_their_definition_renamed_where_names_clash() {
    // Schemas merge by name; a name two services define differently (each
    // has its own `WatchEvent`) is kept apart as `{Area}{Name}`.
    let merged = json();
    let schemas = &merged["components"]["schemas"];
    let mut renamed_any = false;
    for (area, build) in CONTROL_PLANE {
        let service = serde_json::to_value(build()).unwrap();
        let own = service["components"]["schemas"].as_object().unwrap();
        let prefix = format!("{}{}", area[..1].to_uppercase(), &area[1..]);
        // Renamed: `{Area}{Name}` is in the merged document, not the service's.
        let renamed: Vec<&String> = own
            .keys()
            .filter(|n| {
                let prefixed = format!("{prefix}{n}");
                schemas[&prefixed].is_object() && !own.contains_key(&prefixed)
            })
            .collect();
        for (name, schema) in own {
            let merged_name = if renamed.contains(&name) {
                renamed_any = true;
                format!("{prefix}{name}")
            } else {
                name.clone()
            };
            let mut ours = schemas[&merged_name].clone();
            for clash in &renamed {
                retarget(
                    &mut ours,
                    &format!("#/components/schemas/{prefix}{clash}"),
                    &format!("#/components/schemas/{clash}"),
                );
            }
            assert_eq!(&ours, schema, "schema {name} of {area} (as {merged_name})");
        }
    }
    assert!(renamed_any, "no clash left: drop the renaming?");
    let watch = &merged["paths"]["/api/v1/config/watch"]["get"]["responses"]["200"];
    let mut found = Vec::new();
    refs(watch, &mut found);
    assert!(
        found.contains(&"#/components/schemas/ConfigWatchEvent"),
        "{found:?}"
    );
}

#[tokio::test]
async fn every_tag_is_listed_control_plane_first() {
    // The docs page shows listed tags first, in the listed order.
    let merged = json();
    let listed: Vec<&str> = merged["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for item in merged["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for tag in operation["tags"].as_array().unwrap() {
                assert!(listed.contains(&tag.as_str().unwrap()), "{tag} not listed");
            }
        }
    }
    assert_eq!(listed.first(), Some(&"registry"), "{listed:?}");
    assert_eq!(listed.last(), Some(&"operations"), "{listed:?}");
}
