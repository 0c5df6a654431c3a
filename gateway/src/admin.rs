//! `GET /admin/upstreams` (scope `admin`): every upstream with its
//! instances, their health status, circuit state and requests in flight;
//! `GET /admin/policies` (scope `admin`): the effective policy of every
//! service and the config version it came from;
//! and the gateway's `GET /metrics` (scope `metrics:read` or `admin`), with
//! the per-upstream and per-instance series rendered from the live table.

use std::{fmt::Write as _, sync::Arc};

use axum::{
    Json,
    extract::{MatchedPath, Request, State},
    http::Method,
    middleware::Next,
    response::Response,
};
use serde::Serialize;

use crate::{
    auth,
    balance::{Upstream, UpstreamCounters, escape_label},
    jwt::Verifier,
    policy::{Applied, Policies},
    routing::{ControlPlane, Routes},
};

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The service routing table.
    pub routes: Arc<Routes>,
    /// The control-plane upstreams.
    pub control: Arc<ControlPlane>,
    /// The per-service policies.
    pub policies: Arc<Policies>,
    /// The global settings a service without a policy field runs on.
    pub globals: Arc<Globals>,
}

/// The global settings (environment) that unset policy fields fall back to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Globals {
    /// `UPSTREAM_TIMEOUT_MS`.
    pub timeout_ms: u64,
    /// `RATE_LIMIT_RPS` (0: off).
    pub rate_limit_rps: u32,
    /// `RATE_LIMIT_BURST`.
    pub rate_limit_burst: u32,
    /// `RATE_LIMIT_MODE`.
    pub rate_limit_mode: &'static str,
    /// `CB_FAILURE_THRESHOLD`.
    pub failure_threshold: u32,
    /// `CB_OPEN_SECONDS`.
    pub open_seconds: u64,
}

/// The answer of `GET /admin/policies`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PoliciesView {
    /// The config revision this replica's policies reflect.
    pub revision: u64,
    /// The global settings unset fields fall back to.
    pub globals: Globals,
    /// Every service known to the routing table or with a policy, by name.
    pub services: Vec<ServicePolicyView>,
    /// The extra routes, in match order.
    pub routes: Vec<RouteView>,
}

/// The effective policy of one service.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServicePolicyView {
    /// The service.
    pub service: String,
    /// `config` (a policy in namespace `gateway`) or `global` (none: the global settings).
    pub source: &'static str,
    /// The config version of `services/{service}` it came from.
    pub version: Option<u64>,
    /// The config revision of that version.
    pub revision: Option<u64>,
    /// Who wrote it.
    pub updated_by: Option<String>,
    /// The policy as written (`{}` for none).
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    /// The settings in force, the global ones filling the unset fields.
    pub effective: EffectiveView,
}

/// The settings in force for one service.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EffectiveView {
    /// `jwt` or `none`.
    pub auth: &'static str,
    /// Scopes needed on top of a valid token.
    pub scopes: Vec<String>,
    /// Time for the upstream's response headers.
    pub timeout_ms: u64,
    /// Sustained requests per second (0: off).
    pub rate_limit_rps: u32,
    /// Burst.
    pub rate_limit_burst: u32,
    /// `local` or `redis`.
    pub rate_limit_mode: &'static str,
    /// Breaker: consecutive failures that open a circuit.
    pub failure_threshold: u32,
    /// Breaker: seconds open.
    pub open_seconds: u64,
    /// Retries after the first try (by default one, after a connect error).
    pub retry_attempts: u32,
}

/// One extra route.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RouteView {
    /// Its name (`routes/{name}`).
    pub name: String,
    /// The config version it came from.
    pub version: u64,
    /// The route as written.
    #[schema(value_type = Object)]
    pub route: serde_json::Value,
}

