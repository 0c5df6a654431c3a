//! The entry handlers: read (plain or blocking), write with
//! compare-and-swap, delete, history and rollback of one key (all served on
//! the key catch-all, told apart by [`Target`]), and the listings of keys and
//! namespaces.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Extension, Path, Query, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_shared::{
    Problem,
    config::{ConfigEntry, ConfigHistory, ConfigList, ConfigRollback, ConfigWrite, NamespaceList},
    events::Event,
    internal::Caller,
    names::{Key, Name},
    openapi::{BadRequest, NotFound, PayloadTooLarge, StoreFailure, Unprocessable},
    problem,
    time::now_rfc3339,
};
use serde_json::Value;

use super::{
    AREA, AppState, MCP_INDEX, SCHEMA_ATTEMPTS, params,
    params::{
        Target, blocking, body_error, dry_run, encode_error, key, message, namespace, object,
        precondition, subject, writable_key,
    },
    response::{counted, json_response, with_header},
};
use crate::{
    error::ConfigError,
    model::{
        Precondition, PutBody, ReadQuery, StoredEntry, WriteQuery, compact_json, delete_tail,
        entry_json, entry_tail, etag, event_is_for, stored_version,
    },
    openapi::{
        BlockingQuery, DeleteHeaders, DryRunQuery, EntryOrDryRun, KeyPath, ListQuery,
        NamespacePath, ReadHeaders, WriteHeaders,
    },
    schema::CompiledSchema,
    store::{DeleteOutcome, PutOutcome, PutRequest},
};

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
pub(super) async fn put_key(
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
pub(super) async fn get_key(
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
pub(super) async fn history(app: &AppState, ns: &Name, key: &Key) -> Result<Response, ConfigError> {
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
pub(super) async fn delete_key(
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
            let key = params::key(&key)?;
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
pub(super) async fn key_method_not_allowed(
    method: Method,
    Path((_, raw_key)): Path<(String, String)>,
) -> Response {
    Target::of(&raw_key).method_not_allowed(method.as_str())
}

/// `POST` on [`KEY_ROUTE`]: only `…/rollback` takes it.
pub(super) async fn post_key(
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
pub(super) async fn rollback(
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
pub(super) async fn list_keys(
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
pub(super) async fn list_namespaces(
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
