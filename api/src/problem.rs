//! RFC 9457 problem details as they travel: the body of every 4xx/5xx MCP
//! answers (`application/problem+json`).
//!
//! [`Problem`] is the wire shape for both sides. The services build their
//! errors with `mcp_shared::Problem` (an HTTP status, `Retry-After`, the one
//! `IntoResponse`), which converts into this type to write the body; the SDK
//! reads this type back. Reading is lenient (every member has a default), so
//! a problem from a proxy that left members out still parses; what the
//! services send always has `type`, `title`, `status` and `detail`, as the
//! documented schema requires.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The `type` of a problem whose status says it all.
pub const ABOUT_BLANK: &str = "about:blank";

/// One field-level validation error, carried in `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// Where the error is: a field name or a JSON pointer (`/value/port`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub field: String,
    /// What is wrong with it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub message: String,
}

impl FieldError {
    /// A field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem: `{"type","title","status","detail"}` plus optional extras.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "type": "https://mcp.dev/problems/bad-request",
    "title": "Bad Request",
    "status": 400,
    "detail": "invalid `service`: must not be empty",
    "errors": [{"field": "service", "message": "must not be empty"}]
})))]
pub struct Problem {
    /// A URI reference naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type", default = "about_blank")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub kind: String,
    /// Short summary of the kind of problem.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub title: String,
    /// The HTTP status code.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 400, maximum = 599, required = true)
    )]
    pub status: u16,
    /// Human-readable explanation of this occurrence.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub detail: String,
    /// Field-level errors, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Extension members (for example `current_version` on a 412).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extensions: serde_json::Map<String, Value>,
}

fn about_blank() -> String {
    ABOUT_BLANK.to_owned()
}

impl std::fmt::Display for Problem {
    /// `412 Precondition Failed: version is 3; field: message`, what a
    /// client shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        for error in &self.errors {
            write!(f, "; {}: {}", error.field, error.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_with_extensions_parses() {
        let problem: Problem = serde_json::from_str(
            r#"{"type":"https://mcp.dev/problems/precondition-failed","title":"Precondition Failed","status":412,"detail":"version is 3","current_version":3}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem.status, 412);
        assert_eq!(
            problem.extensions.get("current_version"),
            Some(&Value::from(3))
        );
        assert_eq!(problem.to_string(), "412 Precondition Failed: version is 3");
    }

    #[test]
    fn missing_members_read_as_defaults_and_empty_ones_are_not_sent() {
        let problem: Problem =
            serde_json::from_str(r#"{"status":502}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(problem.kind, ABOUT_BLANK);
        assert!(problem.errors.is_empty());
        let json = serde_json::to_string(&problem).unwrap_or_default();
        assert_eq!(
            json,
            r#"{"type":"about:blank","title":"","status":502,"detail":""}"#
        );
    }
}
