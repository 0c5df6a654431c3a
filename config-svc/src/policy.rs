//! The reserved namespace `gateway` (see `mcp_shared::policy`): gateway
//! policies are config, so they get versions, CAS, history, rollback, dry
//! runs and watches like any other value, but their schema is the
//! project's.
//!
//! - [`install`]: stores the project's schema as the namespace's schema at
//!   start (and whenever it differs from the stored one), retrying while
//!   Redis is down; `PUT`/`DELETE …/gateway/schema` are refused with 409.
//! - [`check`]: every write (put, rollback, dry run) to the namespace is
//!   validated against the schema of its key's kind (`services/*` →
//!   `ServicePolicy`, `routes/*` → `Route`), so the 422 points into the
//!   value precisely, then by the checks the schema cannot express, and a
//!   route is refused (409) when another route answers the same requests.
//!   The route check reads the namespace once; two routes written at the
//!   same instant on two replicas could both pass (the gateway then takes
//!   the one whose name sorts first).

use std::{sync::OnceLock, time::Duration};

use mcp_shared::{
    policy::{self, PolicyKey, Route, ServicePolicy},
    problem::FieldError,
    time::now_rfc3339,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{
    error::ConfigError,
    model::{StoredEntry, compact_json},
    schema::CompiledSchema,
    store::ConfigStore,
};

/// Whether `namespace` is the reserved one.
pub fn is_reserved(namespace: &str) -> bool {
    namespace == policy::NAMESPACE
}

/// The compiled schema of one kind of key (compiled once per process).
fn compiled(kind: PolicyKey<'_>) -> Option<&'static CompiledSchema> {
    static SERVICE: OnceLock<Option<CompiledSchema>> = OnceLock::new();
    static ROUTE: OnceLock<Option<CompiledSchema>> = OnceLock::new();
    let cell = match kind {
        PolicyKey::Service(_) => &SERVICE,
        PolicyKey::Route(_) => &ROUTE,
    };
    cell.get_or_init(|| {
        CompiledSchema::compile(0, &policy::schema_of(kind.definition()))
            .inspect_err(
                |error| tracing::error!(%error, "the gateway policy schema does not compile"),
            )
            .ok()
    })
    .as_ref()
}

fn violation(namespace: &str, errors: Vec<FieldError>) -> ConfigError {
    ConfigError::SchemaViolation {
        namespace: namespace.to_owned(),
        errors,
    }
}

/// Check a value written to `key` of the reserved namespace (see the module docs).
pub async fn check(store: &ConfigStore, key: &str, value: &str) -> Result<(), ConfigError> {
    let Some(kind) = PolicyKey::parse(key) else {
        return Err(ConfigError::invalid(
            "key",
            "keys of namespace `gateway` are `services/{service}` or `routes/{name}`",
        ));
    };
    let instance: Value =
        serde_json::from_str(value).map_err(|e| ConfigError::Body(e.to_string()))?;
    let schema = compiled(kind).ok_or_else(|| {
        ConfigError::Store(mcp_shared::StoreError::Corrupt(
            "the gateway policy schema does not compile".to_owned(),
        ))
    })?;
    let errors = schema.violations(&instance, "/value");
    if !errors.is_empty() {
        return Err(violation(policy::NAMESPACE, errors));
    }
    let typed = |e: serde_json::Error| {
        violation(
            policy::NAMESPACE,
            vec![FieldError::new("/value", e.to_string())],
        )
    };
    let problems = match kind {
        PolicyKey::Service(service) => {
            mcp_shared::names::Name::parse(service)
                .map_err(|e| ConfigError::invalid("key", format!("service name {e}")))?;
            let parsed: ServicePolicy = serde_json::from_value(instance).map_err(typed)?;
            policy::check_service(&parsed)
        }
        PolicyKey::Route(name) => {
            let parsed: Route = serde_json::from_value(instance).map_err(typed)?;
            let problems = policy::check_route(&parsed);
            if problems.is_empty() {
                refuse_conflicts(store, name, &parsed).await?;
            }
            problems
        }
    };
    if problems.is_empty() {
        return Ok(());
    }
    Err(violation(
        policy::NAMESPACE,
        problems
            .into_iter()
            .map(|v| FieldError::new(format!("/value{}", v.pointer), v.message))
            .collect(),
    ))
}

/// 409 when another route answers the same requests as `route`.
async fn refuse_conflicts(
    store: &ConfigStore,
    name: &str,
    route: &Route,
) -> Result<(), ConfigError> {
    let (entries, _) = store.list(policy::NAMESPACE).await?;
    let mut others: Vec<(String, Route)> = Vec::new();
    for (key, entry) in &entries {
        let Some(PolicyKey::Route(other)) = PolicyKey::parse(key) else {
            continue;
        };
        let Ok(stored) = serde_json::from_str::<StoredEntry<'_>>(entry) else {
            continue;
        };
        if let Ok(existing) = serde_json::from_str::<Route>(stored.value.get()) {
            others.push((other.to_owned(), existing));
        }
    }
    let conflict = policy::route_conflict(name, route, others.iter().map(|(n, r)| (n.as_str(), r)));
    match conflict {
        Some(other) => Err(ConfigError::Conflict(format!(
            "route `{name}` would answer the same requests as route `{other}` (prefix `{}`, overlapping hosts)",
            route.prefix()
        ))),
        None => Ok(()),
    }
}

/// One attempt at [`install`] (each Redis call bounded by `REDIS_TIMEOUT`); whether it is in place.
pub async fn install_now(store: &ConfigStore) -> bool {
    install_once(store, &compact_json(policy::SCHEMA))
        .await
        .is_ok()
}

/// Store the project's schema for the namespace once it differs from the
/// stored one; retried every second while Redis is down, until `shutdown`.
pub async fn install(store: ConfigStore, shutdown: CancellationToken) {
    let text = compact_json(policy::SCHEMA).into_owned();
    let mut warned = false;
    loop {
        match install_once(&store, &text).await {
            Ok(()) => return,
            Err(error) if !warned => {
                tracing::warn!(%error, "cannot install the gateway policy schema yet; retrying");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn install_once(store: &ConfigStore, text: &str) -> Result<(), mcp_shared::StoreError> {
    for _ in 0..10 {
        if store
            .schema(policy::NAMESPACE)
            .await?
            .is_some_and(|s| s.text == text)
        {
            return Ok(());
        }
        let snapshot = store.snapshot(policy::NAMESPACE).await?;
        if store
            .put_schema(
                policy::NAMESPACE,
                &snapshot.ns_revision,
                text,
                &now_rfc3339(),
            )
            .await?
            .is_some()
        {
            tracing::info!("installed the gateway policy schema");
            return Ok(());
        }
    }
    Err(mcp_shared::StoreError::Corrupt(
        "the gateway namespace kept changing".to_owned(),
    ))
}
