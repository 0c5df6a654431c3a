//! The registry's Redis schema, in one place because three services use it:
//! registry-svc writes instances, health-svc writes check results into them,
//! and the gateway routes from them. The wire types ([`Instance`],
//! [`InstanceSpec`], [`InstanceList`], [`ServiceList`], [`RegistryEvent`],
//! …) are `mcp-api`'s ([`mcp_api::registry`]), re-exported here, so the
//! services' OpenAPI documents, the SDK and `mcpctl` share one definition
//! of each.
//!
//! # Keys (under `{prefix}:`)
//!
//! | key | type | content | written by |
//! |---|---|---|---|
//! | `reg:revision`, `reg:events` | string, stream | the registry's [`EventLog`](crate::events::EventLog) | registry-svc, health-svc |
//! | `reg:epoch` | string | the log's epoch (see [`crate::events`]): made by the first write into an empty Redis | registry-svc, health-svc |
//! | `reg:services` | set | names of services with at least one instance | registry-svc |
//! | `reg:svc:{service}` | hash | instance id → stored instance JSON (below) | registry-svc; health-svc rewrites the status prefix |
//! | `reg:leases` | sorted set | `{service}/{id}` → lease deadline (ms since epoch) | registry-svc |
//! | `reg:lease-versions` | hash | service → [`LeaseVersion`]: bumped by every lease change that appends no event (a heartbeat, protection lifting), dropped with the service's last instance | registry-svc |
//! | `health:svc:{service}` | hash | instance id → [`HealthRecord`] JSON | health-svc (registry-svc deletes it with the instance) |
//!
//! # Stored instance JSON
//!
//! An [`Instance`] serialized with `status` and `revision` as its first two
//! members and without `expires_at` (kept in `reg:leases`, so a heartbeat
//! rewrites no JSON and emits no event). Lua scripts never decode and
//! re-encode it (Redis's cjson turns `[]` into `{}`); they splice the prefix
//! instead: `{"status":"<status>","revision":<rev>,` + [`stored_tail`].
//!
//! # Events (stream `reg:events`, `scope` = service name)
//!
//! `data` is a JSON object `{"service","id","instance"?}`: `registered`,
//! `updated` and `health` carry the instance as stored after the change;
//! `deregistered` and `expired` carry none. See [`RegistryEvent`].

use std::sync::LazyLock;

use redis::Script;
use serde::{Deserialize, Serialize};

pub use mcp_api::registry::*;

use crate::store::{Redis, StoreError};

pub mod writes;

/// Name of the registry's event log (`{prefix}:reg:…`).
pub const LOG_NAME: &str = "reg";

/// The stored JSON of `instance` minus its `{"status":…,"revision":…,`
/// prefix, for a script to prepend the real ones. Starts right after the
/// comma, ends with `}`.
pub fn stored_tail(instance: &Instance) -> Result<String, serde_json::Error> {
    let mut bare = instance.clone();
    bare.expires_at = None;
    bare.revision = 0;
    bare.status = HealthStatus::Unknown;
    let json = serde_json::to_string(&bare)?;
    const PREFIX: &str = r#"{"status":"unknown","revision":0,"#;
    Ok(json.strip_prefix(PREFIX).unwrap_or(&json).to_owned())
}

/// A service's entry in `reg:lease-versions`: how many lease changes that
/// append no event it has had (`version`), and the last of them when it was
/// one instance's renewal: `"<version> <id> <deadline ms>"` (a heartbeat), or
/// `"<version>"` alone for a change of several leases at once (protection
/// lifting). A reader that knows the deadlines at `version - 1` applies
/// `renewed` and knows them at `version`, without reading every lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseVersion {
    /// Lease changes without an event so far (0: none, or no entry).
    pub version: u64,
    /// The last change, when it renewed one instance: its id and new deadline (ms).
    pub renewed: Option<(String, u64)>,
}

impl LeaseVersion {
    /// Read an entry's text (anything unreadable counts as version 0, which
    /// a reader never takes for current deadlines it holds at another).
    pub fn parse(text: &str) -> Self {
        let mut parts = text.split(' ');
        let version = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let renewed = match (parts.next(), parts.next().and_then(|d| d.parse().ok())) {
            (Some(id), Some(deadline)) => Some((id.to_owned(), deadline)),
            _ => None,
        };
        Self { version, renewed }
    }
}

/// The last check result of an instance, kept by health-svc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// Status after hysteresis.
    pub status: HealthStatus,
    /// Last output: status code and body excerpt, or the error.
    pub output: String,
    /// When it was last checked, RFC 3339.
    pub last_checked_at: String,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Successes in a row.
    pub consecutive_successes: u32,
    /// Since when it has been critical (ms since epoch), for `deregister_critical_after_seconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_since_ms: Option<u64>,
}

/// The read-only script of [`RegistryKeys::load`].
static LOAD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../lua/registry/load.lua")));

