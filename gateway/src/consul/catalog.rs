//! Consul's catalog and health reads, from the registry: datacenters,
//! nodes (one virtual node), services with their tags, a service's
//! instances, and a service's health entries with Consul's check statuses
//! (`passing`, `warning`, `critical`; MCP's `unknown`, not checked yet, is
//! `critical`, as a new Consul check starts). Each instance carries one
//! service check, `service:{id}`, of type `ttl` (no active check: the
//! lease decides), `http` or `tcp`.

use std::collections::BTreeSet;

use axum::{
    Extension,
    extract::{Path, Query, State},
    http::Method,
};
use mcp_shared::{
    names::Name,
    registry::{CheckType, HealthStatus, Instance, InstanceList, ServiceList},
};
use serde_json::{Value, json};

use super::{
    ConsulState, NODE, NODE_ID, ReadQuery, Refusal, Reply, call, encode, indexed_json, require,
};
use crate::auth::Principal;

type Pairs = Query<Vec<(String, String)>>;

/// Consul's status of an MCP health status.
pub fn consul_status(status: HealthStatus) -> &'static str {
    match status {
        HealthStatus::Passing => "passing",
        HealthStatus::Warning => "warning",
        HealthStatus::Critical | HealthStatus::Unknown => "critical",
    }
}

/// The virtual node, as `/v1/catalog/nodes` lists it.
fn node(state: &ConsulState) -> Value {
    json!({
        "ID": NODE_ID, "Node": NODE, "Address": "127.0.0.1", "Datacenter": state.datacenter,
        "TaggedAddresses": {}, "Meta": {}, "CreateIndex": 1, "ModifyIndex": 1,
    })
}

/// `GET /v1/catalog/datacenters`.
pub async fn datacenters(State(state): State<ConsulState>) -> Reply {
    Ok(indexed_json(1, &json!([state.datacenter])))
}

/// `GET /v1/catalog/nodes`: the one virtual node.
pub async fn nodes(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Query(pairs): Pairs,
) -> Reply {
    ReadQuery::parse(&pairs, &state)?;
    require(&principal, &Method::GET, "/api/v1/registry/services")?;
    Ok(indexed_json(1, &json!([node(&state)])))
}

/// `GET /v1/catalog/services`: `{name: [tags]}` of the services the
/// caller may read; blocks on the registry revision.
pub async fn services(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Query(pairs): Pairs,
) -> Reply {
    let query = ReadQuery::parse(&pairs, &state)?;
    refuse_filter(&pairs)?;
    let path = "/api/v1/registry/services";
    require(&principal, &Method::GET, path)?;
    let blocking = query.native();
    let uri = if blocking.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{blocking}")
    };
    let native = call(&state, &principal, Method::GET, &uri, &[], None).await?;
    if !native.status.is_success() {
        return Err(native.pass_on());
    }
    let index = native.index.unwrap_or(0);
    let list: ServiceList = native.json()?;
    let mut services = serde_json::Map::new();
    for summary in list.services {
        // The tags of each service: one more read per service (the catalog
        // is a discovery call, not a request path).
        let (_, instances) = instances(&state, &principal, &summary.name, "").await?;
        let tags: BTreeSet<String> = instances.into_iter().flat_map(|i| i.tags).collect();
        services.insert(summary.name, json!(tags));
    }
    Ok(indexed_json(index, &Value::Object(services)))
}

/// A filter expression (`filter=`) is only honoured where it is cheap.
fn refuse_filter(pairs: &[(String, String)]) -> Result<(), Refusal> {
    if pairs.iter().any(|(k, v)| k == "filter" && !v.is_empty()) {
        return Err(Refusal::unsupported(
            "the `filter` parameter on this endpoint",
        ));
    }
    Ok(())
}

/// The instances of `service` (native query `extra`, e.g. `healthy=true`,
/// `tag=…`, `index=…`), with the registry revision.
async fn instances(
    state: &ConsulState,
    principal: &Principal,
    service: &str,
    extra: &str,
) -> Result<(u64, Vec<Instance>), Refusal> {
    let service = Name::parse(service)
        .map_err(|e| Refusal::invalid("service", format!("not an MCP service name: {e}")))?;
    let path = format!("/api/v1/registry/services/{service}/instances");
    require(principal, &Method::GET, &path)?;
    let uri = if extra.is_empty() {
        path
    } else {
        format!("{path}?{extra}")
    };
    let native = call(state, principal, Method::GET, &uri, &[], None).await?;
    if !native.status.is_success() {
        return Err(native.pass_on());
    }
    let index = native.index.unwrap_or(0);
    let list: InstanceList = native.json()?;
    Ok((index, list.instances))
}

