//! Types on the wire and the entry JSON format.
//!
//! An entry is stored and served as one JSON text that always starts with
//! `{"version":V,"revision":R,"namespace":"…","key":"…",` and carries the
//! client's value as opaque JSON text (never decoded and re-encoded, so big
//! numbers and key order survive). The Lua scripts write the
//! version/revision prefix; [`entry_tail`] builds the rest. The text is a
//! [`ConfigEntry`](mcp_shared::config::ConfigEntry) (the type the document
//! describes and the SDK reads), member for member and in its order: the
//! tests below and `tests/openapi.rs` check that.
//!
//! The bodies on the wire are the shared types of [`mcp_shared::config`];
//! what is here is how this service reads and writes them fast.

use std::borrow::Cow;

pub use mcp_shared::config::MAX_MESSAGE_LEN;
use mcp_shared::names::{Key, Name};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The longest `updated_by` kept (longer subjects are cut).
pub const MAX_SUBJECT_LEN: usize = 256;
/// Key suffixes that address sub-resources (`…/history`, `…/rollback`).
pub const RESERVED_SUFFIXES: [&str; 2] = ["/history", "/rollback"];

/// Body of `PUT /v1/namespaces/{ns}/keys/{key}`, read without copying the
/// value: the fast twin of the documented body,
/// [`ConfigWrite`](mcp_shared::config::ConfigWrite), which the SDK sends.
/// The tests below hold the two to the same bodies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody<'a> {
    /// Any JSON, kept as the client's text. `null` is a value, so presence
    /// is tracked apart from JSON null.
    #[serde(default, borrow, deserialize_with = "present")]
    pub value: Option<&'a RawValue>,
    /// Why the change was made (shown in the history).
    #[serde(default)]
    pub message: Option<String>,
}

fn present<'de, D>(d: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&'de RawValue>::deserialize(d).map(Some)
}

/// The parts of a stored entry the service itself reads (history, schema checks).
#[derive(Debug, Deserialize)]
pub struct StoredEntry<'a> {
    /// The key's version.
    pub version: u64,
    /// The value as stored.
    #[serde(borrow)]
    pub value: &'a RawValue,
}

/// An HTTP precondition on a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional.
    None,
    /// `If-Match: *`: the key must exist.
    Exists,
    /// `If-None-Match: *`: the key must not exist (create only).
    Absent,
    /// `If-Match: "<version>"`: compare-and-swap.
    Version(u64),
}

impl Precondition {
    /// The script argument (see `lua/put.lua`).
    pub fn as_arg(self) -> Cow<'static, str> {
        match self {
            Self::None => Cow::Borrowed(""),
            Self::Exists => Cow::Borrowed("exists"),
            Self::Absent => Cow::Borrowed("absent"),
            Self::Version(v) => Cow::Owned(v.to_string()),
        }
    }
}

/// Parse an entity tag `"<version>"` (strong, digits only).
pub fn parse_etag(value: &str) -> Option<u64> {
    let inner = value.trim().strip_prefix('"')?.strip_suffix('"')?;
    if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    inner.parse().ok()
}

