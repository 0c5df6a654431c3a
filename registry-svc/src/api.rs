//! The registry's HTTP handlers: parse (path, query, body), call the store
//! or the event feed, map the answer. Each handler carries its OpenAPI
//! description (`#[utoipa::path]`); [`operations`] is the one list both the
//! router and the document ([`openapi`]) are built from.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Extension, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_shared::{
    egress::Egress,
    events::{Event, EventFeed},
    http,
    internal::{Caller, RequireInternalLayer},
    names::Name,
    openapi::{
        self as docs, BadRequest, InstancePath, NotFound, PayloadTooLarge, ServicePath,
        StoreFailure, Unprocessable,
    },
    problem::{self, FieldError},
    registry::{Instance, InstanceList, InstanceSpec, ServiceList, stored_tail},
    time::{now_rfc3339, rfc3339_ms},
};
use tokio_util::sync::CancellationToken;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    discovery::{self, Listing},
    error::ApiError,
    fence::Fences,
    model::{InstanceQuery, Registration, ServicesQuery, WatchQuery},
    openapi::{BlockingQuery, StaleQuery, WatchEvent},
    store::Store,
    view::View,
};

/// The area of the registry's scopes (`registry:read[:{service}]`, …).
pub(crate) const AREA: &str = "registry";

/// The header carrying the registry revision a response reflects (one name
/// for every service: [`mcp_shared::http::INDEX_HEADER`]).
pub use mcp_shared::http::INDEX_HEADER;

/// What every handler shares, behind one `Arc`: axum clones the state for
/// every request, and this makes that one reference count rather than one
/// per field (a `CancellationToken` clone and drop each take a lock).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// The handlers' state.
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// Redis access.
    pub store: Store,
    /// The in-process fan-out of the registry's event log.
    pub feed: EventFeed,
    /// The in-memory view of the registry discovery reads answer from.
    pub view: View,
    /// The fences reads from the view start with (batched).
    pub fences: Fences,
    /// Fires on shutdown: blocking queries answer, watches end.
    pub shutdown: CancellationToken,
    /// The egress rules: an address the proxy and the probes would refuse is
    /// refused at registration already (422 on `host`).
    pub egress: Arc<Egress>,
}

/// The registry's operations (under `/v1`): the one list the router and the
/// OpenAPI document are both built from.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_services))
        .routes(routes!(list_instances))
        .routes(routes!(register, deregister))
        .routes(routes!(heartbeat))
        .routes(routes!(watch))
        .routes(routes!(crate::sd::prometheus))
}

/// The OpenAPI 3.1 document of registry-svc: its operations plus the
/// scaffold's (`/healthz`, `/readyz`, `/metrics`) and `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    document(operations().into_openapi())
}

fn document(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    docs::require_internal(docs::document(
        api,
        "registry-svc",
        env!("CARGO_PKG_VERSION"),
        "Service instances, leases, discovery and watches. Every error is \
         application/problem+json (RFC 9457).",
    ))
}

/// The registry's routes (under `/v1`) and `GET /openapi.json`.
///
/// Every operation needs the gateway's internal credential (`internal`);
/// the document stays open.
pub fn router(internal: RequireInternalLayer) -> Router<AppState> {
    docs::service_router(operations(), document, internal)
}

type Pairs = Query<Vec<(String, String)>>;

fn name(field: &str, value: String) -> Result<Name, ApiError> {
    Name::parse(value).map_err(|e| ApiError::bad_param(field, e))
}

/// A rendered listing as a `200 application/json` with its index header
/// (the same answer `Json` makes, from bytes rendered once and shared).
fn listed(listing: Listing) -> Response {
    with_index(
        listing.revision,
        ([(header::CONTENT_TYPE, "application/json")], listing.body),
    )
}

fn with_index(revision: u64, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(revision));
    response
}

