//! HTTP handlers: parse and validate the request, call the store, map the answer.
//!
//! Entries are served as the JSON text Redis holds (no decode/encode on
//! reads); writes build the entry text once and the put script stores it.
//!
//! Each handler carries its OpenAPI description (`#[utoipa::path]`);
//! [`operations`] is the one list both the router and the document
//! ([`openapi`]) are built from.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Extension, Path, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_shared::{
    Problem,
    config::{
        ClientList, ClientStatus, ConfigEntry, ConfigHistory, ConfigList, ConfigRollback,
        ConfigWrite, NamespaceList, SchemaDryRun, SyncStatus, WatchScope,
    },
    events::{Event, EventFeed, WatchResponse},
    http::Blocking,
    internal::{Caller, RequireInternalLayer},
    json,
    names::{Key, Name},
    openapi::{
        self as docs, BadRequest, NotFound, OPENAPI_PATH, PayloadTooLarge, StoreFailure,
        Unprocessable,
    },
    problem::{self, FieldError},
    time::{now_rfc3339, rfc3339_ms},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::ConfigError,
    model::{
        MAX_MESSAGE_LEN, MAX_SUBJECT_LEN, Precondition, PutBody, RESERVED_SUFFIXES, ReadQuery,
        StoredEntry, WatchQuery, WriteQuery, compact_json, delete_tail, entry_json, entry_tail,
        etag, event_is_for, parse_etag, stored_version,
    },
    openapi::{
        BlockingQuery, DeleteHeaders, DryRunQuery, EntryOrDryRun, JsonSchema, KeyPath, ListQuery,
        NamespacePath, ReadHeaders, SchemaOrDryRun, WatchEvent, WatchParams, WriteHeaders,
    },
    propagation::{Propagation, parse_record},
    schema::{CompiledSchema, SchemaCache},
    store::{ConfigStore, DeleteOutcome, PutOutcome, PutRequest},
};

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
        .routes(routes!(list_namespaces))
        .routes(routes!(list_keys))
        .routes(routes!(get_key, put_key, delete_key))
        .route(
            KEY_ROUTE,
            axum::routing::post(post_key).fallback(key_method_not_allowed),
        )
        .routes(routes!(get_schema, put_schema, delete_schema))
        .routes(routes!(list_clients))
        .routes(routes!(watch))
}

/// The operations served inside [`KEY_ROUTE`] under their own paths.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(history, rollback),
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
pub fn routes(state: AppState, internal: RequireInternalLayer) -> Router {
    let (router, api) = operations().split_for_parts();
    router
        .route_layer(internal)
        .route(OPENAPI_PATH, docs::serve(&document(api)))
        .with_state(state)
}

// ---------------------------------------------------------------- parsing

fn namespace(raw: &str) -> Result<Name, ConfigError> {
    Name::parse(raw).map_err(|e| ConfigError::invalid("namespace", e.to_string()))
}

fn key(raw: &str) -> Result<Key, ConfigError> {
    Key::parse(raw).map_err(|e| ConfigError::invalid("key", e.to_string()))
}

/// A key that may be written: not ending in a sub-resource name.
fn writable_key(raw: &str) -> Result<Key, ConfigError> {
    let key = key(raw)?;
    if RESERVED_SUFFIXES.iter().any(|s| raw.ends_with(s)) {
        return Err(ConfigError::invalid(
            "key",
            "the last segment of a multi-segment key must not be `history` or `rollback`",
        ));
    }
    Ok(key)
}

