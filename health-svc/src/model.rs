//! The aggregation rule of health-svc's answers. The types on the wire are
//! in [`mcp_shared::health`], shared with the SDK and `mcpctl`.

use mcp_shared::{health::ServiceHealthSummary, registry::HealthStatus};

/// Counts per status and the aggregate of a service: `critical` when no
/// instance passes, `warning` when some do not, else `passing` (README, "Health checks").
pub fn aggregate(name: String, statuses: &[HealthStatus]) -> ServiceHealthSummary {
    let count = |s: HealthStatus| statuses.iter().filter(|x| **x == s).count() as u32;
    let passing = count(HealthStatus::Passing);
    let status = if passing == 0 {
        HealthStatus::Critical
    } else if (passing as usize) < statuses.len() {
        HealthStatus::Warning
    } else {
        HealthStatus::Passing
    };
    ServiceHealthSummary {
        name,
        status,
        passing,
        warning: count(HealthStatus::Warning),
        critical: count(HealthStatus::Critical),
        unknown: count(HealthStatus::Unknown),
    }
}

/// The overall status of several services: the worst of them.
pub fn worst(services: &[ServiceHealthSummary]) -> HealthStatus {
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
