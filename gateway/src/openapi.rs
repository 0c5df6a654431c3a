//! The gateway's public OpenAPI 3.1 document, served at `GET /openapi.json`
//! (no token needed).
//!
//! It is the one contract a client of MCP needs: the control plane's
//! documents, from the snapshots their tests keep exact ([`CONTROL_PLANE`])
//! and re-rooted where the gateway exposes them
//! (registry-svc `/v1/x` → `/api/v1/registry/x`, and so on), plus the
//! gateway's own operations: `/svc/{service}/{rest}`, `/admin/upstreams`,
//! `/admin/policies` (with the gateway policy schemas `Gateway*`),
//! `/admin/profile`, `/healthz`, `/readyz`, `/metrics`, this document and
//! the docs page ([`crate::docs`]). The services' own `/healthz`, `/readyz`,
//! `/metrics` and `/openapi.json` are not reachable through the gateway and
//! are left out.
//!
//! The gateway's `/metrics` needs a bearer token with `metrics:read` (or
//! `admin`), unlike the services'.
//!
//! Every operation behind the gateway's stack carries the `bearer` (JWT)
//! security requirement with the scope [`crate::auth::Requirement`] asks
//! for, and the answers the gateway itself may give before or instead of
//! the upstream's: 400 (a path it refuses), 401, 403, 429 (with
//! `Retry-After` and `RateLimit-*`), 502, 503 (with `Retry-After`) and 504,
//! all `application/problem+json`. Every answer of a gated operation may
//! carry `RateLimit-Limit/-Remaining/-Reset`.

use std::collections::{BTreeMap, BTreeSet};

use mcp_shared::openapi::{self as docs, name_parameter, problem_response};
use utoipa::{
    OpenApi as _,
    openapi::{
        HeaderBuilder, ObjectBuilder, OpenApi, RefOr, Type,
        header::Header,
        path::{Operation, ParameterBuilder, ParameterIn, PathItem},
        response::Response,
        schema::Schema,
        security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        tag::TagBuilder,
    },
};

use crate::auth::Requirement;

/// The name of the security scheme in the document.
pub const BEARER: &str = "bearer";

/// The tag of every service's `/healthz`, `/readyz`, `/metrics` and
/// `/openapi.json` ([`mcp_shared::openapi::document`]).
const PROBES_TAG: &str = "operations";

/// A function giving a service's whole document.
type Document = fn() -> OpenApi;

/// The control plane behind `/api/v1/{area}/…`: each area with its
/// service's document.
///
/// The documents are snapshots checked in under `docs/openapi/`, which each
/// service's tests keep exactly equal to the document it serves (run them
/// with `UPDATE_SNAPSHOTS=1` after changing an API). Snapshots rather than
/// the services' code: the gateway, the hot-path binary, then links none of
/// the services (their JSON Schema validator, Lua, prober), and an edit of
/// a handler does not rebuild it. Rather than fetching the documents at run
/// time: the public document then never depends on which services answer
/// at start, and a schemathesis run or a client generator gets the same
/// document every time from the same build.
pub const CONTROL_PLANE: &[(&str, Document)] = &[
    ("registry", || {
        snapshot(include_str!("../../docs/openapi/registry-svc.json"))
    }),
    ("config", || {
        snapshot(include_str!("../../docs/openapi/config-svc.json"))
    }),
    ("health", || {
        snapshot(include_str!("../../docs/openapi/health-svc.json"))
    }),
];

/// `/svc/{service}/{rest}` with any method: forwarded to `/{rest}` on a
/// passing instance of the service.
#[utoipa::path(
    get, path = "/svc/{service}/{rest}", tag = "services", operation_id = "serviceGet",
    summary = "Call a registered service (GET)",
    description = "Forwarded to `/{rest}` (query string kept) on a `passing` instance of \
        `service`, chosen by power of two choices on requests in flight, each instance behind \
        its own circuit breaker. Any method is forwarded the same way; the answer is the \
        instance's, streamed back unchanged.",
    params(SvcPath),
    responses(
        (status = "default", description = "The instance's answer, unchanged."),
        (status = 404, description = "No instance of `service` is registered.", body = mcp_shared::Problem,
            content_type = "application/problem+json"),
    ),
)]
#[allow(dead_code)] // documents the proxy's `/svc/{*rest}` route
fn svc_get() {}