/// `PUT /v1/services/{service}/instances/{id}`: 201 new, 200 replaced.
#[utoipa::path(
    put, path = "/v1/services/{service}/instances/{id}", tag = "registry",
    operation_id = "register",
    summary = "Register (or replace) an instance",
    description = "Registers the instance with a lease of `ttl_seconds`; registering again \
        replaces its definition. Its status starts `unknown` with a `check` (until health-svc \
        checks it), else `passing`.",
    params(InstancePath),
    request_body(content = InstanceSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced an instance that was registered.", body = Instance,
            headers(("X-Mcp-Index" = u64, description = "The registry revision of the change."))),
        (status = 201, description = "Registered a new instance.", body = Instance,
            headers(("X-Mcp-Index" = u64, description = "The registry revision of the change."))),
        BadRequest, PayloadTooLarge, Unprocessable, StoreFailure,
    ),
)]
async fn register(
    State(state): State<AppState>,
    Path((service, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let service = name("service", service)?;
    let id = name("id", id)?;
    let registration = Registration::from_json(&body)?;
    // Only literals (and names when names are off): nothing is looked up here.
    if let Err(refusal) = state
        .egress
        .check_host(&registration.host, registration.port)
    {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "host",
            refusal.to_string(),
        )]));
    }
    let mut instance = registration.into_instance(&service, &id, now_rfc3339());
    let tail = stored_tail(&instance).map_err(|e| {
        ApiError::Store(mcp_shared::StoreError::Corrupt(format!(
            "cannot encode instance: {e}"
        )))
    })?;
    let registered = state
        .store
        .register(
            &service,
            &id,
            &tail,
            instance.ttl_seconds,
            instance.check.is_some(),
        )
        .await?;
    instance.status = registered.status;
    instance.revision = registered.revision;
    instance.expires_at = Some(rfc3339_ms(registered.deadline_ms));
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_index(registered.revision, (status, Json(instance))))
}

