//! HTTP request pieces that several binaries must read the same way: the
//! header names of the revision protocol ([`INDEX_HEADER`],
//! [`last_event_id`]), boolean query flags ([`parse_bool`]) and, above all,
//! the blocking query (`?index=N&wait=D`, as Consul has it):
//! registry-svc and config-svc hold a read until the revision passes `N` or
//! `D` runs out, and the gateway gives such a request `D` on top of its
//! upstream timeout. If the gateway read the query differently from the
//! services (a literal `wait=` only, while the services percent-decode
//! `%77ait=`; no `wait` at all, which the services read as the default), a
//! read-only client could make ordinary long polls time out at the gateway.
//! So [`Blocking`] is the one parser, and [`parameters`] the one document
//! of it.
//!
//! The rules:
//! - names and values are percent-decoded (`application/x-www-form-urlencoded`,
//!   the decoding axum's `Query` applies), and the last occurrence wins;
//! - `index` is a revision (a non-negative integer); without it, or with
//!   `index=0`, the read answers at once (Consul: index 0 never blocks);
//! - `wait` is `30s`, `500ms`, `5m`, bare seconds or any humantime duration;
//!   absent or empty it is [`DEFAULT_WAIT`]; longer than [`MAX_WAIT`] it is
//!   cut to it; it is validated even without `index`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName};
use utoipa::openapi::{
    ObjectBuilder, Required, Type,
    path::{Parameter, ParameterBuilder, ParameterIn},
};

use crate::problem::FieldError;

/// The response header carrying the revision a read saw (Consul's
/// `X-Consul-Index`): the `index` to pass on the next blocking read.
pub const INDEX_HEADER: HeaderName = HeaderName::from_static("x-mcp-index");

/// The SSE resume header: the revision of the last event the client has.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The revision in `Last-Event-ID`, if the request has one (surrounding
/// blanks allowed, as an `EventSource` may send them).
pub fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, FieldError> {
    headers
        .get(LAST_EVENT_ID)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| FieldError::new("Last-Event-ID", "must be a revision"))
        })
        .transpose()
}

/// A boolean query flag: `true`/`1`, `false`/`0`, or present without a
/// value (`?healthy`, `?dry_run=`), which means true, as Consul's `?passing`.
pub fn parse_bool(field: &str, value: &str) -> Result<bool, FieldError> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(FieldError::new(field, "must be true or false")),
    }
}

/// The document of a [`parse_bool`] flag: the words it takes, not
/// `boolean`, since an empty value (`?healthy=`) also means true and
/// `boolean` would forbid it.
pub fn flag_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["true", "false", "1", "0", ""]))
}

/// Longest a blocking query is held; longer asks are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// How long a blocking query is held when `wait` is absent or empty.
pub const DEFAULT_WAIT: Duration = MAX_WAIT;

/// The common forms of `wait` as the documents state them (bare seconds or
/// a number with `ms`/`s`/`m`/`h`; empty means the default). The parser
/// takes any humantime duration too (`1m 30s`).
pub const WAIT_PATTERN: &str = "^([0-9]{1,9}(ms|s|m|h)?)?$";

/// A blocking query: answer once the revision passes `index`, at most after `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    /// The revision the client already has (never 0: that does not block).
    pub index: u64,
    /// How long to hold the request at most (≤ [`MAX_WAIT`]).
    pub wait: Duration,
}

impl Blocking {
    /// The blocking query of a raw (still percent-encoded) query string:
    /// `None` when the request does not block. Allocates only for a name or
    /// value that actually holds an escape.
    pub fn parse(raw_query: Option<&str>) -> Result<Option<Self>, FieldError> {
        let Some(raw_query) = raw_query else {
            return Self::from_values(None, None);
        };
        let (mut index, mut wait) = (None, None);
        for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
            match &*name {
                "index" => index = Some(value),
                "wait" => wait = Some(value),
                _ => {}
            }
        }
        Self::from_values(index.as_deref(), wait.as_deref())
    }

    /// The blocking query of already decoded `index` and `wait` values (for
    /// services that read every parameter of the query themselves).
    pub fn from_values(
        index: Option<&str>,
        wait: Option<&str>,
    ) -> Result<Option<Self>, FieldError> {
        let wait = match wait {
            None | Some("") => DEFAULT_WAIT,
            Some(wait) => parse_wait(wait)?,
        };
        let Some(index) = index else {
            return Ok(None);
        };
        let index: u64 = index
            .parse()
            .map_err(|_| FieldError::new("index", "must be a revision (a non-negative integer)"))?;
        if index == 0 {
            return Ok(None);
        }
        Ok(Some(Self {
            index,
            wait: wait.min(MAX_WAIT),
        }))
    }
}

