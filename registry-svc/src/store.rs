//! All of registry-svc's Redis access: one Lua script per mutation (change,
//! revision bump and event in one atomic step), the load of the in-memory
//! view ([`crate::view`]) as one read-only script, the one-round-trip fences
//! a read from that view starts with, and the read-only listing scripts a
//! read falls back to when the view cannot catch up.
//!
//! The shared schema is documented in [`mcp_shared::registry`], and every
//! write of it goes through [`RegistryWrites`] (the scripts health-svc
//! writes with too). On top of it registry-svc keeps two keys of its own for
//! mass-expiry protection (written by `reap.lua` there as well):
//!
//! | key | type | content |
//! |---|---|---|
//! | `reg:protected` | set | services whose expiries are held back now |
//! | `reg:expired:{service}` | sorted set | ids expired within the protection window → when (ms); expires by itself |
//!
//! Lease deadlines are judged on Redis's clock (`TIME` inside the scripts),
//! so replicas on hosts with skewed clocks agree on what has expired.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

pub use mcp_shared::registry::writes::{Protection, Reaped, Registered, Renewed};
use mcp_shared::{
    Redis, StoreError,
    events::{EventLog, Head},
    names::Name,
    registry::{
        self, Instance, LeaseVersion, RegistryKeys, ServiceSummary, writes::RegistryWrites,
    },
    time::rfc3339_ms,
};
use redis::Script;

static INSTANCES: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/instances.lua")));
static SERVICES: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/services.lua")));
static DUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/due.lua")));
static VIEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/view.lua")));

/// Most lease members one reaper pass scans for due services.
const DUE_SCAN_LIMIT: u64 = 100_000;

/// One service's instance counts by status, as `services.lua` reads them:
/// the API shows a [`ServiceSummary`] of them, the metrics every count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCounts {
    /// Service name.
    pub name: String,
    /// Instances registered.
    pub instances: u64,
    /// Instances `unknown` (not checked yet).
    pub unknown: u64,
    /// Instances `passing`.
    pub passing: u64,
    /// Instances `warning`.
    pub warning: u64,
    /// Instances `critical`.
    pub critical: u64,
    /// Whether mass-expiry protection holds back its expiries right now.
    pub protected: bool,
}

impl ServiceCounts {
    /// The service as `GET /v1/services` lists it.
    pub fn summary(self) -> ServiceSummary {
        ServiceSummary {
            name: self.name,
            instances: self.instances,
            passing: self.passing,
            protected: self.protected,
        }
    }
}

/// Everything the in-memory view loads (`view.lua`), at one revision.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The log's epoch, `None` while Redis holds no write.
    pub epoch: Option<String>,
    /// Every instance that decodes (without `expires_at`).
    pub instances: Vec<Instance>,
    /// Lease deadlines (ms) by `{service}/{id}`.
    pub deadlines: HashMap<String, u64>,
    /// Each service's lease version (absent: 0).
    pub lease_versions: HashMap<String, u64>,
    /// The services whose expiries are held back.
    pub protected: Vec<String>,
}

/// What one fence read from Redis (see [`Store::fence`]).
#[derive(Debug, Clone, Default)]
pub struct Fenced {
    /// Where the registry stands: its revision and epoch.
    pub head: Head,
    /// The lease version of each service asked for (absent in Redis: 0).
    pub lease_versions: HashMap<String, LeaseVersion>,
    /// The protected services, when asked for.
    pub protected: Option<Vec<String>>,
}

/// The registry's Redis store (cheap to clone).
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    redis: Redis,
    keys: RegistryKeys,
    log: EventLog,
    /// Every write of the registry's keys (shared with health-svc).
    writes: RegistryWrites,
    instances_prefix: String,
}

impl Store {
    /// The store under `redis`'s prefix, appending to `log`.
    pub fn new(redis: Redis, log: EventLog) -> Self {
        Self {
            inner: Arc::new(Inner {
                keys: RegistryKeys::new(redis.clone()),
                writes: RegistryWrites::new(redis.clone(), log.clone()).acknowledged(),
                instances_prefix: redis.key(&[registry::LOG_NAME, "svc", ""]),
                redis,
                log,
            }),
        }
    }

    /// Store an instance (JSON `tail` after the status/revision prefix) and
    /// start its lease of `ttl_seconds`.
    pub async fn register(
        &self,
        service: &Name,
        id: &Name,
        tail: &str,
        ttl_seconds: u32,
        has_check: bool,
    ) -> Result<Registered, StoreError> {
        let lease_ms = u64::from(ttl_seconds) * 1000;
        self.inner
            .writes
            .register(service.as_str(), id.as_str(), tail, lease_ms, has_check)
            .await
    }

