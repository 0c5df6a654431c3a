//! Upstreams, their instances, and how one is chosen for a request.
//!
//! Choice is power of two choices on in-flight requests: pick two instances
//! at random, send to the one with fewer requests in flight. Unlike round
//! robin it steers away from a slow or stuck instance (its in-flight count
//! grows) without any shared cursor, and unlike least-connections over all
//! instances it costs O(1) and does not stampede onto one fresh instance.
//! An instance whose circuit is open is skipped; when every one is, the
//! request fails at once with the time until the first trial.
//!
//! Metrics: `gateway_upstream_requests_total{upstream,outcome}` is counted
//! per upstream (not per instance) in [`UpstreamCounters`] that every
//! endpoint of one upstream shares, and lives only while an endpoint of it
//! does (see [`UpstreamCounters::render`]); the per-instance
//! `gateway_circuit_state` is rendered from the live routing table (see
//! `admin::render_metrics`). Neither goes through the `metrics` crate, whose
//! Prometheus recorder keeps every series it ever saw: a registry that churns
//! through instance ids (or service names) would grow it without bound.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex, OnceLock, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use axum::http::{HeaderValue, uri::Authority};
use mcp_shared::policy::UpstreamProtocol;
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
    /// A blocking query got no response headers within its `wait` plus the
    /// upstream timeout, or a gRPC call within its `grpc-timeout` (counted as
    /// a timeout, but no breaker failure: the client chose how long the
    /// upstream may take).
    LongPollTimeout,
    /// The exchange broke after connecting.
    Error,
}

/// How many [`Outcome`]s there are.
const OUTCOMES: usize = 9;

impl Outcome {
    /// The label of each outcome, in declaration order (the counter index).
    const LABELS: [&'static str; OUTCOMES] = [
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "5xx",
        "connect_error",
        "timeout",
        "timeout",
        "error",
    ];

    /// The outcome of a response status.
    pub fn of_status(status: u16) -> Self {
        match status {
            500.. => Self::ServerError,
            400..=499 => Self::ClientError,
            300..=399 => Self::Redirect,
            _ => Self::Success,
        }
    }

    /// Whether the breaker counts it as a failure: what says the instance
    /// is broken, never what a client can cause on its own (a 4xx, a long
    /// poll held as asked, a 503 of the control plane's shared Redis).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::ServerError | Self::ConnectError | Self::Timeout | Self::Error
        )
    }
}

/// `gateway_upstream_requests_total` of one upstream, by outcome: shared by
/// its endpoints, so counting is one relaxed atomic add.
#[derive(Debug, Default)]
pub struct UpstreamCounters {
    by_outcome: [AtomicU64; OUTCOMES],
}

/// Every upstream's counters, by name, held weakly: an entry dies with the
/// last endpoint of its upstream (the instance left the table and no request
/// holds it), so the series count follows the live table, not its history.
/// Written by hand: the `metrics` crate's Prometheus exporter cannot remove
/// a series. Touched only when an endpoint is built and at a scrape, never
/// per request.
fn upstream_counters() -> &'static Mutex<HashMap<Box<str>, Weak<UpstreamCounters>>> {
    static ALL: OnceLock<Mutex<HashMap<Box<str>, Weak<UpstreamCounters>>>> = OnceLock::new();
    ALL.get_or_init(Mutex::default)
}