fn effective(applied: Option<&Applied>, globals: &Globals) -> EffectiveView {
    let policy = applied.map(|a| &a.policy);
    let limit = policy.and_then(|p| p.rate_limit.as_ref());
    let breaker = policy.and_then(|p| p.circuit_breaker).unwrap_or_default();
    EffectiveView {
        auth: if applied.is_some_and(|a| a.public) {
            "none"
        } else {
            "jwt"
        },
        scopes: applied.map(|a| a.scopes.clone()).unwrap_or_default(),
        timeout_ms: policy
            .and_then(|p| p.timeout_ms)
            .unwrap_or(globals.timeout_ms),
        rate_limit_rps: limit.map_or(globals.rate_limit_rps, |l| l.rps),
        rate_limit_burst: limit.map_or(globals.rate_limit_burst, |l| l.burst.unwrap_or(l.rps)),
        rate_limit_mode: match limit.map(|l| l.mode) {
            Some(mcp_shared::policy::LimitMode::Local) => "local",
            Some(mcp_shared::policy::LimitMode::Redis) => "redis",
            None => globals.rate_limit_mode,
        },
        failure_threshold: breaker
            .failure_threshold
            .unwrap_or(globals.failure_threshold),
        open_seconds: breaker.open_seconds.unwrap_or(globals.open_seconds),
        retry_attempts: policy
            .and_then(|p| p.retries.as_ref())
            .map_or(1, |r| r.attempts),
    }
}

/// `GET /admin/policies`.
#[utoipa::path(
    get, path = "/admin/policies", tag = "admin", operation_id = "adminPolicies",
    summary = "The effective policy of every service",
    description = "Every service (in the routing table or with a policy) with the policy in \
        force on this replica, the config version it came from, and the global settings that \
        fill its unset fields; then the extra routes in match order. Policies are written in \
        config namespace `gateway` (`services/{service}`, `routes/{name}`; schemas \
        `GatewayServicePolicy` and `GatewayRoute`).",
    responses((status = 200, description = "The policies.", body = PoliciesView)),
)]
pub async fn policies(State(state): State<AdminState>) -> Json<PoliciesView> {
    let snapshot = state.policies.current();
    let table = state.routes.current();
    let mut names: Vec<&str> = table
        .services
        .keys()
        .chain(snapshot.services.keys())
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names.dedup();
    let services = names
        .into_iter()
        .map(|service| {
            let applied = snapshot.service(service).map(|a| &**a);
            ServicePolicyView {
                service: service.to_owned(),
                source: if applied.is_some() {
                    "config"
                } else {
                    "global"
                },
                version: applied.map(|a| a.source.version),
                revision: applied.map(|a| a.source.revision),
                updated_by: applied.map(|a| a.source.updated_by.clone()),
                policy: applied
                    .and_then(|a| serde_json::to_value(&a.policy).ok())
                    .unwrap_or_else(|| serde_json::json!({})),
                effective: effective(applied, &state.globals),
            }
        })
        .collect();
    let routes = snapshot
        .routes
        .iter()
        .map(|r| RouteView {
            name: r.name.to_string(),
            version: r.source.version,
            route: serde_json::to_value(&r.route).unwrap_or_default(),
        })
        .collect();
    Json(PoliciesView {
        revision: snapshot.revision,
        globals: (*state.globals).clone(),
        services,
        routes,
    })
}

/// The answer of `GET /admin/upstreams`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamsView {
    /// Control plane first, then services by name.
    pub upstreams: Vec<UpstreamView>,
}

/// One upstream.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpstreamView {
    /// `registry`, `config`, `health` or the service name.
    pub name: String,
    /// `control-plane` or `service`.
    pub kind: &'static str,
    /// Its instances.
    pub instances: Vec<InstanceView>,
}

/// One instance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceView {
    /// Instance id (base URL for the control plane).
    pub id: String,
    /// `host:port`.
    pub address: String,
    /// Health status (`static` for the control plane).
    pub status: &'static str,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// Consecutive failures counted by the breaker.
    pub consecutive_failures: u32,
    /// Requests in flight.
    pub in_flight: usize,
}