/// What a request on [`KEY_ROUTE`] addresses, by the catch-all's suffix.
enum Target<'a> {
    /// The entry of this key.
    Entry(&'a str),
    /// `…/history` of this key.
    History(&'a str),
    /// `…/rollback` of this key.
    Rollback(&'a str),
}

impl<'a> Target<'a> {
    fn of(raw: &'a str) -> Self {
        if let Some(of) = raw.strip_suffix("/history") {
            Self::History(of)
        } else if let Some(of) = raw.strip_suffix("/rollback") {
            Self::Rollback(of)
        } else {
            Self::Entry(raw)
        }
    }

    /// 405 naming the methods this target answers, in `Allow` too.
    fn method_not_allowed(&self, method: &str) -> Response {
        let (what, allow) = match self {
            Self::Entry(_) => ("a key", "GET,HEAD,PUT,DELETE"),
            Self::History(_) => ("…/history", "GET,HEAD"),
            Self::Rollback(_) => ("…/rollback", "POST"),
        };
        let mut response = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {what}; allowed: {allow}"),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    }
}

fn precondition(headers: &HeaderMap) -> Result<Precondition, ConfigError> {
    let text = |name: &HeaderName, field: &str| -> Result<Option<String>, ConfigError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| ConfigError::invalid(field, "must be ASCII"))
            })
            .transpose()
    };
    let if_match = text(&header::IF_MATCH, "If-Match")?;
    let if_none_match = text(&header::IF_NONE_MATCH, "If-None-Match")?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "If-None-Match",
            "use either If-Match or If-None-Match, not both",
        )),
        (Some(m), None) if m == "*" => Ok(Precondition::Exists),
        (Some(m), None) => parse_etag(&m).map(Precondition::Version).ok_or_else(|| {
            ConfigError::invalid(
                "If-Match",
                "must be `*` or one entity tag holding a version, like \"3\"",
            )
        }),
        (None, Some(m)) if m == "*" => Ok(Precondition::Absent),
        (None, Some(_)) => Err(ConfigError::invalid(
            "If-None-Match",
            "only `*` (create only) is supported on writes",
        )),
        (None, None) => Ok(Precondition::None),
    }
}

/// Who writes, as `updated_by`: the subject of the gateway's internal
/// credential (never a plain header), `anonymous` when the token had none.
fn subject(caller: &Caller) -> String {
    match caller.subject.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.chars().take(MAX_SUBJECT_LEN).collect(),
        _ => "anonymous".to_owned(),
    }
}

fn dry_run(query: &WriteQuery) -> Result<bool, ConfigError> {
    match query.dry_run.as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some(_) => Err(ConfigError::invalid("dry_run", "must be true or false")),
    }
}

fn message(message: Option<String>) -> Result<Option<String>, ConfigError> {
    match message {
        Some(m) if m.chars().count() > MAX_MESSAGE_LEN => Err(ConfigError::invalid(
            "message",
            format!("must be at most {MAX_MESSAGE_LEN} characters"),
        )),
        other => Ok(other),
    }
}

fn body_error(e: serde_json::Error) -> ConfigError {
    ConfigError::Body(e.to_string())
}

fn too_deep(e: json::TooDeep) -> ConfigError {
    ConfigError::invalid(e.field.clone(), e.message())
}

/// An answer that does not encode (it cannot happen: the types hold strings
/// and numbers only) is a server fault, not a panic.
fn encode_error(e: serde_json::Error) -> ConfigError {
    ConfigError::Store(mcp_shared::StoreError::Corrupt(format!(
        "cannot encode the answer: {e}"
    )))
}

/// Parse a JSON object body (serde would also take a struct from an array).
/// Too deep a body is refused first (`json::check_depth`: a `RawValue`
/// value skips serde_json's own recursion limit).
fn object<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ConfigError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ConfigError::Body("expected a JSON object".to_owned()));
    }
    json::check_depth(body, json::MAX_DEPTH).map_err(too_deep)?;
    serde_json::from_slice(body).map_err(body_error)
}

/// `?index=&wait=`: `None` for a plain read, `index=0` included (`wait` is
/// checked all the same); the rules are the shared ones of [`Blocking`].
fn blocking(query: &ReadQuery) -> Result<Option<(u64, Duration)>, ConfigError> {
    Blocking::from_values(query.index.as_deref(), query.wait.as_deref())
        .map(|blocking| blocking.map(|b| (b.index, b.wait)))
        .map_err(|e| ConfigError::invalid(e.field, e.message))
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ConfigError> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| ConfigError::invalid("Last-Event-ID", "must be a revision"))
        })
        .transpose()
}

