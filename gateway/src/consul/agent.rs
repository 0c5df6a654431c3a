//! Consul's agent endpoints, mapped onto the registry.
//!
//! - `PUT /v1/agent/service/register`: an MCP registration of instance
//!   `ID` (default `Name`) of service `Name` at `Address:Port` (MCP has no
//!   agent address to fall back on: `Address` is required). A `TTL` check
//!   becomes the lease (`ttl_seconds`); an `HTTP` check of
//!   `http://Address:Port/path` or a `TCP` check of `Address:Port` becomes
//!   MCP's active check (`Interval`, `Timeout`,
//!   `DeregisterCriticalServiceAfter` kept), with the longest lease
//!   (3600 s: register again within it). Script, gRPC, Docker checks,
//!   several checks, Connect and proxies answer 501.
//! - `PUT /v1/agent/service/deregister/{id}`: deregisters it.
//! - `PUT /v1/agent/check/{pass|warn|fail}/{check_id}` (and `update` with
//!   `Status`): the check ID is `service:{id}` (or the bare ID); `pass` and
//!   `warn` renew the lease; `fail` does not, so the instance leaves with
//!   its lease, as a failed TTL check takes a Consul service out of
//!   passing answers. MCP keeps no client-set check status or notes.
//!
//! The endpoints that take only an ID find its service among the instances
//! the caller may read (`registry:read`), then need `registry:write` on it.

use axum::{
    Extension,
    body::Bytes,
    extract::{Path, Query, State},
    http::{Method, StatusCode},
    response::IntoResponse,
};
use mcp_shared::{
    names::Name,
    problem::{self, Problem},
    registry::limits::MAX_TTL_SECONDS,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ConsulState, NODE, Refusal, Reply, call, encode, encode_path, require};
use crate::auth::Principal;

/// `GET /v1/agent/self`: the virtual agent.
pub async fn agent_self(State(state): State<ConsulState>) -> Reply {
    let body = json!({
        "Config": {
            "Datacenter": state.datacenter, "NodeName": NODE, "NodeID": super::NODE_ID,
            "Server": false, "Version": concat!("mcp-", env!("CARGO_PKG_VERSION")),
        },
        "Member": {"Name": NODE, "Addr": "127.0.0.1", "Port": 0, "Status": 1, "Tags": {}},
        "Meta": {},
    });
    Ok(axum::Json(body).into_response())
}

/// The member of a Consul body, matched as Consul does: case-insensitively
/// and with `_` ignored (`DeregisterCriticalServiceAfter` =
/// `deregister_critical_service_after`).
fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let canonical = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = canonical(name);
    object
        .iter()
        .find(|(key, value)| canonical(key) == wanted && !value.is_null())
        .map(|(_, value)| value)
}

fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Refusal> {
    match member(object, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Refusal::invalid(name, "must be a string")),
    }
}

/// A Go duration (`10s`, `1m30s`, `500ms`) in whole seconds, at least 1.
fn seconds(object: &Map<String, Value>, name: &str) -> Result<Option<u64>, Refusal> {
    let Some(value) = text(object, name)? else {
        return Ok(None);
    };
    let duration = humantime::parse_duration(value)
        .map_err(|_| Refusal::invalid(name, "must be a duration such as 10s or 1m"))?;
    Ok(Some(duration.as_secs_f64().ceil().max(1.0) as u64))
}

