//! OpenAPI 3.1 pieces every service's document shares.
//!
//! A service builds its router and its document from one list (utoipa-axum's
//! `OpenApiRouter` with `routes!(..)` over handlers carrying
//! `#[utoipa::path]`), then [`document`] adds what every service answers the
//! same way: the scaffold's `/healthz`, `/readyz` and `/metrics`
//! ([`crate::server::scaffold`]), `/openapi.json` itself ([`serve`]), the
//! [`Problem`] schema and the service's info.
//!
//! Errors are documented with the problem+json responses below
//! ([`BadRequest`], [`NotFound`], [`Unprocessable`], [`PayloadTooLarge`],
//! [`StoreFailure`]), listed per operation in `responses(..)`, so every
//! 4xx/5xx a route can answer carries `application/problem+json`.
//!
//! [`operations`], [`routed_paths`], [`example_path`] and [`lint`] are
//! for the services' contract tests: list a document's operations, list the
//! paths a router routes, probe a documented path, and check the rules every
//! document keeps.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    http::{StatusCode, header},
    response::IntoResponse,
    routing::{MethodRouter, get},
};
use bytes::Bytes;
use utoipa::{
    IntoParams, IntoResponses, OpenApi as _,
    openapi::{
        ContentBuilder, HeaderBuilder, InfoBuilder, LicenseBuilder, ObjectBuilder, OpenApi, Ref,
        RefOr, ResponseBuilder, Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
        response::Response,
    },
};

use crate::problem::{FieldError, PROBLEM_JSON, Problem};

/// The name pattern and schema live with the names, in `mcp-api`.
pub use mcp_api::names::{NAME_PATTERN, name_schema};

/// Where every service serves its document.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// A required path parameter holding a name, with an `example` value.
pub fn name_parameter(name: &str, description: &str, example: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(utoipa::openapi::Required::True)
        .description(Some(description))
        .schema(Some(name_schema()))
        .example(Some(example.into()))
        .build()
}

/// The path parameter `{service}` (example `echo`).
pub struct ServicePath;

impl IntoParams for ServicePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![name_parameter("service", "Service name.", "echo")]
    }
}

/// The path parameters `{service}` and `{id}` (examples `echo`, `echo-1`).
pub struct InstancePath;

impl IntoParams for InstancePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            name_parameter("service", "Service name.", "echo"),
            name_parameter("id", "Instance id, unique within the service.", "echo-1"),
        ]
    }
}

/// An error response whose body is a [`Problem`] (`application/problem+json`).
pub fn problem_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => [$(($status:literal, $description:literal)),+ $(,)?];)+) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    BTreeMap::from([$((
                        $status.to_string(),
                        RefOr::T(with_retry_after($status, problem_response($description)).build()),
                    )),+])
                }
            }
        )+
    };
}

/// 503s carry `Retry-After` (see [`Problem::unavailable`]).
fn with_retry_after(status: u16, response: ResponseBuilder) -> ResponseBuilder {
    if status != StatusCode::SERVICE_UNAVAILABLE.as_u16() {
        return response;
    }
    response.header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ))
            .description(Some("Seconds to wait before retrying."))
            .build(),
    )
}

problem_responses! {
    /// 400: a path segment, query parameter, header or the body is malformed.
    BadRequest => [(400, "A path segment, query parameter, header or the body is malformed; `errors` names it.")];
    /// 404: the resource does not exist.
    NotFound => [(404, "No such resource.")];
    /// 413: the body is larger than `MAX_BODY_BYTES`.
    PayloadTooLarge => [(413, "The body is larger than the service accepts (`MAX_BODY_BYTES`).")];
    /// 422: the body parses but breaks a rule.
    Unprocessable => [(422, "The body parses but breaks a rule; `errors` names each field.")];
    /// 500 and 503: Redis failed (every operation that reads or writes state).
    StoreFailure => [
        (500, "The state store rejected a command or holds data this version cannot read."),
        (503, "The state store (Redis) is unavailable; retry after `Retry-After` seconds."),
    ];
}

/// The body of `/healthz` and `/readyz`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documents a body built with `json!` in `server`
struct ProbeStatus {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    status: String,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", operation_id = "healthz",
    responses((status = 200, description = "The process runs.", body = ProbeStatus,
        example = json!({"status": "ok"}))),
)]
#[allow(dead_code)] // documents `server::healthz`
fn healthz() {}

/// Readiness: 200 when Redis answers, else 503.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", operation_id = "readyz",
    responses(
        (status = 200, description = "Redis answers.", body = ProbeStatus,
            example = json!({"status": "ready"})),
        (status = 503, description = "Redis does not answer.", body = Problem,
            content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying."))),
    ),
)]
#[allow(dead_code)] // documents `server::readyz`
fn readyz() {}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format (version 0.0.4).",
        body = String, content_type = "text/plain")),
)]
#[allow(dead_code)] // documents `metrics::render`
fn metrics() {}

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "The service's OpenAPI 3.1 document.",
        body = Object, content_type = "application/json")),
)]
#[allow(dead_code)] // documents `serve`
fn openapi() {}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(healthz, readyz, metrics, openapi),
    components(schemas(Problem, FieldError)),
    tags((name = "operations", description = "Liveness, readiness, metrics and this document; the same on every service.")),
)]
struct Common;

