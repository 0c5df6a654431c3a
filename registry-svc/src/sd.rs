//! Prometheus HTTP service discovery: `GET /v1/sd/prometheus` (through the
//! gateway `GET /api/v1/registry/sd/prometheus`) answers the registered
//! instances in Prometheus's `http_sd` format, one target group per
//! instance, so a Prometheus job with `http_sd_configs` scrapes every
//! instance the caller's scopes may read.
//!
//! Each group is `{"targets": ["host:port"], "labels": {…}}` with
//! `__meta_mcp_service`, `__meta_mcp_instance_id`, `__meta_mcp_status`,
//! `__meta_mcp_tags` (`,a,b,`, as Consul SD spells tags),
//! `__meta_mcp_meta_<key>` per metadata entry (characters a label name
//! cannot hold become `_`), and `__metrics_path__` when the metadata names
//! one (`metrics_path`). The `__meta_*` labels are dropped by Prometheus
//! after relabelling unless a `relabel_configs` rule keeps them.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::{Extension, Query, State},
    response::{IntoResponse, Response},
};
use mcp_shared::{
    internal::Caller,
    names::Name,
    openapi::{BadRequest, StoreFailure},
    registry::Instance,
};
use serde::Serialize;
use utoipa::{
    IntoParams, ToSchema,
    openapi::{
        Required,
        path::{Parameter, ParameterBuilder, ParameterIn},
    },
};

use crate::{
    api::{AREA, AppState},
    discovery,
    error::ApiError,
    model::InstanceQuery,
};

/// The metadata key whose value becomes the target's `__metrics_path__`.
pub const METRICS_PATH_KEY: &str = "metrics_path";

/// One target group of Prometheus's `http_sd` format.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TargetGroup {
    /// `host:port` of the instance (IPv6 hosts in brackets).
    pub targets: Vec<String>,
    /// The instance's labels (`__meta_mcp_*`, `__metrics_path__`).
    pub labels: BTreeMap<String, String>,
}

/// The query of `GET /v1/sd/prometheus`: an optional `service`, then the
/// filters of the instance listing (`healthy`, `tag`, `meta.KEY`); no
/// blocking query (Prometheus polls on its `refresh_interval`).
#[derive(Debug, Default)]
pub struct SdQuery {
    /// Only this service's instances.
    pub service: Option<Name>,
    /// The instance filters.
    pub filter: InstanceQuery,
}

impl SdQuery {
    /// From the decoded query pairs; unknown parameters are refused.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut service = None;
        let mut rest = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            match key.as_str() {
                "service" => {
                    service = Some(
                        Name::parse(value.clone())
                            .map_err(|e| ApiError::bad_param("service", e))?,
                    );
                }
                "index" | "wait" => {
                    return Err(ApiError::bad_param(
                        key.as_str(),
                        "discovery is not a blocking query; Prometheus polls it on its refresh_interval",
                    ));
                }
                _ => rest.push((key.clone(), value.clone())),
            }
        }
        Ok(Self {
            service,
            filter: InstanceQuery::parse(&rest)?,
        })
    }
}

impl IntoParams for SdQuery {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut parameters = vec![
            ParameterBuilder::new()
                .name("service")
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some("Only this service's instances."))
                .schema(Some(mcp_shared::openapi::name_schema()))
                .build(),
        ];
        parameters.extend(
            InstanceQuery::into_params(parameter_in)
                .into_iter()
                .filter(|p| p.name != "index" && p.name != "wait"),
        );
        parameters
    }
}

/// A label name from a metadata key: `[a-zA-Z0-9_]`, anything else `_`.
fn label_name(prefix: &str, key: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + key.len());
    name.push_str(prefix);
    name.extend(
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    name
}

/// The target group of one instance.
pub fn target_group(instance: &Instance) -> TargetGroup {
    let host = if instance.host.contains(':') {
        format!("[{}]", instance.host)
    } else {
        instance.host.clone()
    };
    let mut labels = BTreeMap::new();
    labels.insert("__meta_mcp_service".to_owned(), instance.service.clone());
    labels.insert("__meta_mcp_instance_id".to_owned(), instance.id.clone());
    labels.insert(
        "__meta_mcp_status".to_owned(),
        instance.status.as_str().to_owned(),
    );
    let tags = if instance.tags.is_empty() {
        String::new()
    } else {
        format!(",{},", instance.tags.join(","))
    };
    labels.insert("__meta_mcp_tags".to_owned(), tags);
    for (key, value) in &instance.metadata {
        labels.insert(label_name("__meta_mcp_meta_", key), value.clone());
    }
    if let Some(path) = instance.metadata.get(METRICS_PATH_KEY) {
        labels.insert("__metrics_path__".to_owned(), path.clone());
    }
    TargetGroup {
        targets: vec![format!("{host}:{}", instance.port)],
        labels,
    }
}