    /// Renew an instance's lease; `None` when it is not registered (any more).
    pub async fn heartbeat(
        &self,
        service: &Name,
        id: &Name,
    ) -> Result<Option<Renewed>, StoreError> {
        self.inner
            .writes
            .heartbeat(service.as_str(), id.as_str())
            .await
    }

    /// Remove an instance; the revision of the change, `None` when unknown.
    pub async fn deregister(&self, service: &Name, id: &Name) -> Result<Option<u64>, StoreError> {
        self.inner
            .writes
            .deregister(service.as_str(), id.as_str(), None)
            .await
    }

    /// The revision and every instance of `service` (sorted by id), with
    /// `expires_at` from its lease. An entry that does not decode is logged
    /// and left out rather than failing the whole list.
    pub async fn instances(&self, service: &Name) -> Result<(u64, Vec<Instance>), StoreError> {
        let inner = &self.inner;
        let mut invocation = INSTANCES.prepare_invoke();
        invocation
            .key(inner.keys.instances(service.as_str()))
            .key(&inner.keys.leases)
            .key(inner.log.revision_key())
            .arg(service.as_str());
        let mut conn = inner.redis.conn();
        let reply: Vec<String> = inner.redis.run(invocation.invoke_async(&mut conn)).await?;
        let mut reply = reply.into_iter();
        let revision = parse_u64(reply.next().as_deref())?;
        let mut instances = Vec::with_capacity(reply.len() / 2);
        while let (Some(json), Some(deadline)) = (reply.next(), reply.next()) {
            match serde_json::from_str::<Instance>(&json) {
                Ok(mut instance) => {
                    instance.expires_at = parse_score(&deadline).map(rfc3339_ms);
                    instances.push(instance);
                }
                Err(error) => {
                    tracing::warn!(%error, service = service.as_str(), "skipping an instance that does not decode");
                }
            }
        }
        instances.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok((revision, instances))
    }

    /// The revision and every service with its counts (sorted by name).
    pub async fn services(&self) -> Result<(u64, Vec<ServiceCounts>), StoreError> {
        let inner = &self.inner;
        let mut invocation = SERVICES.prepare_invoke();
        invocation
            .key(&inner.keys.services)
            .key(inner.writes.protected_key())
            .key(inner.log.revision_key())
            .arg(&inner.instances_prefix);
        let mut conn = inner.redis.conn();
        let reply: Vec<String> = inner.redis.run(invocation.invoke_async(&mut conn)).await?;
        let revision = parse_u64(reply.first().map(String::as_str))?;
        let mut services = Vec::with_capacity(reply.len() / 7);
        for row in reply.get(1..).unwrap_or_default().chunks_exact(7) {
            let count = |i: usize| row[i].parse().unwrap_or(0);
            services.push(ServiceCounts {
                name: row[0].clone(),
                instances: count(1),
                unknown: count(2),
                passing: count(3),
                warning: count(4),
                critical: count(5),
                protected: row[6] == "1",
            });
        }
        services.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok((revision, services))
    }

    /// Everything the in-memory view holds and the revision it is at, read
    /// in one script so the follower applies exactly the events after it.
    pub async fn load_view(&self) -> Result<(u64, Loaded), StoreError> {
        let inner = &self.inner;
        let mut invocation = VIEW.prepare_invoke();
        invocation
            .key(&inner.keys.services)
            .key(inner.log.revision_key())
            .key(inner.log.epoch_key())
            .key(&inner.keys.leases)
            .key(&inner.keys.lease_versions)
            .key(inner.writes.protected_key())
            .arg(&inner.instances_prefix);
        let mut conn = inner.redis.conn();
        type Reply = (
            String,
            String,
            Vec<String>,
            Vec<String>,
            Vec<String>,
            Vec<String>,
        );
        let (revision, epoch, stored, leases, versions, protected): Reply =
            inner.redis.run(invocation.invoke_async(&mut conn)).await?;
        let revision = parse_u64(Some(&revision))?;
        let instances = stored
            .iter()
            .filter_map(|json| match serde_json::from_str::<Instance>(json) {
                Ok(instance) => Some(instance),
                Err(error) => {
                    tracing::warn!(%error, "unreadable instance in redis; skipped");
                    None
                }
            })
            .collect();
        let mut deadlines = HashMap::with_capacity(leases.len() / 2);
        for pair in leases.chunks_exact(2) {
            if let Some(deadline) = parse_score(&pair[1]) {
                deadlines.insert(pair[0].clone(), deadline);
            }
        }
        let lease_versions = versions
            .chunks_exact(2)
            .map(|pair| (pair[0].clone(), LeaseVersion::parse(&pair[1]).version))
            .collect();
        Ok((
            revision,
            Loaded {
                epoch: (!epoch.is_empty()).then_some(epoch),
                instances,
                deadlines,
                lease_versions,
                protected,
            },
        ))
    }

