//! The SDK's one error type.
//!
//! Every 4xx/5xx MCP answers is RFC 9457 problem+json; [`Error::Api`] carries
//! it as [`ProblemDetails`] so callers can match on the status and show the
//! server's own `detail`. [`ProblemDetails`] is `mcp-api`'s wire type of a
//! problem, the very body the services write (`mcp_shared::Problem` converts
//! into it), so both sides read one definition.

pub use mcp_api::problem::{FieldError, Problem as ProblemDetails};

/// A problem for an error answer whose body was not problem+json (a proxy's
/// plain-text error page), so callers still see one shape: the status's
/// reason phrase as `title`, the body (trimmed, at most 512 characters) as
/// `detail`.
pub(crate) fn problem_from_status(status: u16, body: &str) -> ProblemDetails {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    ProblemDetails {
        kind: mcp_api::problem::ABOUT_BLANK.to_owned(),
        title: reason.to_owned(),
        status,
        detail: body.trim().chars().take(512).collect(),
        errors: Vec::new(),
        extensions: serde_json::Map::new(),
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
    fn plain_text_errors_become_problems() {
        let problem = problem_from_status(502, "bad gateway\n");
        assert_eq!(problem.title, "Bad Gateway");
        assert_eq!(problem.detail, "bad gateway");
    }
}