/// `GET /v1/sd/prometheus`: every instance the caller may read, filtered.
#[utoipa::path(
    get, path = "/v1/sd/prometheus", tag = "registry",
    operation_id = "prometheusSd",
    summary = "Prometheus HTTP service discovery",
    description = "The instances in Prometheus's `http_sd` format: one target group per \
        instance, labelled `__meta_mcp_service`, `__meta_mcp_instance_id`, `__meta_mcp_status`, \
        `__meta_mcp_tags` (`,a,b,`), `__meta_mcp_meta_<key>`, and `__metrics_path__` when the \
        metadata holds `metrics_path`. Only services the caller's scopes may read; filtered by \
        `service`, `healthy`, `tag` and `meta.KEY`. Answered from the replica's in-memory copy \
        of the registry once it has caught up with Redis's revision, or at once with `stale`.",
    params(SdQuery),
    responses(
        (status = 200, description = "The target groups (`[]` when there are none).",
            body = Vec<TargetGroup>),
        BadRequest, StoreFailure,
    ),
)]
pub async fn prometheus(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let query = SdQuery::parse(&pairs)?;
    let visible = |service: &str| caller.scopes.may_read(AREA, service);
    if let Some(snapshot) = discovery::snapshot(&state, query.filter.stale).await? {
        let groups: Vec<TargetGroup> = snapshot
            .services
            .values()
            .filter(|s| {
                query
                    .service
                    .as_ref()
                    .is_none_or(|only| only.as_str() == &*s.name)
                    && visible(&s.name)
            })
            .flat_map(|s| s.instances.iter())
            .filter(|i| query.filter.matches(i))
            .map(|i| target_group(i))
            .collect();
        return Ok(Json(groups).into_response());
    }
    // The view did not catch up with Redis in time: read Redis.
    let services = match query.service {
        Some(service) => vec![service],
        None => {
            let (_, services) = state.store.services().await?;
            services
                .into_iter()
                .filter_map(|counts| Name::parse(counts.name).ok())
                .collect()
        }
    };
    let mut groups = Vec::new();
    // One Redis round trip per service: discovery is polled every
    // `refresh_interval` (30 s by default), not on a request path.
    for service in services.into_iter().filter(|s| visible(s.as_str())) {
        let (_, instances) = state.store.instances(&service).await?;
        groups.extend(
            instances
                .iter()
                .filter(|i| query.filter.matches(i))
                .map(target_group),
        );
    }
    Ok(Json(groups).into_response())
}

#[cfg(test)]
mod tests {
    use mcp_shared::registry::HealthStatus;

    use super::*;

    #[test]
    fn a_group_carries_the_instance_labels_and_its_metrics_path() {
        let instance = Instance {
            status: HealthStatus::Passing,
            revision: 3,
            id: "e-1".into(),
            service: "echo".into(),
            host: "::1".into(),
            port: 9000,
            tags: vec!["v2".into(), "canary".into()],
            metadata: BTreeMap::from([
                ("metrics_path".into(), "/stats".into()),
                ("zone.a-b".into(), "x".into()),
            ]),
            ttl_seconds: 30,
            check: None,
            registered_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
        };
        let group = target_group(&instance);
        assert_eq!(group.targets, ["[::1]:9000"]);
        let label = |k: &str| group.labels.get(k).map(String::as_str);
        assert_eq!(label("__meta_mcp_service"), Some("echo"));
        assert_eq!(label("__meta_mcp_instance_id"), Some("e-1"));
        assert_eq!(label("__meta_mcp_status"), Some("passing"));
        assert_eq!(label("__meta_mcp_tags"), Some(",v2,canary,"));
        assert_eq!(label("__meta_mcp_meta_zone_a_b"), Some("x"));
        assert_eq!(label("__metrics_path__"), Some("/stats"));
    }
}
