//! Consul's KV store on a config-svc namespace (`CONSUL_KV_NAMESPACE`,
//! `consul-kv` by default): Consul key `a/b` is config key `a/b` there.
//!
//! - Values: a PUT's body must be UTF-8 text (binary values answer 501); it
//!   is stored as a JSON string, so native readers see the text. Read back,
//!   a JSON string is its text, any other JSON value (written natively) its
//!   compact JSON text. `Value` is that text in base64; `?raw` answers it
//!   as it is.
//! - Indexes: `ModifyIndex` (and `CreateIndex`, which MCP does not keep
//!   apart) is the entry's `revision`, the config store's global revision
//!   of its last write; `X-Consul-Index` is the store revision of the
//!   answer. `?cas=N` reads the entry and writes with config-svc's
//!   `If-Match: "<version>"` only if its revision is `N` (`cas=0`:
//!   `If-None-Match: *`, create only), so a write in between fails the
//!   precondition and the answer is `false`.
//! - `?recurse` and `?keys` (with `separator`) list by prefix; blocking
//!   queries block on the key (or on the namespace for a listing).
//! - Not supported (501): `flags` other than 0, sessions (`acquire`,
//!   `release`), recursive deletes.
//!
//! Scopes: `config:read` / `config:write` on the namespace, as natively.

use axum::{
    Extension,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::Response,
};
use mcp_shared::config::{ConfigEntry, ConfigList};
use serde_json::{Value, json};

use super::{
    ConsulState, Native, ReadQuery, Refusal, Reply, base64, call, encode, encode_path, indexed,
    indexed_json, require,
};
use crate::auth::Principal;

type Pairs = Query<Vec<(String, String)>>;

fn flag(pairs: &[(String, String)], name: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == name && !matches!(v.as_str(), "false" | "0"))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The native path of the namespace's keys (`…/keys`).
fn keys_path(state: &ConsulState) -> String {
    format!(
        "/api/v1/config/namespaces/{}/keys",
        encode(&state.kv_namespace)
    )
}

/// The native path of `key`; keys ending in `history` or `rollback` name a
/// config key's sub-resources natively and are refused.
fn key_path(state: &ConsulState, key: &str) -> Result<String, Refusal> {
    if key.is_empty() {
        return Err(Refusal::invalid("key", "is required"));
    }
    let last = key.rsplit('/').next().unwrap_or(key);
    if key.contains('/') && matches!(last, "history" | "rollback") {
        return Err(Refusal::invalid(
            "key",
            "may not end in `/history` or `/rollback` (config-svc's sub-resources)",
        ));
    }
    Ok(format!("{}/{}", keys_path(state), encode_path(key)))
}

/// The text of a stored value (see the module docs).
fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn entry_json(entry: &ConfigEntry) -> Value {
    json!({
        "LockIndex": 0, "Key": entry.key, "Flags": 0,
        "Value": base64(value_text(&entry.value).as_bytes()),
        "CreateIndex": entry.revision, "ModifyIndex": entry.revision,
    })
}

