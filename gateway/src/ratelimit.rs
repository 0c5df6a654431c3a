//! The rate-limit layer: GCRA per client, `RATE_LIMIT_RPS` sustained with
//! `RATE_LIMIT_BURST` at once.
//!
//! The client is the token's `sub` (else its IP), so the layer sits after
//! authentication. That is also why it uses `governor`'s keyed limiter
//! directly rather than `tower_governor`: one layer serves both modes with
//! the same IETF `RateLimit-Limit/-Remaining/-Reset` headers (on every
//! answer, not only on 429) and a problem+json 429, which `tower_governor`'s
//! fixed `x-ratelimit-*` headers and plain-text error do not give.
//!
//! A service whose policy sets `rate_limit` (see [`crate::policy`]) is
//! limited by a limiter of its own instead, keyed as the policy says.
//!
//! - `local`: an in-process keyed GCRA (lock-free per key), per replica.
//! - `redis`: one atomic Lua script per request holds the limit across
//!   replicas. When Redis is down the limiter fails open (requests pass,
//!   with a log line and `gateway_rate_limit_fail_open_total`), and skips
//!   Redis for a second, so an outage costs no latency per request.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    num::NonZeroU32,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request},
    http::{HeaderMap, HeaderName, HeaderValue},
    response::{IntoResponse, Response},
};
use futures_util::future::Either;
use governor::{
    Quota, RateLimiter as Gcra,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DashMapStateStore,
};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};

use crate::{
    RateLimitMode,
    auth::Principal,
    error::GatewayError,
    policy::{Applied, Limit},
    store::Store,
};

/// `RateLimit-Limit`.
pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
/// `RateLimit-Remaining`.
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// `RateLimit-Reset`.
pub const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The local limiter's buckets, hashed with foldhash (seeded per process,
/// as the token cache's) instead of SipHash: two lookups per request.
type Buckets = DashMapStateStore<Arc<str>, foldhash::fast::RandomState>;

type LocalGcra = Gcra<Arc<str>, Buckets, DefaultClock, StateInformationMiddleware>;

/// One decision: pass or not, and the numbers for the headers.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// Requests left in the burst.
    pub remaining: u64,
    /// Seconds until the burst is whole again.
    pub reset_secs: u64,
    /// Seconds until a request would pass (429 only).
    pub retry_after_secs: u64,
}

/// The limiter behind the layer.
pub struct RateLimiter {
    backend: Backend,
    burst: u32,
    burst_header: HeaderValue,
    /// A service's own limiter: its Redis keys are `gw:rl:svc:{service}:{client}`.
    scope: Option<Box<str>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("burst", &self.burst)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

// One per process, built once and never moved: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Off,
    Local {
        gcra: LocalGcra,
        interval: Duration,
    },
    Redis {
        store: Store,
        interval_us: u64,
        /// While `now < skip_until_ms` (ms since `epoch`), Redis is presumed down.
        skip_until_ms: AtomicU64,
        epoch: Instant,
    },
}

impl RateLimiter {
    /// A limiter of `rps` per second with `burst`; `rps == 0` turns it off.
    pub fn new(mode: RateLimitMode, rps: u32, burst: u32, store: Store) -> Self {
        let burst = burst.max(1);
        let backend = match (NonZeroU32::new(rps), mode) {
            (None, _) => Backend::Off,
            (Some(rate), RateLimitMode::Local) => {
                let burst_nz = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::per_second(rate).allow_burst(burst_nz);
                Backend::Local {
                    gcra: Gcra::dashmap_with_clock_and_hasher(
                        quota,
                        DefaultClock::default(),
                        foldhash::fast::RandomState::default(),
                    )
                    .with_middleware::<StateInformationMiddleware>(),
                    interval: Duration::from_secs(1) / rate.get(),
                }
            }
            (Some(rate), RateLimitMode::Redis) => Backend::Redis {
                store,
                interval_us: (1_000_000 / u64::from(rate.get())).max(1),
                skip_until_ms: AtomicU64::new(0),
                epoch: Instant::now(),
            },
        };
        Self {
            backend,
            burst,
            burst_header: HeaderValue::from(burst),
            scope: None,
        }
    }