/// `PUT /v1/services/{service}/instances/{id}/heartbeat`: the instance with
/// its new `expires_at`; 404 once it is gone.
#[utoipa::path(
    put, path = "/v1/services/{service}/instances/{id}/heartbeat", tag = "registry",
    operation_id = "heartbeat",
    summary = "Renew an instance's lease",
    params(InstancePath),
    responses(
        (status = 200, description = "The instance with its new `expires_at`.", body = Instance),
        BadRequest, NotFound, StoreFailure,
    ),
)]
async fn heartbeat(
    State(state): State<AppState>,
    Path((service, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let service = name("service", service)?;
    let id = name("id", id)?;
    let Some(renewed) = state.store.heartbeat(&service, &id).await? else {
        return Err(ApiError::NotFound(format!(
            "instance `{id}` of service `{service}` is not registered (its lease may have run out); register it again"
        )));
    };
    // Hot path: splice `expires_at` into the stored JSON instead of decoding
    // and re-encoding the instance.
    let stored = renewed.stored.trim_end();
    let body = match stored.strip_suffix('}') {
        Some(open) => format!(
            r#"{open},"expires_at":"{}"}}"#,
            rfc3339_ms(renewed.deadline_ms)
        ),
        None => stored.to_owned(),
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `DELETE /v1/services/{service}/instances/{id}`: 204, or 404 when unknown.
#[utoipa::path(
    delete, path = "/v1/services/{service}/instances/{id}", tag = "registry",
    operation_id = "deregister",
    summary = "Deregister an instance",
    params(InstancePath),
    responses(
        (status = 204, description = "Removed (event `deregistered`).",
            headers(("X-Mcp-Index" = u64, description = "The registry revision of the change."))),
        BadRequest, NotFound, StoreFailure,
    ),
)]
async fn deregister(
    State(state): State<AppState>,
    Path((service, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let service = name("service", service)?;
    let id = name("id", id)?;
    match state.store.deregister(&service, &id).await? {
        Some(revision) => Ok(with_index(revision, problem::empty(StatusCode::NO_CONTENT))),
        None => Err(ApiError::NotFound(format!(
            "instance `{id}` of service `{service}` is not registered"
        ))),
    }
}

/// `GET /v1/services/{service}/instances`, filtered, optionally blocking.
#[utoipa::path(
    get, path = "/v1/services/{service}/instances", tag = "registry",
    operation_id = "listInstances",
    summary = "List a service's instances",
    description = "Filtered by `healthy`, `tag` and `meta.KEY`. With `index` it is a blocking \
        query: the answer waits until a change of this service passes that revision, or `wait` \
        runs out, and then has the same shape. Answered from the replica's in-memory copy of \
        the registry once it has caught up with Redis's revision (so it holds every write \
        acknowledged before the request), or at once from that copy with `stale`.",
    params(ServicePath, InstanceQuery),
    responses(
        (status = 200, description = "The instances (an unknown service has none).",
            body = InstanceList,
            headers(("X-Mcp-Index" = u64, description = "The registry revision this answer reflects."))),
        BadRequest, StoreFailure,
    ),
)]
async fn list_instances(
    State(state): State<AppState>,
    Path(service): Path<String>,
    Query(pairs): Pairs,
) -> Result<Response, ApiError> {
    let service = name("service", service)?;
    let query = InstanceQuery::parse(&pairs)?;
    Ok(listed(
        discovery::instances(&state, &service, &query).await?,
    ))
}

/// `GET /v1/services`, optionally blocking.
#[utoipa::path(
    get, path = "/v1/services", tag = "registry",
    operation_id = "listServices",
    summary = "List services with their instance counts",
    description = "With `index` it is a blocking query: the answer waits until the registry \
        revision passes it, or `wait` runs out. Answered from the replica's in-memory copy of \
        the registry once it has caught up with Redis's revision, or at once with `stale`.",
    params(BlockingQuery, StaleQuery),
    responses(
        (status = 200, description = "Every service with at least one instance.",
            body = ServiceList,
            headers(("X-Mcp-Index" = u64, description = "The registry revision this answer reflects."))),
        BadRequest, StoreFailure,
    ),
)]
async fn list_services(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Pairs,
) -> Result<Response, ApiError> {
    let query = ServicesQuery::parse(&pairs)?;
    // Only the services the caller's scopes may read (`registry:read:{service}`);
    // a blocking query wakes only for a change of one of them.
    let visible = |service: &str| caller.scopes.may_read(AREA, service);
    Ok(listed(discovery::services(&state, &query, visible).await?))
}

/// `GET /v1/watch`: SSE of registry events, resumable with `Last-Event-ID`.
#[utoipa::path(
    get, path = "/v1/watch", tag = "registry",
    operation_id = "watch",
    summary = "Watch registry events (Server-Sent Events)",
    description = "A stream of `registered`, `updated`, `deregistered`, `expired` and `health` \
        events, `id:` = revision. Resume with `Last-Event-ID` (or `index`) without losing an \
        event; the stream stays open until the client or the service goes.",
    params(WatchQuery),
    responses(
        (status = 200, description = "The event stream; each event is described by `WatchEvent`.",
            body = WatchEvent, content_type = "text/event-stream"),
        BadRequest, StoreFailure,
    ),
)]
async fn watch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(pairs): Pairs,
) -> Result<Response, ApiError> {
    let query = WatchQuery::parse(&pairs)?;
    let last_event_id =
        http::last_event_id(&headers).map_err(|e| ApiError::bad_param(e.field, e.message))?;
    let after = last_event_id.or(query.index);
    let service = query.service.map(Name::into_string);
    // The asked-for service (its own channel: other services' events never
    // wake this watch), and only services the caller may read: decided once
    // for a service, per event for a watch of all.
    let readable = service.as_deref().map(|s| caller.scopes.may_read(AREA, s));
    let filter =
        move |event: &Event| readable.unwrap_or_else(|| caller.scopes.may_read(AREA, &event.scope));
    let watch = state.feed.open_watch(after, service, filter, None).await?;
    Ok(watch.into_response())
}
