//! Every write to the registry's keys, in one place: registry-svc's
//! registrations, heartbeats, deregistrations and lease expiry, and
//! health-svc's check results and removal of long-critical instances.
//!
//! Each write is one Lua script (`shared/lua/registry/*.lua`) that changes
//! the data, takes the next revision and appends the event in one atomic
//! step (ARCHITECTURE.md, "Redis layout"). A lease change that appends no
//! event (a heartbeat, protection lifting) bumps the service's lease version
//! instead (KEYS[9]), so registry-svc's in-memory copy knows when the
//! deadlines it shows are old. Every script gets the same nine
//! KEYS in the same order and the same first two ARGV ([`RegistryWrites::invocation`]),
//! so no caller can pass them in another order, and tests write through
//! this module rather than copies of the scripts.
//!
//! | KEYS | key |
//! |---|---|
//! | 1 | `reg:svc:{service}` |
//! | 2 | `health:svc:{service}` |
//! | 3 | `reg:leases` |
//! | 4 | `reg:services` |
//! | 5 | `reg:revision` |
//! | 6 | `reg:events` |
//! | 7 | `reg:protected` (services whose expiries are held back) |
//! | 8 | `reg:expired:{service}` (recent expiries, for mass-expiry protection) |
//! | 9 | `reg:lease-versions` (service → version of its leases) |
//!
//! ARGV[1] is the stream's max length, ARGV[2] the service name.

use std::sync::LazyLock;

use redis::{Script, ScriptInvocation};

use super::{HealthStatus, LOG_NAME, RegistryKeys};
use crate::{
    events::{self, EventLog},
    store::{Redis, StoreError},
};

static REGISTER: LazyLock<Script> =
    LazyLock::new(|| events::script(include_str!("../../lua/registry/register.lua")));
static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| events::script(include_str!("../../lua/registry/heartbeat.lua")));
static DEREGISTER: LazyLock<Script> =
    LazyLock::new(|| events::script(include_str!("../../lua/registry/deregister.lua")));
static RECORD: LazyLock<Script> =
    LazyLock::new(|| events::script(include_str!("../../lua/registry/record.lua")));
static REAP: LazyLock<Script> =
    LazyLock::new(|| events::script(include_str!("../../lua/registry/reap.lua")));

/// What a registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// A new instance (201) rather than a replacement (200).
    pub created: bool,
    /// The status it was stored with.
    pub status: HealthStatus,
    /// The revision of the change.
    pub revision: u64,
    /// Its lease deadline, ms since the epoch.
    pub deadline_ms: u64,
}

/// A renewed lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// The instance JSON as stored (without `expires_at`).
    pub stored: String,
    /// The new deadline, ms since the epoch.
    pub deadline_ms: u64,
}

/// Mass-expiry protection policy (see `reap.lua` and the README).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Protection {
    /// Share of a service's instances at risk above which expiries are held.
    pub threshold: f64,
    /// Fewest instances at risk that can trip protection.
    pub min_instances: u64,
    /// How far back expiries count as part of the same mass expiry, ms.
    pub window_ms: u64,
    /// Leases that ran out within this many ms of each other are judged together.
    pub settle_ms: u64,
}

/// One reaper pass over one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Instances expired (each with one `expired` event).
    pub expired: u64,
    /// Whether the service is protected after the pass.
    pub protected: bool,
}

/// What writing one check result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The instance is gone; nothing was kept.
    Gone,
    /// Stored; the instance's status did not change.
    Kept,
    /// Stored, the status changed and a `health` event went out.
    Changed,
}

/// The registry's writes under one Redis prefix (cheap to clone).
#[derive(Clone, Debug)]
pub struct RegistryWrites {
    redis: Redis,
    keys: RegistryKeys,
    log: EventLog,
    protected: String,
    /// Whether an acknowledged change waits for `REDIS_MIN_REPLICAS_ACK`
    /// replicas (registry-svc's API answers do; health-svc's results need not).
    acknowledged: bool,
}

impl RegistryWrites {
    /// Writes through `redis`, appending to `log` (the registry's log).
    pub fn new(redis: Redis, log: EventLog) -> Self {
        Self {
            keys: RegistryKeys::new(redis.clone()),
            protected: redis.key(&[LOG_NAME, "protected"]),
            redis,
            log,
            acknowledged: false,
        }
    }

    /// These writes, each acknowledged only once replicated (when
    /// `REDIS_MIN_REPLICAS_ACK` asks for replicas).
    pub fn acknowledged(mut self) -> Self {
        self.acknowledged = true;
        self
    }

    /// `reg:protected`: the services whose expiries are held back now.
    pub fn protected_key(&self) -> &str {
        &self.protected
    }

