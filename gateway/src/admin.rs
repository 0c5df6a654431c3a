//! `GET /admin/upstreams` (scope `admin`): every upstream with its
//! instances, their health status, circuit state and requests in flight;
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
    routing::{ControlPlane, Routes},
};

/// What the admin handler reads.
#[derive(Clone)]
pub struct AdminState {
    /// The service routing table.
    pub routes: Arc<Routes>,
    /// The control-plane upstreams.
    pub control: Arc<ControlPlane>,
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