// ---------------------------------------------------------------- responses

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn with_header(mut response: Response, name: HeaderName, value: impl ToString) -> Response {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Count an entry write by outcome and turn it into a response.
fn counted(result: Result<Response, ConfigError>) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    let label = if status.is_success() {
        "ok"
    } else if status == StatusCode::PRECONDITION_FAILED {
        "conflict"
    } else if status.is_client_error() {
        "rejected"
    } else {
        "error"
    };
    metrics::counter!("config_writes_total", "result" => label).increment(1);
    response
}

// ---------------------------------------------------------------- entries

impl AppState {
    /// Validate and write one value (put and rollback): the schema check and
    /// the script's schema-id check make a stale cached schema impossible to use.
    #[allow(clippy::too_many_arguments)]
    async fn write_entry(
        &self,
        ns: &Name,
        key: &Key,
        value_text: &str,
        message: Option<&str>,
        updated_by: &str,
        precondition: Precondition,
        dry_run: bool,
    ) -> Result<Response, ConfigError> {
        let app = &self.inner;
        let value = compact_json(value_text);
        if value.len() > app.max_value_bytes {
            return Err(ConfigError::TooLarge {
                size: value.len(),
                limit: app.max_value_bytes,
            });
        }
        if crate::policy::is_reserved(ns.as_str()) {
            crate::policy::check(&app.store, key.as_str(), &value).await?;
        }
        let tail = entry_tail(ns, key, &value, &now_rfc3339(), updated_by, message);
        let mut parsed: Option<Value> = None;
        let mut schema = app.schemas.get(ns.as_str());
        let mut retry: Option<u64> = None;
        for _ in 0..SCHEMA_ATTEMPTS {
            if let Some(schema) = &schema {
                let instance = match parsed.take() {
                    Some(v) => v,
                    None => serde_json::from_str(&value).map_err(body_error)?,
                };
                let errors = schema.violations(&instance, "/value");
                parsed = Some(instance);
                if !errors.is_empty() {
                    // Refuse only by the current schema: a cached one may be stale.
                    let current = app.store.schema_id(ns.as_str()).await?;
                    if current == schema.id {
                        return Err(ConfigError::SchemaViolation {
                            namespace: ns.to_string(),
                            errors,
                        });
                    }
                    retry = Some(current);
                }
            }
            if let Some(current) = retry.take() {
                schema = self.load_schema(ns.as_str(), current).await?;
                continue;
            }
            let request = PutRequest {
                namespace: ns.as_str(),
                key: key.as_str(),
                precondition,
                schema_id: schema.as_ref().map_or(0, |s| s.id),
                tail: &tail,
                dry_run,
            };
            match app.store.put(&request).await? {
                PutOutcome::Written {
                    version,
                    revision,
                    created,
                } => {
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    let response = json_response(status, entry_json(version, revision, &tail));
                    let response = with_header(response, header::ETAG, etag(version));
                    return Ok(with_header(response, MCP_INDEX, revision));
                }
                PutOutcome::WouldWrite { version, created } => {
                    let body = format!(
                        r#"{{"dry_run":true,"created":{created},"version":{version},{tail}"#
                    );
                    return Ok(json_response(StatusCode::OK, body));
                }
                PutOutcome::PreconditionFailed(current) => {
                    return Err(ConfigError::PreconditionFailed {
                        current: (current > 0).then_some(current),
                    });
                }
                PutOutcome::SchemaChanged(id) => schema = self.load_schema(ns.as_str(), id).await?,
            }
        }
        Err(ConfigError::Contended)
    }

    /// Load, compile and cache the namespace's schema after the script found `id` stored.
    async fn load_schema(
        &self,
        ns: &str,
        id: u64,
    ) -> Result<Option<Arc<CompiledSchema>>, ConfigError> {
        let app = &self.inner;
        let stored = if id == 0 {
            None
        } else {
            app.store.schema(ns).await?
        };
        let Some(stored) = stored else {
            app.schemas.remove(ns);
            return Ok(None);
        };
        let corrupt = |e: String| {
            ConfigError::Store(mcp_shared::StoreError::Corrupt(format!(
                "schema of namespace {ns}: {e}"
            )))
        };
        let value: Value =
            serde_json::from_str(&stored.text).map_err(|e| corrupt(e.to_string()))?;
        let compiled = Arc::new(CompiledSchema::compile(stored.id, &value).map_err(corrupt)?);
        app.schemas.insert(ns, compiled.clone());
        Ok(Some(compiled))
    }
}

