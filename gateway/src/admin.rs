//! `GET /admin/upstreams` (scope `admin`): every upstream with its
//! instances, their health status, circuit state and requests in flight.

use std::sync::Arc;

use axum::{Json, extract::State};
use serde::Serialize;

use crate::{
    balance::Upstream,
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