macro_rules! svc_operation {
    ($($fn:ident: $method:ident, $id:literal, $summary:literal;)+) => {$(
        #[utoipa::path(
            $method, path = "/svc/{service}/{rest}", tag = "services", operation_id = $id,
            summary = $summary,
            description = "See `GET /svc/{service}/{rest}`: forwarded the same way, the body streamed to the instance.",
            params(SvcPath),
            request_body(description = "Any body; streamed to the instance unchanged.", content_type = "*/*"),
            responses(
                (status = "default", description = "The instance's answer, unchanged."),
                (status = 404, description = "No instance of `service` is registered.", body = mcp_shared::Problem,
                    content_type = "application/problem+json"),
            ),
        )]
        #[allow(dead_code)] // documents the proxy's `/svc/{*rest}` route
        fn $fn() {}
    )+};
}

svc_operation! {
    svc_put: put, "servicePut", "Call a registered service (PUT)";
    svc_post: post, "servicePost", "Call a registered service (POST)";
    svc_patch: patch, "servicePatch", "Call a registered service (PATCH)";
    svc_delete: delete, "serviceDelete", "Call a registered service (DELETE)";
}

/// The path parameters of `/svc/{service}/{rest}`.
struct SvcPath;

impl utoipa::IntoParams for SvcPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<utoipa::openapi::path::Parameter> {
        vec![
            name_parameter("service", "The registered service to call.", "echo"),
            ParameterBuilder::new()
                .name("rest")
                .parameter_in(ParameterIn::Path)
                .required(utoipa::openapi::Required::True)
                .description(Some(
                    "The path on the instance (it may hold further `/` segments; `..` and \
                     encoded slashes are refused with 400).",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .example(Some("hello".into()))
                .build(),
        ]
    }
}

/// The docs page: Swagger UI over this document.
#[utoipa::path(
    get, path = "/docs", tag = "operations", operation_id = "docs",
    summary = "The API docs page",
    description = "Swagger UI over `/openapi.json`; its scripts and styles are served by the \
        gateway itself under `/docs/` (no CDN). No token needed.",
    responses((status = 200, description = "The docs page.", body = String, content_type = "text/html")),
)]
#[allow(dead_code)] // documents `docs::index`
fn docs_page() {}

/// The web console.
#[utoipa::path(
    get, path = "/ui", tag = "operations", operation_id = "console",
    summary = "The web console",
    description = "A single-page app (services, instances and their health, config with \
        validated edits, history, diff and rollback, the gateway's upstreams) served by the \
        gateway itself under `/ui/`. The page holds no data and needs no token: it calls this \
        API from the browser with the user's bearer token. A sign-in link carries the token in \
        the URL fragment (`/ui/#token=…`), never in the query.",
    responses((status = 200, description = "The console page.", body = String, content_type = "text/html")),
)]
#[allow(dead_code)] // documents `ui::page`
fn console_page() {}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        crate::admin::upstreams, crate::admin::policies, crate::profile::profile,
        svc_get, svc_put, svc_post, svc_patch, svc_delete, docs_page, console_page,
    ),
    tags(
        (name = "services", description = "Registered services, called through the gateway."),
        (name = "admin", description = "The gateway's own state (scope `admin`)."),
    ),
)]
struct Own;

/// A service's document from its snapshot. The services' tests write the
/// snapshots from a real document and the gateway's tests read them back,
/// so a snapshot that does not parse cannot ship; if one did, its area
/// would be missing from the document (logged), not the gateway down.
fn snapshot(text: &str) -> OpenApi {
    serde_json::from_str(text)
        .and_then(|mut json| {
            mark_typeless(&mut json, false);
            serde_json::from_value(json)
        })
        .unwrap_or_else(|error| {
            tracing::error!(%error, "a control-plane OpenAPI snapshot does not parse");
            OpenApi::default()
        })
}

