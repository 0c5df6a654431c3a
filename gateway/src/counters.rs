//! The gateway's event counters, registered at zero when it starts.
//!
//! A counter made by `metrics::counter!` exists only from its first
//! increment, so before the first refused token `/metrics` has no
//! `gateway_auth_failures_total` at all and a dashboard or an alert such as
//! `rate(gateway_auth_failures_total[5m]) > 5` sees "no data" rather than 0.
//! [`register`] touches every counter and every label value of the bounded
//! label sets once, at start-up, so each series is there from the first
//! scrape (Prometheus' own advice for counters with known labels).
//!
//! The WebSocket series (`gateway_websocket_*`, see `proxy::upgrade`) are
//! here too, the connection gauge included.
//!
//! Counters whose labels come from live state (`gateway_upstream_requests_total`
//! per upstream, `gateway_requests_total` per service) are rendered from that
//! state and need nothing here.

use crate::jwt::AuthFailure;

/// Refused bearer tokens, by `reason` (an [`AuthFailure`] label).
pub const AUTH_FAILURES: &str = "gateway_auth_failures_total";
/// Requests answered 429 by a rate limit.
pub const RATE_LIMITED: &str = "gateway_rate_limited_total";
/// Requests let through because the Redis rate limiter could not answer.
pub const RATE_LIMIT_FAIL_OPEN: &str = "gateway_rate_limit_fail_open_total";
/// Upstream connections refused by the egress rules.
pub const EGRESS_REFUSED: &str = "gateway_egress_refused_total";
/// WebSocket handshakes the proxy forwarded, by `result` (one of
/// [`WEBSOCKET_RESULTS`]).
pub const WEBSOCKET_UPGRADES: &str = "gateway_websocket_upgrades_total";
/// Bytes through spliced WebSocket connections, by `direction` (`upstream`:
/// client to instance, `downstream`: back).
pub const WEBSOCKET_BYTES: &str = "gateway_websocket_bytes_total";
/// WebSocket connections spliced now (a gauge).
pub const WEBSOCKET_CONNECTIONS: &str = "gateway_websocket_connections";

/// `result` of [`WEBSOCKET_UPGRADES`]: spliced, the instance answered
/// without switching, or a 101 that could not become a splice.
pub const WEBSOCKET_RESULTS: [&str; 4] = ["switched", "refused", "failed", "full"];

/// Every [`AuthFailure`], for its series at zero.
pub const AUTH_FAILURE_REASONS: [AuthFailure; 10] = [
    AuthFailure::Missing,
    AuthFailure::Malformed,
    AuthFailure::Signature,
    AuthFailure::Algorithm,
    AuthFailure::UnknownKey,
    AuthFailure::Expired,
    AuthFailure::NotYetValid,
    AuthFailure::Issuer,
    AuthFailure::Audience,
    AuthFailure::Claims,
];

/// Whether [`AUTH_FAILURE_REASONS`] names every variant: this match stops
/// compiling when a variant is added without being listed above.
const fn listed(failure: AuthFailure) -> bool {
    match failure {
        AuthFailure::Missing
        | AuthFailure::Malformed
        | AuthFailure::Signature
        | AuthFailure::Algorithm
        | AuthFailure::UnknownKey
        | AuthFailure::Expired
        | AuthFailure::NotYetValid
        | AuthFailure::Issuer
        | AuthFailure::Audience
        | AuthFailure::Claims => true,
    }
}

/// Register every counter of the gateway at zero (call once, at start).
pub fn register() {
    // The recorder first: a counter made before it would never show.
    mcp_shared::metrics::handle();
    for failure in AUTH_FAILURE_REASONS {
        debug_assert!(listed(failure));
        metrics::counter!(AUTH_FAILURES, "reason" => failure.reason()).increment(0);
    }
    for name in [RATE_LIMITED, RATE_LIMIT_FAIL_OPEN, EGRESS_REFUSED] {
        metrics::counter!(name).increment(0);
    }
    for result in WEBSOCKET_RESULTS {
        metrics::counter!(WEBSOCKET_UPGRADES, "result" => result).increment(0);
    }
    for direction in ["upstream", "downstream"] {
        metrics::counter!(WEBSOCKET_BYTES, "direction" => direction).increment(0);
    }
    // A gauge exists from its first touch too; adding zero leaves other
    // gateways' connections in the same process counted.
    metrics::gauge!(WEBSOCKET_CONNECTIONS).increment(0.0);
}