/// A service's whole document: `api` (the paths its router registered) plus
/// the common endpoints and schemas, under the service's `title`.
pub fn document(api: OpenApi, title: &str, version: &str, description: &str) -> OpenApi {
    let mut document = api;
    document.merge(Common::openapi());
    drop_inferred_duplicates(&mut document);
    document.info = InfoBuilder::new()
        .title(title)
        .version(version)
        .description(Some(description))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    document
}

/// The name of the internal-credential security scheme in a service's document.
pub const INTERNAL_SCHEME: &str = "internal";

/// Paths every service answers without a credential ([`document`] adds them).
pub const OPEN_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", OPENAPI_PATH];

/// Mark every operation of a service's `document` but the [`OPEN_PATHS`] as
/// needing the gateway's internal credential ([`crate::internal`]): the
/// `internal` bearer scheme, its security requirement, and the 401
/// problem+json (with `WWW-Authenticate`) a request without one gets.
pub fn require_internal(mut document: OpenApi) -> OpenApi {
    use utoipa::openapi::security::{
        HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
    };
    for (path, item) in &mut document.paths.paths {
        if OPEN_PATHS.contains(&path.as_str()) {
            continue;
        }
        for operation in operations_mut(item) {
            operation.security = Some(vec![SecurityRequirement::new(
                INTERNAL_SCHEME,
                Vec::<String>::new(),
            )]);
            operation.responses.responses.insert(
                StatusCode::UNAUTHORIZED.as_u16().to_string(),
                RefOr::T(unauthorized_response().build()),
            );
        }
    }
    let components = document.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        INTERNAL_SCHEME.to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "The internal credential the gateway mints for each request it forwards: \
                     an HS256 JWT signed with `MCP_INTERNAL_SECRET` (`iss` `mcp-gateway`, `aud` \
                     `mcp-internal`, `sub`, `scope`, `exp` a minute after `iat`). Clients call \
                     the gateway, never a service directly; `mcpctl token --internal` mints \
                     one for operators.",
                ))
                .build(),
        )),
    );
    document
}

/// The 401 of an operation that needs the internal credential.
fn unauthorized_response() -> ResponseBuilder {
    problem_response(
        "No internal credential, or one that does not verify (secret, expiry, issuer or \
         audience): this service answers only the gateway.",
    )
    .header(
        "WWW-Authenticate",
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(
                "`Bearer` without a credential, `Bearer error=\"invalid_token\"` with a bad one.",
            ))
            .build(),
    )
}

/// Every operation of a path item.
fn operations_mut(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// utoipa's `axum_extras` also infers a bare path parameter from each `Path`
/// extractor; the explicit ones (with the name pattern) come first and win.
fn drop_inferred_duplicates(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            if let Some(parameters) = &mut operation.parameters {
                let mut seen = BTreeSet::new();
                parameters.retain(|p| match p {
                    RefOr::T(p) => {
                        let location = serde_json::to_string(&p.parameter_in).unwrap_or_default();
                        seen.insert((p.name.clone(), location))
                    }
                    RefOr::Ref(_) => true,
                });
            }
        }
    }
}

/// The `GET /openapi.json` route: `document` serialized once, served as is.
pub fn serve<S: Clone + Send + Sync + 'static>(document: &OpenApi) -> MethodRouter<S> {
    let body = match serde_json::to_vec(document) {
        Ok(json) => Ok(Bytes::from(json)),
        Err(e) => Err(e.to_string()),
    };
    get(move || {
        let body = body.clone();
        async move {
            match body {
                Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
                Err(e) => Problem::internal(format!("the OpenAPI document cannot be encoded: {e}"))
                    .into_response(),
            }
        }
    })
}

/// Every operation of `document` as `(METHOD, path template)`.
pub fn operations(document: &OpenApi) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in &document.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("PUT", item.put.is_some()),
            ("POST", item.post.is_some()),
            ("DELETE", item.delete.is_some()),
            ("OPTIONS", item.options.is_some()),
            ("HEAD", item.head.is_some()),
            ("PATCH", item.patch.is_some()),
            ("TRACE", item.trace.is_some()),
        ];
        for (method, present) in methods {
            if present {
                operations.insert((method.to_owned(), path.clone()));
            }
        }
    }
    operations
}

/// A service's router: its `operations` behind `internal` (the gateway's
/// credential), and at `/openapi.json`, open, the document `document` makes
/// of theirs. The state is given later (`with_state`), so a test can read the
/// router's paths ([`routed_paths`]) without one.
pub fn service_router<S: Clone + Send + Sync + 'static>(
    operations: utoipa_axum::router::OpenApiRouter<S>,
    document: impl FnOnce(OpenApi) -> OpenApi,
    internal: crate::internal::RequireInternalLayer,
) -> axum::Router<S> {
    let (router, api) = operations.split_for_parts();
    router
        .route_layer(internal)
        .route(OPENAPI_PATH, serve(&document(api)))
}