/// utoipa writes a schema of any type (config-svc's `value`) without a
/// `type` but cannot read one back without it; `"type": null` is how its
/// `SchemaType::AnyValue` reads, and writes back as no `type` at all. So
/// give every schema in `value` that has no `type`, `$ref` or composition
/// a `"type": null` (`schema`: whether `value` itself is a schema).
fn mark_typeless(value: &mut serde_json::Value, schema: bool) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let typed = ["type", "$ref", "oneOf", "allOf", "anyOf"]
                .iter()
                .any(|key| map.contains_key(*key));
            if schema && !typed {
                map.insert("type".to_owned(), Value::Null);
            }
            for (key, child) in map.iter_mut() {
                match key.as_str() {
                    // Values, not schemas.
                    "example" | "examples" | "default" | "enum" | "const" => {}
                    "schema" | "items" | "additionalProperties" => mark_typeless(child, true),
                    "properties" | "schemas" => {
                        for member in child
                            .as_object_mut()
                            .into_iter()
                            .flat_map(|m| m.values_mut())
                        {
                            mark_typeless(member, true);
                        }
                    }
                    "oneOf" | "allOf" | "anyOf" => {
                        for member in child.as_array_mut().into_iter().flatten() {
                            mark_typeless(member, true);
                        }
                    }
                    _ => mark_typeless(child, false),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mark_typeless(item, false)),
        _ => {}
    }
}

/// The whole public document (built once at start; see the module docs).
pub fn document() -> OpenApi {
    let mut document = docs::document(
        Own::openapi(),
        "MCP API (gateway)",
        env!("CARGO_PKG_VERSION"),
        "The public API of MCP, served by the gateway: the registry, config and health APIs \
         under `/api/v1/{registry,config,health}/`, registered services under \
         `/svc/{service}/`, and the gateway's administration under `/admin/`. Send \
         `Authorization: Bearer <JWT>`; each operation lists the scope it needs (`admin` \
         grants every scope). Every error is application/problem+json (RFC 9457).",
    );
    for (area, build) in CONTROL_PLANE {
        merge_area(&mut document, area, build());
    }
    gate(&mut document);
    order(&mut document);
    let components = document.components.get_or_insert_with(Default::default);
    // The gateway policy schema (config namespace `gateway`), from the one
    // JSON Schema config-svc enforces: `GatewayServicePolicy`, `GatewayRoute`, ….
    for (name, schema) in mcp_shared::policy::openapi_schemas() {
        match serde_json::from_value::<RefOr<utoipa::openapi::schema::Schema>>(schema) {
            Ok(schema) => {
                components.schemas.insert(name, schema);
            }
            Err(error) => {
                tracing::warn!(%error, name, "policy schema not representable in OpenAPI")
            }
        }
    }
    components.security_schemes.insert(
        BEARER.to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A JWT (HS256, RS256, ES256, EdDSA…, as the gateway is configured). Its \
                     `scope` claim is a space-separated list of `admin` and \
                     `{area}:{read|write}[:{name}]`. `GET`/`HEAD` on `/api/v1/{area}/…` need \
                     `{area}:read` (`registry:read`, `config:read`, `health:read`), other \
                     methods `{area}:write`; `/admin/…` needs `admin`; `/svc/…` needs any \
                     valid token. `admin` grants every scope, and `write` does not grant \
                     `read`.\n\n\
                     A scope may be narrowed to a name: the service \
                     (`/api/v1/registry/services/{service}/…`, \
                     `/api/v1/health/services/{service}…`) or the namespace \
                     (`/api/v1/config/namespaces/{ns}/…`, `/api/v1/config/watch?namespace={ns}`) \
                     the request is about, e.g. `registry:write:billing`; a trailing `*` makes \
                     it a prefix (`config:write:team-a-*`); without a name it covers every \
                     name. Listings and watches not about one name (`GET \
                     /api/v1/registry/services`, `/api/v1/registry/watch`, \
                     `/api/v1/health/summary`, `GET /api/v1/config/namespaces`, \
                     `/api/v1/config/watch`) need any read scope of the area and show only \
                     the names the token may read; a write not about one name needs the \
                     whole area. A missing scope is a 403 whose `required_scope` names it \
                     (`registry:write:shop`).",
                ))
                .build(),
        )),
    );
    document
}