    /// `script` with the nine KEYS and two ARGV every registry write takes
    /// (see the module docs); the script's own ARGV follow.
    fn invocation<'a>(&self, script: &'a Script, service: &str) -> ScriptInvocation<'a> {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.instances(service))
            .key(self.keys.health(service))
            .key(&self.keys.leases)
            .key(&self.keys.services)
            .key(self.log.revision_key())
            .key(self.log.stream_key())
            .key(&self.protected)
            .key(self.redis.key(&[LOG_NAME, "expired", service]))
            .key(&self.keys.lease_versions)
            .arg(self.log.max_len())
            .arg(service);
        invocation
    }

    /// Run `invocation`; when `changed` says its reply is a change and these
    /// writes are acknowledged, wait for the replicas on the same connection.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: ScriptInvocation<'_>,
        changed: impl FnOnce(&T) -> bool,
    ) -> Result<T, StoreError> {
        let mut conn = self.redis.conn();
        let reply: T = self.redis.run(invocation.invoke_async(&mut conn)).await?;
        if self.acknowledged && changed(&reply) {
            self.redis.replicated(&mut conn).await?;
        }
        Ok(reply)
    }

    /// Store an instance (JSON `tail` after the status/revision prefix, see
    /// [`super::stored_tail`]) and start its lease of `lease_ms`.
    pub async fn register(
        &self,
        service: &str,
        id: &str,
        tail: &str,
        lease_ms: u64,
        has_check: bool,
    ) -> Result<Registered, StoreError> {
        let mut invocation = self.invocation(&REGISTER, service);
        invocation
            .arg(id)
            .arg(tail)
            .arg(lease_ms)
            .arg(if has_check { "1" } else { "0" });
        let (created, status, revision, deadline_ms): (u8, String, u64, u64) =
            self.run(invocation, |_| true).await?;
        Ok(Registered {
            created: created == 1,
            status: stored_status(&status),
            revision,
            deadline_ms,
        })
    }

    /// Renew an instance's lease; `None` when it is not registered (any more).
    pub async fn heartbeat(&self, service: &str, id: &str) -> Result<Option<Renewed>, StoreError> {
        let mut invocation = self.invocation(&HEARTBEAT, service);
        invocation.arg(id);
        let reply: Option<(String, u64)> = self.run(invocation, Option::is_some).await?;
        Ok(reply.map(|(stored, deadline_ms)| Renewed {
            stored,
            deadline_ms,
        }))
    }

    /// Remove an instance, whatever its status (`only_if` `None`) or only
    /// while it still has status `only_if`. The revision of the change;
    /// `None` when there was nothing (of that status) to remove.
    pub async fn deregister(
        &self,
        service: &str,
        id: &str,
        only_if: Option<HealthStatus>,
    ) -> Result<Option<u64>, StoreError> {
        let mut invocation = self.invocation(&DEREGISTER, service);
        invocation
            .arg(id)
            .arg(only_if.map_or("", HealthStatus::as_str));
        self.run(invocation, Option::is_some).await
    }

    /// Store a check result (`record_json`, a `HealthRecord`); with
    /// `publish`, make it the instance's status (and emit a `health` event)
    /// when it differs from the stored one.
    pub async fn record(
        &self,
        service: &str,
        id: &str,
        record_json: &str,
        publish: Option<HealthStatus>,
    ) -> Result<Recorded, StoreError> {
        let mut invocation = self.invocation(&RECORD, service);
        invocation
            .arg(id)
            .arg(record_json)
            .arg(publish.map_or("", HealthStatus::as_str));
        let outcome: i64 = self.run(invocation, |outcome| *outcome == 2).await?;
        Ok(match outcome {
            0 => Recorded::Gone,
            2 => Recorded::Changed,
            _ => Recorded::Kept,
        })
    }

    /// Expire `service`'s due instances, or hold them back (see `reap.lua`).
    pub async fn reap(&self, service: &str, policy: &Protection) -> Result<Reaped, StoreError> {
        let mut invocation = self.invocation(&REAP, service);
        invocation
            .arg(policy.settle_ms)
            .arg(policy.window_ms)
            .arg(policy.threshold)
            .arg(policy.min_instances);
        let (expired, protected, _lapsed): (u64, u8, u64) = self.run(invocation, |_| false).await?;
        Ok(Reaped {
            expired,
            protected: protected == 1,
        })
    }
}

/// The status a script read from a stored prefix.
fn stored_status(status: &str) -> HealthStatus {
    match status {
        "passing" => HealthStatus::Passing,
        "warning" => HealthStatus::Warning,
        "critical" => HealthStatus::Critical,
        _ => HealthStatus::Unknown,
    }
}
