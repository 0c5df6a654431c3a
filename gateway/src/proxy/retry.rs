//! Whether a failed try is tried again: a service's retry policy, or by
//! default one retry of an idempotent request after a connect error; only a
//! request without a body is ever sent twice.

use axum::http::Method;

use crate::policy::{Applied, Failure, Retry};

/// How many more tries a request may make, and on which failures: a
/// service's retry policy (methods, failures, attempts, budget), or by
/// default one retry of an idempotent request after a connect error.
/// Either way only a request without a body is retried.
pub(super) struct RetryPlan<'a> {
    /// Retries left.
    pub(super) left: u32,
    policy: Option<&'a Retry>,
}

impl<'a> RetryPlan<'a> {
    pub(super) fn new(policy: Option<&'a Applied>, method: &Method, bodiless: bool) -> Self {
        match policy.and_then(|p| p.retry.as_ref()) {
            Some(retry) => {
                retry.deposit();
                let allowed = bodiless && retry.method_allowed(method);
                Self {
                    left: if allowed { retry.attempts } else { 0 },
                    policy: Some(retry),
                }
            }
            None => Self {
                left: u32::from(bodiless && is_idempotent(method)),
                policy: None,
            },
        }
    }

    /// Whether `failure` is retried now (and the retry counted against the budget).
    pub(super) fn take(&mut self, failure: Failure) -> bool {
        let retried = match self.policy {
            Some(retry) => retry.retries(failure),
            None => matches!(failure, Failure::Connect),
        };
        if self.left == 0 || !retried {
            return false;
        }
        if self.policy.is_some_and(|retry| !retry.withdraw()) {
            self.left = 0;
            return false;
        }
        self.left -= 1;
        true
    }
}

/// GET, HEAD, OPTIONS, PUT, DELETE, TRACE (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}