/// The MCP registration of a Consul service definition: (service, id, body).
fn registration(definition: &Value) -> Result<(Name, Name, Value), Refusal> {
    let Some(object) = definition.as_object() else {
        return Err(Refusal::invalid("body", "must be a JSON object"));
    };
    for unsupported in ["Kind", "Connect", "Proxy"] {
        if member(object, unsupported).is_some_and(|v| v != "" && v != &json!({})) {
            return Err(Refusal::unsupported(format!(
                "`{unsupported}` in a service definition"
            )));
        }
    }
    let name = text(object, "Name")?.ok_or_else(|| Refusal::invalid("Name", "is required"))?;
    let id = text(object, "ID")?.unwrap_or(name);
    let service = Name::parse(name).map_err(|e| Refusal::invalid("Name", e.to_string()))?;
    let id = Name::parse(id).map_err(|e| Refusal::invalid("ID", e.to_string()))?;
    let address = text(object, "Address")?.ok_or_else(|| {
        Refusal::invalid(
            "Address",
            "is required (MCP has no agent address to use instead)",
        )
    })?;
    let port = match member(object, "Port") {
        None => 0,
        Some(port) => port
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| Refusal::invalid("Port", "must be a port number"))?,
    };
    let mut body = json!({"host": address, "port": port});
    if let Some(tags) = member(object, "Tags") {
        body["tags"] = tags.clone();
    }
    if let Some(meta) = member(object, "Meta") {
        body["metadata"] = meta.clone();
    }
    let mut checks: Vec<&Value> = Vec::new();
    if let Some(check) = member(object, "Check") {
        checks.push(check);
    }
    if let Some(list) = member(object, "Checks") {
        let Some(list) = list.as_array() else {
            return Err(Refusal::invalid("Checks", "must be an array"));
        };
        checks.extend(list);
    }
    body["ttl_seconds"] = json!(MAX_TTL_SECONDS);
    match checks.as_slice() {
        [] => {}
        [check] => apply_check(check, address, port, &mut body)?,
        _ => return Err(Refusal::unsupported("more than one check per service")),
    }
    Ok((service, id, body))
}

/// Map one Consul check onto `body` (see the module docs).
fn apply_check(check: &Value, address: &str, port: u16, body: &mut Value) -> Result<(), Refusal> {
    let Some(check) = check.as_object() else {
        return Err(Refusal::invalid("Check", "must be a JSON object"));
    };
    for unsupported in [
        "Args",
        "Script",
        "GRPC",
        "DockerContainerID",
        "H2PING",
        "AliasService",
        "OSService",
        "UDP",
    ] {
        if member(check, unsupported).is_some() {
            return Err(Refusal::unsupported(format!("`{unsupported}` checks")));
        }
    }
    if let Some(ttl) = seconds(check, "TTL")? {
        body["ttl_seconds"] = json!(ttl.min(MAX_TTL_SECONDS));
        return Ok(());
    }
    let own = format!("{address}:{port}");
    let mut active = if let Some(url) = text(check, "HTTP")? {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| Refusal::unsupported("HTTP checks other than http://"))?;
        let (authority, path) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
        if authority != own {
            return Err(Refusal::unsupported(format!(
                "HTTP checks of another address than the service's ({own})"
            )));
        }
        json!({"type": "http", "path": path})
    } else if let Some(target) = text(check, "TCP")? {
        if target != own {
            return Err(Refusal::unsupported(format!(
                "TCP checks of another address than the service's ({own})"
            )));
        }
        json!({"type": "tcp"})
    } else {
        return Err(Refusal::invalid(
            "Check",
            "needs one of TTL, HTTP or TCP (the kinds MCP maps)",
        ));
    };
    if let Some(interval) = seconds(check, "Interval")? {
        active["interval_seconds"] = json!(interval);
    }
    if let Some(timeout) = text(check, "Timeout")? {
        let timeout = humantime::parse_duration(timeout)
            .map_err(|_| Refusal::invalid("Timeout", "must be a duration such as 1s"))?;
        active["timeout_ms"] = json!(timeout.as_millis().max(1));
    }
    if let Some(after) = seconds(check, "DeregisterCriticalServiceAfter")? {
        active["deregister_critical_after_seconds"] = json!(after);
    }
    body["check"] = active;
    Ok(())
}