/// `PUT …/keys/{key}`: write a value (201 created, 200 replaced).
#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/keys/{*key}", tag = "entries",
    operation_id = "putKey",
    summary = "Write a key's value",
    description = "Stores a new version of the key. `If-Match: \"<version>\"` makes it a \
        compare-and-swap, `If-Match: *` needs the key to exist, `If-None-Match: *` creates only; \
        a failed precondition is `412` and nothing is written. The value must meet the \
        namespace's schema (`422` with the validator's errors). With `dry_run` nothing is \
        written and the answer is what would be.",
    params(KeyPath, DryRunQuery, WriteHeaders),
    request_body(content = ConfigWrite, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced the value (or, with `dry_run`, what would be \
            written).", body = EntryOrDryRun,
            headers(
                ("ETag" = String, description = "`\"<version>\"` of the new version (not on a dry run)."),
                ("X-Mcp-Index" = u64, description = "The revision of the change (not on a dry run)."),
            )),
        (status = 201, description = "Created the key (version 1, or the next after a delete).",
            body = ConfigEntry,
            headers(
                ("ETag" = String, description = "`\"<version>\"` of the new version."),
                ("X-Mcp-Index" = u64, description = "The revision of the change."),
            )),
        BadRequest,
        (status = 409, description = "Namespace `gateway` only: the route answers the same \
            requests as another route; nothing written.", body = Problem,
            content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` / `If-None-Match` failed; nothing written. \
            `current_version` holds the key's version (`null` when absent).", body = Problem,
            content_type = "application/problem+json"),
        PayloadTooLarge, Unprocessable, StoreFailure,
    ),
)]
async fn put_key(
    State(app): State<AppState>,
    Path((ns, key)): Path<(String, String)>,
    Query(query): Query<WriteQuery>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = Target::of(&key);
    if !matches!(target, Target::Entry(_)) {
        return target.method_not_allowed("PUT");
    }
    counted(
        async {
            let ns = namespace(&ns)?;
            let key = writable_key(&key)?;
            let precondition = precondition(&headers)?;
            let dry_run = dry_run(&query)?;
            let body: PutBody<'_> = object(&body)?;
            let value = body
                .value
                .ok_or_else(|| ConfigError::invalid("value", "is required"))?;
            let message = message(body.message)?;
            app.write_entry(
                &ns,
                &key,
                value.get(),
                message.as_deref(),
                &subject(&caller),
                precondition,
                dry_run,
            )
            .await
        }
        .await,
    )
}

/// `GET …/keys/{key}` (and, by suffix, `…/history`).
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/keys/{*key}", tag = "entries",
    operation_id = "getKey",
    summary = "Read a key",
    description = "The entry with its `ETag`. With `index` it is a blocking query: the answer \
        waits until a change of this key passes that revision, or `wait` runs out, and then has \
        the same shape.",
    params(KeyPath, BlockingQuery, ReadHeaders),
    responses(
        (status = 200, description = "The entry.", body = ConfigEntry,
            headers(
                ("ETag" = String, description = "`\"<version>\"`."),
                ("X-Mcp-Index" = u64, description = "The revision this answer reflects."),
            )),
        (status = 304, description = "`If-None-Match` holds the entry's tag.",
            headers(
                ("ETag" = String, description = "`\"<version>\"`."),
                ("X-Mcp-Index" = u64, description = "The revision this answer reflects."),
            )),
        BadRequest,
        (status = 404, description = "No such key.", body = Problem,
            content_type = "application/problem+json",
            headers(("X-Mcp-Index" = u64, description = "The revision this answer reflects."))),
        StoreFailure,
    ),
)]
async fn get_key(
    State(app): State<AppState>,
    Path((ns, raw_key)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, ConfigError> {
    let raw_key = match Target::of(&raw_key) {
        Target::Entry(key) => key,
        Target::History(of) => return history(&app, &namespace(&ns)?, &key(of)?).await,
        rollback @ Target::Rollback(_) => return Ok(rollback.method_not_allowed("GET")),
    };
    let ns = namespace(&ns)?;
    let key = key(raw_key)?;
    if let Some((index, wait)) = blocking(&query)? {
        let (n, k) = (ns.as_str(), key.as_str());
        app.inner
            .feed
            .wait_for_event(index, wait, &app.inner.shutdown, |e: &Event| {
                e.scope == n && event_is_for(&e.data, n, k)
            })
            .await?;
    }
    let (entry, revision) = app.inner.store.get(ns.as_str(), key.as_str()).await?;
    let Some(entry) = entry else {
        let problem = Problem::not_found(format!("no key `{key}` in namespace `{ns}`"));
        return Ok(with_header(problem.into_response(), MCP_INDEX, revision));
    };
    let version = stored_version(&entry).unwrap_or(0);
    let tag = etag(version);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let response = if not_modified {
        problem::empty(StatusCode::NOT_MODIFIED)
    } else {
        json_response(StatusCode::OK, entry)
    };
    let response = with_header(response, header::ETAG, tag);
    Ok(with_header(response, MCP_INDEX, revision))
}

/// `GET …/keys/{key}/history` (served by [`get_key`]).
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/keys/{key}/history", tag = "entries",
    operation_id = "keyHistory",
    summary = "A key's versions, newest first",
    description = "Kept after a delete; the last `CONFIG_HISTORY_LIMIT` (at least 100) versions.",
    params(KeyPath),
    responses(
        (status = 200, description = "The versions.", body = ConfigHistory,
            headers(("ETag" = String, description = "`\"<version>\"` of the newest version."))),
        BadRequest, NotFound, StoreFailure,
    ),
)]
async fn history(app: &AppState, ns: &Name, key: &Key) -> Result<Response, ConfigError> {
    let versions = app.inner.store.history(ns.as_str(), key.as_str()).await?;
    let Some(newest) = versions.first() else {
        return Err(ConfigError::NotFound(format!(
            "no history for key `{key}` in namespace `{ns}`"
        )));
    };
    let tag = etag(stored_version(newest).unwrap_or(0));
    let len = versions.iter().map(|v| v.len() + 1).sum::<usize>() + 96;
    let mut body = String::with_capacity(len);
    body.push_str(&format!(
        r#"{{"namespace":"{ns}","key":"{key}","versions":["#
    ));
    for (i, v) in versions.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(v);
    }
    body.push_str("]}");
    Ok(with_header(
        json_response(StatusCode::OK, body),
        header::ETAG,
        tag,
    ))
}

