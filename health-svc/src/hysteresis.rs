//! Flap-free status: a status changes only after enough results in a row.
//!
//! `passing` needs `success_before_passing` successes in a row, `critical`
//! needs `failures_before_critical` failures in a row; a result short of its
//! threshold keeps the previous status (so one lost packet does not drop a
//! passing instance from discovery). A `429` is a deliberate "I am degraded"
//! answer from the instance, so it sets `warning` at once.

use mcp_shared::{
    registry::{HealthRecord, HealthStatus},
    time::rfc3339_ms,
};
use serde::Serialize;

/// The thresholds (settings `HEALTH_SUCCESS_BEFORE_PASSING`, `HEALTH_FAILURES_BEFORE_CRITICAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// Successes in a row before `passing`.
    pub success_before_passing: u32,
    /// Failures in a row before `critical`.
    pub failures_before_critical: u32,
}

/// What one probe said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx, or the TCP connect succeeded.
    Pass,
    /// 429: the instance says it is degraded.
    Warn,
    /// Anything else, a timeout or a refused connection.
    Fail,
}

impl Outcome {
    /// The status this single result stands for (the metric's `result` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "passing",
            Self::Warn => "warning",
            Self::Fail => "critical",
        }
    }
}

/// The record after one more result. `previous` is the last record (none
/// before the first check); `now_ms` stamps it.
pub fn next(
    previous: Option<&HealthRecord>,
    outcome: Outcome,
    output: String,
    thresholds: Thresholds,
    now_ms: u64,
) -> HealthRecord {
    let before = previous.map_or(HealthStatus::Unknown, |r| r.status);
    let (successes, failures) = previous.map_or((0, 0), |r| {
        (r.consecutive_successes, r.consecutive_failures)
    });
    let (status, successes, failures) = match outcome {
        Outcome::Pass => {
            let successes = successes.saturating_add(1);
            let status = if successes >= thresholds.success_before_passing {
                HealthStatus::Passing
            } else {
                before
            };
            (status, successes, 0)
        }
        Outcome::Warn => (HealthStatus::Warning, 0, 0),
        Outcome::Fail => {
            let failures = failures.saturating_add(1);
            let status = if failures >= thresholds.failures_before_critical {
                HealthStatus::Critical
            } else {
                before
            };
            (status, 0, failures)
        }
    };
    let critical_since_ms = match (status, previous.and_then(|r| r.critical_since_ms)) {
        (HealthStatus::Critical, Some(since)) if before == HealthStatus::Critical => Some(since),
        (HealthStatus::Critical, _) => Some(now_ms),
        _ => None,
    };
    HealthRecord {
        status,
        output,
        last_checked_at: rfc3339_ms(now_ms),
        consecutive_failures: failures,
        consecutive_successes: successes,
        critical_since_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Thresholds = Thresholds {
        success_before_passing: 1,
        failures_before_critical: 2,
    };

    fn run(outcomes: &[Outcome], thresholds: Thresholds) -> Vec<HealthStatus> {
        let mut record: Option<HealthRecord> = None;
        outcomes
            .iter()
            .enumerate()
            .map(|(i, outcome)| {
                let next = next(
                    record.as_ref(),
                    *outcome,
                    String::new(),
                    thresholds,
                    i as u64,
                );
                let status = next.status;
                record = Some(next);
                status
            })
            .collect()
    }

    #[test]
    fn one_success_passes_and_two_failures_make_critical() {
        use HealthStatus::*;
        use Outcome::*;
        assert_eq!(
            run(&[Pass, Fail, Fail, Fail, Pass], DEFAULTS),
            vec![Passing, Passing, Critical, Critical, Passing]
        );
    }

    #[test]
    fn a_single_failure_does_not_flap() {
        use HealthStatus::*;
        use Outcome::*;
        assert_eq!(
            run(&[Pass, Fail, Pass, Fail, Pass], DEFAULTS),
            vec![Passing; 5]
        );
    }

    #[test]
    fn success_threshold_delays_recovery() {
        use HealthStatus::*;
        use Outcome::*;
        let thresholds = Thresholds {
            success_before_passing: 3,
            failures_before_critical: 1,
        };
        assert_eq!(
            run(&[Fail, Pass, Pass, Pass], thresholds),
            vec![Critical, Critical, Critical, Passing]
        );
    }

    #[test]
    fn warning_is_immediate_and_critical_since_is_kept() {
        let first = next(None, Outcome::Warn, String::new(), DEFAULTS, 1);
        assert_eq!(first.status, HealthStatus::Warning);
        let a = next(Some(&first), Outcome::Fail, String::new(), DEFAULTS, 2);
        let b = next(Some(&a), Outcome::Fail, String::new(), DEFAULTS, 3);
        let c = next(Some(&b), Outcome::Fail, String::new(), DEFAULTS, 4);
        assert_eq!(b.critical_since_ms, Some(3));
        assert_eq!(c.critical_since_ms, Some(3));
        let d = next(Some(&c), Outcome::Pass, String::new(), DEFAULTS, 5);
        assert_eq!(d.critical_since_ms, None);
    }
}
