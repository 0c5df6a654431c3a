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

use mcp_shared::openapi::{self as docs, name_parameter};
use utoipa::{
    OpenApi as _,
    openapi::{
        ObjectBuilder, OpenApi, RefOr, Type,
        path::{ParameterBuilder, ParameterIn},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

mod gate;
mod merge;
mod snapshot;

use gate::gate;
use merge::merge_area;
use snapshot::snapshot;

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