/// The registry's key names, built once per service from the prefix.
#[derive(Debug, Clone)]
pub struct RegistryKeys {
    redis: Redis,
    /// `reg:services`.
    pub services: String,
    /// `reg:leases`.
    pub leases: String,
    /// `reg:lease-versions`: a lease change without an event (a heartbeat)
    /// still moves its service's [`LeaseVersion`], so an in-memory copy of
    /// the registry learns with one `HGET` whether its deadlines are current.
    pub lease_versions: String,
}

impl RegistryKeys {
    /// Keys under `redis`'s prefix.
    pub fn new(redis: Redis) -> Self {
        Self {
            services: redis.key(&[LOG_NAME, "services"]),
            leases: redis.key(&[LOG_NAME, "leases"]),
            lease_versions: redis.key(&[LOG_NAME, "lease-versions"]),
            redis,
        }
    }

    /// `reg:svc:{service}`: the instances hash of a service.
    pub fn instances(&self, service: &str) -> String {
        self.redis.key(&[LOG_NAME, "svc", service])
    }

    /// `health:svc:{service}`: the check results hash of a service.
    pub fn health(&self, service: &str) -> String {
        self.redis.key(&["health", "svc", service])
    }

    /// The member of `reg:leases` for one instance.
    pub fn lease_member(service: &str, id: &str) -> String {
        format!("{service}/{id}")
    }

    /// Every registered instance and the revision they are at, read in one
    /// script (`lua/registry/load.lua`), so the two agree exactly: what a
    /// follower ([`crate::events::follow()`]) loads before applying the events
    /// after that revision. An instance that does not decode is logged and
    /// skipped rather than failing the whole load.
    pub async fn load(&self) -> Result<(u64, Vec<Instance>), StoreError> {
        let mut invocation = LOAD.prepare_invoke();
        invocation
            .key(&self.services)
            .key(self.redis.key(&[LOG_NAME, "revision"]))
            .arg(self.instances(""));
        let mut conn = self.redis.conn();
        let reply: Vec<String> = self.redis.run(invocation.invoke_async(&mut conn)).await?;
        let mut reply = reply.into_iter();
        let revision = reply.next().unwrap_or_default();
        let revision = revision
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("not a revision: {revision:?}")))?;
        let instances = reply
            .filter_map(|json| match serde_json::from_str::<Instance>(&json) {
                Ok(instance) => Some(instance),
                Err(error) => {
                    tracing::warn!(%error, "unreadable instance in redis; skipped");
                    None
                }
            })
            .collect();
        Ok((revision, instances))
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// An instance of `service` at 127.0.0.1:9000.
    fn instance(service: &str, id: &str) -> Instance {
        mcp_testkit::registry::instance_at(service, id, ([127, 0, 0, 1], 9000).into())
    }

    #[tokio::test]
    async fn load_reads_every_instance_at_the_revision_of_the_last_write() {
        let redis = Redis::new(
            &mcp_testkit::redis().url(),
            &mcp_testkit::prefix(),
            std::time::Duration::from_millis(750),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let keys = RegistryKeys::new(redis.clone());
        assert_eq!(
            keys.load().await.ok(),
            Some((0, vec![])),
            "an empty registry"
        );
        let log = crate::events::EventLog::new(redis.clone(), LOG_NAME, 100);
        let writes = writes::RegistryWrites::new(redis, log);
        for (service, id) in [("a", "a-1"), ("a", "a-2"), ("b", "b-1")] {
            let tail = stored_tail(&instance(service, id)).unwrap_or_default();
            let written = writes.register(service, id, &tail, 30_000, false).await;
            assert!(written.is_ok(), "{written:?}");
        }
        let (revision, mut loaded) = keys.load().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(revision, 3);
        loaded.sort_by(|x, y| x.id.cmp(&y.id));
        let ids: Vec<(&str, &str, u64)> = loaded
            .iter()
            .map(|i| (i.service.as_str(), i.id.as_str(), i.revision))
            .collect();
        assert_eq!(ids, [("a", "a-1", 1), ("a", "a-2", 2), ("b", "b-1", 3)]);
    }

    #[test]
    fn a_lease_version_names_its_renewal_when_there_was_one() {
        assert_eq!(
            LeaseVersion::parse("7 echo-1 1733140000123"),
            LeaseVersion {
                version: 7,
                renewed: Some(("echo-1".into(), 1_733_140_000_123)),
            }
        );
        assert_eq!(LeaseVersion::parse("8").renewed, None);
        assert_eq!(LeaseVersion::parse("8").version, 8);
        assert_eq!(LeaseVersion::parse("x"), LeaseVersion::default());
    }

    #[test]
    fn stored_tail_splices_back_into_an_instance() {
        let instance = Instance {
            status: HealthStatus::Passing,
            revision: 7,
            expires_at: Some("x".into()),
            ..instance("echo", "echo-1")
        };
        let tail = stored_tail(&instance).unwrap_or_default();
        let spliced = format!(r#"{{"status":"passing","revision":7,{tail}"#);
        let back: Instance = serde_json::from_str(&spliced).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.tags, Vec::<String>::new());
        assert_eq!(back.revision, 7);
        assert_eq!(back.expires_at, None);
        assert_eq!(back.status, HealthStatus::Passing);
    }
}
