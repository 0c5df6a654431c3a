//! What comes in over the wire: the registration body (validated field by
//! field so every error names its field) and the query parameters of the
//! listings and the watch. The bodies themselves (the instance, the
//! registration as [`InstanceSpec`](mcp_shared::registry::InstanceSpec), the
//! listings) are in [`mcp_shared::registry`], shared with health-svc, the
//! gateway, the SDK and `mcpctl`; the limits the validation applies are
//! [`mcp_shared::registry::limits`], which the documented schema states too.

use std::{collections::BTreeMap, net::IpAddr};

use mcp_shared::{
    names::Name,
    problem::FieldError,
    registry::{Check, CheckType, HealthStatus, Instance},
};
use serde_json::{Map, Value};

use crate::error::ApiError;

pub use mcp_shared::registry::limits::{
    DEFAULT_CHECK_INTERVAL_SECONDS, DEFAULT_CHECK_TIMEOUT_MS, DEFAULT_TTL_SECONDS,
    MAX_CHECK_INTERVAL_SECONDS, MAX_CHECK_PATH_LEN, MAX_CHECK_TIMEOUT_MS,
    MAX_DEREGISTER_AFTER_SECONDS, MAX_HOST_LEN, MAX_METADATA, MAX_METADATA_VALUE_LEN, MAX_TAG_LEN,
    MAX_TAGS, MAX_TTL_SECONDS,
};

pub use mcp_shared::http::Blocking;
pub use query::{InstanceQuery, ServicesQuery, WatchQuery, parse_revision, parse_services_query};

mod query;

const BODY_FIELDS: &[&str] = &["host", "port", "tags", "metadata", "ttl_seconds", "check"];
const CHECK_FIELDS: &[&str] = &[
    "type",
    "path",
    "interval_seconds",
    "timeout_ms",
    "deregister_critical_after_seconds",
];

/// A validated `PUT …/instances/{id}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Address to reach the instance at.
    pub host: String,
    /// Port to reach it at.
    pub port: u16,
    /// Tags.
    pub tags: Vec<String>,
    /// String metadata.
    pub metadata: BTreeMap<String, String>,
    /// Lease length.
    pub ttl_seconds: u32,
    /// Active check.
    pub check: Option<Check>,
}

/// Field errors collected while validating, so one answer names them all.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }
}

impl Registration {
    /// Parse and validate a body. Not JSON (or not an object, or nested
    /// deeper than `json::MAX_DEPTH`) → 400; any
    /// field wrong, missing or unknown → 422 listing each one.
    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        // Too deep a body → 400 naming its member, before serde recurses.
        mcp_shared::json::check_depth(body, mcp_shared::json::MAX_DEPTH)
            .map_err(|e| ApiError::bad_param(e.field.clone(), e.message()))?;
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::NotJson(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(ApiError::NotJson("expected an object".into()));
        };
        let mut errors = Errors::default();
        unknown_fields(&fields, BODY_FIELDS, "", &mut errors);

        let host = match present(&fields, "host") {
            None => {
                errors.add("host", "is required");
                None
            }
            Some(Value::String(host)) if valid_host(host) => Some(host.clone()),
            Some(_) => {
                errors.add(
                    "host",
                    format!("must be a host name or IP address of 1-{MAX_HOST_LEN} characters"),
                );
                None
            }
        };
        let port = match present(&fields, "port") {
            None => {
                errors.add("port", "is required");
                None
            }
            Some(v) => {
                integer(v, 1, 65_535, "port", &mut errors).and_then(|p| u16::try_from(p).ok())
            }
        };
        let ttl_seconds = match present(&fields, "ttl_seconds") {
            None => Some(DEFAULT_TTL_SECONDS),
            Some(v) => integer(v, 1, MAX_TTL_SECONDS, "ttl_seconds", &mut errors)
                .and_then(|t| u32::try_from(t).ok()),
        };
        let tags = present(&fields, "tags").map_or_else(Vec::new, |v| tags(v, &mut errors));
        let metadata =
            present(&fields, "metadata").map_or_else(BTreeMap::new, |v| metadata(v, &mut errors));
        let check = present(&fields, "check").and_then(|v| check(v, &mut errors));

        match (host, port, ttl_seconds) {
            (Some(host), Some(port), Some(ttl_seconds)) if errors.0.is_empty() => Ok(Self {
                host,
                port,
                tags,
                metadata,
                ttl_seconds,
                check,
            }),
            _ => Err(ApiError::Invalid(errors.0)),
        }
    }

    /// The instance this registration makes, before the store assigns its
    /// status, revision and lease.
    pub fn into_instance(self, service: &Name, id: &Name, registered_at: String) -> Instance {
        Instance {
            status: HealthStatus::Unknown,
            revision: 0,
            id: id.as_str().to_owned(),
            service: service.as_str().to_owned(),
            host: self.host,
            port: self.port,
            tags: self.tags,
            metadata: self.metadata,
            ttl_seconds: self.ttl_seconds,
            check: self.check,
            registered_at,
            expires_at: None,
        }
    }
}