/// The native query of a service read: `tag` (repeatable), `passing`
/// (`healthy=true`), the blocking query; a cheap subset of `filter`.
struct ServiceQuery {
    native: String,
    filter: Filter,
}

impl ServiceQuery {
    fn parse(pairs: &[(String, String)], state: &ConsulState) -> Result<Self, Refusal> {
        let read = ReadQuery::parse(pairs, state)?;
        let mut native = Vec::new();
        let mut filter = Filter::default();
        for (key, value) in pairs {
            match key.as_str() {
                "tag" => native.push(format!("tag={}", encode(value))),
                // `?passing` and `?passing=true` filter; `passing=false` does not.
                "passing" if value.is_empty() || value == "1" || value == "true" => {
                    native.push("healthy=true".to_owned());
                }
                "filter" if !value.is_empty() => filter = Filter::parse(value)?,
                _ => {}
            }
        }
        let blocking = read.native();
        if !blocking.is_empty() {
            native.push(blocking);
        }
        Ok(Self {
            native: native.join("&"),
            filter,
        })
    }
}

/// The cheap subset of Consul's filter expressions: clauses joined by
/// `and`, each `Selector == "value"`, `Selector != "value"` or
/// `"value" in Selector`, on `ServiceID`, `ServiceName`, `ServiceAddress`,
/// `ServiceTags`/`Service.Tags` and `ServiceMeta.KEY`/`Service.Meta.KEY`
/// (also with the `Service.` spelling of the health endpoint).
#[derive(Debug, Default)]
struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Debug)]
enum Clause {
    Equals(String, String, bool),
    Contains(String, String),
}

impl Filter {
    fn parse(expression: &str) -> Result<Self, Refusal> {
        let unsupported = || Refusal::unsupported(format!("the filter expression `{expression}`"));
        let unquote = |s: &str| -> Option<String> {
            let s = s.trim();
            s.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .map(str::to_owned)
        };
        let mut clauses = Vec::new();
        for clause in expression.split(" and ") {
            let clause = clause.trim();
            let parsed = if let Some((left, right)) = clause.split_once("!=") {
                Clause::Equals(
                    left.trim().to_owned(),
                    unquote(right).ok_or_else(unsupported)?,
                    false,
                )
            } else if let Some((left, right)) = clause.split_once("==") {
                Clause::Equals(
                    left.trim().to_owned(),
                    unquote(right).ok_or_else(unsupported)?,
                    true,
                )
            } else if let Some((left, right)) = clause.split_once(" in ") {
                Clause::Contains(
                    right.trim().to_owned(),
                    unquote(left).ok_or_else(unsupported)?,
                )
            } else {
                return Err(unsupported());
            };
            let selector = match &parsed {
                Clause::Equals(s, ..) | Clause::Contains(s, _) => s,
            };
            if field(selector).is_none() {
                return Err(unsupported());
            }
            clauses.push(parsed);
        }
        Ok(Self { clauses })
    }

    fn matches(&self, instance: &Instance) -> bool {
        self.clauses.iter().all(|clause| match clause {
            Clause::Equals(selector, value, equal) => {
                let actual = match field(selector) {
                    Some(Field::Id) => Some(instance.id.as_str()),
                    Some(Field::Name) => Some(instance.service.as_str()),
                    Some(Field::Address) => Some(instance.host.as_str()),
                    Some(Field::Meta(key)) => instance.metadata.get(key).map(String::as_str),
                    Some(Field::Tags) | None => None,
                };
                (actual == Some(value.as_str())) == *equal
            }
            Clause::Contains(selector, value) => match field(selector) {
                Some(Field::Tags) => instance.tags.iter().any(|t| t == value),
                Some(Field::Meta(key)) => instance.metadata.contains_key(key) && key == value,
                _ => false,
            },
        })
    }
}

enum Field<'a> {
    Id,
    Name,
    Address,
    Tags,
    Meta(&'a str),
}

fn field(selector: &str) -> Option<Field<'_>> {
    let selector = selector
        .strip_prefix("Service.")
        .or_else(|| selector.strip_prefix("Service"))
        .unwrap_or(selector);
    match selector {
        "ID" => Some(Field::Id),
        "Name" | "Service" => Some(Field::Name),
        "Address" => Some(Field::Address),
        "Tags" => Some(Field::Tags),
        _ => selector.strip_prefix("Meta.").map(Field::Meta),
    }
}

