//! The OpenAPI contract checks every service's `tests/it/openapi.rs` runs
//! (all of them at once: [`assert_service_contract`]): the
//! document a service serves at `/openapi.json`, and the two halves of "the
//! document lists exactly the operations the service answers":
//!
//! - [`assert_documented_operations_routed`]: a real request to each
//!   documented operation is neither a 405 nor axum's `no route` 404;
//! - [`assert_routes_documented`] over the paths the router itself routes
//!   ([`routed_paths`]), and
//!   [`assert_no_undocumented_method`]: a documented path answers 405 to every
//!   method of [`METHODS`] the document does not list for it.
//!
//! Requests go through a [`Probe`], which returns the status and the problem
//! `detail` of the answer.
//!
//! And the three-way check that the bodies cannot drift (the services, their
//! documents and the SDK all use the shared types of `mcp_shared::{registry,
//! config, health}`):
//!
//! - [`assert_answer_schema`], [`assert_request_schema`],
//!   [`assert_component_schema`]: the document describes a body with the
//!   shared type's own schema (`ToSchema`), not a copy;
//! - [`assert_body_is`]: a real answer of the service is exactly the shared
//!   type, member for member (nothing the type lacks, nothing it adds).

use std::{collections::BTreeSet, time::Duration};

use mcp_shared::{
    openapi::{OPENAPI_PATH, example_path, lint, operations, routed_paths},
    server::common_routes,
};
use reqwest::Method;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use utoipa::{ToSchema, openapi::OpenApi};

/// Methods a route could be given; HEAD is answered wherever GET is (axum).
pub const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH"];

/// How long a [`client`] (and a [`Probe`], unless told otherwise) waits for an answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client whose requests give up after 10 s and carry an `admin`
/// internal credential (the services' operations need one; see
/// [`crate::client_builder`]).
pub fn client() -> reqwest::Client {
    crate::client_builder().timeout(TIMEOUT).build().unwrap()
}

/// `GET {base_url}/openapi.json` with `client`: asserts a 200
/// `application/json` answer and returns the document it holds.
pub async fn served_document(client: &reqwest::Client, base_url: &str) -> Value {
    let response = client
        .get(format!("{base_url}{OPENAPI_PATH}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// Sends a method to a path of one service and reads what it answers. Each
/// request goes out on a client of its own, so no probe reuses another's
/// connection.
pub struct Probe {
    url: String,
    timeout: Option<Duration>,
    authorization: Option<String>,
}

impl Probe {
    /// Probes the service at `url` (its base URL, as `TestService::url`)
    /// with an `admin` internal credential (replace it with
    /// [`Self::authorization`] to probe the gateway); each request gives up
    /// after 10 s.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            timeout: Some(TIMEOUT),
            authorization: Some(crate::internal_bearer("test", "admin")),
        }
    }

    /// Waits for each answer as long as it takes.
    pub fn without_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Sends `value` as the `authorization` header of every request.
    pub fn authorization(mut self, value: String) -> Self {
        self.authorization = Some(value);
        self
    }

    /// Send `method` to `path` (with a `{}` JSON body where the method takes
    /// one); returns the status and the problem `detail` (empty for an event
    /// stream or an answer without one).
    pub async fn send(&self, method: &str, path: &str) -> (u16, String) {
        let mut client = reqwest::Client::builder();
        if let Some(timeout) = self.timeout {
            client = client.timeout(timeout);
        }
        let client = client.build().unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method.clone(), format!("{}{path}", self.url));
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
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
}

/// The paths of `documented` (as [`mcp_shared::openapi::operations`] lists them).
pub fn documented_paths(documented: &BTreeSet<(String, String)>) -> BTreeSet<&str> {
    documented.iter().map(|(_, p)| p.as_str()).collect()
}

/// Asserts that `covered` holds for each of `routes` (the paths a router
/// routes, [`routed_paths`]): the document lists it.
pub fn assert_routes_documented<'a>(
    routes: impl IntoIterator<Item = &'a String>,
    covered: impl Fn(&str) -> bool,
) {
    for route in routes {
        assert!(covered(route), "route {route} is not in the document");
    }
}

/// The whole contract of a service's document, against the service running
/// at `url` and the `router` it serves (before its state):
///
/// - `/openapi.json` serves `document`, OpenAPI 3.1 titled `title`, and the
///   document keeps every MCP rule ([`lint`]);
/// - it lists at least `min_operations`, each of them routed;
/// - every path `router` (with the scaffold's [`common_routes`]) routes is
///   documented, once `documented_as` turns a route into the path the
///   document gives it (a catch-all route documented as a parameter);
/// - no documented path answers a method the document does not list.
pub async fn assert_service_contract<S>(
    url: &str,
    title: &str,
    document: &OpenApi,
    router: &axum::Router<S>,
    min_operations: usize,
    documented_as: impl for<'a> Fn(&'a str) -> &'a str,
) {
    let served = served_document(&client(), url).await;
    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["info"]["title"], title);
    assert_eq!(served, serde_json::to_value(document).unwrap());
    assert_eq!(lint(document), Vec::<String>::new());

    let documented = operations(document);
    assert!(documented.len() >= min_operations, "{documented:?}");
    let probe = Probe::new(url);
    assert_documented_operations_routed(&probe, document, &documented).await;

    let paths = documented_paths(&documented);
    let mut routes = routed_paths(router);
    assert!(routes.contains(OPENAPI_PATH), "{routes:?}");
    routes.extend(routed_paths(&common_routes()));
    assert_routes_documented(&routes, |route| paths.contains(documented_as(route)));
    assert_no_undocumented_method(&probe, document, &documented, paths).await;
}