/// A member, with `null` meaning absent (as many clients send optional fields).
fn present<'a>(fields: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    fields.get(name).filter(|v| !v.is_null())
}

fn unknown_fields(fields: &Map<String, Value>, known: &[&str], path: &str, errors: &mut Errors) {
    for key in fields.keys() {
        if !known.contains(&key.as_str()) {
            errors.add(
                format!("{path}{key}"),
                format!("unknown field; expected one of {}", known.join(", ")),
            );
        }
    }
}

/// An integer in `min..=max`, or an error naming `field`.
fn integer(value: &Value, min: u64, max: u64, field: &str, errors: &mut Errors) -> Option<u64> {
    match value.as_u64() {
        Some(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            errors.add(field, format!("must be an integer from {min} to {max}"));
            None
        }
    }
}

/// A host name (labels of letters, digits, `-`, `_`) or an IP address.
fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > MAX_HOST_LEN {
        return false;
    }
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    })
}

/// Free text: non-empty, at most `max` characters, no control characters.
fn valid_text(text: &str, max: usize, allow_empty: bool) -> bool {
    (allow_empty || !text.is_empty())
        && text.chars().count() <= max
        && !text.chars().any(char::is_control)
}

fn tags(value: &Value, errors: &mut Errors) -> Vec<String> {
    let Value::Array(items) = value else {
        errors.add("tags", "must be an array of strings");
        return Vec::new();
    };
    if items.len() > MAX_TAGS {
        errors.add("tags", format!("must hold at most {MAX_TAGS} tags"));
        return Vec::new();
    }
    let mut tags = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(tag) if valid_text(tag, MAX_TAG_LEN, false) => tags.push(tag.clone()),
            _ => errors.add(
                format!("tags[{i}]"),
                format!("must be a string of 1-{MAX_TAG_LEN} printable characters"),
            ),
        }
    }
    tags
}

fn metadata(value: &Value, errors: &mut Errors) -> BTreeMap<String, String> {
    let Value::Object(entries) = value else {
        errors.add("metadata", "must be an object of string values");
        return BTreeMap::new();
    };
    if entries.len() > MAX_METADATA {
        errors.add(
            "metadata",
            format!("must hold at most {MAX_METADATA} entries"),
        );
        return BTreeMap::new();
    }
    let mut metadata = BTreeMap::new();
    for (key, value) in entries {
        if let Err(e) = Name::parse(key.as_str()) {
            errors.add(format!("metadata.{key}"), format!("key {e}"));
            continue;
        }
        match value {
            Value::String(text) if valid_text(text, MAX_METADATA_VALUE_LEN, true) => {
                metadata.insert(key.clone(), text.clone());
            }
            _ => errors.add(
                format!("metadata.{key}"),
                format!(
                    "must be a string of at most {MAX_METADATA_VALUE_LEN} printable characters"
                ),
            ),
        }
    }
    metadata
}

fn check(value: &Value, errors: &mut Errors) -> Option<Check> {
    let Value::Object(fields) = value else {
        errors.add("check", "must be an object with `type` http or tcp");
        return None;
    };
    let before = errors.0.len();
    unknown_fields(fields, CHECK_FIELDS, "check.", errors);
    let kind = match present(fields, "type").and_then(Value::as_str) {
        Some("http") => Some(CheckType::Http),
        Some("tcp") => Some(CheckType::Tcp),
        _ => {
            errors.add("check.type", "must be `http` or `tcp`");
            None
        }
    };
    let path = match (kind, present(fields, "path")) {
        (Some(CheckType::Http), None) => {
            errors.add("check.path", "is required for an http check");
            None
        }
        (Some(CheckType::Http), Some(Value::String(path))) if valid_check_path(path) => {
            Some(path.clone())
        }
        (Some(CheckType::Http), Some(_)) => {
            errors.add(
                "check.path",
                "must be an absolute path starting with a single `/` (no scheme or host)",
            );
            None
        }
        (Some(CheckType::Tcp), Some(_)) => {
            errors.add("check.path", "is not allowed on a tcp check");
            None
        }
        _ => None,
    };
    let interval_seconds = match present(fields, "interval_seconds") {
        None => Some(u64::from(DEFAULT_CHECK_INTERVAL_SECONDS)),
        Some(v) => integer(
            v,
            1,
            MAX_CHECK_INTERVAL_SECONDS,
            "check.interval_seconds",
            errors,
        ),
    };
    let timeout_ms = match present(fields, "timeout_ms") {
        None => Some(u64::from(DEFAULT_CHECK_TIMEOUT_MS)),
        Some(v) => integer(v, 1, MAX_CHECK_TIMEOUT_MS, "check.timeout_ms", errors),
    };
    if let (Some(interval), Some(timeout)) = (interval_seconds, timeout_ms)
        && timeout >= interval * 1000
    {
        errors.add("check.timeout_ms", "must be shorter than the interval");
    }
    let deregister_after = match present(fields, "deregister_critical_after_seconds") {
        None => None,
        Some(v) => integer(
            v,
            1,
            MAX_DEREGISTER_AFTER_SECONDS,
            "check.deregister_critical_after_seconds",
            errors,
        ),
    };
    if errors.0.len() > before {
        return None;
    }
    Some(Check {
        kind: kind?,
        path,
        interval_seconds: u32::try_from(interval_seconds?).ok()?,
        timeout_ms: u32::try_from(timeout_ms?).ok()?,
        deregister_critical_after_seconds: deregister_after.and_then(|s| u32::try_from(s).ok()),
    })
}