/// `PUT /v1/agent/service/register`: 200 with an empty body.
pub async fn register(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Reply {
    let definition: Value = serde_json::from_slice(&body)
        .map_err(|e| Refusal::invalid("body", format!("not JSON: {e}")))?;
    let (service, id, registration) = registration(&definition)?;
    let path = format!("/api/v1/registry/services/{service}/instances/{id}");
    require(&principal, &Method::PUT, &path)?;
    let native = call(
        &state,
        &principal,
        Method::PUT,
        &path,
        &[],
        Some(registration.to_string().into_bytes()),
    )
    .await?;
    if !native.status.is_success() {
        return Err(native.pass_on());
    }
    Ok(problem::empty(StatusCode::OK))
}

#[derive(Deserialize)]
struct Group {
    labels: std::collections::BTreeMap<String, String>,
}

/// The service of instance `id` among those the caller may read.
async fn service_of(state: &ConsulState, principal: &Principal, id: &str) -> Result<Name, Refusal> {
    let path = "/api/v1/registry/sd/prometheus";
    require(principal, &Method::GET, path)?;
    let native = call(state, principal, Method::GET, path, &[], None).await?;
    if !native.status.is_success() {
        return Err(native.pass_on());
    }
    let groups: Vec<Group> = native.json()?;
    let mut services = groups.iter().filter_map(|g| {
        (g.labels.get("__meta_mcp_instance_id").map(String::as_str) == Some(id))
            .then(|| g.labels.get("__meta_mcp_service").cloned())
            .flatten()
    });
    let not_found = || {
        Refusal::from(Problem::not_found(format!(
            "Unknown service ID `{id}` (among the services you may read)"
        )))
    };
    let service = services.next().ok_or_else(not_found)?;
    if services.next().is_some() {
        return Err(Refusal::from(Problem::new(
            StatusCode::CONFLICT,
            format!("service ID `{id}` is registered in several services; use the native API"),
        )));
    }
    Name::parse(service).map_err(|_| not_found())
}

/// `PUT /v1/agent/service/deregister/{id}`: 200 with an empty body.
pub async fn deregister(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Reply {
    let service = service_of(&state, &principal, &id).await?;
    let path = format!(
        "/api/v1/registry/services/{service}/instances/{}",
        encode(&id)
    );
    require(&principal, &Method::DELETE, &path)?;
    let native = call(&state, &principal, Method::DELETE, &path, &[], None).await?;
    if !native.status.is_success() {
        return Err(native.pass_on());
    }
    Ok(problem::empty(StatusCode::OK))
}

/// `PUT /v1/agent/check/{pass|warn|fail|update}/{check_id}`: 200 with an
/// empty body (see the module docs for what each does).
pub async fn check(
    State(state): State<ConsulState>,
    Extension(principal): Extension<Principal>,
    Path((verb, check_id)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Reply {
    let renew = match verb.as_str() {
        "pass" | "warn" => true,
        "fail" => false,
        "update" => {
            let update: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let status = update
                .as_object()
                .and_then(|o| member(o, "Status"))
                .and_then(Value::as_str)
                .unwrap_or("");
            match status {
                "passing" | "warning" => true,
                "critical" => false,
                _ => {
                    return Err(Refusal::invalid(
                        "Status",
                        "must be passing, warning or critical",
                    ));
                }
            }
        }
        other => {
            return Err(Refusal::unsupported(format!(
                "the agent check verb `{other}`"
            )));
        }
    };
    let _ = pairs; // `note` is accepted and not kept (MCP keeps no check notes).
    let id = check_id.strip_prefix("service:").unwrap_or(&check_id);
    let service = service_of(&state, &principal, id).await?;
    let path = format!(
        "/api/v1/registry/services/{service}/instances/{}/heartbeat",
        encode_path(id)
    );
    require(&principal, &Method::PUT, &path)?;
    if renew {
        let native = call(&state, &principal, Method::PUT, &path, &[], None).await?;
        if !native.status.is_success() {
            return Err(native.pass_on());
        }
    }
    Ok(problem::empty(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_check_is_the_lease_and_an_http_check_the_active_check() {
        let (service, id, body) = registration(&json!({
            "name": "web", "address": "127.0.0.1", "port": 8080, "tags": ["a"],
            "check": {"ttl": "10s"},
        }))
        .unwrap();
        assert_eq!((service.as_str(), id.as_str()), ("web", "web"));
        assert_eq!(body["ttl_seconds"], 10);
        assert!(body.get("check").is_none());
        let (_, id, body) = registration(&json!({
            "Name": "web", "ID": "web-2", "Address": "127.0.0.1", "Port": 8080,
            "Checks": [{"HTTP": "http://127.0.0.1:8080/health", "Interval": "5s",
                "Timeout": "500ms", "DeregisterCriticalServiceAfter": "1m"}],
        }))
        .unwrap();
        assert_eq!(id.as_str(), "web-2");
        assert_eq!(
            body["check"],
            json!({"type": "http", "path": "/health", "interval_seconds": 5,
                "timeout_ms": 500, "deregister_critical_after_seconds": 60})
        );
        assert!(
            registration(&json!({"Name": "web", "Address": "h", "Check": {"Args": ["x"]}}))
                .is_err()
        );
        assert!(registration(&json!({"Name": "web"})).is_err());
    }
}