    /// The same limiter, kept apart for `service` (a policy's own limit).
    pub fn scoped(mut self, service: &str) -> Self {
        self.scope = Some(format!("svc:{service}").into_boxed_str());
        self
    }

    /// Take one request from `client`'s allowance; `None` when limiting is off.
    pub async fn check(&self, client: &Arc<str>) -> Option<Decision> {
        if let Some(settled) = self.check_now(client) {
            return settled;
        }
        self.check_store(client).await
    }

    /// [`Self::check`] when it needs no I/O (limiting off, the local
    /// limiter, Redis skipped after a failure); `None` when Redis must be asked.
    fn check_now(&self, client: &Arc<str>) -> Option<Option<Decision>> {
        match &self.backend {
            Backend::Off => Some(None),
            Backend::Local { gcra, interval } => Some(Some(match gcra.check_key(client) {
                Ok(snapshot) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    let missing = self.burst.saturating_sub(remaining);
                    Decision {
                        allowed: true,
                        remaining: u64::from(remaining),
                        reset_secs: ceil_secs(*interval * missing),
                        retry_after_secs: 0,
                    }
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(gcra.clock().now());
                    Decision {
                        allowed: false,
                        remaining: 0,
                        reset_secs: ceil_secs(*interval * self.burst),
                        retry_after_secs: ceil_secs(wait).max(1),
                    }
                }
            })),
            Backend::Redis {
                skip_until_ms,
                epoch,
                ..
            } => {
                let now_ms = epoch.elapsed().as_millis() as u64;
                if now_ms < skip_until_ms.load(Ordering::Relaxed) {
                    metrics::counter!(crate::counters::RATE_LIMIT_FAIL_OPEN).increment(1);
                    return Some(None);
                }
                None
            }
        }
    }

    /// [`Self::check`] against Redis (the script's round trip); fails open.
    async fn check_store(&self, client: &Arc<str>) -> Option<Decision> {
        match &self.backend {
            Backend::Off | Backend::Local { .. } => None,
            Backend::Redis {
                store,
                interval_us,
                skip_until_ms,
                epoch,
            } => {
                let now_ms = epoch.elapsed().as_millis() as u64;
                // A service's limiter keeps its own buckets (one `format!`
                // next to a Redis round trip).
                let scoped;
                let key = match &self.scope {
                    Some(scope) => {
                        scoped = format!("{scope}:{client}");
                        scoped.as_str()
                    }
                    None => &**client,
                };
                match store.rate_limit(key, *interval_us, self.burst).await {
                    Ok(decision) => Some(Decision {
                        allowed: decision.allowed,
                        remaining: decision.remaining,
                        reset_secs: decision.reset_us.div_ceil(1_000_000),
                        retry_after_secs: decision.retry_after_us.div_ceil(1_000_000).max(1),
                    }),
                    Err(error) => {
                        // Fail open; say so once per outage second, not per request.
                        skip_until_ms.store(now_ms + 1000, Ordering::Relaxed);
                        tracing::warn!(%error, "rate limit store unavailable; letting requests through");
                        metrics::counter!(crate::counters::RATE_LIMIT_FAIL_OPEN).increment(1);
                        None
                    }
                }
            }
        }
    }

    fn set_headers(&self, headers: &mut HeaderMap, decision: &Decision) {
        // One growth of the map at most.
        headers.reserve(3);
        headers.insert(RATELIMIT_LIMIT, self.burst_header.clone());
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(decision.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(decision.reset_secs));
    }

    fn forget_idle(&self) {
        if let Backend::Local { gcra, .. } = &self.backend {
            gcra.retain_recent();
            gcra.shrink_to_fit();
        }
    }
}

fn ceil_secs(duration: Duration) -> u64 {
    let secs = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
}

