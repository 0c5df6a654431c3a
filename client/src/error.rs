//! The SDK's one error type.
//!
//! Every 4xx/5xx MCP answers is RFC 9457 problem+json; [`Error::Api`] carries
//! it as [`ProblemDetails`] so callers can match on the status and show the
//! server's own `detail`. `mcp_shared::Problem` is the server side (it builds
//! responses and only serializes); this is its deserializable mirror.

use serde::Deserialize;
use serde_json::Value;

/// One field-level validation error of a problem (`errors[]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FieldError {
    /// The field or JSON pointer.
    #[serde(default)]
    pub field: String,
    /// What is wrong with it.
    #[serde(default)]
    pub message: String,
}

/// An RFC 9457 problem as the client receives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProblemDetails {
    /// URI reference naming the kind of problem.
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// Short summary.
    #[serde(default)]
    pub title: String,
    /// HTTP status code.
    #[serde(default)]
    pub status: u16,
    /// Explanation of this occurrence.
    #[serde(default)]
    pub detail: String,
    /// Field-level errors of a validation problem.
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// Any other member (for example `current_version` on a 412).
    #[serde(flatten)]
    pub extensions: serde_json::Map<String, Value>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl ProblemDetails {
    /// Build one from a status and a body that was not problem+json (a proxy's
    /// plain-text error page), so callers still see one shape.
    pub fn from_status(status: u16, body: &str) -> Self {
        let reason = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Error");
        Self {
            kind: about_blank(),
            title: reason.to_owned(),
            status,
            detail: body.trim().chars().take(512).collect(),
            errors: Vec::new(),
            extensions: serde_json::Map::new(),
        }
    }
}

impl std::fmt::Display for ProblemDetails {
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

/// What can go wrong talking to MCP.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error status (problem+json).
    #[error("{problem}")]
    Api {
        /// The problem the server sent (boxed: keeps `Result<_, Error>` small).
        problem: Box<ProblemDetails>,
        /// `Retry-After` in seconds, when the server sent one (429, 503).
        retry_after: Option<u64>,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach {url}: {reason}")]
    Transport {
        /// The URL that was called.
        url: String,
        /// The transport error, rendered with its causes.
        reason: String,
    },
    /// The server answered 2xx but with a body this SDK does not understand.
    #[error("unexpected response from {url}: {reason}")]
    Decode {
        /// The URL that was called.
        url: String,
        /// Why it did not parse.
        reason: String,
    },
    /// A base URL or argument that cannot form a request.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { problem, .. } => Some(problem.status),
            _ => None,
        }
    }

    /// True for a 404 (unknown instance, key, service).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// True when retrying later may help: transport errors, 429, 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { problem, .. } => problem.status == 429 || problem.status >= 500,
            _ => false,
        }
    }

    pub(crate) fn transport(url: &str, error: &reqwest::Error) -> Self {
        Self::Transport {
            url: url.to_owned(),
            reason: chain(error),
        }
    }
}

/// An error with its sources, `a: b: c`, deduplicated (reqwest repeats itself).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_with_extensions_parses() {
        let problem: ProblemDetails = serde_json::from_str(
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
    fn plain_text_errors_become_problems() {
        let problem = ProblemDetails::from_status(502, "bad gateway\n");
        assert_eq!(problem.title, "Bad Gateway");
        assert_eq!(problem.detail, "bad gateway");
    }
}