/// `/health`, not `//evil.example/x` or `http://…`: health-svc probes only
/// the instance's own host:port.
fn valid_check_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= MAX_CHECK_PATH_LEN
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses() {
        for good in [
            "10.0.0.7",
            "::1",
            "echo.default.svc",
            "my_host-1",
            "localhost",
        ] {
            assert!(valid_host(good), "{good}");
        }
        for bad in ["", "a b", "-a", "a..b", "http://x", "a/b", &"a".repeat(254)] {
            assert!(!valid_host(bad), "{bad}");
        }
    }

    #[test]
    fn check_paths_stay_on_the_instance() {
        assert!(valid_check_path("/health?x=1"));
        for bad in ["health", "//evil/x", "http://x/", "/a b", "/\\x"] {
            assert!(!valid_check_path(bad), "{bad}");
        }
    }

    #[test]
    fn blocking_queries_follow_the_shared_rules() {
        let pairs = |q: &[(&str, &str)]| -> Vec<(String, String)> {
            q.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let b = parse_services_query(&pairs(&[("index", "3"), ("wait", "10m")]));
        assert!(
            matches!(b, Ok(Some(Blocking { index: 3, wait })) if wait == mcp_shared::http::MAX_WAIT)
        );
        let b = parse_services_query(&pairs(&[("index", "3"), ("wait", "")]));
        assert!(matches!(b, Ok(Some(Blocking { wait, .. })) if wait == mcp_shared::http::MAX_WAIT));
        let b = parse_services_query(&pairs(&[("index", "3"), ("wait", "2")]));
        assert!(
            matches!(b, Ok(Some(Blocking { wait, .. })) if wait == std::time::Duration::from_secs(2))
        );
        assert!(matches!(
            parse_services_query(&pairs(&[("index", "0")])),
            Ok(None)
        ));
        assert!(parse_services_query(&pairs(&[("index", "x")])).is_err());
        assert!(parse_services_query(&pairs(&[("index", "1"), ("wait", "soon")])).is_err());
        assert!(matches!(
            parse_services_query(&pairs(&[("wait", "1s")])),
            Ok(None)
        ));
    }

    /// The SDK sends [`InstanceSpec`](mcp_shared::registry::InstanceSpec),
    /// and the document describes the body with its schema, while the
    /// service validates by hand: both read the same bodies the same way.
    /// (Value limits such as a port of 0 or an http check without a path
    /// are the validation's alone; the schema states them.)
    #[test]
    fn the_shared_spec_and_the_validation_agree_on_the_shape_of_a_body() {
        use mcp_shared::registry::InstanceSpec;
        let accepted = [
            r#"{"host":"10.0.0.7","port":9000}"#,
            r#"{"host":"echo.local","port":8080,"tags":["v2"],"metadata":{"zone":"a"},"ttl_seconds":30,
                "check":{"type":"http","path":"/health","interval_seconds":5,"timeout_ms":1000,
                "deregister_critical_after_seconds":60}}"#,
            r#"{"host":"h","port":1,"tags":null,"metadata":null,"ttl_seconds":null,"check":null}"#,
            r#"{"host":"h","port":1,"check":{"type":"tcp"}}"#,
        ];
        for body in accepted {
            let spec: InstanceSpec =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
            let registration = Registration::from_json(body.as_bytes())
                .unwrap_or_else(|_| panic!("{body}: refused"));
            assert_eq!(registration.host, spec.host, "{body}");
            assert_eq!(registration.port, spec.port, "{body}");
            assert_eq!(registration.tags, spec.tags, "{body}");
            assert_eq!(registration.metadata, spec.metadata, "{body}");
            assert_eq!(
                registration.ttl_seconds,
                spec.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS),
                "{body}"
            );
            assert_eq!(registration.check, spec.check, "{body}");
        }
        let refused = [
            "[]",
            r#""h""#,
            "{}",
            r#"{"port":1}"#,
            r#"{"host":"h"}"#,
            r#"{"host":"h","port":1,"zone":"a"}"#,
            r#"{"host":"h","port":"80"}"#,
            r#"{"host":"h","port":70000}"#,
            r#"{"host":"h","port":1,"tags":"v2"}"#,
            r#"{"host":"h","port":1,"metadata":{"a":1}}"#,
            r#"{"host":"h","port":1,"ttl_seconds":"30s"}"#,
            r#"{"host":"h","port":1,"check":{"type":"udp"}}"#,
            r#"{"host":"h","port":1,"check":{"type":"tcp","retries":1}}"#,
        ];
        for body in refused {
            assert!(
                serde_json::from_str::<InstanceSpec>(body).is_err(),
                "the spec takes {body}"
            );
            assert!(
                Registration::from_json(body.as_bytes()).is_err(),
                "the service takes {body}"
            );
        }
    }
}
