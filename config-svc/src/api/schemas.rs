//! The schema handlers: read, set (after checking every stored value
//! against the new schema) and remove a namespace's JSON Schema.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{StatusCode, header},
    response::Response,
};
use mcp_shared::{
    Problem,
    config::SchemaDryRun,
    json,
    names::Name,
    openapi::{BadRequest, PayloadTooLarge, StoreFailure, Unprocessable},
    problem::{self, FieldError},
    time::now_rfc3339,
};
use serde_json::Value;

use super::{
    AppState, SCHEMA_ATTEMPTS,
    params::{body_error, dry_run, encode_error, namespace, too_deep},
    response::{json_response, with_header},
};
use crate::{
    error::ConfigError,
    model::{StoredEntry, WriteQuery, compact_json, etag},
    openapi::{DryRunQuery, JsonSchema, NamespacePath, SchemaOrDryRun},
    schema::CompiledSchema,
};

/// `GET …/schema`.
#[utoipa::path(
    get, path = "/v1/namespaces/{ns}/schema", tag = "schemas",
    operation_id = "getSchema",
    summary = "Read a namespace's JSON Schema",
    params(NamespacePath),
    responses(
        (status = 200, description = "The schema, as stored.", body = JsonSchema,
            headers(("ETag" = String, description = "`\"<id>\"`: changes with every new schema."))),
        BadRequest,
        (status = 404, description = "The namespace has no schema.", body = Problem,
            content_type = "application/problem+json"),
        StoreFailure,
    ),
)]
pub(super) async fn get_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    let Some(stored) = app.inner.store.schema(ns.as_str()).await? else {
        return Err(ConfigError::NotFound(format!(
            "namespace `{ns}` has no schema"
        )));
    };
    Ok(with_header(
        json_response(StatusCode::OK, stored.text),
        header::ETAG,
        etag(stored.id),
    ))
}

/// `PUT …/schema`: 201 new, 200 replaced.
#[utoipa::path(
    put, path = "/v1/namespaces/{ns}/schema", tag = "schemas",
    operation_id = "putSchema",
    summary = "Set a namespace's JSON Schema",
    description = "Every later write of the namespace must meet it. Refused with `422` when it \
        is not a valid JSON Schema (2020-12) or when values already present break it (`errors` \
        names each key). With `dry_run` nothing is stored.",
    params(NamespacePath, DryRunQuery),
    request_body(content = JsonSchema, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced the schema (or, with `dry_run`, the verdict).",
            body = SchemaOrDryRun,
            headers(("ETag" = String, description = "`\"<id>\"` of the new schema (not on a dry run)."))),
        (status = 201, description = "Set the namespace's first schema.", body = JsonSchema,
            headers(("ETag" = String, description = "`\"<id>\"` of the new schema."))),
        BadRequest,
        (status = 409, description = "Namespace `gateway`: its schema is the project's and \
            cannot be changed.", body = Problem, content_type = "application/problem+json"),
        PayloadTooLarge, Unprocessable, StoreFailure,
    ),
)]
pub(super) async fn put_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
    Query(query): Query<WriteQuery>,
    body: Bytes,
) -> Result<Response, ConfigError> {
    let inner = &app.inner;
    let ns = namespace(&ns)?;
    refuse_reserved_schema(&ns)?;
    let dry_run = dry_run(&query)?;
    let text = std::str::from_utf8(&body).map_err(|e| ConfigError::Body(e.to_string()))?;
    let text = compact_json(text);
    if text.len() > inner.max_value_bytes {
        return Err(ConfigError::TooLarge {
            size: text.len(),
            limit: inner.max_value_bytes,
        });
    }
    json::check_depth(text.as_bytes(), json::MAX_DEPTH).map_err(too_deep)?;
    let schema: Value = serde_json::from_str(&text).map_err(body_error)?;
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(ConfigError::InvalidSchema(
            "a schema must be a JSON object or boolean".to_owned(),
        ));
    }
    let compiled = CompiledSchema::compile(0, &schema).map_err(ConfigError::InvalidSchema)?;
    for _ in 0..SCHEMA_ATTEMPTS {
        let snapshot = inner.store.snapshot(ns.as_str()).await?;
        let mut broken: Vec<FieldError> = Vec::new();
        for (key, entry) in &snapshot.entries {
            let Ok(stored) = serde_json::from_str::<StoredEntry<'_>>(entry) else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<Value>(stored.value.get()) else {
                continue;
            };
            if let Some(first) = compiled.violations(&value, "").first() {
                let at = if first.field.is_empty() {
                    "/"
                } else {
                    &first.field
                };
                broken.push(FieldError::new(
                    key.clone(),
                    format!("{at}: {}", first.message),
                ));
            }
        }
        if !broken.is_empty() {
            broken.sort_by(|a, b| a.field.cmp(&b.field));
            return Err(ConfigError::SchemaBrokenBy { errors: broken });
        }
        if dry_run {
            let verdict = SchemaDryRun {
                dry_run: true,
                namespace: ns.into_string(),
                valid: true,
            };
            let body = serde_json::to_string(&verdict).map_err(encode_error)?;
            return Ok(json_response(StatusCode::OK, body));
        }
        let stored = inner
            .store
            .put_schema(ns.as_str(), &snapshot.ns_revision, &text, &now_rfc3339())
            .await?;
        if let Some((id, created)) = stored {
            let compiled =
                CompiledSchema::compile(id, &schema).map_err(ConfigError::InvalidSchema)?;
            inner.schemas.insert(ns.as_str(), Arc::new(compiled));
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return Ok(with_header(
                json_response(status, text.into_owned()),
                header::ETAG,
                etag(id),
            ));
        }
        // An entry changed while we validated: validate the new state.
    }
    Err(ConfigError::Contended)
}

/// The `gateway` namespace's schema is the project's (see [`crate::policy`]).
pub(super) fn refuse_reserved_schema(ns: &Name) -> Result<(), ConfigError> {
    if crate::policy::is_reserved(ns.as_str()) {
        return Err(ConfigError::Reserved(format!(
            "the schema of namespace `{ns}` is the gateway policy schema, installed and kept by \
             config-svc; it cannot be replaced or removed"
        )));
    }
    Ok(())
}

/// `DELETE …/schema`: 204.
#[utoipa::path(
    delete, path = "/v1/namespaces/{ns}/schema", tag = "schemas",
    operation_id = "deleteSchema",
    summary = "Remove a namespace's JSON Schema",
    params(NamespacePath),
    responses(
        (status = 204, description = "Removed; writes are no longer validated."),
        BadRequest,
        (status = 404, description = "The namespace has no schema.", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "Namespace `gateway`: its schema is the project's and \
            cannot be changed.", body = Problem, content_type = "application/problem+json"),
        StoreFailure,
    ),
)]
pub(super) async fn delete_schema(
    State(app): State<AppState>,
    Path(ns): Path<String>,
) -> Result<Response, ConfigError> {
    let ns = namespace(&ns)?;
    refuse_reserved_schema(&ns)?;
    if !app.inner.store.delete_schema(ns.as_str()).await? {
        return Err(ConfigError::NotFound(format!(
            "namespace `{ns}` has no schema"
        )));
    }
    app.inner.schemas.remove(ns.as_str());
    Ok(problem::empty(StatusCode::NO_CONTENT))
}
