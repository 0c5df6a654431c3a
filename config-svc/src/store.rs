//! All of config-svc's Redis access: keys, scripts and reads.
//!
//! # Keys (under `{prefix}:`)
//!
//! | key | type | content |
//! |---|---|---|
//! | `cfg:revision`, `cfg:events` | string, stream | the [`EventLog`]: events `put` (data = the entry) and `delete` (data = `{"version","revision","namespace","key"}`), scope = namespace |
//! | `cfg:epoch` | string | the log's epoch (made by the first write into an empty Redis; see `mcp_shared::events`) |
//! | `cfg:ns` | set | namespaces holding an entry or a schema |
//! | `cfg:entries:{ns}` | hash | key → entry JSON (see [`crate::model`]) |
//! | `cfg:hist:{ns}:{key}` | list | entry JSONs, newest first, capped at `CONFIG_HISTORY_LIMIT`; kept on delete |
//! | `cfg:nsrev` | hash | namespace → revision of its latest put/delete |
//! | `cfg:count` | string | number of entries (for `config_entries`) |
//! | `cfg:schema:{ns}` | hash | `id` (from `cfg:schemaseq`, never reused), `schema` (JSON text), `updated_at` |
//! | `cfg:schemaseq` | string | schema id counter |
//! | `cfg:clients:{ns}` | hash | client id → `{"revision","at"}` of watchers of `ns` |
//! | `cfg:clients-all` | hash | the same for watchers of every namespace |
//!
//! Every write is one Lua script (`lua/*.lua`) so value, version, history,
//! revision and event change together or not at all.

use std::sync::Arc;

use mcp_shared::{
    Redis, StoreError,
    events::{self, EventLog},
};
use redis::Script;

use crate::model::Precondition;

/// Field → value pairs of a hash.
type Pairs = Vec<(String, String)>;

/// Name of config-svc's event log.
pub const LOG_NAME: &str = mcp_shared::config::LOG_NAME;

/// What a put script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written.
    Written {
        /// The new version.
        version: u64,
        /// The revision of the change.
        revision: u64,
        /// Whether the key did not exist before.
        created: bool,
    },
    /// Dry run: would write this version.
    WouldWrite {
        /// The version a write would make.
        version: u64,
        /// Whether the key does not exist yet.
        created: bool,
    },
    /// The precondition failed; the current version (0 = absent).
    PreconditionFailed(u64),
    /// The namespace's schema is not the one validated against; its id now (0 = none).
    SchemaChanged(u64),
}

/// What a delete script did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted the given version at the given revision.
    Deleted {
        /// The deleted entry's version.
        version: u64,
        /// The revision of the delete.
        revision: u64,
    },
    /// No such key.
    Missing,
    /// The precondition failed; the current version.
    PreconditionFailed(u64),
}

/// One put, as passed to the script.
#[derive(Debug)]
pub struct PutRequest<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Key.
    pub key: &'a str,
    /// Precondition.
    pub precondition: Precondition,
    /// The schema id the value was validated against (0 = none).
    pub schema_id: u64,
    /// The entry JSON after the version/revision prefix.
    pub tail: &'a str,
    /// Check only.
    pub dry_run: bool,
}

/// A stored schema.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    /// Its id (changes on every put).
    pub id: u64,
    /// Its JSON text.
    pub text: String,
}

/// A namespace's entries with the namespace revision they were read at.
#[derive(Debug)]
pub struct NamespaceSnapshot {
    /// `cfg:nsrev[ns]` as stored (`"0"` when never written).
    pub ns_revision: String,
    /// Key → entry JSON.
    pub entries: Vec<(String, String)>,
}

/// The propagation records of a namespace.
#[derive(Debug)]
pub struct ClientRecords {
    /// Revision of the namespace's latest change (0 when none).
    pub ns_revision: u64,
    /// Watchers of this namespace: client id → `{"revision","at"}`.
    pub namespace: Vec<(String, String)>,
    /// Watchers of every namespace.
    pub all: Vec<(String, String)>,
}

