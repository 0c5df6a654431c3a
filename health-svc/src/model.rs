//! Types on the wire of health-svc's API, and the aggregation rule.

use mcp_shared::registry::{Check, HealthStatus};
use serde::{Deserialize, Serialize};

/// `GET /v1/services/{service}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    /// Service name.
    pub service: String,
    /// Aggregated status (see [`aggregate`]).
    pub status: HealthStatus,
    /// Its instances, by id.
    pub instances: Vec<InstanceHealth>,
}

/// One instance in [`ServiceHealth`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceHealth {
    /// Instance id.
    pub id: String,
    /// Status as the registry stores it (what discovery and routing use).
    pub status: HealthStatus,
    /// Last check output (status code and body excerpt, or the error).
    pub output: Option<String>,
    /// When it was last checked (RFC 3339).
    pub last_checked_at: Option<String>,
    /// Failed checks in a row.
    pub consecutive_failures: u32,
}

/// `GET /v1/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    /// The worst service status (`passing` when there are none).
    pub status: HealthStatus,
    /// Every service with at least one instance, by name.
    pub services: Vec<ServiceSummary>,
}

/// One service in [`Summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceSummary {
    /// Service name.
    pub name: String,
    /// Aggregated status (see [`aggregate`]).
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    pub lease: Option<Lease>,
    /// The registered check, if any.
    pub check: Option<Check>,
    /// The last check result, if checked.
    pub last_check: Option<LastCheck>,
    /// The thresholds in force.
    pub thresholds: ExplainThresholds,
}

/// The lease part of [`Explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    /// Deadline (RFC 3339).
    pub expires_at: String,
    /// Milliseconds left (0 once passed).
    pub remaining_ms: u64,
    /// Whether the deadline is still ahead.
    pub alive: bool,
}

/// The last check part of [`Explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastCheck {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExplainThresholds {
    /// `HEALTH_SUCCESS_BEFORE_PASSING`.
    pub success_before_passing: u32,
    /// `HEALTH_FAILURES_BEFORE_CRITICAL`.
    pub failures_before_critical: u32,
    /// From the check: removal after this long critical.
    pub deregister_critical_after_seconds: Option<u32>,
}

/// Counts per status and the aggregate of a service: `critical` when no
/// instance passes, `warning` when some do not, else `passing` (DESIGN.md).
pub fn aggregate(name: String, statuses: &[HealthStatus]) -> ServiceSummary {
    let count = |s: HealthStatus| statuses.iter().filter(|x| **x == s).count() as u32;
    let passing = count(HealthStatus::Passing);
    let status = if passing == 0 {
        HealthStatus::Critical
    } else if (passing as usize) < statuses.len() {
        HealthStatus::Warning
    } else {
        HealthStatus::Passing
    };
    ServiceSummary {
        name,
        status,
        passing,
        warning: count(HealthStatus::Warning),
        critical: count(HealthStatus::Critical),
        unknown: count(HealthStatus::Unknown),
    }
}

/// The overall status of several services: the worst of them.
pub fn worst(services: &[ServiceSummary]) -> HealthStatus {
    let rank = |s: HealthStatus| match s {
        HealthStatus::Passing => 0,
        HealthStatus::Unknown => 1,
        HealthStatus::Warning => 2,
        HealthStatus::Critical => 3,
    };
    services
        .iter()
        .map(|s| s.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(HealthStatus::Passing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthStatus::*;

    #[test]
    fn a_service_is_critical_without_passing_instances_and_warning_when_some_fail() {
        assert_eq!(aggregate("a".into(), &[Critical, Warning]).status, Critical);
        assert_eq!(aggregate("a".into(), &[Passing, Unknown]).status, Warning);
        assert_eq!(aggregate("a".into(), &[Passing, Passing]).status, Passing);
    }
}