/// `area`'s operations (`/v1/…` paths of `service`) re-rooted under
/// `/api/v1/{area}/…`, with area-prefixed operation ids and tags, merged
/// into `document`; the service's own probes and document are dropped.
/// A schema whose name another service already gave a different
/// definition (each service's `WatchEvent`) is renamed `{Area}{Name}`.
fn merge_area(document: &mut OpenApi, area: &str, service: OpenApi) {
    let mut service = rename_clashing_schemas(document, area, service);
    if let Some(components) = &mut service.components {
        components.security_schemes.remove(docs::INTERNAL_SCHEME);
    }
    let paths = std::mem::take(&mut service.paths.paths);
    for (path, mut item) in paths {
        let Some(rest) = path.strip_prefix("/v1/") else {
            continue; // /healthz, /readyz, /metrics, /openapi.json
        };
        for (_, operation) in operations_mut(&mut item) {
            if let Some(id) = &mut operation.operation_id {
                *id = prefixed(area, id);
            }
            // The internal credential is the gateway's business: a client
            // needs the bearer token ([`gate`]) and gets the gateway's 401.
            operation.security = None;
            operation.responses.responses.remove("401");
            for tag in operation.tags.iter_mut().flatten() {
                *tag = area_tag(area, tag);
            }
        }
        document
            .paths
            .paths
            .insert(format!("/api/v1/{area}/{rest}"), item);
    }
    let tags = service.tags.get_or_insert_with(Vec::new);
    // The probes' tag went with the probes (the gateway has its own).
    tags.retain(|tag| tag.name != PROBES_TAG);
    for tag in tags.iter_mut() {
        tag.name = area_tag(area, &tag.name);
    }
    // Listed tags come first on the docs page: list the area's own too.
    let used: BTreeSet<String> = document
        .paths
        .paths
        .iter()
        .filter(|(path, _)| path.starts_with(&format!("/api/v1/{area}/")))
        .flat_map(|(_, item)| [&item.get, &item.put, &item.post, &item.delete, &item.patch])
        .flatten()
        .flat_map(|operation| operation.tags.iter().flatten().cloned())
        .collect();
    for name in used {
        if !tags.iter().any(|tag| tag.name == name) {
            tags.push(
                TagBuilder::new()
                    .name(name)
                    .description(Some(format!(
                        "The {area} API, served by {area}-svc behind the gateway."
                    )))
                    .build(),
            );
        }
    }
    document.merge(service);
}

/// The tag of a service's operation in the merged document: the area
/// itself (`registry`), or `config/entries` for a service's finer tags.
fn area_tag(area: &str, tag: &str) -> String {
    if tag == area {
        tag.to_owned()
    } else {
        format!("{area}/{tag}")
    }
}

/// `service` with each schema that `document` already holds under the
/// same name but a different definition renamed to `{Area}{Name}`, and its
/// `$ref`s (in operations and in other schemas) with it.
fn rename_clashing_schemas(document: &OpenApi, area: &str, mut service: OpenApi) -> OpenApi {
    let (Some(ours), Some(theirs)) = (&document.components, &mut service.components) else {
        return service;
    };
    let clashes: Vec<String> = theirs
        .schemas
        .iter()
        .filter(|(name, schema)| {
            // Compared as JSON: the same definition read from a snapshot
            // may list its properties in another order.
            ours.schemas
                .get(*name)
                .is_some_and(|o| serde_json::to_value(o).ok() != serde_json::to_value(schema).ok())
        })
        .map(|(name, _)| name.clone())
        .collect();
    if clashes.is_empty() {
        return service;
    }
    let mut renames = BTreeMap::new();
    for name in clashes {
        let renamed = format!("{}{name}", capitalized(area));
        renames.insert(format!("{SCHEMAS}{name}"), format!("{SCHEMAS}{renamed}"));
        if let Some(schema) = theirs.schemas.remove(&name) {
            theirs.schemas.insert(renamed, schema);
        }
    }
    for schema in theirs.schemas.values_mut() {
        retarget(schema, &renames);
    }
    for item in service.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            let bodies = operation.request_body.iter_mut().flat_map(|b| match b {
                RefOr::T(body) => body.content.values_mut().collect(),
                RefOr::Ref(_) => Vec::new(),
            });
            let answers = operation
                .responses
                .responses
                .values_mut()
                .flat_map(|r| match r {
                    RefOr::T(response) => response.content.values_mut().collect(),
                    RefOr::Ref(_) => Vec::new(),
                });
            for content in bodies.chain(answers) {
                if let RefOr::T(content) = content
                    && let Some(schema) = &mut content.schema
                {
                    retarget(schema, &renames);
                }
            }
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && let Some(schema) = &mut parameter.schema
                {
                    retarget(schema, &renames);
                }
            }
        }
    }
    service
}

