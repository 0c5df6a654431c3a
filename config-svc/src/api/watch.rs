//! The watch handlers: the SSE stream of changes (resumable, recorded per
//! client for the propagation status) and the status itself.

use axum::{
    extract::{Extension, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use mcp_shared::{
    config::{ClientList, ClientStatus, SyncStatus, WatchScope},
    events::{Event, WatchResponse},
    internal::Caller,
    names::Name,
    openapi::{BadRequest, StoreFailure},
    time::rfc3339_ms,
};

use super::{
    AREA, AppState,
    params::{encode_error, last_event_id, namespace},
    response::json_response,
};
use crate::{
    error::ConfigError,
    model::WatchQuery,
    openapi::{NamespacePath, WatchEvent, WatchParams},
    propagation::parse_record,
};

/// `GET /v1/watch`: SSE of `put`/`delete` events, resumable with `Last-Event-ID`.
#[utoipa::path(
    get, path = "/v1/watch", tag = "watch",
    operation_id = "watch",
    summary = "Watch configuration changes (Server-Sent Events)",
    description = "A stream of `put` and `delete` events, `id:` = revision. Resume with \
        `Last-Event-ID` without losing an event; the stream stays open until the client or the \
        service goes. With `client_id` the deliveries are recorded for the propagation status.",
    params(WatchParams),
    responses(
        (status = 200, description = "The event stream; each event is described by `WatchEvent`.",
            body = WatchEvent, content_type = "text/event-stream"),
        BadRequest, StoreFailure,
    ),
)]
pub(super) async fn watch(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<WatchQuery>,
    headers: HeaderMap,
) -> Result<WatchResponse, ConfigError> {
    let inner = &app.inner;
    let ns = match query.namespace.as_deref() {
        None | Some("") => None,
        Some(n) => Some(namespace(n)?.into_string()),
    };
    let client = query
        .client_id
        .as_deref()
        .map(|c| Name::parse(c).map_err(|e| ConfigError::invalid("client_id", e.to_string())))
        .transpose()?;
    let after = last_event_id(&headers)?;
    let on_delivered = match client {
        Some(client) => {
            let start = match after {
                Some(after) => after,
                None => inner.feed.log().current_revision().await?,
            };
            Some(
                inner
                    .propagation
                    .track(ns.clone(), client.into_string(), start),
            )
        }
        None => None,
    };
    // The asked-for namespace (its own channel: other namespaces' writes
    // never wake this watch), and only namespaces the caller may read:
    // decided once for a namespace, per event for a watch of all.
    let readable = ns.as_deref().map(|n| caller.scopes.may_read(AREA, n));
    let filter =
        move |e: &Event| readable.unwrap_or_else(|| caller.scopes.may_read(AREA, &e.scope));
    Ok(inner
        .feed
        .open_watch(after, ns, filter, on_delivered)
        .await?)
}

/// `GET …/clients`: the propagation status.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/clients", tag = "watch",
    operation_id = "listClients",
    summary = "Which watching client has received which revision",
    params(NamespacePath),
    responses(
        (status = 200, description = "The clients watching this namespace (or all).",
            body = ClientList),
        BadRequest, StoreFailure,
    ),
)]
pub(super) async fn list_clients(
    State(app): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    let records = app.inner.store.clients(ns.as_str()).await?;
    let latest = records.ns_revision;
    let scoped = records.namespace.iter().map(|r| (WatchScope::Namespace, r));
    let all = records.all.iter().map(|r| (WatchScope::All, r));
    let mut clients: Vec<ClientStatus> = scoped
        .chain(all)
        .filter_map(|(scope, (client, json))| {
            let (revision, at) = parse_record(json)?;
            let in_sync = revision >= latest;
            Some(ClientStatus {
                client_id: client.clone(),
                scope,
                revision,
                delivered_at: rfc3339_ms(at),
                in_sync,
                status: if in_sync {
                    SyncStatus::InSync
                } else {
                    SyncStatus::Lagging
                },
            })
        })
        .collect();
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let body = ClientList {
        namespace: ns.into_string(),
        revision: latest,
        clients,
    };
    let body = serde_json::to_string(&body).map_err(encode_error)?;
    Ok(json_response(StatusCode::OK, body))
}