/// The `ETag` header value of a version.
pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// The version of a stored entry, read from its fixed prefix without parsing the JSON.
pub fn stored_version(entry: &str) -> Option<u64> {
    let rest = entry.strip_prefix(r#"{"version":"#)?;
    let end = rest.find(',')?;
    rest[..end].parse().ok()
}

/// The revision of a stored entry or delete event, from its fixed prefix.
pub fn stored_revision(entry: &str) -> Option<u64> {
    let rest = entry.strip_prefix(r#"{"version":"#)?;
    let rest = &rest[rest.find(',')? + 1..];
    let rest = rest.strip_prefix(r#""revision":"#)?;
    let end = rest.find([',', '}'])?;
    rest[..end].parse().ok()
}

/// Whether a `put`/`delete` event's data is about `namespace`/`key`.
/// The data starts `{"version":V,"revision":R,"namespace":"ns","key":"k"` and
/// names hold no `"`, so a prefix comparison is exact.
pub fn event_is_for(data: &str, namespace: &str, key: &str) -> bool {
    let Some(at) = data.find(r#","namespace":""#) else {
        return false;
    };
    let rest = &data[at + r#","namespace":""#.len()..];
    let Some(rest) = rest.strip_prefix(namespace) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(r#"","key":""#) else {
        return false;
    };
    rest.strip_prefix(key).is_some_and(|r| r.starts_with('"'))
}

/// The entry JSON after the `{"version":V,"revision":R,` prefix.
/// Names are validated (`A-Za-z0-9._-/`), so they need no escaping.
pub fn entry_tail(
    namespace: &Name,
    key: &Key,
    value: &str,
    updated_at: &str,
    updated_by: &str,
    message: Option<&str>,
) -> String {
    let by = serde_json::to_string(updated_by).unwrap_or_else(|_| "\"anonymous\"".to_owned());
    let message = match message {
        Some(m) => serde_json::to_string(m).unwrap_or_else(|_| "null".to_owned()),
        None => "null".to_owned(),
    };
    let mut tail = String::with_capacity(value.len() + by.len() + message.len() + 160);
    tail.push_str(r#""namespace":""#);
    tail.push_str(namespace.as_str());
    tail.push_str(r#"","key":""#);
    tail.push_str(key.as_str());
    tail.push_str(r#"","value":"#);
    tail.push_str(value);
    tail.push_str(r#","updated_at":""#);
    tail.push_str(updated_at);
    tail.push_str(r#"","updated_by":"#);
    tail.push_str(&by);
    tail.push_str(r#","message":"#);
    tail.push_str(&message);
    tail.push('}');
    tail
}

/// The full entry JSON, as the script stores it.
pub fn entry_json(version: u64, revision: u64, tail: &str) -> String {
    let mut entry = String::with_capacity(tail.len() + 48);
    entry.push_str(r#"{"version":"#);
    entry.push_str(&version.to_string());
    entry.push_str(r#","revision":"#);
    entry.push_str(&revision.to_string());
    entry.push(',');
    entry.push_str(tail);
    entry
}

/// The delete event's data after its version/revision prefix.
pub fn delete_tail(namespace: &Name, key: &Key) -> String {
    format!(r#","namespace":"{namespace}","key":"{key}"}}"#)
}

/// Remove insignificant whitespace from valid JSON text, without decoding it.
/// Borrows when there is nothing to remove (the usual case).
pub fn compact_json(text: &str) -> Cow<'_, str> {
    let has_space = {
        let mut in_string = false;
        let mut escaped = false;
        text.bytes().any(|b| {
            if in_string {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_string = false;
                }
                false
            } else if b == b'"' {
                in_string = true;
                false
            } else {
                matches!(b, b' ' | b'\t' | b'\n' | b'\r')
            }
        })
    };
    if !has_space {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            out.push(c);
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Query of `GET …/keys/{key}` and `GET …/keys`: blocking query and prefix.
#[derive(Debug, Default, Deserialize)]
pub struct ReadQuery {
    /// Wait until a change after this revision.
    pub index: Option<String>,
    /// How long to wait (`30s`, `5m`, or seconds); read by [`mcp_shared::http::Blocking`].
    pub wait: Option<String>,
    /// Only keys starting with this (list only).
    pub prefix: Option<String>,
}

/// Query of writes.
#[derive(Debug, Default, Deserialize)]
pub struct WriteQuery {
    /// `true`: validate and answer without writing.
    pub dry_run: Option<String>,
}

/// Query of `GET /v1/watch`.
#[derive(Debug, Default, Deserialize)]
pub struct WatchQuery {
    /// Only events of this namespace.
    pub namespace: Option<String>,
    /// The watcher's name, for the propagation status.
    pub client_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strong_numeric_etags_only() {
        assert_eq!(parse_etag("\"12\""), Some(12));
        for bad in ["12", "W/\"1\"", "\"\"", "\"a\"", "\"1\", \"2\"", "garbage"] {
            assert_eq!(parse_etag(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_prefix_fields() {
        let e = r#"{"version":3,"revision":17,"namespace":"n","key":"a/b","value":1}"#;
        assert_eq!(stored_version(e), Some(3));
        assert_eq!(stored_revision(e), Some(17));
        assert!(event_is_for(e, "n", "a/b"));
        assert!(!event_is_for(e, "n", "a"));
        assert!(!event_is_for(e, "m", "a/b"));
    }

    #[test]
    fn compacts_outside_strings_only() {
        assert_eq!(compact_json("[1, 2]"), "[1,2]");
        assert_eq!(
            compact_json(r#"{ "a b": " \" x " }"#),
            r#"{"a b":" \" x "}"#
        );
        assert!(matches!(compact_json("[1,2]"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_stored_entry_is_the_shared_config_entry_member_for_member() {
        use mcp_shared::config::ConfigEntry;
        let (ns, key) = (Name::parse("app").unwrap(), Key::parse("db/pool").unwrap());
        for message in [None, Some("why \"now\"\n")] {
            let tail = entry_tail(
                &ns,
                &key,
                r#"{"idle":[1,2.5,null],"max":10}"#,
                "2025-01-01T00:00:00.000Z",
                "alice",
                message,
            );
            let stored = entry_json(3, 17, &tail);
            let entry: ConfigEntry = serde_json::from_str(&stored).unwrap();
            assert_eq!(entry.message.as_deref(), message);
            // The shared type writes the very text the service stores (the
            // value's members are sorted here, as `Value` sorts them).
            assert_eq!(serde_json::to_string(&entry).unwrap(), stored);
        }
    }

    /// The document (and the SDK) describe the write body as the shared
    /// `ConfigWrite`; the handler reads it as [`PutBody`]. Both behind the
    /// handler's "a JSON object" check, they take and refuse the same bodies.
    #[test]
    fn the_fast_put_body_takes_exactly_the_bodies_the_shared_one_does() {
        use mcp_shared::config::ConfigWrite;
        let fast = |body: &str| -> Option<(String, Option<String>)> {
            let body: PutBody<'_> = serde_json::from_str(body).ok()?;
            Some((body.value?.get().to_owned(), body.message))
        };
        let shared = |body: &str| -> Option<(String, Option<String>)> {
            let body: ConfigWrite = serde_json::from_str(body).ok()?;
            Some((body.value.get().to_owned(), body.message))
        };
        let samples = [
            r#"{"value":1}"#,
            r#"{"value":null}"#,
            r#"{"value":{"b":[1,2],"a":"x"},"message":"m"}"#,
            r#"{"message":null,"value":"x"}"#,
            r#"{ "value" : [ 1 , 2 ] }"#,
            r#"{}"#,
            r#"{"message":"m"}"#,
            r#"{"value":1,"extra":2}"#,
            r#"{"value":1,"message":3}"#,
            r#"{"value":1,"value":2}"#,
            r#"{"value":}"#,
        ];
        for body in samples {
            assert_eq!(fast(body), shared(body), "{body}");
        }
        assert!(fast(samples[2]).is_some());
    }
}
