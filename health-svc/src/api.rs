//! HTTP handlers: parse, read Redis through the store, map to the wire types.
//! Every answer comes from Redis (not this replica's memory), so all
//! replicas answer alike and a Redis outage is a clean 503.
//!
//! Each handler carries its OpenAPI description (`#[utoipa::path]`);
//! [`operations`] is the one list both the router and the document
//! ([`openapi`]) are built from.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Extension, Path, State},
};
use mcp_shared::{
    health::{
        Explain, ExplainLastCheck, ExplainLease, ExplainThresholds, HealthSummary, InstanceHealth,
        ServiceHealth,
    },
    internal::{Caller, RequireInternalLayer},
    names::Name,
    openapi::{self as docs, BadRequest, InstancePath, NotFound, ServicePath, StoreFailure},
    registry::{HealthStatus, Instance},
    time::{now_ms, rfc3339_ms},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::ApiError,
    hysteresis::Thresholds,
    model::{aggregate, worst},
    store::{InstanceView, Store},
};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    /// Redis access.
    pub store: Arc<Store>,
    /// Thresholds in force (for explain).
    pub thresholds: Thresholds,
}

/// The `/v1` operations: the one list the router and the OpenAPI document
/// are both built from.
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(service))
        .routes(routes!(explain))
}

/// The OpenAPI 3.1 document of health-svc: its operations plus the
/// scaffold's (`/healthz`, `/readyz`, `/metrics`) and `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    document(operations().into_openapi())
}

fn document(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    docs::require_internal(docs::document(
        api,
        "health-svc",
        env!("CARGO_PKG_VERSION"),
        "Active HTTP and TCP checks of registered instances: per-service health, the \
         summary, and why an instance is (not) healthy. Every error is \
         application/problem+json (RFC 9457).",
    ))
}

/// The `/v1` routes and `GET /openapi.json`.
///
/// Every operation needs the gateway's internal credential (`internal`);
/// the document stays open.
pub fn router(internal: RequireInternalLayer) -> Router<AppState> {
    docs::service_router(operations(), document, internal)
}

fn name(field: &'static str, value: String) -> Result<Name, ApiError> {
    Name::parse(value).map_err(|e| ApiError::InvalidName {
        field,
        message: e.to_string(),
    })
}

/// `GET /v1/summary`.
#[utoipa::path(
    get, path = "/v1/summary", tag = "health", operation_id = "summary",
    summary = "Health of every service",
    description = "A service is `critical` when no instance passes, `warning` when some do \
        not, else `passing`; the overall status is the worst of them (`passing` when there \
        are none).",
    responses(
        (status = 200, description = "Every service with at least one instance, by name.",
            body = HealthSummary),
        StoreFailure,
    ),
)]
async fn summary(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<HealthSummary>, ApiError> {
    // Only the services the caller's scopes may read (`health:read:{service}`);
    // the overall status is the worst of those.
    let services: Vec<_> = state
        .store
        .all_statuses()
        .await?
        .into_iter()
        .filter(|(name, _)| caller.scopes.may_read("health", name))
        .map(|(name, statuses)| aggregate(name, &statuses))
        .collect();
    Ok(Json(HealthSummary {
        status: worst(&services),
        services,
    }))
}

/// `GET /v1/services/{service}`.
#[utoipa::path(
    get, path = "/v1/services/{service}", tag = "health", operation_id = "serviceHealth",
    summary = "Health of one service and its instances",
    params(ServicePath),
    responses(
        (status = 200, description = "The aggregated status and each instance's.",
            body = ServiceHealth),
        BadRequest, NotFound, StoreFailure,
    ),
)]
async fn service(
    State(state): State<AppState>,
    Path(service): Path<String>,
) -> Result<Json<ServiceHealth>, ApiError> {
    let service = name("service", service)?;
    let (mut instances, mut records) = state.store.service(service.as_str()).await?;
    if instances.is_empty() {
        return Err(ApiError::NotFound(format!(
            "service `{service}` has no instances"
        )));
    }
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    let statuses: Vec<HealthStatus> = instances.iter().map(|i| i.status).collect();
    let status = aggregate(String::new(), &statuses).status;
    let instances = instances
        .into_iter()
        .map(|instance| {
            let record = records.remove(&instance.id);
            InstanceHealth {
                status: instance.status,
                output: record.as_ref().map(|r| r.output.clone()),
                last_checked_at: record.as_ref().map(|r| r.last_checked_at.clone()),
                consecutive_failures: record.map_or(0, |r| r.consecutive_failures),
                id: instance.id,
            }
        })
        .collect();
    Ok(Json(ServiceHealth {
        service: service.into_string(),
        status,
        instances,
    }))
}