/// One propagation record to write.
#[derive(Debug)]
pub struct ClientRecord {
    /// The watched namespace (`None` = all).
    pub namespace: Option<String>,
    /// The client id.
    pub client: String,
    /// `{"revision","at"}`.
    pub json: String,
}

struct Scripts {
    put: Script,
    delete: Script,
    put_schema: Script,
    delete_schema: Script,
}

/// config-svc's handle on Redis.
#[derive(Clone)]
pub struct ConfigStore {
    redis: Redis,
    log: EventLog,
    history_limit: u64,
    scripts: Arc<Scripts>,
    namespaces_key: Arc<str>,
    ns_revisions_key: Arc<str>,
    count_key: Arc<str>,
    schema_seq_key: Arc<str>,
    all_clients_key: Arc<str>,
}

impl ConfigStore {
    /// A store on `redis` writing events to `log`, keeping `history_limit` versions per key.
    pub fn new(redis: Redis, log: EventLog, history_limit: u64) -> Self {
        let scripts = Scripts {
            put: events::script(include_str!("../lua/put.lua")),
            delete: events::script(include_str!("../lua/delete.lua")),
            put_schema: Script::new(include_str!("../lua/put_schema.lua")),
            delete_schema: Script::new(include_str!("../lua/delete_schema.lua")),
        };
        Self {
            namespaces_key: redis.key(&[LOG_NAME, "ns"]).into(),
            ns_revisions_key: redis.key(&[LOG_NAME, "nsrev"]).into(),
            count_key: redis.key(&[LOG_NAME, "count"]).into(),
            schema_seq_key: redis.key(&[LOG_NAME, "schemaseq"]).into(),
            all_clients_key: redis.key(&[LOG_NAME, "clients-all"]).into(),
            redis,
            log,
            history_limit,
            scripts: Arc::new(scripts),
        }
    }

    fn entries_key(&self, ns: &str) -> String {
        self.redis
            .key(&[LOG_NAME, mcp_shared::config::ENTRIES_KEY, ns])
    }

    fn history_key(&self, ns: &str, key: &str) -> String {
        self.redis.key(&[LOG_NAME, "hist", ns, key])
    }

    fn schema_key(&self, ns: &str) -> String {
        self.redis.key(&[LOG_NAME, "schema", ns])
    }

    fn clients_key(&self, ns: &str) -> String {
        self.redis.key(&[LOG_NAME, "clients", ns])
    }

    /// Put (or dry-run) one entry: see `lua/put.lua`.
    pub async fn put(&self, req: &PutRequest<'_>) -> Result<PutOutcome, StoreError> {
        let mut invocation = self.scripts.put.prepare_invoke();
        invocation
            .key(self.log.revision_key())
            .key(self.log.stream_key())
            .key(self.entries_key(req.namespace))
            .key(self.history_key(req.namespace, req.key))
            .key(self.schema_key(req.namespace))
            .key(&*self.namespaces_key)
            .key(&*self.ns_revisions_key)
            .key(&*self.count_key)
            .arg(self.log.max_len())
            .arg(req.namespace)
            .arg(req.key)
            .arg(req.precondition.as_arg().as_ref())
            .arg(req.schema_id)
            .arg(req.tail)
            .arg(self.history_limit)
            .arg(if req.dry_run { "1" } else { "0" });
        let mut conn = self.redis.conn();
        let (code, a, b, c): (String, u64, u64, u64) = self
            .redis
            .run(async { invocation.invoke_async(&mut conn).await })
            .await?;
        if code == "ok" {
            // REDIS_MIN_REPLICAS_ACK: acknowledged only once replicated.
            self.redis.replicated(&mut conn).await?;
        }
        match code.as_str() {
            "ok" => Ok(PutOutcome::Written {
                version: a,
                revision: b,
                created: c == 1,
            }),
            "dry" => Ok(PutOutcome::WouldWrite {
                version: a,
                created: c == 1,
            }),
            "precondition" => Ok(PutOutcome::PreconditionFailed(a)),
            "schema" => Ok(PutOutcome::SchemaChanged(a)),
            other => Err(StoreError::Corrupt(format!("put script answered {other}"))),
        }
    }