/// `30s`, `500ms`, `5m`, bare seconds, or any humantime duration.
fn parse_wait(value: &str) -> Result<Duration, FieldError> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "longer than the cap".
        return Ok(value
            .parse::<u64>()
            .map_or(MAX_WAIT, Duration::from_secs)
            .min(MAX_WAIT));
    }
    humantime::parse_duration(value)
        .map(|wait| wait.min(MAX_WAIT))
        .map_err(|_| FieldError::new("wait", "must be a duration such as 30s, 500ms or 5m"))
}

/// The OpenAPI query parameters `index` and `wait` of a blocking query;
/// `index_description` says what `index` is compared with.
pub fn parameters(index_description: &str) -> Vec<Parameter> {
    let max_wait = MAX_WAIT.as_secs();
    let default_wait = DEFAULT_WAIT.as_secs();
    vec![
        ParameterBuilder::new()
            .name("index")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(format!(
                "{index_description} `0` (or no `index`) answers at once."
            )))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ))
            .build(),
        ParameterBuilder::new()
            .name("wait")
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(format!(
                "Blocking query: the longest to hold the request, as `30s`, `500ms`, `5m` or \
                 bare seconds (any humantime duration such as `1m 30s` is accepted too); \
                 capped at {max_wait} s; absent or empty, {default_wait} s. Without `index` \
                 it has no effect (but is still checked)."
            )))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(WAIT_PATTERN))
                    .examples(["30s", "500ms", "5"]),
            ))
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_of(query: &str) -> Option<Duration> {
        Blocking::parse(Some(query)).ok().flatten().map(|b| b.wait)
    }

    #[test]
    fn names_and_values_are_percent_decoded() {
        assert_eq!(wait_of("index=3&%77ait=2s"), Some(Duration::from_secs(2)));
        assert_eq!(wait_of("%69ndex=3&wait=%31s"), Some(Duration::from_secs(1)));
        assert_eq!(
            wait_of("index=3&wait=1m+30s"),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn absent_or_empty_wait_is_the_default_and_long_ones_are_capped() {
        assert_eq!(wait_of("index=3"), Some(DEFAULT_WAIT));
        assert_eq!(wait_of("index=3&wait="), Some(DEFAULT_WAIT));
        assert_eq!(wait_of("index=3&wait=1h"), Some(MAX_WAIT));
        assert_eq!(
            wait_of("index=3&wait=99999999999999999999999"),
            Some(MAX_WAIT)
        );
        assert_eq!(wait_of("index=3&wait=10"), Some(Duration::from_secs(10)));
    }

    #[test]
    fn index_zero_or_absent_never_blocks_but_wait_is_still_checked() {
        assert_eq!(Blocking::parse(Some("index=0&wait=5m")), Ok(None));
        assert_eq!(Blocking::parse(Some("wait=5m")), Ok(None));
        assert_eq!(Blocking::parse(None), Ok(None));
        assert_eq!(
            Blocking::parse(Some("wait=soon")).map_err(|e| e.field),
            Err("wait".to_owned())
        );
        for bad in ["index=-1", "index=x", "index=", "index=1.5"] {
            assert_eq!(
                Blocking::parse(Some(bad)).map_err(|e| e.field),
                Err("index".to_owned()),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_last_occurrence_wins() {
        assert_eq!(
            Blocking::parse(Some("index=1&wait=1s&index=7&wait=2s")),
            Ok(Some(Blocking {
                index: 7,
                wait: Duration::from_secs(2)
            }))
        );
    }

    #[test]
    fn flags_and_resume_headers_read_one_way() {
        assert_eq!(parse_bool("f", ""), Ok(true));
        assert_eq!(parse_bool("f", "1"), Ok(true));
        assert_eq!(parse_bool("f", "false"), Ok(false));
        assert_eq!(
            parse_bool("f", "yes").map_err(|e| e.field),
            Err("f".to_owned())
        );
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers), Ok(None));
        headers.insert(LAST_EVENT_ID, " 42 ".parse().unwrap());
        assert_eq!(last_event_id(&headers), Ok(Some(42)));
        headers.insert(LAST_EVENT_ID, "x".parse().unwrap());
        assert!(last_event_id(&headers).is_err());
    }
}
