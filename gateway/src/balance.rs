//! Upstreams, their instances, and how one is chosen for a request.
//!
//! Choice is power of two choices on in-flight requests: pick two instances
//! at random, send to the one with fewer requests in flight. Unlike round
//! robin it steers away from a slow or stuck instance (its in-flight count
//! grows) without any shared cursor, and unlike least-connections over all
//! instances it costs O(1) and does not stampede onto one fresh instance.
//! An instance whose circuit is open is skipped; when every one is, the
//! request fails at once with the time until the first trial.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::http::{HeaderValue, uri::Authority};
use rand::Rng as _;

use crate::circuit::{Admission, BreakerSettings, CircuitBreaker};

/// Outcome labels of `gateway_upstream_requests_total`.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// 1xx/2xx.
    Success,
    /// 3xx.
    Redirect,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// 503 from a control-plane service: its shared Redis is down, not the
    /// instance (counted as 5xx, but no breaker failure; see `proxy`).
    DependencyDown,
    /// Could not connect.
    ConnectError,
    /// No response headers in time.
    Timeout,
    /// The exchange broke after connecting.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Self::Success,
        Self::Redirect,
        Self::ClientError,
        Self::ServerError,
        Self::DependencyDown,
        Self::ConnectError,
        Self::Timeout,
        Self::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "2xx",
            Self::Redirect => "3xx",
            Self::ClientError => "4xx",
            Self::ServerError | Self::DependencyDown => "5xx",
            Self::ConnectError => "connect_error",
            Self::Timeout => "timeout",
            Self::Error => "error",
        }
    }

    /// The outcome of a response status.
    pub fn of_status(status: u16) -> Self {
        match status {
            500.. => Self::ServerError,
            400..=499 => Self::ClientError,
            300..=399 => Self::Redirect,
            _ => Self::Success,
        }
    }

    /// Whether the breaker counts it as a failure.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::ServerError | Self::ConnectError | Self::Timeout | Self::Error
        )
    }
}

/// One instance of an upstream: where it is, its breaker, its load.
#[derive(Debug)]
pub struct Endpoint {
    /// Instance id (or the base URL for control-plane upstreams).
    pub id: String,
    /// `host:port`.
    pub authority: Authority,
    /// Path prefix of the base URL (control plane), `""` for services.
    pub base_path: String,
    /// `Host` header for requests to it (prebuilt: no per-request formatting).
    pub host_header: HeaderValue,
    /// The instance's circuit breaker.
    pub breaker: CircuitBreaker,
    in_flight: AtomicUsize,
    /// Prebuilt counters, one per [`Outcome`], so counting allocates nothing.
    counters: [metrics::Counter; 8],
}

impl Endpoint {
    /// An endpoint of `upstream` at `authority`.
    pub fn new(
        upstream: &str,
        id: String,
        authority: Authority,
        base_path: String,
        breaker: BreakerSettings,
    ) -> Option<Self> {
        let host_header = HeaderValue::from_str(authority.as_str()).ok()?;
        let counters = Outcome::ALL.map(|outcome| {
            metrics::counter!(
                "gateway_upstream_requests_total",
                "upstream" => upstream.to_owned(),
                "outcome" => outcome.label()
            )
        });
        Some(Self {
            breaker: CircuitBreaker::new(breaker, upstream, &id),
            id,
            authority,
            base_path,
            host_header,
            in_flight: AtomicUsize::new(0),
            counters,
        })
    }

    /// Requests sent and not yet finished (response body included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn count(&self, outcome: Outcome) {
        self.counters[outcome as usize].increment(1);
    }
}

/// An instance as the table lists it: routable or not, with its status.
#[derive(Debug, Clone)]
pub struct Member {
    /// Health status name (`passing`, …, or `static` for the control plane).
    pub status: &'static str,
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
}