/// Where schema references point.
const SCHEMAS: &str = "#/components/schemas/";

/// Point `schema`'s references (itself or nested) as `renames` says. A
/// nested one is rewritten through JSON; a schema that does not refer to a
/// renamed one is left as it is.
fn retarget(schema: &mut RefOr<Schema>, renames: &BTreeMap<String, String>) {
    match schema {
        RefOr::Ref(reference) => {
            if let Some(to) = renames.get(&reference.ref_location) {
                reference.ref_location.clone_from(to);
            }
        }
        RefOr::T(_) => {
            let Ok(mut json) = serde_json::to_value(&*schema) else {
                return;
            };
            if rename_refs(&mut json, renames)
                && let Ok(renamed) = serde_json::from_value(json)
            {
                *schema = renamed;
            }
        }
    }
}

/// Replace every `"$ref"` in `value` that `renames` names; whether any was.
fn rename_refs(value: &mut serde_json::Value, renames: &BTreeMap<String, String>) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut renamed = false;
            for (key, child) in map.iter_mut() {
                let to = (key == "$ref")
                    .then(|| child.as_str().and_then(|from| renames.get(from)))
                    .flatten();
                if let Some(to) = to {
                    *child = to.as_str().into();
                    renamed = true;
                } else {
                    renamed |= rename_refs(child, renames);
                }
            }
            renamed
        }
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |renamed, child| {
            rename_refs(child, renames) | renamed
        }),
        _ => false,
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_ascii_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// Tags (the page's sections) in reading order: the control plane (as
/// [`CONTROL_PLANE`] lists it), services, admin, then the probes.
fn order(document: &mut OpenApi) {
    let rank = |name: &str| {
        let areas = CONTROL_PLANE.iter().map(|(area, _)| *area);
        areas
            .chain(["services", "admin"])
            .position(|group| name == group || name.starts_with(&format!("{group}/")))
            .unwrap_or(usize::MAX)
    };
    if let Some(tags) = &mut document.tags {
        tags.sort_by_cached_key(|tag| rank(&tag.name));
    }
}

/// `registry` + `listServices` → `registryListServices`.
fn prefixed(area: &str, id: &str) -> String {
    format!("{area}{}", capitalized(id))
}

/// Every operation of `item` with its method.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("OPTIONS", &mut item.options),
        ("HEAD", &mut item.head),
        ("PATCH", &mut item.patch),
        ("TRACE", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}