    /// Delete one entry: see `lua/delete.lua`.
    pub async fn delete(
        &self,
        namespace: &str,
        key: &str,
        precondition: Precondition,
        event_tail: &str,
    ) -> Result<DeleteOutcome, StoreError> {
        let mut invocation = self.scripts.delete.prepare_invoke();
        invocation
            .key(self.log.revision_key())
            .key(self.log.stream_key())
            .key(self.entries_key(namespace))
            .key(self.schema_key(namespace))
            .key(&*self.namespaces_key)
            .key(&*self.ns_revisions_key)
            .key(&*self.count_key)
            .arg(self.log.max_len())
            .arg(namespace)
            .arg(key)
            .arg(precondition.as_arg().as_ref())
            .arg(event_tail);
        let mut conn = self.redis.conn();
        let (code, a, b): (String, u64, u64) = self
            .redis
            .run(async { invocation.invoke_async(&mut conn).await })
            .await?;
        if code == "ok" {
            self.redis.replicated(&mut conn).await?;
        }
        match code.as_str() {
            "ok" => Ok(DeleteOutcome::Deleted {
                version: a,
                revision: b,
            }),
            "missing" => Ok(DeleteOutcome::Missing),
            "precondition" => Ok(DeleteOutcome::PreconditionFailed(a)),
            other => Err(StoreError::Corrupt(format!(
                "delete script answered {other}"
            ))),
        }
    }

    /// One entry and the global revision, read atomically (one round trip).
    pub async fn get(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<(Option<String>, u64), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hget(self.entries_key(namespace), key)
            .get(self.log.revision_key());
        let mut conn = self.redis.conn();
        let (entry, revision): (Option<String>, Option<u64>) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok((entry, revision.unwrap_or(0)))
    }