/// `DELETE …/keys/{key}`: 204; the history stays.
#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/keys/{*key}", tag = "entries",
    operation_id = "deleteKey",
    summary = "Delete a key",
    description = "Removes the key (event `delete`); its history stays and its next write \
        continues the version count. Honours `If-Match`.",
    params(KeyPath, DeleteHeaders),
    responses(
        (status = 204, description = "Deleted.",
            headers(("X-Mcp-Index" = u64, description = "The revision of the change."))),
        BadRequest, NotFound,
        (status = 412, description = "`If-Match` failed; nothing deleted. `current_version` \
            holds the key's version.", body = Problem, content_type = "application/problem+json"),
        StoreFailure,
    ),
)]
async fn delete_key(
    State(app): State<AppState>,
    Path((ns, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let target = Target::of(&key);
    if !matches!(target, Target::Entry(_)) {
        return target.method_not_allowed("DELETE");
    }
    counted(
        async {
            let ns = namespace(&ns)?;
            let key = self::key(&key)?;
            let precondition = precondition(&headers)?;
            let tail = delete_tail(&ns, &key);
            match app
                .inner
                .store
                .delete(ns.as_str(), key.as_str(), precondition, &tail)
                .await?
            {
                DeleteOutcome::Deleted { revision, .. } => Ok(with_header(
                    problem::empty(StatusCode::NO_CONTENT),
                    MCP_INDEX,
                    revision,
                )),
                DeleteOutcome::Missing => Err(ConfigError::NotFound(format!(
                    "no key `{key}` in namespace `{ns}`"
                ))),
                DeleteOutcome::PreconditionFailed(current) => {
                    Err(ConfigError::PreconditionFailed {
                        current: Some(current),
                    })
                }
            }
        }
        .await,
    )
}

/// Any other method on [`KEY_ROUTE`]: 405 with the `Allow` of what the path
/// addresses (axum's own would list every method of the catch-all).
async fn key_method_not_allowed(
    method: Method,
    Path((_, raw_key)): Path<(String, String)>,
) -> Response {
    Target::of(&raw_key).method_not_allowed(method.as_str())
}

/// `POST` on [`KEY_ROUTE`]: only `…/rollback` takes it.
async fn post_key(
    State(app): State<AppState>,
    Path((ns, raw_key)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match Target::of(&raw_key) {
        Target::Rollback(of) => rollback(&app, &ns, of, &caller, &headers, &body).await,
        other => other.method_not_allowed("POST"),
    }
}

/// `POST …/keys/{key}/rollback` (served by [`post_key`]).
#[utoipa::path(
    post, path = "/v1/namespaces/{ns}/keys/{key}/rollback", tag = "entries",
    operation_id = "rollbackKey",
    summary = "Roll a key back to an earlier version",
    description = "Writes a new version whose value is version `version`'s (from the history, \
        also after a delete). Preconditions, schema and size are checked as on a write.",
    params(KeyPath, WriteHeaders),
    request_body(content = ConfigRollback, content_type = "application/json"),
    responses(
        (status = 200, description = "The new version.", body = ConfigEntry,
            headers(
                ("ETag" = String, description = "`\"<version>\"` of the new version."),
                ("X-Mcp-Index" = u64, description = "The revision of the change."),
            )),
        (status = 201, description = "The new version, re-creating a deleted key.", body = ConfigEntry,
            headers(
                ("ETag" = String, description = "`\"<version>\"` of the new version."),
                ("X-Mcp-Index" = u64, description = "The revision of the change."),
            )),
        BadRequest,
        (status = 404, description = "The version is not in the key's history.", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "Namespace `gateway` only: the route answers the same \
            requests as another route; nothing written.", body = Problem,
            content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` / `If-None-Match` failed; nothing written.",
            body = Problem, content_type = "application/problem+json"),
        PayloadTooLarge, Unprocessable, StoreFailure,
    ),
)]
async fn rollback(
    app: &AppState,
    ns: &str,
    raw_key: &str,
    caller: &Caller,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    counted(
        async {
            let ns = namespace(ns)?;
            let key = key(raw_key)?;
            let precondition = precondition(headers)?;
            let body: ConfigRollback = object(body)?;
            let message = message(body.message)?
                .unwrap_or_else(|| format!("rollback to version {}", body.version));
            let versions = app.inner.store.history(ns.as_str(), key.as_str()).await?;
            let target = versions.iter().find_map(|v| {
                serde_json::from_str::<StoredEntry<'_>>(v)
                    .ok()
                    .filter(|e| e.version == body.version)
            });
            let Some(target) = target else {
                return Err(ConfigError::NotFound(format!(
                    "version {} of key `{key}` in namespace `{ns}` is not in its history",
                    body.version
                )));
            };
            app.write_entry(
                &ns,
                &key,
                target.value.get(),
                Some(&message),
                &subject(caller),
                precondition,
                false,
            )
            .await
        }
        .await,
    )
}

/// `GET …/keys?prefix=`, optionally blocking.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/keys", tag = "entries",
    operation_id = "listKeys",
    summary = "List a namespace's entries",
    description = "Sorted by key. With `index` it is a blocking query: the answer waits until a \
        change of this namespace passes that revision, or `wait` runs out.",
    params(NamespacePath, ListQuery),
    responses(
        (status = 200, description = "The entries (an unknown namespace has none).",
            body = ConfigList,
            headers(("X-Mcp-Index" = u64, description = "The revision this answer reflects."))),
        BadRequest, StoreFailure,
    ),
)]
async fn list_keys(
    State(app): State<AppState>,
    Path(ns): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    let prefix = query.prefix.as_deref().unwrap_or("");
    let prefix_ok = prefix.len() <= mcp_shared::names::MAX_NAME_LEN
        && prefix
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/'));
    if !prefix_ok {
        return Err(ConfigError::invalid(
            "prefix",
            "may only contain A-Z a-z 0-9 . _ - / (at most 128)",
        ));
    }
    if let Some((index, wait)) = blocking(&query)? {
        let n = ns.as_str();
        app.inner
            .feed
            .wait_for_event(index, wait, &app.inner.shutdown, |e: &Event| e.scope == n)
            .await?;
    }
    let (mut entries, revision) = app.inner.store.list(ns.as_str()).await?;
    entries.retain(|(k, _)| k.starts_with(prefix));
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let len = entries.iter().map(|(_, e)| e.len() + 1).sum::<usize>() + 96;
    let mut body = String::with_capacity(len);
    body.push_str(&format!(
        r#"{{"namespace":"{ns}","revision":{revision},"entries":["#
    ));
    for (i, (_, entry)) in entries.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(entry);
    }
    body.push_str("]}");
    Ok(with_header(
        json_response(StatusCode::OK, body),
        MCP_INDEX,
        revision,
    ))
}

/// `GET /v1/namespaces`.
#[utoipa::path(
    get, path = "/v1/namespaces", tag = "entries",
    operation_id = "listNamespaces",
    summary = "List namespaces",
    responses(
        (status = 200, description = "Every namespace holding a key or a schema.",
            body = NamespaceList),
        StoreFailure,
    ),
)]
async fn list_namespaces(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ConfigError> {
    let mut namespaces = app.inner.store.namespaces().await?;
    // Only the namespaces the caller's scopes may read (`config:read:{ns}`).
    namespaces.retain(|ns| caller.scopes.may_read(AREA, ns));
    namespaces.sort_unstable();
    let body = serde_json::to_string(&NamespaceList { namespaces }).map_err(encode_error)?;
    Ok(json_response(StatusCode::OK, body))
}

// ---------------------------------------------------------------- schemas

/// `GET …/schema`.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/schema", tag = "schemas",
    operation_id = "getSchema",
    summary = "Read a namespace's JSON Schema",
    params(NamespacePath),
    responses(
        (status = 200, description = "The schema, as stored.", body = JsonSchema,
            headers(("ETag" = String, description = "`\"<id>\"`: changes with every new schema."))),
        BadRequest,
        (status = 404, description = "The namespace has no schema.", body = Problem,
            content_type = "application/problem+json"),
        StoreFailure,
    ),
)]
async fn get_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    let Some(stored) = app.inner.store.schema(ns.as_str()).await? else {
        return Err(ConfigError::NotFound(format!(
            "namespace `{ns}` has no schema"
        )));
    };
    Ok(with_header(
        json_response(StatusCode::OK, stored.text),
        header::ETAG,
        etag(stored.id),
    ))
}

