//! The one error type of registry-svc's handlers and its single mapping to
//! RFC 9457 problem+json (through [`Problem`]).

use axum::response::{IntoResponse, Response};
use mcp_shared::{Problem, StoreError, problem::FieldError};

/// Everything a registry request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (400).
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// The body parses but fields break the rules (422), each one named.
    #[error("invalid fields")]
    Invalid(Vec<FieldError>),
    /// A path segment or query parameter is malformed (400), named.
    #[error("invalid `{field}`: {message}")]
    BadParam {
        /// The path or query parameter.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No such instance (404).
    #[error("{0}")]
    NotFound(String),
    /// Redis failed (503 when unreachable, else 500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    /// A malformed path segment or query parameter.
    pub fn bad_param(field: impl Into<String>, message: impl ToString) -> Self {
        Self::BadParam {
            field: field.into(),
            message: message.to_string(),
        }
    }
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::NotJson(reason) => {
                Problem::invalid_field("body", format!("must be a JSON object ({reason})"))
            }
            ApiError::Invalid(errors) => {
                let names: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                let detail = format!("invalid fields: {}", names.join(", "));
                Problem::unprocessable(detail).with_errors(errors)
            }
            ApiError::BadParam { field, message } => Problem::invalid_field(field, message),
            ApiError::NotFound(detail) => Problem::not_found(detail),
            ApiError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
