//! The one error type of config-svc and its problem+json mapping.

use axum::response::{IntoResponse, Response};
use mcp_shared::{Problem, StoreError, problem::FieldError};

/// Everything a config-svc request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A request field (path segment, query parameter, header, body member) is invalid.
    #[error("invalid `{field}`: {message}")]
    Invalid {
        /// The field's name.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The body is not the expected JSON.
    #[error("malformed body: {0}")]
    Body(String),
    /// The value is over `CONFIG_MAX_VALUE_BYTES`.
    #[error("value of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The value's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The value breaks the namespace's schema.
    #[error("value breaks the schema of namespace `{namespace}`")]
    SchemaViolation {
        /// The namespace.
        namespace: String,
        /// The validator's errors, by JSON pointer.
        errors: Vec<FieldError>,
    },
    /// A new schema is broken by values already present.
    #[error("the schema is broken by present values")]
    SchemaBrokenBy {
        /// One error per breaking key.
        errors: Vec<FieldError>,
    },
    /// The schema itself is not a valid JSON Schema (2020-12).
    #[error("invalid JSON Schema: {0}")]
    InvalidSchema(String),
    /// Unknown resource.
    #[error("{0}")]
    NotFound(String),
    /// `If-Match` / `If-None-Match` failed; the current version (none when absent).
    #[error("precondition failed")]
    PreconditionFailed {
        /// The key's current version, if it exists.
        current: Option<u64>,
    },
    /// Concurrent schema changes kept invalidating the write; retry.
    #[error("the namespace's schema kept changing during the write")]
    Contended,
    /// The write conflicts with another value (a route answering the same requests).
    #[error("{0}")]
    Conflict(String),
    /// The resource belongs to the project (the `gateway` namespace's schema).
    #[error("{0}")]
    Reserved(String),
    /// Redis.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ConfigError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<ConfigError> for Problem {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Invalid { field, message } => Problem::invalid_field(field, message),
            ConfigError::Body(detail) => Problem::bad_request(format!("malformed body: {detail}")),
            ConfigError::TooLarge { .. } => Problem::too_large(e.to_string())
                .with_errors(vec![FieldError::new("/value", e.to_string())]),
            ConfigError::SchemaViolation { namespace, errors } => Problem::unprocessable(format!(
                "the value breaks the schema of namespace `{namespace}`"
            ))
            .with_errors(errors),
            ConfigError::SchemaBrokenBy { errors } => {
                let keys: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                Problem::unprocessable(format!(
                    "present values break the schema: {}",
                    keys.join(", ")
                ))
                .with_errors(errors)
            }
            ConfigError::InvalidSchema(detail) => {
                Problem::unprocessable(format!("not a valid JSON Schema (2020-12): {detail}"))
                    .with_errors(vec![FieldError::new("schema", detail)])
            }
            ConfigError::NotFound(detail) => Problem::not_found(detail),
            ConfigError::PreconditionFailed { current } => {
                let detail = match current {
                    Some(v) => format!("precondition failed: the current version is {v}"),
                    None => "precondition failed: the key does not exist".to_owned(),
                };
                Problem::precondition_failed(detail).with_extension("current_version", current)
            }
            ConfigError::Contended => Problem::unavailable(
                "the namespace's schema changed repeatedly during the write; retry",
            ),
            ConfigError::Conflict(detail) | ConfigError::Reserved(detail) => {
                Problem::new(axum::http::StatusCode::CONFLICT, detail)
            }
            ConfigError::Store(e) => Problem::from(e),
        }
    }
}

impl IntoResponse for ConfigError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