/// `PUT …/schema`: 201 new, 200 replaced.
#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/schema", tag = "schemas",
    operation_id = "putSchema",
    summary = "Set a namespace's JSON Schema",
    description = "Every later write of the namespace must meet it. Refused with `422` when it \
        is not a valid JSON Schema (2020-12) or when values already present break it (`errors` \
        names each key). With `dry_run` nothing is stored.",
    params(NamespacePath, DryRunQuery),
    request_body(content = JsonSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced the schema (or, with `dry_run`, the verdict).",
            body = SchemaOrDryRun,
            headers(("ETag" = String, description = "`\"<id>\"` of the new schema (not on a dry run)."))),
        (status = 201, description = "Set the namespace's first schema.", body = JsonSchema,
            headers(("ETag" = String, description = "`\"<id>\"` of the new schema."))),
        BadRequest,
        (status = 409, description = "Namespace `gateway`: its schema is the project's and \
            cannot be changed.", body = Problem, content_type = "application/problem+json"),
        PayloadTooLarge, Unprocessable, StoreFailure,
    ),
)]
async fn put_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
    Query(query): Query<WriteQuery>,
    body: Bytes,
) -> Result<Response, ConfigError> {
    let inner = &app.inner;
    let ns = namespace(&ns)?;
    refuse_reserved_schema(&ns)?;
    let dry_run = dry_run(&query)?;
    let text = std::str::from_utf8(&body).map_err(|e| ConfigError::Body(e.to_string()))?;
    let text = compact_json(text);
    if text.len() > inner.max_value_bytes {
        return Err(ConfigError::TooLarge {
            size: text.len(),
            limit: inner.max_value_bytes,
        });
    }
    json::check_depth(text.as_bytes(), json::MAX_DEPTH).map_err(too_deep)?;
    let schema: Value = serde_json::from_str(&text).map_err(body_error)?;
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(ConfigError::InvalidSchema(
            "a schema must be a JSON object or boolean".to_owned(),
        ));
    }
    let compiled = CompiledSchema::compile(0, &schema).map_err(ConfigError::InvalidSchema)?;
    for _ in 0..SCHEMA_ATTEMPTS {
        let snapshot = inner.store.snapshot(ns.as_str()).await?;
        let mut broken: Vec<FieldError> = Vec::new();
        for (key, entry) in &snapshot.entries {
            let Ok(stored) = serde_json::from_str::<StoredEntry<'_>>(entry) else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(stored.value.get()) else {
                continue;
            };
            if let Some(first) = compiled.violations(&value, "").first() {
                let at = if first.field.is_empty() {
                    "/"
                } else {
                    &first.field
                };
                broken.push(FieldError::new(
                    key.clone(),
                    format!("{at}: {}", first.message),
                ));
            }
        }
        if !broken.is_empty() {
            broken.sort_by(|a, b| a.field.cmp(&b.field));
            return Err(ConfigError::SchemaBrokenBy { errors: broken });
        }
        if dry_run {
            let verdict = SchemaDryRun {
                dry_run: true,
                namespace: ns.into_string(),
                valid: true,
            };
            let body = serde_json::to_string(&verdict).map_err(encode_error)?;
            return Ok(json_response(StatusCode::OK, body));
        }
        let stored = inner
            .store
            .put_schema(ns.as_str(), &snapshot.ns_revision, &text, &now_rfc3339())
            .await?;
        if let Some((id, created)) = stored {
            let compiled =
                CompiledSchema::compile(id, &schema).map_err(ConfigError::InvalidSchema)?;
            inner.schemas.insert(ns.as_str(), Arc::new(compiled));
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return Ok(with_header(
                json_response(status, text.into_owned()),
                header::ETAG,
                etag(id),
            ));
        }
        // An entry changed while we validated: validate the new state.
    }
    Err(ConfigError::Contended)
}

