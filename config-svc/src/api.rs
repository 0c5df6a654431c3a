//! HTTP handlers: parse and validate the request, call the store, map the answer.
//!
//! Entries are served as the JSON text Redis holds (no decode/encode on
//! reads); writes build the entry text once and the put script stores it.
//!
//! Each handler carries its OpenAPI description (`#[utoipa::path]`);
//! [`operations`] is the one list both the router and the document
//! ([`openapi`]) are built from. This module holds the state, the router and
//! the document; the handlers live by concern:
//!
//! - [`entries`]: keys (read, write, delete, history, rollback) and listings.
//! - [`schemas`]: a namespace's JSON Schema.
//! - [`watch`]: the change stream and the propagation status.
//! - [`params`]: request parsing (names, preconditions, queries, bodies).
//! - [`response`]: responses built by hand (JSON text, headers, counted writes).

mod entries;
mod params;
mod response;
mod schemas;
mod watch;

use std::sync::Arc;

use axum::{Router, http::HeaderName};
use mcp_shared::{events::EventFeed, internal::RequireInternalLayer, openapi as docs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{propagation::Propagation, schema::SchemaCache, store::ConfigStore};

/// `X-Mcp-Index`: the revision a blocking query resumes from.
pub const MCP_INDEX: HeaderName = HeaderName::from_static("x-mcp-index");
/// The area of config's scopes (`config:read[:{namespace}]`, …).
const AREA: &str = "config";
/// How often a write re-validates after finding the schema changed under it.
const SCHEMA_ATTEMPTS: usize = 4;

/// The route of a key and its sub-resources `…/history` and `…/rollback`:
/// keys hold `/`, so one catch-all serves them all and the handlers tell them
/// apart by suffix (axum cannot route `{key}/history` beside `{*key}`).
pub const KEY_ROUTE: &str = "/v1/namespaces/{ns}/keys/{*key}";
/// [`KEY_ROUTE`] as the document spells it.
pub const KEY_PATH: &str = "/v1/namespaces/{ns}/keys/{key}";

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: ConfigStore,
    feed: EventFeed,
    schemas: SchemaCache,
    propagation: Arc<Propagation>,
    max_value_bytes: usize,
    shutdown: CancellationToken,
}

impl AppState {
    /// The handlers' state.
    pub fn new(
        store: ConfigStore,
        feed: EventFeed,
        propagation: Arc<Propagation>,
        max_value_bytes: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                schemas: SchemaCache::following(feed.clone()),
                feed,
                propagation,
                max_value_bytes,
                shutdown,
            }),
        }
    }
}

/// The config-svc operations (under `/v1`): the one list the router and the
/// OpenAPI document are both built from.
///
/// The key sub-resources are the one exception axum forces: `…/history`
/// (GET) and `…/rollback` (POST) are served inside [`KEY_ROUTE`] (by
/// `get_key` and `post_key`), so they are documented by `SubResources` and
/// `post_key` (with the 405s of the methods no part of the route takes) is
/// routed by hand.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(SubResources::openapi())
        .routes(routes!(entries::list_namespaces))
        .routes(routes!(entries::list_keys))
        .routes(routes!(
            entries::get_key,
            entries::put_key,
            entries::delete_key
        ))
        .route(
            KEY_ROUTE,
            axum::routing::post(entries::post_key).fallback(entries::key_method_not_allowed),
        )
        .routes(routes!(
            schemas::get_schema,
            schemas::put_schema,
            schemas::delete_schema
        ))
        .routes(routes!(watch::list_clients))
        .routes(routes!(watch::watch))
}

/// The operations served inside [`KEY_ROUTE`] under their own paths.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(entries::history, entries::rollback),
    tags(
        (name = "entries", description = "Versioned entries: read, write (compare-and-swap), delete, history, rollback."),
        (name = "schemas", description = "A namespace's JSON Schema (2020-12) that every value must meet."),
        (name = "watch", description = "Change events (SSE) and which client has received which revision."),
    ),
)]
struct SubResources;

/// The OpenAPI 3.1 document of config-svc: its operations plus the
/// scaffold's (`/healthz`, `/readyz`, `/metrics`) and `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    document(operations().into_openapi())
}

fn document(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    // The catch-all is the key path parameter `{key}` to clients.
    if let Some(item) = api.paths.paths.remove(KEY_ROUTE) {
        api.paths.paths.insert(KEY_PATH.to_owned(), item);
    }
    docs::require_internal(docs::document(
        api,
        "config-svc",
        env!("CARGO_PKG_VERSION"),
        "Versioned configuration with compare-and-swap, history, rollback, JSON Schema \
         validation and watches. Every error is application/problem+json (RFC 9457).",
    ))
}

/// The config-svc routes (`/v1/...`) and `GET /openapi.json`.
///
/// Every operation needs the gateway's internal credential (`internal`);
/// the document stays open.
pub fn router(internal: RequireInternalLayer) -> Router<AppState> {
    docs::service_router(operations(), document, internal)
}