/// The service part of a catalog or health entry.
fn service_fields(instance: &Instance) -> Value {
    json!({
        "ID": instance.id, "Service": instance.service, "Tags": instance.tags,
        "Address": instance.host, "Meta": instance.metadata, "Port": instance.port,
        "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": false,
        "CreateIndex": instance.revision, "ModifyIndex": instance.revision,
    })
}

/// The service check of an instance, as Consul shows checks.
pub fn service_check(instance: &Instance) -> Value {
    let kind = match instance.check.as_ref().map(|c| c.kind) {
        None => "ttl",
        Some(CheckType::Http) => "http",
        Some(CheckType::Tcp) => "tcp",
    };
    json!({
        "Node": NODE, "CheckID": format!("service:{}", instance.id),
        "Name": format!("Service '{}' check", instance.service),
        "Status": consul_status(instance.status), "Notes": "", "Output": "",
        "ServiceID": instance.id, "ServiceName": instance.service,
        "ServiceTags": instance.tags, "Type": kind,
        "CreateIndex": instance.revision, "ModifyIndex": instance.revision,
    })
}

/// `GET /v1/catalog/service/{name}` (`tag`, `filter`, blocking).
pub async fn service(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(pairs): Pairs,
) -> Reply {
    let query = ServiceQuery::parse(&pairs, &state)?;
    let (index, instances) = instances(&state, &principal, &name, &query.native).await?;
    let entries: Vec<Value> = instances
        .iter()
        .filter(|i| query.filter.matches(i))
        .map(|i| {
            json!({
                "ID": NODE_ID, "Node": NODE, "Address": i.host, "Datacenter": state.datacenter,
                "TaggedAddresses": {}, "NodeMeta": {}, "ServiceKind": "",
                "ServiceID": i.id, "ServiceName": i.service, "ServiceTags": i.tags,
                "ServiceAddress": i.host, "ServicePort": i.port, "ServiceMeta": i.metadata,
                "ServiceWeights": {"Passing": 1, "Warning": 1},
                "ServiceEnableTagOverride": false,
                "CreateIndex": i.revision, "ModifyIndex": i.revision,
            })
        })
        .collect();
    Ok(indexed_json(index, &Value::Array(entries)))
}

/// `GET /v1/health/service/{name}` (`passing`, `tag`, `filter`, blocking).
pub async fn health_service(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Path(name): Path<String>,
    Query(pairs): Pairs,
) -> Reply {
    let query = ServiceQuery::parse(&pairs, &state)?;
    let (index, instances) = instances(&state, &principal, &name, &query.native).await?;
    let mut node = node(&state);
    let entries: Vec<Value> = instances
        .iter()
        .filter(|i| query.filter.matches(i))
        .map(|i| {
            node["Address"] = json!(i.host);
            json!({
                "Node": node.clone(),
                "Service": service_fields(i),
                "Checks": [service_check(i)],
            })
        })
        .collect();
    Ok(indexed_json(index, &Value::Array(entries)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn instance() -> Instance {
        Instance {
            status: HealthStatus::Unknown,
            revision: 4,
            id: "web-1".into(),
            service: "web".into(),
            host: "127.0.0.1".into(),
            port: 80,
            tags: vec!["v2".into()],
            metadata: BTreeMap::from([("zone".into(), "a".into())]),
            ttl_seconds: 30,
            check: None,
            registered_at: "2026-01-01T00:00:00Z".into(),
            expires_at: None,
        }
    }

    #[test]
    fn a_cheap_filter_matches_ids_tags_and_metadata() {
        let i = instance();
        let ok = |e: &str| Filter::parse(e).unwrap().matches(&i);
        assert!(ok(r#"ServiceID == "web-1""#));
        assert!(ok(r#""v2" in ServiceTags and ServiceMeta.zone == "a""#));
        assert!(ok(r#"Service.Meta.zone != "b""#));
        assert!(!ok(r#""v3" in Service.Tags"#));
        assert!(Filter::parse("Node.Meta.x == 1").is_err());
    }

    #[test]
    fn an_unchecked_instance_shows_a_critical_ttl_check() {
        let check = service_check(&instance());
        assert_eq!(check["Status"], "critical");
        assert_eq!(check["CheckID"], "service:web-1");
        assert_eq!(check["Type"], "ttl");
    }
}