fn view(upstream: &Upstream, kind: &'static str) -> UpstreamView {
    UpstreamView {
        name: upstream.name.clone(),
        kind,
        instances: upstream
            .members
            .iter()
            .map(|member| InstanceView {
                id: member.endpoint.id.clone(),
                address: member.endpoint.authority.to_string(),
                status: member.status,
                circuit: member.endpoint.breaker.state().as_str(),
                consecutive_failures: member.endpoint.breaker.failures(),
                in_flight: member.endpoint.in_flight(),
            })
            .collect(),
    }
}

/// `GET /admin/upstreams`.
#[utoipa::path(
    get, path = "/admin/upstreams", tag = "admin", operation_id = "adminUpstreams",
    summary = "Upstreams, their instances and circuits",
    description = "Every upstream (the control plane first, then the registered services by \
        name) with its instances: health status, circuit state, consecutive failures and \
        requests in flight, as this gateway replica sees them.",
    responses((status = 200, description = "The upstreams.", body = UpstreamsView)),
)]
pub async fn upstreams(State(state): State<AdminState>) -> Json<UpstreamsView> {
    let mut upstreams = vec![
        view(&state.control.registry, "control-plane"),
        view(&state.control.config, "control-plane"),
        view(&state.control.health, "control-plane"),
    ];
    let table = state.routes.current();
    let mut services: Vec<_> = table.services.values().collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    upstreams.extend(services.into_iter().map(|u| view(u, "service")));
    Json(UpstreamsView { upstreams })
}

/// What the gateway's `/metrics` reads: the verifier for the token, the
/// table and the control plane for the per-instance series.
#[derive(Clone)]
pub struct MetricsState {
    /// Verifies the scraper's token.
    pub verifier: Arc<Verifier>,
    /// The service routing table.
    pub routes: Arc<Routes>,
    /// The control-plane upstreams.
    pub control: Arc<ControlPlane>,
    /// The policies (for the per-service series).
    pub policies: Arc<Policies>,
}

/// Middleware over the whole app: the gateway's `GET /metrics` (the
/// scaffold's route, matched as a template so no spelling of the path gets
/// around it) needs a token with scope `metrics:read` or `admin`, and adds
/// the gateway's own series to the common ones. Its series name every
/// service and instance id, which is no business of an anonymous caller on
/// the public listener; the services' own `/metrics` stay open (internal).
/// Every other request goes on untouched (one comparison).
pub async fn guard_metrics(
    State(state): State<MetricsState>,
    mut request: Request,
    next: Next,
) -> Response {
    // Other methods go on to the route's own 405.
    let is_metrics = matches!(*request.method(), Method::GET | Method::HEAD)
        && request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|path| path.as_str() == "/metrics");
    if !is_metrics {
        return next.run(request).await;
    }
    if let Err(refusal) = auth::check(&state.verifier, &mut request).await {
        return refusal;
    }
    mcp_shared::metrics::exposition(render_metrics(&state))
}

/// The common series plus `gateway_upstream_requests_total` and
/// `gateway_circuit_state`, both read from what is live now: an instance
/// that left the routing table (and an upstream with no instance left)
/// has no series, so churn cannot grow the exposition.
fn render_metrics(state: &MetricsState) -> String {
    let mut out = mcp_shared::metrics::handle().render();
    UpstreamCounters::render(&mut out);
    crate::policy::render_metrics(&state.policies.current(), &mut out);
    out.push_str(
        "# HELP gateway_circuit_state Circuit breaker state per upstream instance: 0 closed, 1 open, 2 half-open.\n\
         # TYPE gateway_circuit_state gauge\n",
    );
    let table = state.routes.current();
    let mut services: Vec<&Arc<Upstream>> = table.services.values().collect();
    services.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let control = [
        &state.control.registry,
        &state.control.config,
        &state.control.health,
    ];
    for upstream in control.into_iter().chain(services) {
        let name = escape_label(&upstream.name);
        for member in &upstream.members {
            let _ = writeln!(
                out,
                "gateway_circuit_state{{upstream=\"{name}\",instance_id=\"{}\"}} {}",
                escape_label(&member.endpoint.id),
                member.endpoint.breaker.state().gauge_value()
            );
        }
    }
    out
}