/// Drop the local limiter's state of clients that are back to a full burst,
/// every minute until `shutdown`, so memory follows active clients only.
pub async fn forget_idle_clients(limiter: Arc<RateLimiter>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => limiter.forget_idle(),
        }
    }
}

/// Layer: rate-limit every request by client.
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<RateLimiter>,
}

impl RateLimitLayer {
    /// Limit with `limiter`.
    pub fn new(limiter: Arc<RateLimiter>) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] builds.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: Arc<RateLimiter>,
}

/// A boxed future (the Redis path only).
type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for RateLimit<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    /// A decision that needs no I/O (the local limiter, limiting off)
    /// calls the inner service at once and stamps its answer: no box, no
    /// extra future; only a Redis round trip or a refusal is boxed.
    type Future = Either<Stamped<S::Future>, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // A service with a limit of its own is limited by it instead of
        // the global one (one `Arc` clone; no policy, no cost).
        let own = request
            .extensions()
            .get::<Arc<Applied>>()
            .and_then(|applied| applied.limiter.clone());
        let (limiter, client) = match own {
            Some((limiter, key)) => {
                let client = client_by(&request, &key);
                (limiter, client)
            }
            None => (self.limiter.clone(), client_of(&request)),
        };
        if let Some(decision) = limiter.check_now(&client) {
            return match decision {
                Some(decision) if !decision.allowed => Either::Right(Box::pin(std::future::ready(
                    Ok(refusal(&limiter, &decision)),
                ))),
                decision => Either::Left(Stamped {
                    answer: self.inner.call(request),
                    stamp: decision.map(|decision| (limiter, decision)),
                }),
            };
        }
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(async move {
            match limiter.check_store(&client).await {
                Some(decision) if !decision.allowed => Ok(refusal(&limiter, &decision)),
                decision => {
                    Stamped {
                        answer: inner.call(request),
                        stamp: decision.map(|decision| (limiter, decision)),
                    }
                    .await
                }
            }
        }))
    }
}

/// The 429 of a refused `decision`, with its headers.
fn refusal(limiter: &RateLimiter, decision: &Decision) -> Response {
    metrics::counter!(crate::counters::RATE_LIMITED).increment(1);
    let mut response = GatewayError::RateLimited {
        retry_after: decision.retry_after_secs,
    }
    .into_response();
    limiter.set_headers(response.headers_mut(), decision);
    response
}

pin_project_lite::pin_project! {
    /// The inner service's answer, with the rate-limit headers of the
    /// decision that let it through (upstream answers pass through, but
    /// the limit is the gateway's to report); none when limiting is off.
    pub struct Stamped<F> {
        #[pin]
        answer: F,
        stamp: Option<(Arc<RateLimiter>, Decision)>,
    }
}

impl<F> Future for Stamped<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(mut response) = std::task::ready!(this.answer.poll(cx));
        if let Some((limiter, decision)) = this.stamp.take() {
            limiter.set_headers(response.headers_mut(), &decision);
        }
        Poll::Ready(Ok(response))
    }
}

/// The key of a service's own limit: the subject, the IP or a header (else the IP).
fn client_by(request: &Request, key: &Limit) -> Arc<str> {
    match key {
        Limit::Subject => client_of(request),
        Limit::Ip => ip_of(request),
        Limit::Header(name) => match request.headers().get(name).and_then(|v| v.to_str().ok()) {
            Some(value) => Arc::from(format!("h:{value}")),
            None => ip_of(request),
        },
    }
}

fn ip_of(request: &Request) -> Arc<str> {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_default();
    Arc::from(ip)
}

/// The rate-limit key: the token's `sub` (a shared string: no copy), else the peer's IP.
fn client_of(request: &Request) -> Arc<str> {
    if let Some(subject) = request
        .extensions()
        .get::<Principal>()
        .and_then(|p| p.subject.clone())
    {
        return subject;
    }
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string())
        .unwrap_or_default();
    Arc::from(ip)
}