/// A Consul 404: empty, with the index (clients block on it).
fn not_found(index: u64) -> Response {
    let mut response = indexed(index, "text/plain; charset=utf-8", "");
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// `GET /v1/kv/` (the root: only with `?recurse` or `?keys`).
pub async fn get_root(
    state: State<ConsulState>,
    principal: Extension<Principal>,
    pairs: Pairs,
) -> Reply {
    get(state, principal, Path(String::new()), pairs).await
}

/// `GET /v1/kv/{key}` (`recurse`, `keys`, `separator`, `raw`, blocking).
pub async fn get(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
    Query(pairs): Pairs,
) -> Reply {
    let read = ReadQuery::parse(&pairs, &state)?;
    let blocking = read.native();
    if flag(&pairs, "recurse") || flag(&pairs, "keys") {
        let path = keys_path(&state);
        require(&principal, &Method::GET, &path)?;
        let mut query = format!("prefix={}", encode(&key));
        if !blocking.is_empty() {
            query = format!("{query}&{blocking}");
        }
        let native = call(
            &state,
            &principal,
            Method::GET,
            &format!("{path}?{query}"),
            &[],
            None,
        )
        .await?;
        if !native.status.is_success() {
            return Err(native.pass_on());
        }
        let index = native.index.unwrap_or(0);
        let list: ConfigList = native.json()?;
        if list.entries.is_empty() {
            return Ok(not_found(index));
        }
        if flag(&pairs, "keys") {
            let separator = param(&pairs, "separator").unwrap_or("");
            let mut keys: Vec<String> = list
                .entries
                .iter()
                .map(|e| {
                    let rest = e.key.get(key.len()..).unwrap_or("");
                    match rest.find(separator).filter(|_| !separator.is_empty()) {
                        Some(at) => format!("{key}{}", &rest[..at + separator.len()]),
                        None => e.key.clone(),
                    }
                })
                .collect();
            keys.dedup();
            return Ok(indexed_json(index, &json!(keys)));
        }
        let entries: Vec<Value> = list.entries.iter().map(entry_json).collect();
        return Ok(indexed_json(index, &Value::Array(entries)));
    }
    let path = key_path(&state, &key)?;
    require(&principal, &Method::GET, &path)?;
    let uri = if blocking.is_empty() {
        path
    } else {
        format!("{path}?{blocking}")
    };
    let native = call(&state, &principal, Method::GET, &uri, &[], None).await?;
    let index = native.index.unwrap_or(0);
    if native.status == StatusCode::NOT_FOUND && native.index.is_some() {
        return Ok(not_found(index));
    }
    if !native.status.is_success() {
        return Err(native.pass_on());
    }
    let entry: ConfigEntry = native.json()?;
    if flag(&pairs, "raw") {
        return Ok(indexed(
            index,
            "text/plain; charset=utf-8",
            value_text(&entry.value),
        ));
    }
    Ok(indexed_json(index, &json!([entry_json(&entry)])))
}

/// The current entry of `key`, if any (for `cas`).
async fn current(
    state: &ConsulState,
    principal: &Principal,
    path: &str,
) -> Result<Option<ConfigEntry>, Refusal> {
    let native: Native = call(state, principal, Method::GET, path, &[], None).await?;
    match native.status {
        StatusCode::NOT_FOUND => Ok(None),
        status if status.is_success() => native.json().map(Some),
        _ => Err(native.pass_on()),
    }
}

/// The precondition header of `?cas=N`, or `None` when it already failed.
async fn cas_header(
    state: &ConsulState,
    principal: &Principal,
    path: &str,
    cas: Option<&str>,
    create_only: bool,
) -> Result<Option<Vec<(HeaderName, HeaderValue)>>, Refusal> {
    let Some(cas) = cas else {
        return Ok(Some(vec![]));
    };
    let cas: u64 = cas
        .parse()
        .map_err(|_| Refusal::invalid("cas", "must be a non-negative integer"))?;
    if cas == 0 {
        if !create_only {
            return Ok(None);
        }
        return Ok(Some(vec![(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("*"),
        )]));
    }
    match current(state, principal, path).await? {
        Some(entry) if entry.revision == cas => {
            let tag = HeaderValue::from_str(&format!("\"{}\"", entry.version))
                .map_err(|_| Refusal::invalid("cas", "unusable version"))?;
            Ok(Some(vec![(header::IF_MATCH, tag)]))
        }
        _ => Ok(None),
    }
}

fn boolean(value: bool) -> Response {
    let mut response = Response::new(axum::body::Body::from(if value { "true" } else { "false" }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `PUT /v1/kv/`: a key is required.
pub async fn put_root() -> Reply {
    Err(Refusal::invalid("key", "is required"))
}

/// `PUT /v1/kv/{key}` (`cas`): `true`, or `false` when `cas` failed.
pub async fn put(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
    Query(pairs): Pairs,
    body: Bytes,
) -> Reply {
    ReadQuery::parse(&pairs, &state)?;
    if param(&pairs, "flags").is_some_and(|f| f != "0") {
        return Err(Refusal::unsupported("KV flags"));
    }
    for session in ["acquire", "release"] {
        if param(&pairs, session).is_some() {
            return Err(Refusal::unsupported("sessions (`acquire`, `release`)"));
        }
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| Refusal::unsupported("binary (non-UTF-8) KV values"))?;
    let path = key_path(&state, &key)?;
    require(&principal, &Method::PUT, &path)?;
    let Some(headers) = cas_header(&state, &principal, &path, param(&pairs, "cas"), true).await?
    else {
        return Ok(boolean(false));
    };
    let write = json!({"value": text, "message": "consul kv put"});
    let native = call(
        &state,
        &principal,
        Method::PUT,
        &path,
        &headers,
        Some(write.to_string().into_bytes()),
    )
    .await?;
    match native.status {
        StatusCode::PRECONDITION_FAILED => Ok(boolean(false)),
        status if status.is_success() => Ok(boolean(true)),
        _ => Err(native.pass_on()),
    }
}

/// `DELETE /v1/kv/`: only recursive deletes name the root, and those are
/// not supported.
pub async fn delete_root() -> Reply {
    Err(Refusal::unsupported("recursive KV deletes"))
}

/// `DELETE /v1/kv/{key}` (`cas`): `true` (also for a key that is not
/// there, as Consul answers), `false` when `cas` failed.
pub async fn delete(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Path(key): Path<String>,
    Query(pairs): Pairs,
) -> Reply {
    ReadQuery::parse(&pairs, &state)?;
    if flag(&pairs, "recurse") {
        return Err(Refusal::unsupported("recursive KV deletes"));
    }
    let path = key_path(&state, &key)?;
    require(&principal, &Method::DELETE, &path)?;
    let Some(headers) = cas_header(&state, &principal, &path, param(&pairs, "cas"), false).await?
    else {
        return Ok(boolean(false));
    };
    let native = call(&state, &principal, Method::DELETE, &path, &headers, None).await?;
    match native.status {
        StatusCode::PRECONDITION_FAILED => Ok(boolean(false)),
        StatusCode::NOT_FOUND => Ok(boolean(true)),
        status if status.is_success() => Ok(boolean(true)),
        _ => Err(native.pass_on()),
    }
}