/// Every path `router` routes (`/v1/services/{service}`, `/svc/{*rest}`),
/// read from the router itself, so a test can hold them against the
/// document whatever registered them (`routes!`, `.route`, `.merge`).
///
/// axum has no API that lists a router's routes; its `Debug` output does
/// (`Node { paths: {RouteId(3): "/healthz", ..} }`), and that is what is read
/// here, by hand. axum is pinned by `Cargo.lock`, and a change of the format
/// shows as an empty set, which the unit test below and every caller's
/// "is this route there" assertion catch. The fallback router and axum's
/// own routes (`__private__axum_…`) are left out.
pub fn routed_paths<S>(router: &axum::Router<S>) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    // `Router { path_router: PathRouter { routes: {..}, node: Node { paths:
    // {RouteId(1): "/a", ..} } }, fallback_router: ..`: the routes' paths
    // hold no `"`, so each ends at the next one.
    let routes = debug.split("fallback_router:").next().unwrap_or_default();
    let mut paths = BTreeSet::new();
    if let Some((_, node)) = routes.split_once("node: Node { paths: {") {
        for entry in node.split("RouteId(").skip(1) {
            let path = entry.split('"').nth(1).unwrap_or_default();
            if path.starts_with('/') && !path.contains("__private__axum") {
                paths.insert(path.to_owned());
            }
        }
    }
    paths
}

/// `path` with each `{param}` replaced by the example its path parameter
/// documents (`x` when none), for probing a documented path with a real
/// request.
pub fn example_path(document: &OpenApi, path: &str) -> String {
    let json = serde_json::to_value(document).unwrap_or_default();
    let mut concrete = path.to_owned();
    if let Some(item) = json["paths"][path].as_object() {
        for operation in item.values() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "path" {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap_or_default();
                let example = parameter["example"].as_str().unwrap_or("x");
                concrete = concrete.replace(&format!("{{{name}}}"), example);
            }
        }
    }
    concrete
}

/// What every MCP document must hold, as a list of violations (empty when
/// it holds): each operation has a unique `operationId` and a tag, declares
/// each `{param}` of its path exactly once, and every 4xx/5xx response it
/// lists is `application/problem+json` with the [`Problem`] schema.
pub fn lint(document: &OpenApi) -> Vec<String> {
    let json = serde_json::to_value(document).unwrap_or_default();
    let mut violations = Vec::new();
    let mut ids = BTreeSet::new();
    let problem = serde_json::json!({
        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
    });
    for (path, item) in json["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let at = format!("{} {path}", method.to_uppercase());
            match operation["operationId"].as_str() {
                Some(id) if ids.insert(id.to_owned()) => {}
                Some(id) => violations.push(format!("{at}: operationId `{id}` is not unique")),
                None => violations.push(format!("{at}: no operationId")),
            }
            if operation["tags"].as_array().is_none_or(Vec::is_empty) {
                violations.push(format!("{at}: no tag"));
            }
            let mut declared = BTreeSet::new();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let key = (
                    parameter["in"].as_str().unwrap_or_default().to_owned(),
                    parameter["name"].as_str().unwrap_or_default().to_owned(),
                );
                if !declared.insert(key.clone()) {
                    violations.push(format!("{at}: parameter `{}` declared twice", key.1));
                }
            }
            for segment in path.split('/') {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                    && !declared.contains(&("path".to_owned(), name.to_owned()))
                {
                    violations.push(format!("{at}: path parameter `{name}` not declared"));
                }
            }
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                let error = status.starts_with('4') || status.starts_with('5');
                if error && response["content"] != problem {
                    violations.push(format!("{at}: {status} is not problem+json"));
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_paths_lists_every_route_of_a_router() {
        async fn ok() {}
        let other = axum::Router::<()>::new().route("/c/{*rest}", axum::routing::any(ok));
        let router = axum::Router::new()
            .route("/a", get(ok))
            .route("/b/{x}", axum::routing::put(ok).post(ok))
            .merge(other)
            .fallback(ok)
            .layer(tower::layer::util::Identity::new());
        let paths: Vec<_> = routed_paths(&router).into_iter().collect();
        assert_eq!(paths, ["/a", "/b/{x}", "/c/{*rest}"]);
    }

    #[test]
    fn the_common_document_is_openapi_3_1_with_the_scaffold_endpoints() {
        let document = document(OpenApi::default(), "t", "1", "d");
        let json = serde_json::to_value(&document).unwrap_or_default();
        assert_eq!(json["openapi"], "3.1.0");
        let operations = operations(&document);
        for path in ["/healthz", "/readyz", "/metrics", OPENAPI_PATH] {
            assert!(
                operations.contains(&("GET".to_owned(), path.to_owned())),
                "{path}"
            );
        }
        assert!(json["components"]["schemas"]["Problem"].is_object());
        assert_eq!(lint(&document), Vec::<String>::new());
    }
}
