//! Request parsing for the handlers: names and keys, what the key
//! catch-all addresses ([`Target`]), preconditions, the write and blocking
//! queries, `Last-Event-ID`, and JSON object bodies; each failure is the
//! [`ConfigError`] a client sees.

use std::time::Duration;

use axum::{
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_shared::{
    Problem,
    http::Blocking,
    internal::Caller,
    json,
    names::{Key, Name},
};

use crate::{
    error::ConfigError,
    model::{
        MAX_MESSAGE_LEN, MAX_SUBJECT_LEN, Precondition, RESERVED_SUFFIXES, ReadQuery, WriteQuery,
        parse_etag,
    },
};

pub(super) fn namespace(raw: &str) -> Result<Name, ConfigError> {
    Name::parse(raw).map_err(|e| ConfigError::invalid("namespace", e.to_string()))
}

pub(super) fn key(raw: &str) -> Result<Key, ConfigError> {
    Key::parse(raw).map_err(|e| ConfigError::invalid("key", e.to_string()))
}

/// A key that may be written: not ending in a sub-resource name.
pub(super) fn writable_key(raw: &str) -> Result<Key, ConfigError> {
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
pub(super) enum Target<'a> {
    /// The entry of this key.
    Entry(&'a str),
    /// `…/history` of this key.
    History(&'a str),
    /// `…/rollback` of this key.
    Rollback(&'a str),
}

impl<'a> Target<'a> {
    pub(super) fn of(raw: &'a str) -> Self {
        if let Some(of) = raw.strip_suffix("/history") {
            Self::History(of)
        } else if let Some(of) = raw.strip_suffix("/rollback") {
            Self::Rollback(of)
        } else {
            Self::Entry(raw)
        }
    }

    /// 405 naming the methods this target answers, in `Allow` too.
    pub(super) fn method_not_allowed(&self, method: &str) -> Response {
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

pub(super) fn precondition(headers: &HeaderMap) -> Result<Precondition, ConfigError> {
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
pub(super) fn subject(caller: &Caller) -> String {
    match caller.subject.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.chars().take(MAX_SUBJECT_LEN).collect(),
        _ => "anonymous".to_owned(),
    }
}

pub(super) fn dry_run(query: &WriteQuery) -> Result<bool, ConfigError> {
    query.dry_run.as_deref().map_or(Ok(false), |value| {
        mcp_shared::http::parse_bool("dry_run", value)
            .map_err(|e| ConfigError::invalid(e.field, e.message))
    })
}

pub(super) fn message(message: Option<String>) -> Result<Option<String>, ConfigError> {
    match message {
        Some(m) if m.chars().count() > MAX_MESSAGE_LEN => Err(ConfigError::invalid(
            "message",
            format!("must be at most {MAX_MESSAGE_LEN} characters"),
        )),
        other => Ok(other),
    }
}

pub(super) fn body_error(e: serde_json::Error) -> ConfigError {
    ConfigError::Body(e.to_string())
}

pub(super) fn too_deep(e: json::TooDeep) -> ConfigError {
    ConfigError::invalid(e.field.clone(), e.message())
}

/// An answer that does not encode (it cannot happen: the types hold strings
/// and numbers only) is a server fault, not a panic.
pub(super) fn encode_error(e: serde_json::Error) -> ConfigError {
    ConfigError::Store(mcp_shared::StoreError::Corrupt(format!(
        "cannot encode the answer: {e}"
    )))
}

/// Parse a JSON object body (serde would also take a struct from an array).
/// Too deep a body is refused first (`json::check_depth`: a `RawValue`
/// value skips serde_json's own recursion limit).
pub(super) fn object<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ConfigError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ConfigError::Body("expected a JSON object".to_owned()));
    }
    json::check_depth(body, json::MAX_DEPTH).map_err(too_deep)?;
    serde_json::from_slice(body).map_err(body_error)
}

/// `?index=&wait=`: `None` for a plain read, `index=0` included (`wait` is
/// checked all the same); the rules are the shared ones of [`Blocking`].
pub(super) fn blocking(query: &ReadQuery) -> Result<Option<(u64, Duration)>, ConfigError> {
    Blocking::from_values(query.index.as_deref(), query.wait.as_deref())
        .map(|blocking| blocking.map(|b| (b.index, b.wait)))
        .map_err(|e| ConfigError::invalid(e.field, e.message))
}

pub(super) fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ConfigError> {
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
