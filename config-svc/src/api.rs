//! HTTP handlers: parse and validate the request, call the store, map the answer.
//!
//! Entries are served as the JSON text Redis holds (no decode/encode on
//! reads); writes build the entry text once and the put script stores it.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use mcp_shared::{
    Problem,
    events::{Event, EventFeed, WatchResponse},
    names::{Key, Name},
    problem::{self, FieldError},
    settings::parse_duration,
    time::{now_rfc3339, rfc3339_ms},
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    error::ConfigError,
    model::{
        MAX_MESSAGE_LEN, MAX_SUBJECT_LEN, MAX_WAIT, Precondition, PutBody, RESERVED_SUFFIXES,
        ReadQuery, RollbackBody, StoredEntry, WatchQuery, WriteQuery, compact_json, delete_tail,
        entry_json, entry_tail, etag, event_is_for, parse_etag, stored_version,
    },
    propagation::{Propagation, parse_record},
    schema::{CompiledSchema, SchemaCache},
    store::{ConfigStore, DeleteOutcome, PutOutcome, PutRequest},
};

/// `X-Mcp-Index`: the revision a blocking query resumes from.
pub const MCP_INDEX: HeaderName = HeaderName::from_static("x-mcp-index");
/// The subject the gateway forwards from the JWT.
pub const AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
/// How often a write re-validates after finding the schema changed under it.
const SCHEMA_ATTEMPTS: usize = 4;

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
                feed,
                schemas: SchemaCache::default(),
                propagation,
                max_value_bytes,
                shutdown,
            }),
        }
    }
}

/// The config-svc routes (`/v1/...`).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/namespaces", get(list_namespaces))
        .route("/v1/namespaces/{ns}/keys", get(list_keys))
        .route(
            "/v1/namespaces/{ns}/keys/{*key}",
            get(get_key).put(put_key).delete(delete_key).post(post_key),
        )
        .route(
            "/v1/namespaces/{ns}/schema",
            get(get_schema).put(put_schema).delete(delete_schema),
        )
        .route("/v1/namespaces/{ns}/clients", get(list_clients))
        .route("/v1/watch", get(watch))
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

fn subject(headers: &HeaderMap) -> String {
    match headers
        .get(AUTH_SUBJECT)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
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

/// Parse a JSON object body (serde would also take a struct from an array).
fn object<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ConfigError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ConfigError::Body("expected a JSON object".to_owned()));
    }
    serde_json::from_slice(body).map_err(body_error)
}

/// `?index=&wait=`: `None` for a plain read.
fn blocking(query: &ReadQuery) -> Result<Option<(u64, Duration)>, ConfigError> {
    let Some(index) = query.index.as_deref() else {
        return Ok(None);
    };
    let index = index.parse().map_err(|_| {
        ConfigError::invalid("index", "must be a revision (a non-negative integer)")
    })?;
    let wait = match query.wait.as_deref() {
        None | Some("") => MAX_WAIT,
        Some(w) if w.bytes().all(|b| b.is_ascii_digit()) => {
            Duration::from_secs(w.parse().unwrap_or(u64::MAX))
        }
        Some(w) => parse_duration(w).map_err(|e| ConfigError::invalid("wait", e))?,
    };
    Ok(Some((index, wait.min(MAX_WAIT))))
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

async fn put_key(
    State(app): State<AppState>,
    Path((ns, key)): Path<(String, String)>,
    Query(query): Query<WriteQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
                &subject(&headers),
                precondition,
                dry_run,
            )
            .await
        }
        .await,
    )
}

async fn get_key(
    State(app): State<AppState>,
    Path((ns, raw_key)): Path<(String, String)>,
    Query(query): Query<ReadQuery>,
    headers: HeaderMap,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    if let Some(of) = raw_key.strip_suffix("/history") {
        return history(&app, &ns, &key(of)?).await;
    }
    let key = key(&raw_key)?;
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

async fn delete_key(
    State(app): State<AppState>,
    Path((ns, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
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

/// `POST …/keys/{key}/rollback`; other POSTs on a key are not allowed.
async fn post_key(
    State(app): State<AppState>,
    Path((ns, raw_key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(of) = raw_key.strip_suffix("/rollback") else {
        return Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST is only allowed on …/keys/{key}/rollback",
        )
        .into_response();
    };
    counted(
        async {
            let ns = namespace(&ns)?;
            let key = key(of)?;
            let precondition = precondition(&headers)?;
            let body: RollbackBody = object(&body)?;
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
                &subject(&headers),
                precondition,
                false,
            )
            .await
        }
        .await,
    )
}

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

async fn list_namespaces(State(app): State<AppState>) -> Result<Response, ConfigError> {
    let mut names = app.inner.store.namespaces().await?;
    names.sort_unstable();
    let body = serde_json::json!({ "namespaces": names }).to_string();
    Ok(json_response(StatusCode::OK, body))
}

// ---------------------------------------------------------------- schemas

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

async fn put_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
    Query(query): Query<WriteQuery>,
    body: Bytes,
) -> Result<Response, ConfigError> {
    let inner = &app.inner;
    let ns = namespace(&ns)?;
    let dry_run = dry_run(&query)?;
    let text = std::str::from_utf8(&body).map_err(|e| ConfigError::Body(e.to_string()))?;
    let text = compact_json(text);
    if text.len() > inner.max_value_bytes {
        return Err(ConfigError::TooLarge {
            size: text.len(),
            limit: inner.max_value_bytes,
        });
    }
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
            let body = format!(r#"{{"dry_run":true,"namespace":"{ns}","valid":true}}"#);
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

async fn delete_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    if !app.inner.store.delete_schema(ns.as_str()).await? {
        return Err(ConfigError::NotFound(format!(
            "namespace `{ns}` has no schema"
        )));
    }
    app.inner.schemas.remove(ns.as_str());
    Ok(problem::empty(StatusCode::NO_CONTENT))
}

// ---------------------------------------------------------------- watch + propagation

async fn watch(
    State(app): State<AppState>,
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
    let filter = move |e: &Event| ns.as_deref().is_none_or(|n| e.scope == n);
    Ok(inner
        .feed
        .open_watch(after, filter, on_delivered, inner.shutdown.clone())
        .await?)
}

async fn list_clients(
    State(app): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    let records = app.inner.store.clients(ns.as_str()).await?;
    let latest = records.ns_revision;
    let scoped = records.namespace.iter().map(|r| ("namespace", r));
    let all = records.all.iter().map(|r| ("all", r));
    let mut clients: Vec<Value> = scoped
        .chain(all)
        .filter_map(|(scope, (client, json))| {
            let (revision, at) = parse_record(json)?;
            let in_sync = revision >= latest;
            Some(serde_json::json!({
                "client_id": client,
                "scope": scope,
                "revision": revision,
                "delivered_at": rfc3339_ms(at),
                "in_sync": in_sync,
                "status": if in_sync { "in_sync" } else { "lagging" },
            }))
        })
        .collect();
    clients.sort_by(|a, b| a["client_id"].as_str().cmp(&b["client_id"].as_str()));
    let body = serde_json::json!({
        "namespace": ns.as_str(),
        "revision": latest,
        "clients": clients,
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}
