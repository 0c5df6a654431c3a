//! RFC 9457 problem details: the single error shape of every MCP response.
//!
//! Handlers return `Result<_, E>` where `E: Into<Problem>`; a `Problem` turns
//! into an `application/problem+json` response in exactly one place, the
//! [`IntoResponse`] impl below. Responses that other layers produce as plain
//! text (axum's extractor rejections, the body limit, 405) are rewritten into
//! problem+json by the scaffold ([`needs_rewrite`], [`rewrite`]), so clients see one shape everywhere.
//!
//! The body on the wire is `mcp-api`'s [`mcp_api::problem::Problem`] (the
//! type the SDK reads back, and the one the documents' `Problem` schema is
//! generated from); this `Problem` adds what only a server needs (a typed
//! status, `Retry-After`) and converts into it to write the body.

use std::borrow::Cow;

use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use mcp_api::problem as wire;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::{RefOr, schema::Schema};

pub use mcp_api::problem::{FieldError, PROBLEM_JSON};

/// An RFC 9457 problem as a server builds it: the body's members, a typed
/// status and the `Retry-After` to send with it. Its body (and schema) is
/// [`mcp_api::problem::Problem`].
#[derive(Debug, Clone)]
pub struct Problem {
    /// A URI reference naming the kind of problem; `about:blank` when the status says it all.
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: StatusCode,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// Field-level errors, for validation problems.
    pub errors: Vec<FieldError>,
    /// Extension members (for example `current_version` on a 412).
    pub extensions: serde_json::Map<String, Value>,
    /// Seconds to put in `Retry-After` (503, 429); not part of the body.
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with the given status; the title is the status's reason phrase.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("https://mcp.dev/problems/{}", slug(status)),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status,
            detail: detail.into(),
            errors: Vec::new(),
            extensions: serde_json::Map::new(),
            retry_after: None,
        }
    }

    /// 400: the request cannot be parsed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 400 naming one invalid field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self::bad_request(format!("invalid `{field}`: {message}"))
            .with_errors(vec![FieldError::new(field, message)])
    }

    /// 422: the request parses but breaks a rule.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 412: a precondition (`If-Match`, `If-None-Match`) failed.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, detail)
    }

    /// 413.
    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, detail)
    }

    /// 503 with `Retry-After: 1`: a dependency (Redis) is down.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail).with_retry_after(1)
    }

    /// 500: a bug or an unexpected state; the detail must not leak internals.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }

    /// Attach field errors.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// Attach an extension member.
    pub fn with_extension(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// Set `Retry-After` (seconds).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

fn slug(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '\''], "-")
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.title,
            self.detail
        )
    }
}

impl std::error::Error for Problem {}

impl Problem {
    /// The body as sent: this problem in the wire shape (without `Retry-After`).
    pub fn body(&self) -> wire::Problem {
        self.clone().into()
    }
}

impl From<Problem> for wire::Problem {
    fn from(problem: Problem) -> Self {
        Self {
            kind: problem.kind,
            title: problem.title,
            status: problem.status.as_u16(),
            detail: problem.detail,
            errors: problem.errors,
            extensions: problem.extensions,
        }
    }
}

/// Serializes as its body ([`Problem::body`]).
impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.body().serialize(serializer)
    }
}

/// Documented as its body: the schema named `Problem` is the wire type's.
impl utoipa::PartialSchema for Problem {
    fn schema() -> RefOr<Schema> {
        <wire::Problem as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for Problem {
    fn name() -> Cow<'static, str> {
        <wire::Problem as utoipa::ToSchema>::name()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <wire::Problem as utoipa::ToSchema>::schemas(schemas);
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, retry_after) = (self.status, self.retry_after);
        // Serializing this struct cannot fail (string keys, plain values); the
        // fallback keeps the request path free of panics all the same.
        let body = serde_json::to_vec(&wire::Problem::from(self)).unwrap_or_else(|_| {
            format!(r#"{{"type":"about:blank","status":{}}}"#, status.as_u16()).into_bytes()
        });
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED && !headers.contains_key(header::WWW_AUTHENTICATE) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Marker extension on a response that must reach the client untouched even
/// if it is an error without problem+json (the gateway's proxied answers).
#[derive(Debug, Clone, Copy)]
pub struct PassThrough;

/// Whether `response` is an error answer that is not problem+json yet (see
/// [`rewrite`]): a 4xx or 5xx that is neither an upstream's own answer
/// ([`PassThrough`]) nor problem+json already.
pub fn needs_rewrite(response: &Response) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && response.extensions().get::<PassThrough>().is_none()
        && !response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// Turn an error answer that is not problem+json into one (the scaffold
/// does it for every answer [`needs_rewrite`] picks).
///
/// Catches what handlers do not produce themselves: axum extractor rejections
/// (bad JSON, bad path, 415), 405, timeouts. The original text body becomes
/// the `detail` (capped), so the reason is not lost.
pub async fn rewrite(response: Response) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    // Rejection bodies are short text; 4 KiB bounds what we read of anything else.
    let detail = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut problem = Problem::new(status, detail);
    if let Some(retry) = parts
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        problem.retry_after = Some(retry);
    }
    let mut rewritten = problem.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

/// The fallback handler: every unknown route is a problem+json 404.
pub async fn not_found_fallback(uri: axum::http::Uri) -> Problem {
    Problem::not_found(format!("no route for {}", uri.path()))
}

/// Build an empty-bodied response from a status (for 204s).
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}
