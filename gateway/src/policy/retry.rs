//! A service's compiled `retries`: which failures and methods it retries,
//! and the budget that keeps retries a bounded share of the traffic.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use axum::http::Method;
use mcp_shared::policy::{RetryOn, RetryPolicy};

use super::methods;

/// Compiled `retries`, with its budget.
#[derive(Debug)]
pub struct Retry {
    /// Retries after the first try.
    pub attempts: u32,
    on: Vec<RetryOn>,
    methods: Option<Vec<Method>>,
    budget: RetryBudget,
    /// Retries made (`gateway_retries_total{result="sent"}`).
    pub sent: AtomicU64,
    /// Retries the budget refused (`gateway_retries_total{result="budget_exhausted"}`).
    pub refused: AtomicU64,
}

/// What failed, for [`Retry::retries`].
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// Could not connect.
    Connect,
    /// No response headers in time.
    Timeout,
    /// The upstream answered this 5xx.
    Status(u16),
}

impl Retry {
    /// Compile `retries`: connect errors only and a budget of 20% with 10
    /// free retries a second unless the policy says otherwise.
    pub(super) fn compile(r: &RetryPolicy) -> Self {
        Self {
            attempts: r.attempts,
            on: r.on.clone().unwrap_or_else(|| vec![RetryOn::ConnectError]),
            methods: r.methods.as_deref().map(methods),
            budget: RetryBudget::new(
                r.budget_percent.unwrap_or(20),
                r.min_per_second.unwrap_or(10),
            ),
            sent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Whether `method` may be retried at all.
    pub fn method_allowed(&self, method: &Method) -> bool {
        match &self.methods {
            Some(methods) => methods.contains(method),
            None => crate::proxy::is_idempotent(method),
        }
    }

    /// Whether `failure` is one the policy retries.
    pub fn retries(&self, failure: Failure) -> bool {
        self.on.iter().any(|on| match (on, failure) {
            (RetryOn::ConnectError, Failure::Connect) | (RetryOn::Timeout, Failure::Timeout) => {
                true
            }
            (RetryOn::ServerError, Failure::Status(s)) => s >= 500,
            (RetryOn::BadGateway, Failure::Status(502))
            | (RetryOn::Unavailable, Failure::Status(503))
            | (RetryOn::GatewayTimeout, Failure::Status(504)) => true,
            _ => false,
        })
    }

    /// Count a request toward the budget.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Take one retry from the budget; `false` (and counted) when it is spent.
    pub fn withdraw(&self) -> bool {
        if self.budget.withdraw() {
            self.sent.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// The retry budget: each request earns `percent`% of a retry (capped),
/// each retry spends one, and `min_per_second` retries are free each
/// second. Atomics only: no lock on the request path.
#[derive(Debug)]
struct RetryBudget {
    /// Milli-retries earned per request (`percent * 10`).
    earn: u64,
    min_per_second: u64,
    /// Milli-retries available.
    balance: AtomicU64,
    /// The second (since `epoch`) `free_used` counts in.
    second: AtomicU64,
    free_used: AtomicU64,
    epoch: Instant,
}

/// The most milli-retries the budget saves up.
const BUDGET_CAP: u64 = 100_000;

impl RetryBudget {
    fn new(percent: u32, min_per_second: u32) -> Self {
        Self {
            earn: u64::from(percent) * 10,
            min_per_second: u64::from(min_per_second),
            balance: AtomicU64::new(0),
            second: AtomicU64::new(0),
            free_used: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn deposit(&self) {
        if self.earn > 0 {
            let _ = self
                .balance
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some((b + self.earn).min(BUDGET_CAP))
                });
        }
    }

    fn withdraw(&self) -> bool {
        let now = self.epoch.elapsed().as_secs();
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.free_used.store(0, Ordering::Relaxed);
        }
        if self.free_used.fetch_add(1, Ordering::Relaxed) < self.min_per_second {
            return true;
        }
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(1000)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_caps_retries() {
        let budget = RetryBudget::new(10, 0);
        for _ in 0..100 {
            budget.deposit();
        }
        let allowed = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(allowed, 10);
        let free = RetryBudget::new(0, 3);
        assert_eq!((0..10).filter(|_| free.withdraw()).count(), 3);
    }
}