/// A named set of instances to balance over.
#[derive(Debug)]
pub struct Upstream {
    /// `registry`, `config`, `health`, or a service name.
    pub name: String,
    /// Every known instance, for `/admin/upstreams`.
    pub members: Vec<Member>,
    /// The instances that get traffic (`passing`).
    routable: Vec<Arc<Endpoint>>,
}

/// Why no instance was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No routable instance at all.
    NoInstance,
    /// Every routable instance's circuit is open; retry in this many ms.
    AllOpen(u64),
}

impl Upstream {
    /// An upstream of `members`; those with status `passing` or `static` get traffic.
    pub fn new(name: String, members: Vec<Member>) -> Self {
        let routable = members
            .iter()
            .filter(|m| m.status == "passing" || m.status == "static")
            .map(|m| m.endpoint.clone())
            .collect();
        Self {
            name,
            members,
            routable,
        }
    }

    /// How many instances get traffic.
    pub fn routable_len(&self) -> usize {
        self.routable.len()
    }

    /// Choose an instance (not `exclude`) whose circuit lets the request through.
    pub fn pick(&self, exclude: Option<&Arc<Endpoint>>) -> Result<Lease, Unavailable> {
        let candidates = &self.routable;
        let n = candidates.len();
        if n == 0 {
            return Err(Unavailable::NoInstance);
        }
        let excluded = |e: &Arc<Endpoint>| exclude.is_some_and(|x| Arc::ptr_eq(x, e));
        let mut retry_ms = u64::MAX;
        let mut try_one = |endpoint: &Arc<Endpoint>| -> Option<Lease> {
            if excluded(endpoint) {
                return None;
            }
            match endpoint.breaker.try_acquire() {
                Ok(admission) => Some(Lease::new(endpoint.clone(), admission)),
                Err(ms) => {
                    retry_ms = retry_ms.min(ms);
                    None
                }
            }
        };
        let mut rng = rand::rng();
        let start = if n == 1 { 0 } else { rng.random_range(0..n) };
        if n > 1 {
            // Two distinct random instances; the less loaded goes first.
            let mut other = rng.random_range(0..n - 1);
            if other >= start {
                other += 1;
            }
            let (a, b) = (&candidates[start], &candidates[other]);
            let (first, second) = if b.in_flight() < a.in_flight() {
                (b, a)
            } else {
                (a, b)
            };
            if let Some(lease) = try_one(first).or_else(|| try_one(second)) {
                return Ok(lease);
            }
        }
        // Both refused (or a single instance): any instance that admits, in order.
        for offset in 0..n {
            if let Some(lease) = try_one(&candidates[(start + offset) % n]) {
                return Ok(lease);
            }
        }
        if retry_ms == u64::MAX {
            // Only the excluded instance exists.
            return Err(Unavailable::NoInstance);
        }
        Err(Unavailable::AllOpen(retry_ms))
    }
}

/// A request's claim on an endpoint: counts it in flight, and must be
/// finished with the outcome for the breaker. Dropped unfinished (the
/// client went away), it tells the breaker nothing except to hand a trial on.
#[derive(Debug)]
pub struct Lease {
    endpoint: Arc<Endpoint>,
    admission: Admission,
    in_flight: Option<InFlight>,
}

impl Lease {
    fn new(endpoint: Arc<Endpoint>, admission: Admission) -> Self {
        Self {
            in_flight: Some(InFlight::new(endpoint.clone())),
            endpoint,
            admission,
        }
    }

    /// The chosen endpoint.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Record the outcome; returns the in-flight guard to keep until the
    /// response body is done.
    pub fn finish(mut self, outcome: Outcome) -> Option<InFlight> {
        self.endpoint.count(outcome);
        self.endpoint
            .breaker
            .record(self.admission, !outcome.is_failure());
        self.in_flight.take()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Unfinished: `finish` takes the guard, so it is still here.
        if self.in_flight.is_some() && self.admission == Admission::Trial {
            self.endpoint.breaker.abandon_trial();
        }
    }
}

/// Keeps one request counted in flight on an endpoint until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl InFlight {
    fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(endpoint)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