    /// One fence for a batch of reads from the view (see [`crate::fence`]):
    /// where the registry stands in Redis (revision and epoch), the lease
    /// versions of `services`, and with `protected` the protected services,
    /// all in one round trip (a pipeline of O(1) reads, plus `HMGET` of the
    /// batch's services and `SMEMBERS` of a set that is empty but for a
    /// mass expiry).
    pub async fn fence(&self, services: &[String], protected: bool) -> Result<Fenced, StoreError> {
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        pipe.get(inner.log.revision_key())
            .get(inner.log.epoch_key());
        if !services.is_empty() {
            pipe.cmd("HMGET")
                .arg(&inner.keys.lease_versions)
                .arg(services);
        }
        if protected {
            pipe.smembers(inner.writes.protected_key());
        }
        let mut conn = inner.redis.conn();
        let replies: Vec<redis::Value> = inner
            .redis
            .run_op("GET", pipe.query_async(&mut conn))
            .await?;
        let mut replies = replies.into_iter();
        let mut next = || -> Result<redis::Value, StoreError> {
            replies
                .next()
                .ok_or_else(|| StoreError::Corrupt("a short pipeline reply".into()))
        };
        let decode = |e: redis::ParsingError| StoreError::Corrupt(e.to_string());
        let revision: Option<u64> = redis::from_redis_value(next()?).map_err(decode)?;
        let epoch: Option<String> = redis::from_redis_value(next()?).map_err(decode)?;
        let lease_versions = if services.is_empty() {
            HashMap::new()
        } else {
            let versions: Vec<Option<String>> = redis::from_redis_value(next()?).map_err(decode)?;
            services
                .iter()
                .cloned()
                .zip(
                    versions
                        .iter()
                        .map(|v| v.as_deref().map(LeaseVersion::parse).unwrap_or_default()),
                )
                .collect()
        };
        let protected = if protected {
            Some(redis::from_redis_value(next()?).map_err(decode)?)
        } else {
            None
        };
        Ok(Fenced {
            head: Head {
                revision: revision.unwrap_or(0),
                epoch,
            },
            lease_versions,
            protected,
        })
    }

    /// The lease deadlines (ms) of `members` (`{service}/{id}` of
    /// `service`), in order (`None`: no lease), and the service's lease
    /// version, read together (`MULTI`): what the view refreshes its
    /// deadlines from when its version is behind.
    pub async fn leases(
        &self,
        service: &str,
        members: &[String],
    ) -> Result<(u64, Vec<Option<u64>>), StoreError> {
        if members.is_empty() {
            return Ok((0, Vec::new()));
        }
        let inner = &self.inner;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hget(&inner.keys.lease_versions, service)
            .cmd("ZMSCORE")
            .arg(&inner.keys.leases)
            .arg(members);
        let mut conn = inner.redis.conn();
        // Scores as floats: ms deadlines are integers well inside f64's
        // exact range, and no `String` is made per instance.
        let (version, scores): (Option<String>, Vec<Option<f64>>) = inner
            .redis
            .run_op("ZMSCORE", pipe.query_async(&mut conn))
            .await?;
        let deadlines = scores
            .into_iter()
            .map(|score| score.map(|ms| ms as u64))
            .collect();
        let version = version
            .as_deref()
            .map_or(0, |v| LeaseVersion::parse(v).version);
        Ok((version, deadlines))
    }

    /// Services the reaper must look at: a lease due, or protected.
    pub async fn due_services(&self, settle_ms: u64) -> Result<Vec<String>, StoreError> {
        let inner = &self.inner;
        let mut invocation = DUE.prepare_invoke();
        invocation
            .key(&inner.keys.leases)
            .key(inner.writes.protected_key())
            .arg(settle_ms)
            .arg(DUE_SCAN_LIMIT);
        let mut conn = inner.redis.conn();
        inner.redis.run(invocation.invoke_async(&mut conn)).await
    }

    /// Expire `service`'s due instances, or hold them back (see `reap.lua`).
    pub async fn reap(&self, service: &str, policy: &Protection) -> Result<Reaped, StoreError> {
        self.inner.writes.reap(service, policy).await
    }
}

fn parse_u64(value: Option<&str>) -> Result<u64, StoreError> {
    let value = value.unwrap_or("0");
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("not a revision: {value:?}")))
}

/// A sorted-set score (ms); Redis may print it as a float.
fn parse_score(score: &str) -> Option<u64> {
    if score.is_empty() {
        return None;
    }
    score
        .parse::<u64>()
        .ok()
        .or_else(|| score.parse::<f64>().ok().map(|f| f as u64))
}
