//! The bodies of health-svc's HTTP API: a service's health
//! ([`ServiceHealth`]), the summary of every service ([`HealthSummary`]) and
//! the explanation of one instance's status ([`Explain`]).
//!
//! health-svc serializes its answers with these types and documents them
//! with their `ToSchema`; the SDK (`mcp-client`) and `mcpctl` read the same
//! types, so the three cannot drift. How a service's status is aggregated
//! from its instances' is health-svc's (its `model::aggregate`).

use serde::{Deserialize, Serialize};

use crate::registry::{Check, HealthStatus};

/// `GET /v1/services/{service}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceHealth {
    /// Service name.
    pub service: String,
    /// Aggregated status: `critical` when no instance passes, `warning` when
    /// some do not, else `passing`.
    pub status: HealthStatus,
    /// Its instances, by id.
    pub instances: Vec<InstanceHealth>,
}

/// One instance in [`ServiceHealth`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceHealth {
    /// Instance id.
    pub id: String,
    /// Status as the registry stores it (what discovery and routing use).
    pub status: HealthStatus,
    /// Last check output (status code and body excerpt, or the error);
    /// `null` before the first check.
    pub output: Option<String>,
    /// When it was last checked (RFC 3339); `null` before the first check.
    pub last_checked_at: Option<String>,
    /// Failed checks in a row.
    pub consecutive_failures: u32,
}

/// `GET /v1/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthSummary {
    /// The worst service status (`passing` when there are none).
    pub status: HealthStatus,
    /// Every service with at least one instance, by name.
    pub services: Vec<ServiceHealthSummary>,
}

/// One service in [`HealthSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceHealthSummary {
    /// Service name.
    pub name: String,
    /// Aggregated status (as in [`ServiceHealth`]).
    pub status: HealthStatus,
    /// Instances passing.
    pub passing: u32,
    /// Instances warning.
    pub warning: u32,
    /// Instances critical.
    pub critical: u32,
    /// Instances not checked yet.
    pub unknown: u32,
}

/// `GET /v1/services/{service}/instances/{id}`: why `healthy=true`
/// discovery does or does not return this instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explain {
    /// Service name.
    pub service: String,
    /// Instance id.
    pub id: String,
    /// Whether `healthy=true` returns it: lease alive and status `passing`.
    pub healthy: bool,
    /// Human-readable reasons, lease first, then status.
    pub reasons: Vec<String>,
    /// Status as stored in the registry.
    pub status: HealthStatus,
    /// Revision of the instance's last change.
    pub revision: u64,
    /// The lease.
    pub lease: Option<ExplainLease>,
    /// The registered check, if any.
    pub check: Option<Check>,
    /// The last check result, if checked.
    pub last_check: Option<ExplainLastCheck>,
    /// The thresholds in force.
    pub thresholds: ExplainThresholds,
}

/// The lease part of [`Explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExplainLease {
    /// Deadline (RFC 3339).
    pub expires_at: String,
    /// Milliseconds left (0 once passed).
    pub remaining_ms: u64,
    /// Whether the deadline is still ahead.
    pub alive: bool,
}

/// The last check part of [`Explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExplainLastCheck {
    /// Status after hysteresis.
    pub status: HealthStatus,
    /// Output of the last check.
    pub output: String,
    /// When (RFC 3339).
    pub last_checked_at: String,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// Since when it is critical (RFC 3339).
    pub critical_since: Option<String>,
}

/// The thresholds part of [`Explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExplainThresholds {
    /// `HEALTH_SUCCESS_BEFORE_PASSING`.
    pub success_before_passing: u32,
    /// `HEALTH_FAILURES_BEFORE_CRITICAL`.
    pub failures_before_critical: u32,
    /// From the check: removal after this long critical.
    pub deregister_critical_after_seconds: Option<u32>,
}
