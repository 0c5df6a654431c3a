//! The circuit breaker of one upstream instance.
//!
//! Closed: traffic flows and consecutive failures (connect error, timeout,
//! 5xx) are counted; at `failure_threshold` the circuit opens. Open: no
//! traffic for `open_for`. Then the first request to come along becomes the
//! one trial (half-open; every other request still sees it open): success
//! closes the circuit, failure opens it for another `open_for`.
//!
//! The state is three atomics, so the hot path (a closed circuit) is one
//! relaxed load; transitions use compare-and-swap so exactly one request
//! wins the trial. A trial whose request is dropped before it has an
//! outcome (the client went away) hands the trial on to the next request.
//!
//! The breaker reports to no metric itself: `gateway_circuit_state` is read
//! from the live routing table at each scrape (`admin::render_metrics`), so
//! an instance that left the table leaves no series behind.

use std::{
    sync::{
        OnceLock,
        atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Breaker tuning (`CB_FAILURE_THRESHOLD`, `CB_OPEN_SECONDS`).
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long it stays open before one trial.
    pub open_for: Duration,
}

/// The breaker's state, as `/admin/upstreams` and `gateway_circuit_state` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Traffic flows.
    Closed,
    /// No traffic until the open period ends.
    Open,
    /// One trial request is in flight.
    HalfOpen,
}

impl CircuitState {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of `gateway_circuit_state`: 0 closed, 1 open, 2 half-open.
    pub fn gauge_value(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Milliseconds on a process-wide monotonic clock.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// How a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed.
    Normal,
    /// The one trial of a half-open circuit.
    Trial,
}

/// One instance's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    state: AtomicU8,
    failures: AtomicU32,
    opened_at_ms: AtomicU64,
    settings: BreakerSettings,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            opened_at_ms: AtomicU64::new(0),
            settings,
        }
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => CircuitState::Closed,
            OPEN => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Let a request through, or say in how many ms to ask again.
    pub fn try_acquire(&self) -> Result<Admission, u64> {
        self.try_acquire_with(&self.settings)
    }

    /// [`Self::try_acquire`] with a service policy's thresholds instead of the global ones.
    pub fn try_acquire_with(&self, settings: &BreakerSettings) -> Result<Admission, u64> {
        let open_for_ms = settings.open_for.as_millis() as u64;
        match self.state.load(Ordering::Acquire) {
            CLOSED => Ok(Admission::Normal),
            OPEN => {
                let reopen_at = self.opened_at_ms.load(Ordering::Acquire) + open_for_ms;
                let now = now_ms();
                if now < reopen_at {
                    return Err(reopen_at - now);
                }
                match self.state.compare_exchange(
                    OPEN,
                    HALF_OPEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => Ok(Admission::Trial),
                    // Another request won the trial.
                    Err(_) => Err(open_for_ms),
                }
            }
            // A trial is in flight; its outcome decides.
            _ => Err(open_for_ms.min(1000)),
        }
    }

    /// Record the outcome of a request let through as `admission`.
    pub fn record(&self, admission: Admission, success: bool) {
        self.record_with(admission, success, &self.settings);
    }

    /// [`Self::record`] with a service policy's thresholds instead of the global ones.
    pub fn record_with(&self, admission: Admission, success: bool, settings: &BreakerSettings) {
        if success {
            self.failures.store(0, Ordering::Relaxed);
            // A passing trial (or any success while half-open) closes the circuit.
            if admission == Admission::Trial || self.state.load(Ordering::Acquire) == HALF_OPEN {
                self.transition(CircuitState::Closed);
            }
            return;
        }
        if admission == Admission::Trial {
            self.opened_at_ms.store(now_ms(), Ordering::Release);
            self.transition(CircuitState::Open);
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= settings.failure_threshold {
            // Stamp the time before the state, so nobody sees OPEN with a stale stamp.
            self.opened_at_ms.store(now_ms(), Ordering::Release);
            if self
                .state
                .compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tracing::warn!(failures, "circuit opened");
            }
        }
    }

    /// A trial ended without an outcome: back to open, trial due at once.
    pub fn abandon_trial(&self) {
        if self
            .state
            .compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.opened_at_ms.store(
                now_ms().saturating_sub(self.open_for_ms()),
                Ordering::Release,
            );
        }
    }

    fn transition(&self, to: CircuitState) {
        let value = match to {
            CircuitState::Closed => CLOSED,
            CircuitState::Open => OPEN,
            CircuitState::HalfOpen => HALF_OPEN,
        };
        let from = self.state.swap(value, Ordering::AcqRel);
        if from != value {
            tracing::info!(to = to.as_str(), "circuit changed state");
        }
    }

    fn open_for_ms(&self) -> u64 {
        self.settings.open_for.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(BreakerSettings {
            failure_threshold: 2,
            open_for,
        })
    }

    #[test]
    fn opens_after_threshold_and_one_trial_closes() {
        let b = breaker(Duration::ZERO);
        b.record(Admission::Normal, false);
        assert_eq!(b.state(), CircuitState::Closed);
        b.record(Admission::Normal, false);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.try_acquire(), Ok(Admission::Trial));
        assert!(b.try_acquire().is_err(), "only one trial");
        b.record(Admission::Trial, true);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn failed_trial_reopens_and_abandoned_trial_is_handed_on() {
        let b = breaker(Duration::ZERO);
        b.record(Admission::Normal, false);
        b.record(Admission::Normal, false);
        assert_eq!(b.try_acquire(), Ok(Admission::Trial));
        b.record(Admission::Trial, false);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.try_acquire(), Ok(Admission::Trial));
        b.abandon_trial();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(
            b.try_acquire(),
            Ok(Admission::Trial),
            "next request gets the trial"
        );
    }

    #[test]
    fn open_circuit_refuses_until_its_time() {
        let b = breaker(Duration::from_secs(60));
        b.record(Admission::Normal, false);
        b.record(Admission::Normal, false);
        let wait = b.try_acquire().expect_err("open");
        assert!(wait > 59_000 && wait <= 60_000, "{wait}");
    }

    #[test]
    fn concurrent_requests_at_half_open_get_exactly_one_trial() {
        const THREADS: usize = 8;
        // Many rounds, each with every thread released at once by a barrier
        // onto a circuit whose open time has just run out.
        for round in 0..200 {
            let b = std::sync::Arc::new(breaker(Duration::ZERO));
            b.record(Admission::Normal, false);
            b.record(Admission::Normal, false);
            assert_eq!(b.state(), CircuitState::Open);
            let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    let (b, start) = (b.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        b.try_acquire()
                    })
                })
                .collect();
            let admitted: Vec<_> = threads
                .into_iter()
                .filter_map(|thread| thread.join().ok())
                .collect();
            assert_eq!(admitted.len(), THREADS, "round {round}: a thread died");
            let trials = admitted
                .iter()
                .filter(|a| **a == Ok(Admission::Trial))
                .count();
            assert_eq!(trials, 1, "round {round}: {admitted:?}");
            assert!(
                admitted
                    .iter()
                    .all(|a| a.is_err() || *a == Ok(Admission::Trial)),
                "round {round}: nobody passes as if closed: {admitted:?}"
            );
            assert_eq!(b.state(), CircuitState::HalfOpen);
        }
    }
}