/// Whether `path` goes through the gateway's stack (token, scope, rate limit).
fn is_gated(path: &str) -> bool {
    ["/api/", "/svc/", "/admin/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// Whether the gateway forwards `path` to an upstream (so 502/503/504 apply).
fn is_proxied(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/svc/")
}

/// Give every gated operation its security requirement and the answers the
/// gateway's stack may give.
fn gate(document: &mut OpenApi) {
    for (path, item) in &mut document.paths.paths {
        if path == "/metrics" {
            // The gateway's own `/metrics` needs a token (`admin::guard_metrics`),
            // outside the stack: no rate limit, only its 401 and 403.
            for (method, operation) in operations_mut(item) {
                let method = method.parse().unwrap_or_default();
                if let Some(scope) = Requirement::of(&method, path, None).area_scope() {
                    operation.security = Some(vec![SecurityRequirement::new(BEARER, [scope])]);
                }
                for (status, response) in gateway_responses(false) {
                    if status == "401" || status == "403" {
                        operation
                            .responses
                            .responses
                            .insert(status.to_owned(), RefOr::T(response));
                    }
                }
            }
            continue;
        }
        if !is_gated(path) {
            continue;
        }
        let proxied = is_proxied(path);
        for (method, operation) in operations_mut(item) {
            let method = method.parse().unwrap_or_default();
            let scopes: Vec<String> = Requirement::of(&method, path, None)
                .area_scope()
                .into_iter()
                .collect();
            operation.security = Some(vec![SecurityRequirement::new(BEARER, scopes)]);
            add_gateway_responses(&mut operation.responses.responses, proxied);
        }
    }
}

fn integer_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some(description))
        .build()
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` (draft-ietf-httpapi-ratelimit-headers).
fn rate_limit_headers() -> [(&'static str, Header); 3] {
    [
        (
            "RateLimit-Limit",
            integer_header("The client's burst: requests it may send at once."),
        ),
        (
            "RateLimit-Remaining",
            integer_header("Requests left in the client's burst."),
        ),
        (
            "RateLimit-Reset",
            integer_header("Seconds until the client's burst is whole again."),
        ),
    ]
}

fn retry_after() -> Header {
    integer_header("Seconds to wait before retrying.")
}

/// The gateway's own problem answers (status, description, headers).
fn gateway_responses(proxied: bool) -> Vec<(&'static str, Response)> {
    let problem = |description: &str| problem_response(description);
    let mut responses = vec![
        (
            "400",
            problem(
                "The gateway refuses the path: a `..` segment, an encoded slash (`%2f`) or \
                 backslash (`%5c`); `errors` names it.",
            )
            .build(),
        ),
        (
            "401",
            problem("No bearer token, or one that does not verify (signature, algorithm, `exp`, …).")
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some(
                            "`Bearer` without a token, `Bearer error=\"invalid_token\"` with a bad one.",
                        ))
                        .build(),
                )
                .build(),
        ),
        (
            "403",
            problem(
                "The token lacks the scope this operation needs (see its security requirement); \
                 `required_scope` names it.",
            )
            .build(),
        ),
        (
            "429",
            problem("The client (the token's `sub`, else its IP) is over its rate limit.")
                .header("Retry-After", retry_after())
                .build(),
        ),
    ];
    if proxied {
        responses.extend([
            (
                "502",
                problem("The gateway could not reach the upstream, or it broke the exchange.")
                    .build(),
            ),
            (
                "503",
                problem(
                    "The upstream is unavailable: every instance's circuit is open, or the \
                     service has no passing instance; retry after `Retry-After` seconds.",
                )
                .header("Retry-After", retry_after())
                .build(),
            ),
            (
                "504",
                problem("The upstream did not answer within the gateway's timeout.").build(),
            ),
        ]);
    }
    responses
}

/// Add the gateway's answers to an operation's `responses`: where the
/// upstream documents the same status, its response stays and the
/// gateway's reason is added to its description. Every answer but 401/403
/// (refused before the rate limit) may carry the `RateLimit-*` headers.
fn add_gateway_responses(responses: &mut BTreeMap<String, RefOr<Response>>, proxied: bool) {
    for (status, response) in gateway_responses(proxied) {
        match responses.get_mut(status) {
            Some(RefOr::T(existing)) => {
                existing.description = format!(
                    "{} Or from the gateway: {}",
                    existing.description, response.description
                );
                for (name, header) in response.headers {
                    existing.headers.entry(name).or_insert(header);
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                responses.insert(status.to_owned(), RefOr::T(response));
            }
        }
    }
    for (status, response) in responses.iter_mut() {
        if status == "401" || status == "403" {
            continue;
        }
        if let RefOr::T(response) = response {
            for (name, header) in rate_limit_headers() {
                response
                    .headers
                    .entry(name.to_owned())
                    .or_insert(RefOr::T(header));
            }
        }
    }
}

#[cfg(test)]
mod policy_schema_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use utoipa::openapi::{RefOr, schema::Schema};

    #[test]
    fn every_policy_schema_is_an_openapi_schema() {
        for (name, schema) in mcp_shared::policy::openapi_schemas() {
            if let Err(error) = serde_json::from_value::<RefOr<Schema>>(schema.clone()) {
                panic!("{name}: {error}\n{schema}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Each snapshot parses, and nothing is lost on the way: the document
    /// the gateway merges is the one the service's tests wrote.
    #[test]
    fn every_snapshot_parses_without_losing_a_member() {
        let texts = [
            include_str!("../../docs/openapi/registry-svc.json"),
            include_str!("../../docs/openapi/config-svc.json"),
            include_str!("../../docs/openapi/health-svc.json"),
        ];
        assert_eq!(texts.len(), CONTROL_PLANE.len());
        for (text, (area, build)) in texts.iter().zip(CONTROL_PLANE) {
            let stored: serde_json::Value = serde_json::from_str(text).unwrap();
            let parsed = serde_json::to_value(build()).unwrap();
            assert_eq!(parsed, stored, "{area}");
            assert!(!build().paths.paths.is_empty(), "{area}");
        }
    }
}