/// `GET /v1/services/{service}/instances/{id}`: the explain answer.
#[utoipa::path(
    get, path = "/v1/services/{service}/instances/{id}", tag = "health",
    operation_id = "explainInstance",
    summary = "Why discovery with `healthy=true` does (not) return an instance",
    params(InstancePath),
    responses(
        (status = 200, description = "The lease, the status, the last check and the \
            thresholds, with human-readable reasons.", body = Explain),
        BadRequest, NotFound, StoreFailure,
    ),
)]
async fn explain(
    State(state): State<AppState>,
    Path((service, id)): Path<(String, String)>,
) -> Result<Json<Explain>, ApiError> {
    let service = name("service", service)?;
    let id = name("id", id)?;
    let view = state
        .store
        .instance(service.as_str(), id.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no instance `{id}` in service `{service}`")))?;
    Ok(Json(explanation(view, state.thresholds, now_ms())))
}

/// Build the explain answer: `healthy` is exactly the `healthy=true` rule
/// (lease alive and status `passing`), and `reasons` say which part holds.
fn explanation(view: InstanceView, thresholds: Thresholds, now: u64) -> Explain {
    let InstanceView {
        instance,
        lease_deadline_ms,
        record,
    } = view;
    let Instance {
        status,
        revision,
        id,
        service,
        check,
        ..
    } = instance;
    let mut reasons = Vec::new();
    let lease = lease_deadline_ms.map(|deadline| ExplainLease {
        expires_at: rfc3339_ms(deadline),
        remaining_ms: deadline.saturating_sub(now),
        alive: deadline > now,
    });
    match &lease {
        Some(l) if l.alive => reasons.push(format!(
            "lease is alive until {} ({} ms left)",
            l.expires_at, l.remaining_ms
        )),
        Some(l) => reasons.push(format!(
            "lease ran out at {}; the registry removes it as expired",
            l.expires_at
        )),
        None => reasons.push("no lease is recorded for it".to_owned()),
    }
    let last_output = record
        .as_ref()
        .map_or_else(String::new, |r| format!(" (last output: {})", r.output));
    let failures = record.as_ref().map_or(0, |r| r.consecutive_failures);
    let successes = record.as_ref().map_or(0, |r| r.consecutive_successes);
    reasons.push(match (status, &check) {
        (HealthStatus::Passing, None) => {
            "status is passing: it has no active check, so the lease alone decides".to_owned()
        }
        (HealthStatus::Passing, Some(_)) if failures > 0 => format!(
            "status is passing, though {failures} check(s) in a row failed so far; {} make it critical{last_output}",
            thresholds.failures_before_critical
        ),
        (HealthStatus::Passing, Some(_)) => format!("status is passing{last_output}"),
        (HealthStatus::Unknown, _) if record.is_none() => {
            "status is unknown: not checked yet, so healthy=true leaves it out".to_owned()
        }
        (HealthStatus::Unknown, _) => format!(
            "status is unknown: {successes} of {} success(es) and {failures} of {} failure(s) needed to decide{last_output}",
            thresholds.success_before_passing, thresholds.failures_before_critical
        ),
        (HealthStatus::Warning, _) => format!(
            "status is warning (the instance answered 429); only passing instances are returned{last_output}"
        ),
        (HealthStatus::Critical, _) => format!(
            "status is critical after {failures} failed check(s) in a row (threshold {}); it needs {} success(es) in a row to pass again{last_output}",
            thresholds.failures_before_critical, thresholds.success_before_passing
        ),
    });
    let deregister_after = check
        .as_ref()
        .and_then(|c| c.deregister_critical_after_seconds);
    if let (Some(after), Some(since)) = (
        deregister_after,
        record.as_ref().and_then(|r| r.critical_since_ms),
    ) {
        reasons.push(format!(
            "it will be deregistered at {} (critical for {after} s)",
            rfc3339_ms(since + u64::from(after) * 1000)
        ));
    }
    Explain {
        healthy: status == HealthStatus::Passing && lease.as_ref().is_some_and(|l| l.alive),
        reasons,
        status,
        revision,
        lease,
        last_check: record.map(|r| ExplainLastCheck {
            status: r.status,
            output: r.output,
            last_checked_at: r.last_checked_at,
            consecutive_failures: r.consecutive_failures,
            consecutive_successes: r.consecutive_successes,
            critical_since: r.critical_since_ms.map(rfc3339_ms),
        }),
        thresholds: ExplainThresholds {
            success_before_passing: thresholds.success_before_passing,
            failures_before_critical: thresholds.failures_before_critical,
            deregister_critical_after_seconds: deregister_after,
        },
        check,
        service,
        id,
    }
}

// The gateway serves this document from `docs/openapi/`: keep it exact.
#[cfg(test)]
mcp_testkit::snapshot_test!(crate::api::openapi);
