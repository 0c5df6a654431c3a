//! health-svc's one error type and its problem+json mapping.

use axum::response::{IntoResponse, Response};
use mcp_shared::{Problem, StoreError};

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Redis is down (→ 503) or misbehaved (→ 500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A path segment is not a valid name (→ 400 naming it).
    #[error("invalid `{field}`: {message}")]
    InvalidName {
        /// `service` or `id`.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// No such service or instance (→ 404).
    #[error("{0}")]
    NotFound(String),
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Store(e) => e.into(),
            ApiError::InvalidName { field, message } => Problem::invalid_field(field, message),
            ApiError::NotFound(detail) => Problem::not_found(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
