//! The registry's keys under one prefix, for tests of the crates that read
//! them (the gateway, health-svc): instances are written by the registry's
//! own writer (`mcp_shared::registry::writes`), the one registry-svc runs, so
//! a test never holds a copy of its scripts; reads are plain Redis commands.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use mcp_shared::{
    Redis,
    events::EventLog,
    registry::{
        self, HealthRecord, HealthStatus, Instance, RegistryKeys, stored_tail,
        writes::RegistryWrites,
    },
};

/// How long a write is retried while a restarted Redis comes back.
const WRITE_RETRY: Duration = Duration::from_secs(5);

/// The registry of one key prefix.
pub struct Registry {
    redis: Redis,
    keys: RegistryKeys,
    writes: RegistryWrites,
    /// The key prefix.
    pub prefix: String,
}

impl Registry {
    /// The registry under `prefix` on the Redis at `url`.
    pub fn new(url: &str, prefix: &str) -> Self {
        let redis = Redis::new(url, prefix, Duration::from_secs(2)).expect("redis url");
        let log = EventLog::new(redis.clone(), registry::LOG_NAME, 10_000);
        Self {
            keys: RegistryKeys::new(redis.clone()),
            writes: RegistryWrites::new(redis.clone(), log),
            redis,
            prefix: prefix.to_owned(),
        }
    }

    /// Register (or re-register) `instance` as registry-svc does, with a lease
    /// of 5 minutes; the revision of the change. Retried for up to 5 s while
    /// Redis is unreachable.
    pub async fn register(&self, instance: &Instance) -> u64 {
        let tail = stored_tail(instance).expect("instance JSON");
        let has_check = instance.check.is_some();
        let (service, id) = (&instance.service, &instance.id);
        retried(|| self.writes.register(service, id, &tail, 300_000, has_check))
            .await
            .revision
    }

    /// Register `service`/`id` at `addr` (no tags, no metadata) and give it
    /// `status`, as a health check would.
    pub async fn register_at(
        &self,
        service: &str,
        id: &str,
        addr: SocketAddr,
        status: HealthStatus,
    ) {
        self.register(&instance_at(service, id, addr)).await;
        if status != HealthStatus::Passing {
            let record = serde_json::to_string(&HealthRecord {
                status,
                output: "set by a test".into(),
                last_checked_at: "2026-01-01T00:00:00Z".into(),
                consecutive_failures: 0,
                consecutive_successes: 0,
                critical_since_ms: None,
            })
            .expect("health record JSON");
            retried(|| self.writes.record(service, id, &record, Some(status))).await;
        }
    }

    /// Deregister `service`/`id` as registry-svc does.
    pub async fn deregister(&self, service: &str, id: &str) {
        retried(|| self.writes.deregister(service, id, None)).await;
    }

    /// The stored instance, as discovery would read it.
    pub async fn stored(&self, service: &str, id: &str) -> Option<Instance> {
        self.stored_json(service, id)
            .await
            .map(|json| serde_json::from_str(&json).expect("stored instance JSON"))
    }

    /// The stored instance's JSON text, as Redis holds it.
    pub async fn stored_json(&self, service: &str, id: &str) -> Option<String> {
        redis::cmd("HGET")
            .arg(self.keys.instances(service))
            .arg(id)
            .query_async(&mut self.redis.conn())
            .await
            .expect("HGET")
    }

    /// The stored status of `service`/`id`.
    pub async fn status(&self, service: &str, id: &str) -> Option<HealthStatus> {
        self.stored(service, id).await.map(|i| i.status)
    }

    /// `(kind, data)` of every event on the registry's stream.
    pub async fn events(&self) -> Vec<(String, String)> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.redis.key(&[registry::LOG_NAME, "events"]))
            .arg("-")
            .arg("+")
            .query_async(&mut self.redis.conn())
            .await
            .expect("XRANGE");
        reply
            .ids
            .iter()
            .map(|e| {
                let field = |name: &str| match e.map.get(name) {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                (field("kind"), field("data"))
            })
            .collect()
    }

    /// Any Redis command (`args[0]` and its arguments), unprefixed.
    pub async fn raw(&self, args: &[&str]) -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut self.redis.conn())
            .await
            .expect("redis command")
    }
}

/// An instance of `service` at `addr` with a 30 s TTL and nothing else.
pub fn instance_at(service: &str, id: &str, addr: SocketAddr) -> Instance {
    Instance {
        status: HealthStatus::Passing,
        revision: 0,
        id: id.into(),
        service: service.into(),
        host: addr.ip().to_string(),
        port: addr.port(),
        tags: vec![],
        metadata: BTreeMap::new(),
        ttl_seconds: 30,
        check: None,
        registered_at: "2026-01-01T00:00:00Z".into(),
        expires_at: None,
    }
}

/// `write` until it succeeds, for up to [`WRITE_RETRY`] (a test may have
/// just restarted Redis); panics with the last error after that.
async fn retried<T, E: std::fmt::Debug, F: Future<Output = Result<T, E>>>(
    mut write: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + WRITE_RETRY;
    loop {
        match write().await {
            Ok(value) => return value,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("registry write failed: {e:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