/// Asserts that each of the `documented` operations of `document` is routed:
/// `probe` sent to its example path answers neither 405 nor axum's
/// `no route` 404.
pub async fn assert_documented_operations_routed(
    probe: &Probe,
    document: &OpenApi,
    documented: &BTreeSet<(String, String)>,
) {
    for (method, path) in documented {
        let (status, detail) = probe.send(method, &example_path(document, path)).await;
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        assert!(
            !(status == 404 && detail.starts_with("no route")),
            "{method} {path} is documented but not routed: {detail}"
        );
    }
}

/// Asserts that each of `paths` answers 405 to every method of [`METHODS`]
/// that `documented` (the operations of `document`) does not list for it.
pub async fn assert_no_undocumented_method<'a>(
    probe: &Probe,
    document: &OpenApi,
    documented: &BTreeSet<(String, String)>,
    paths: impl IntoIterator<Item = &'a str>,
) {
    for path in paths {
        for method in METHODS {
            if documented.contains(&((*method).to_owned(), path.to_owned())) {
                continue;
            }
            let (status, _) = probe.send(method, &example_path(document, path)).await;
            assert_eq!(status, 405, "{method} {path} is routed but not documented");
        }
    }
}

/// Where `document` (as JSON) keeps its schemas.
const SCHEMAS: &str = "#/components/schemas/";

/// Asserts that `document` (as served, JSON) holds `T`'s schema under `T`'s
/// name, and every schema `T` refers to under theirs, each exactly as
/// `T`'s `ToSchema` builds it: the document is generated from the type.
pub fn assert_component_schema<T: ToSchema>(document: &Value) {
    let mut expected = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut expected);
    for (name, schema) in expected {
        let served = &document["components"]["schemas"][&name];
        assert!(served.is_object(), "the document has no schema {name}");
        assert_eq!(
            served,
            &serde_json::to_value(schema).unwrap(),
            "schema {name} is not {}'s own",
            T::name()
        );
    }
}

/// The `application/json` schema of one documented body.
fn documented_schema<'a>(document: &'a Value, at: &[&str]) -> &'a Value {
    let mut node = &document["paths"];
    for step in at {
        node = &node[*step];
    }
    let schema = &node["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "no JSON body documented at {at:?}");
    schema
}

/// Asserts that `document` describes the `status` answer of `method path`
/// (as documented: `get`, `/v1/services`) as a reference to `T`, and that
/// the schema referred to is `T`'s own ([`assert_component_schema`]).
pub fn assert_answer_schema<T: ToSchema>(document: &Value, method: &str, path: &str, status: u16) {
    let status = status.to_string();
    let schema = documented_schema(document, &[path, method, "responses", &status]);
    assert_eq!(
        schema["$ref"].as_str(),
        Some(format!("{SCHEMAS}{}", T::name()).as_str()),
        "{method} {path} answers {status} with {schema}, not {}",
        T::name()
    );
    assert_component_schema::<T>(document);
}

/// Asserts that `document` describes the request body of `method path` as a
/// reference to `T`, and that the schema referred to is `T`'s own.
pub fn assert_request_schema<T: ToSchema>(document: &Value, method: &str, path: &str) {
    let schema = documented_schema(document, &[path, method, "requestBody"]);
    assert_eq!(
        schema["$ref"].as_str(),
        Some(format!("{SCHEMAS}{}", T::name()).as_str()),
        "{method} {path} takes {schema}, not {}",
        T::name()
    );
    assert_component_schema::<T>(document);
}

/// Asserts that `body` (a real answer of a service) is exactly a `T`: it
/// deserializes into `T`, and `T` serializes back to the same JSON. A member
/// the service sends that `T` lacks, or one `T` has (and sends) that the
/// service does not, fails it; returns the `T`.
pub fn assert_body_is<T: Serialize + DeserializeOwned>(body: &Value) -> T {
    let name = std::any::type_name::<T>();
    let typed: T = serde_json::from_value(body.clone())
        .unwrap_or_else(|e| panic!("the answer is no {name}: {e}\n{body:#}"));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, body,
        "the answer and the {name} it reads as differ (left: as {name}, right: as served)"
    );
    typed
}

/// Environment variable that makes [`assert_snapshot`] rewrite the snapshot.
pub const UPDATE_SNAPSHOTS: &str = "UPDATE_SNAPSHOTS";

/// The checked-in snapshot of a service's document
/// (`docs/openapi/{service}.json`, which the gateway merges into its own)
/// is exactly `document`. With `UPDATE_SNAPSHOTS=1` it is rewritten
/// instead, for a change that meant to change the document. A service's
/// unit tests call it through [`snapshot_test!`](crate::snapshot_test).
pub fn assert_snapshot(document: &OpenApi, service: &str) {
    let snapshot = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/openapi")
        .join(format!("{service}.json"));
    let mut text = serde_json::to_string_pretty(document).unwrap();
    text.push('\n');
    if std::env::var_os(UPDATE_SNAPSHOTS).is_some_and(|v| v == "1") {
        std::fs::write(&snapshot, &text).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert!(
        stored == text,
        "{} is not {service}'s document: run its tests with {UPDATE_SNAPSHOTS}=1 \
         and commit the file (the gateway serves the snapshot)",
        snapshot.display()
    );
}

/// The unit test that keeps a service's snapshot exact (see
/// [`openapi::assert_snapshot`](crate::openapi::assert_snapshot)):
/// `mcp_testkit::snapshot_test!(crate::api::openapi);` in the service's library.
#[macro_export]
macro_rules! snapshot_test {
    ($document:path) => {
        #[cfg(test)]
        #[test]
        fn the_checked_in_openapi_snapshot_is_the_document() {
            $crate::openapi::assert_snapshot(&$document(), env!("CARGO_PKG_NAME"));
        }
    };
}