/// The `gateway` namespace's schema is the project's (see [`crate::policy`]).
fn refuse_reserved_schema(ns: &Name) -> Result<(), ConfigError> {
    if crate::policy::is_reserved(ns.as_str()) {
        return Err(ConfigError::Reserved(format!(
            "the schema of namespace `{ns}` is the gateway policy schema, installed and kept by \
             config-svc; it cannot be replaced or removed"
        )));
    }
    Ok(())
}

/// `DELETE …/schema`: 204.
#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/schema", tag = "schemas",
    operation_id = "deleteSchema",
    summary = "Remove a namespace's JSON Schema",
    params(NamespacePath),
    responses(
        (status = 204, description = "Removed; writes are no longer validated."),
        BadRequest,
        (status = 404, description = "The namespace has no schema.", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "Namespace `gateway`: its schema is the project's and \
            cannot be changed.", body = Problem, content_type = "application/problem+json"),
        StoreFailure,
    ),
)]
async fn delete_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    refuse_reserved_schema(&ns)?;
    if !app.inner.store.delete_schema(ns.as_str()).await? {
        return Err(ConfigError::NotFound(format!(
            "namespace `{ns}` has no schema"
        )));
    }
    app.inner.schemas.remove(ns.as_str());
    Ok(problem::empty(StatusCode::NO_CONTENT))
}

// ---------------------------------------------------------------- watch + propagation

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
async fn watch(
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
    // The asked-for namespace, and in any case only namespaces the caller may read.
    let filter = move |e: &Event| {
        ns.as_deref().is_none_or(|n| e.scope == n) && caller.scopes.may_read(AREA, &e.scope)
    };
    Ok(inner
        .feed
        .open_watch(after, filter, on_delivered, inner.shutdown.clone())
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
async fn list_clients(
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
