//! Responses the handlers build by hand: JSON text served as is, one
//! header added, and the count of entry writes by outcome.

use axum::{
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::error::ConfigError;

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn with_header(
    mut response: Response,
    name: HeaderName,
    value: impl ToString,
) -> Response {
    if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Count an entry write by outcome and turn it into a response.
pub(super) fn counted(result: Result<Response, ConfigError>) -> Response {
    let response = result.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    let label = if status.is_success() {
        "ok"
    } else if status == StatusCode::PRECONDITION_FAILED {
        "conflict"
    } else if status.is_client_error() {
        "rejected"
    } else {
        "error"
    };
    metrics::counter!("config_writes_total", "result" => label).increment(1);
    response
}