impl UpstreamCounters {
    /// The counters of `upstream`, shared with its other live endpoints.
    pub fn of(upstream: &str) -> Arc<Self> {
        let mut all = match upstream_counters().lock() {
            Ok(all) => all,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(counters) = all.get(upstream).and_then(Weak::upgrade) {
            return counters;
        }
        // A new upstream (or one that came back): forget the dead first, so
        // the map stays as small as the live set plus what died since.
        all.retain(|_, counters| counters.strong_count() > 0);
        let counters = Arc::new(Self::default());
        all.insert(upstream.into(), Arc::downgrade(&counters));
        counters
    }

    fn count(&self, outcome: Outcome) {
        self.by_outcome[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Append `gateway_upstream_requests_total` of every live upstream to `out`
    /// (Prometheus text format), dropping the dead ones.
    pub fn render(out: &mut String) {
        let mut all = match upstream_counters().lock() {
            Ok(all) => all,
            Err(poisoned) => poisoned.into_inner(),
        };
        all.retain(|_, counters| counters.strong_count() > 0);
        let mut live: Vec<(&str, Arc<Self>)> = all
            .iter()
            .filter_map(|(name, counters)| Some((&**name, counters.upgrade()?)))
            .collect();
        live.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push_str(
            "# HELP gateway_upstream_requests_total Requests the gateway sent upstream, by outcome.\n\
             # TYPE gateway_upstream_requests_total counter\n",
        );
        for (name, counters) in live {
            // Outcomes sharing a label (5xx, timeout) are summed into one series.
            let mut sums: Vec<(&str, u64)> = Vec::with_capacity(OUTCOMES);
            for (index, label) in Outcome::LABELS.iter().enumerate() {
                let value = counters.by_outcome[index].load(Ordering::Relaxed);
                match sums.iter_mut().find(|(l, _)| l == label) {
                    Some((_, sum)) => *sum += value,
                    None => sums.push((label, value)),
                }
            }
            for (label, value) in sums {
                let _ = writeln!(
                    out,
                    "gateway_upstream_requests_total{{upstream=\"{}\",outcome=\"{label}\"}} {value}",
                    escape_label(name)
                );
            }
        }
    }
}

/// A Prometheus label value with `\`, `"` and newlines escaped.
pub fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
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
    /// How to speak to it (its `protocol` metadata; a policy may override).
    pub protocol: UpstreamProtocol,
    /// Whether it takes WebSocket upgrades (its `websocket` metadata; a
    /// policy may override).
    pub websocket: bool,
    in_flight: AtomicUsize,
    /// The upstream's request counters (shared with its other endpoints).
    counters: Arc<UpstreamCounters>,
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
        Some(Self {
            counters: UpstreamCounters::of(upstream),
            breaker: CircuitBreaker::new(breaker),
            id,
            authority,
            base_path,
            host_header,
            protocol: UpstreamProtocol::Http,
            websocket: false,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// This endpoint, spoken to with `protocol`, taking WebSocket upgrades
    /// when `websocket`.
    pub fn speaking(mut self, protocol: UpstreamProtocol, websocket: bool) -> Self {
        self.protocol = protocol;
        self.websocket = websocket;
        self
    }

    /// Requests sent and not yet finished (response body included).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn count(&self, outcome: Outcome) {
        self.counters.count(outcome);
    }
}

/// An instance as the table lists it: routable or not, with its status.
#[derive(Debug, Clone)]
pub struct Member {
    /// Health status name (`passing`, …, or `static` for the control plane).
    pub status: &'static str,
    /// The instance's tags (for traffic splits).
    pub tags: Vec<String>,
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
    /// The routable instances by tag (built with the table, so a split's
    /// choice costs one hash lookup and no allocation).
    by_tag: HashMap<String, Vec<Arc<Endpoint>>>,
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
        let passing = |m: &&Member| m.status == "passing" || m.status == "static";
        let routable = members
            .iter()
            .filter(passing)
            .map(|m| m.endpoint.clone())
            .collect();
        let mut by_tag: HashMap<String, Vec<Arc<Endpoint>>> = HashMap::new();
        for member in members.iter().filter(passing) {
            for tag in &member.tags {
                by_tag
                    .entry(tag.clone())
                    .or_default()
                    .push(member.endpoint.clone());
            }
        }
        Self {
            name,
            members,
            routable,
            by_tag,
        }
    }

    /// How many routable instances carry `tag`.
    pub fn tagged_len(&self, tag: &str) -> usize {
        self.by_tag.get(tag).map_or(0, Vec::len)
    }

    /// How many instances get traffic.
    pub fn routable_len(&self) -> usize {
        self.routable.len()
    }

    /// Choose an instance (not `exclude`) whose circuit lets the request through.
    pub fn pick(&self, exclude: Option<&Arc<Endpoint>>) -> Result<Lease, Unavailable> {
        self.pick_with(None, exclude, None)
    }

    /// [`Self::pick`] among the instances tagged `tag` (all of them when
    /// none has it: a canary tag without an instance sends nothing to the
    /// void), with a policy's `breaker` thresholds when given.
    pub fn pick_with(
        &self,
        tag: Option<&str>,
        exclude: Option<&Arc<Endpoint>>,
        breaker: Option<BreakerSettings>,
    ) -> Result<Lease, Unavailable> {
        let candidates = tag
            .and_then(|tag| self.by_tag.get(tag))
            .filter(|tagged| !tagged.is_empty())
            .unwrap_or(&self.routable);
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
            let acquired = match &breaker {
                Some(settings) => endpoint.breaker.try_acquire_with(settings),
                None => endpoint.breaker.try_acquire(),
            };
            match acquired {
                Ok(admission) => Some(Lease::new(endpoint.clone(), admission, breaker)),
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
    /// A service policy's breaker thresholds, when it sets them.
    breaker: Option<BreakerSettings>,
}

impl Lease {
    fn new(
        endpoint: Arc<Endpoint>,
        admission: Admission,
        breaker: Option<BreakerSettings>,
    ) -> Self {
        Self {
            in_flight: Some(InFlight::new(endpoint.clone())),
            endpoint,
            admission,
            breaker,
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
        let success = !outcome.is_failure();
        match &self.breaker {
            Some(settings) => self
                .endpoint
                .breaker
                .record_with(self.admission, success, settings),
            None => self.endpoint.breaker.record(self.admission, success),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_says_the_instance_is_broken_is_a_breaker_failure() {
        for outcome in [
            Outcome::Success,
            Outcome::Redirect,
            Outcome::ClientError,
            Outcome::DependencyDown,
            Outcome::LongPollTimeout,
        ] {
            assert!(!outcome.is_failure(), "{outcome:?}");
        }
        for outcome in [
            Outcome::ServerError,
            Outcome::ConnectError,
            Outcome::Timeout,
            Outcome::Error,
        ] {
            assert!(outcome.is_failure(), "{outcome:?}");
        }
        for status in [400, 404, 408, 429, 499] {
            assert!(!Outcome::of_status(status).is_failure(), "{status}");
        }
    }

    #[test]
    fn upstream_counters_live_as_long_as_an_endpoint_of_theirs() {
        let name = "counters-test-upstream";
        let first = UpstreamCounters::of(name);
        let second = UpstreamCounters::of(name);
        assert!(
            Arc::ptr_eq(&first, &second),
            "one upstream, one set of counters"
        );
        first.count(Outcome::Success);
        let mut text = String::new();
        UpstreamCounters::render(&mut text);
        assert!(text.contains(&format!(
            "gateway_upstream_requests_total{{upstream=\"{name}\",outcome=\"2xx\"}} 1\n"
        )));
        drop((first, second));
        let mut text = String::new();
        UpstreamCounters::render(&mut text);
        assert!(!text.contains(name), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a-b.c"), "a-b.c");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