    /// Every entry of a namespace (key → entry JSON) and the global revision, atomically.
    pub async fn list(&self, namespace: &str) -> Result<(Vec<(String, String)>, u64), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hgetall(self.entries_key(namespace))
            .get(self.log.revision_key());
        let mut conn = self.redis.conn();
        let (entries, revision): (Vec<(String, String)>, Option<u64>) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok((entries, revision.unwrap_or(0)))
    }

    /// The namespaces holding an entry or a schema.
    pub async fn namespaces(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.redis.conn();
        let key = &*self.namespaces_key;
        self.redis
            .run(async move { redis::cmd("SMEMBERS").arg(key).query_async(&mut conn).await })
            .await
    }

    /// A key's history, newest first (entry JSONs).
    pub async fn history(&self, namespace: &str, key: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.redis.conn();
        let list = self.history_key(namespace, key);
        self.redis
            .run(async move {
                redis::cmd("LRANGE")
                    .arg(list)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
            })
            .await
    }

    /// The namespace's schema, if any.
    pub async fn schema(&self, namespace: &str) -> Result<Option<StoredSchema>, StoreError> {
        let mut conn = self.redis.conn();
        let key = self.schema_key(namespace);
        let (id, text): (Option<u64>, Option<String>) = self
            .redis
            .run(async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("id")
                    .arg("schema")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(match (id, text) {
            (Some(id), Some(text)) => Some(StoredSchema { id, text }),
            _ => None,
        })
    }

    /// The id of the namespace's schema (0 = none): one cheap `HGET`.
    pub async fn schema_id(&self, namespace: &str) -> Result<u64, StoreError> {
        let mut conn = self.redis.conn();
        let key = self.schema_key(namespace);
        let id: Option<u64> = self
            .redis
            .run(async move {
                redis::cmd("HGET")
                    .arg(key)
                    .arg("id")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// The namespace's entries with its revision, atomically (for schema checks).
    pub async fn snapshot(&self, namespace: &str) -> Result<NamespaceSnapshot, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hget(&*self.ns_revisions_key, namespace)
            .hgetall(self.entries_key(namespace));
        let mut conn = self.redis.conn();
        let (ns_revision, entries): (Option<String>, Vec<(String, String)>) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(NamespaceSnapshot {
            ns_revision: ns_revision.unwrap_or_else(|| "0".to_owned()),
            entries,
        })
    }

    /// Store a schema unless the namespace changed since `ns_revision`
    /// (`Ok(None)`): see `lua/put_schema.lua`. Returns the new id and whether it is the first.
    pub async fn put_schema(
        &self,
        namespace: &str,
        ns_revision: &str,
        text: &str,
        updated_at: &str,
    ) -> Result<Option<(u64, bool)>, StoreError> {
        let mut invocation = self.scripts.put_schema.prepare_invoke();
        invocation
            .key(self.schema_key(namespace))
            .key(&*self.schema_seq_key)
            .key(&*self.ns_revisions_key)
            .key(&*self.namespaces_key)
            .arg(namespace)
            .arg(ns_revision)
            .arg(text)
            .arg(updated_at);
        let mut conn = self.redis.conn();
        let (code, id, created): (String, u64, u64) = self
            .redis
            .run(async { invocation.invoke_async(&mut conn).await })
            .await?;
        if code == "ok" {
            self.redis.replicated(&mut conn).await?;
        }
        Ok((code == "ok").then_some((id, created == 1)))
    }

    /// Remove the namespace's schema; `false` when it had none.
    pub async fn delete_schema(&self, namespace: &str) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.delete_schema.prepare_invoke();
        invocation
            .key(self.schema_key(namespace))
            .key(self.entries_key(namespace))
            .key(&*self.namespaces_key)
            .arg(namespace);
        let mut conn = self.redis.conn();
        let removed: u64 = self
            .redis
            .run(async { invocation.invoke_async(&mut conn).await })
            .await?;
        if removed == 1 {
            self.redis.replicated(&mut conn).await?;
        }
        Ok(removed == 1)
    }

    /// The propagation records of a namespace and its latest revision (one round trip).
    pub async fn clients(&self, namespace: &str) -> Result<ClientRecords, StoreError> {
        let mut pipe = redis::pipe();
        pipe.hget(&*self.ns_revisions_key, namespace)
            .hgetall(self.clients_key(namespace))
            .hgetall(&*self.all_clients_key);
        let mut conn = self.redis.conn();
        let (ns_revision, namespace, all): (Option<u64>, Pairs, Pairs) = self
            .redis
            .run(async move { pipe.query_async(&mut conn).await })
            .await?;
        Ok(ClientRecords {
            ns_revision: ns_revision.unwrap_or(0),
            namespace,
            all,
        })
    }

    /// Write propagation records (one pipelined round trip).
    pub async fn record_clients(&self, records: &[ClientRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for record in records {
            let key = match &record.namespace {
                Some(ns) => self.clients_key(ns),
                None => self.all_clients_key.to_string(),
            };
            pipe.hset(key, &record.client, &record.json).ignore();
        }
        let mut conn = self.redis.conn();
        self.redis
            .run(async move { pipe.query_async::<()>(&mut conn).await })
            .await
    }

    /// The number of entries in the store.
    pub async fn entry_count(&self) -> Result<u64, StoreError> {
        let mut conn = self.redis.conn();
        let key = &*self.count_key;
        let count: Option<i64> = self
            .redis
            .run(async move { redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        Ok(count.map_or(0, |c| u64::try_from(c).unwrap_or(0)))
    }
}
