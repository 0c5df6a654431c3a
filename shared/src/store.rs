//! The Redis handle every service uses: one self-healing multiplexed
//! connection, every command bounded in time, every key under one prefix.
//!
//! `ConnectionManager` reconnects by itself after an I/O error, so a service
//! heals when Redis comes back without a restart. Each call is wrapped in a
//! timeout (`REDIS_TIMEOUT`, 750 ms by default) so a dead or stalled Redis turns
//! into a fast [`StoreError::Unavailable`] (→ 503), never a hung request.
//!
//! While traces are exported, each command run inside a request gets a
//! client span (`db.system.name=redis`, `server.address`/`server.port`) as a
//! child of the request's span; otherwise [`Redis::run`] makes no span at all.
//!
//! The parts: [`error`](mod@error) says what can go wrong, [`conn`] is one
//! connection whatever the topology, [`sentinel`] follows the primary
//! across failovers, and [`cluster`] computes the hash slot of the
//! stack's keys.

mod cluster;
mod conn;
mod error;
mod sentinel;

use std::{future::Future, sync::Arc, time::Duration};

use arc_swap::ArcSwapOption;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo as _, RedisConnectionInfo,
    RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterConfig},
    cluster_async::ClusterConnection,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
    sentinel::{Sentinel, SentinelNodeConnectionInfo},
};
use tokio::sync::Notify;
use tracing::Instrument as _;

pub use cluster::key_slot;
use conn::no_primary;
pub use conn::{Conn, PendingPrimary};
pub use error::StoreError;
use sentinel::{Follower, follow_primary, is_master, watch_switches};

/// How a [`Redis`] handle reaches Redis (see README "High availability").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One server, at the URL of [`RedisOptions::url`].
    Standalone,
    /// The primary the Sentinels at `sentinels` (`host:port`) name `master`;
    /// the handle follows it across failovers.
    Sentinel {
        /// `host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The name the Sentinels monitor the primary under.
        master: String,
        /// The Sentinels' own password (`requirepass` in sentinel.conf).
        password: Option<String>,
    },
    /// A Redis Cluster reached through these seed nodes (`host:port`);
    /// every key lives in the one hash slot of `{prefix}`.
    Cluster {
        /// `host:port` of each seed node.
        nodes: Vec<String>,
    },
}

/// Everything [`Redis::connect`] needs.
#[derive(Clone)]
pub struct RedisOptions {
    /// `REDIS_URL`: the server in standalone mode; in the other modes only
    /// its user, password and database are used (for the data nodes).
    pub url: String,
    /// Standalone, Sentinel or Cluster.
    pub topology: Topology,
    /// `MCP_REDIS_PREFIX`.
    pub prefix: String,
    /// `REDIS_TIMEOUT`: the bound on every command.
    pub timeout: Duration,
    /// `REDIS_MIN_REPLICAS_ACK`: replicas a write must reach before it is acknowledged.
    pub min_replicas_ack: u32,
}

/// A cheap-to-clone handle on Redis with a key prefix.
#[derive(Clone)]
pub struct Redis {
    backend: Backend,
    prefix: Arc<str>,
    timeout: Duration,
    min_replicas_ack: u32,
    /// `server.address` and `server.port` of the command spans.
    server: Arc<(String, Option<u16>)>,
}

/// The connection(s) behind a handle, per topology.
#[derive(Clone)]
enum Backend {
    Standalone {
        client: Client,
        manager: ConnectionManager,
    },
    Sentinel(Arc<Follower>),
    Cluster {
        client: Arc<ClusterClient>,
        conn: ClusterConnection,
        /// The hash slot of every key (`{prefix}`), where `WAIT` is sent.
        slot: u16,
    },
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `host:port` as a TCP address.
fn tcp_addr(host_port: &str) -> Result<ConnectionAddr, StoreError> {
    let (host, port) = host_port
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .ok_or_else(|| StoreError::Unavailable(format!("'{host_port}' is not host:port")))?;
    Ok(ConnectionAddr::Tcp(host.to_owned(), port))
}

impl Redis {
    /// A lazy handle on one server: nothing connects until the first
    /// command, so a service starts (and answers `/readyz` 503) while Redis
    /// is still down.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::connect(RedisOptions {
            url: url.to_owned(),
            topology: Topology::Standalone,
            prefix: prefix.to_owned(),
            timeout,
            min_replicas_ack: 0,
        })
    }

    /// A lazy handle for `options` (see [`Topology`]). In Sentinel mode it
    /// starts a task (on the current Tokio runtime) that finds the primary
    /// and follows failovers, and ends when the last clone is dropped.
    pub fn connect(options: RedisOptions) -> Result<Self, StoreError> {
        // Every service builds its Redis handle first: installing the metrics
        // recorder here means metrics registered at start-up are never lost.
        crate::metrics::handle();
        let timeout = options.timeout;
        let url_info = options
            .url
            .as_str()
            .into_connection_info()
            .map_err(StoreError::Redis)?;
        let (backend, prefix, server) = match &options.topology {
            Topology::Standalone => {
                let client = Client::open(url_info).map_err(StoreError::Redis)?;
                let manager = ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    manager_config(timeout),
                )
                .map_err(StoreError::Redis)?;
                let server = span_address(client.get_connection_info().addr());
                (
                    Backend::Standalone { client, manager },
                    options.prefix.clone(),
                    server,
                )
            }
            Topology::Sentinel {
                sentinels,
                master,
                password,
            } => {
                let mut infos = Vec::with_capacity(sentinels.len());
                for host in sentinels {
                    let mut settings = RedisConnectionInfo::default();
                    if let Some(password) = password {
                        settings = settings.set_password(password);
                    }
                    infos.push(
                        tcp_addr(host)?
                            .into_connection_info()
                            .map_err(StoreError::Redis)?
                            .set_redis_settings(settings),
                    );
                }
                let sentinel = Sentinel::build(infos.clone()).map_err(StoreError::Redis)?;
                let node = SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(url_info.redis_settings().clone());
                let wake = Arc::new(Notify::new());
                let follower = Arc::new(Follower {
                    current: ArcSwapOption::empty(),
                    wake: wake.clone(),
                    found: tokio::sync::Notify::new(),
                });
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    StoreError::Unavailable("Sentinel mode needs a Tokio runtime".to_owned())
                })?;
                runtime.spawn(follow_primary(
                    Arc::downgrade(&follower),
                    sentinel,
                    master.clone(),
                    node,
                    timeout,
                ));
                for info in infos {
                    runtime.spawn(watch_switches(
                        Arc::downgrade(&follower),
                        info,
                        wake.clone(),
                    ));
                }
                (
                    Backend::Sentinel(follower),
                    options.prefix.clone(),
                    (format!("sentinel:{master}"), None),
                )
            }
            Topology::Cluster { nodes } => {
                let mut infos = Vec::with_capacity(nodes.len());
                for host in nodes {
                    infos.push(
                        tcp_addr(host)?
                            .into_connection_info()
                            .map_err(StoreError::Redis)?
                            .set_redis_settings(url_info.redis_settings().clone()),
                    );
                }
                let client = ClusterClient::builder(infos)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(StoreError::Redis)?;
                let config = ClusterConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout);
                let conn = client.get_pending_async_connection_with_config(config);
                // The hash tag: every key of the stack in one slot, so each
                // Lua script (which touches several keys) stays atomic.
                let prefix = format!("{{{}}}", options.prefix);
                let slot = key_slot(&prefix);
                (
                    Backend::Cluster {
                        client: Arc::new(client),
                        conn,
                        slot,
                    },
                    prefix,
                    (format!("cluster:{}", nodes.join(",")), None),
                )
            }
        };
        Ok(Self {
            backend,
            prefix: Arc::from(prefix),
            timeout,
            min_replicas_ack: options.min_replicas_ack,
            server: Arc::new(server),
        })
    }

    /// The key prefix: `MCP_REDIS_PREFIX`, as the hash tag `{prefix}` in Cluster mode.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}:{a}:{b}…`: the one way keys are built.
    pub fn key(&self, parts: &[&str]) -> String {
        let len = self.prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut key = String::with_capacity(len);
        key.push_str(&self.prefix);
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// The shared multiplexed connection (cheap clone). Use it through [`Redis::run`].
    /// In Sentinel mode, the current primary's (one lock-free load: the
    /// failover follower may swap it at any time).
    pub fn conn(&self) -> Conn {
        match &self.backend {
            Backend::Standalone { manager, .. } => Conn::Manager(manager.clone()),
            Backend::Sentinel(follower) => match &*follower.current.load() {
                Some(primary) => Conn::Multiplexed(primary.conn.clone()),
                None => Conn::Pending(conn::PendingPrimary::new(follower.clone(), self.timeout)),
            },
            Backend::Cluster { conn, .. } => Conn::Cluster(conn.clone()),
        }
    }

    /// Acknowledge a write only once `REDIS_MIN_REPLICAS_ACK` replicas have
    /// it: `WAIT n timeout` on `conn`, the connection the write went through
    /// (so `WAIT` covers it), bounded by half of `REDIS_TIMEOUT`. Nothing
    /// to do (no round trip) when the setting is 0. Fewer acks in time →
    /// [`StoreError::NotReplicated`] (→ 503; the write may still exist).
    pub async fn replicated(&self, conn: &mut Conn) -> Result<(), StoreError> {
        let wanted = self.min_replicas_ack;
        if wanted == 0 {
            return Ok(());
        }
        let wait_ms = u64::try_from(self.timeout.as_millis() / 2)
            .unwrap_or(u64::MAX)
            .max(1);
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wanted).arg(wait_ms);
        let acks: i64 = match (conn, &self.backend) {
            // A cluster client would ask every primary; ask the stack's own.
            (Conn::Cluster(cluster), Backend::Cluster { slot, .. }) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                    Route::new(*slot, SlotAddr::Master),
                ));
                let value = self
                    .run_op("WAIT", cluster.route_command(cmd, routing))
                    .await?;
                redis::from_redis_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))?
            }
            (conn, _) => self.run_op("WAIT", cmd.query_async(conn)).await?,
        };
        let acks = u32::try_from(acks.max(0)).unwrap_or(u32::MAX);
        if acks < wanted {
            return Err(StoreError::NotReplicated { acks, wanted });
        }
        Ok(())
    }

    /// Replicas a write must reach before it is acknowledged (`REDIS_MIN_REPLICAS_ACK`).
    pub fn min_replicas_ack(&self) -> u32 {
        self.min_replicas_ack
    }

    /// Run one Redis operation bounded by the command timeout.
    pub async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        self.run_op("", op).await
    }

    /// [`Redis::run`] for a named `operation` (`"GET"`, `"EVALSHA"`, …): the
    /// command's span is named after it (`db.operation.name`).
    pub async fn run_op<T, F>(&self, operation: &'static str, op: F) -> Result<T, StoreError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        let span = self.command_span(operation);
        let result = match tokio::time::timeout(self.timeout, op.instrument(span.clone())).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        };
        if let Err(error) = &result {
            if let (StoreError::Unavailable(_), Backend::Sentinel(follower)) =
                (error, &self.backend)
            {
                // The primary may be gone: ask the Sentinels now.
                follower.wake.notify_one();
            }
            span.record("otel.status_code", "error");
            span.record(
                "error.type",
                match error {
                    StoreError::Unavailable(_) => "unavailable",
                    StoreError::Redis(_) => "redis_error",
                    StoreError::Corrupt(_) => "corrupt",
                    StoreError::NotReplicated { .. } => "not_replicated",
                },
            );
        }
        result
    }

    /// The client span of one command, or none: only while traces are
    /// exported, and only inside a span (a request), so background loops
    /// (reapers, tails) do not each start a trace of their own.
    fn command_span(&self, operation: &'static str) -> tracing::Span {
        if !crate::telemetry::exporting() || tracing::Span::current().is_none() {
            return tracing::Span::none();
        }
        let (address, port) = &*self.server;
        let name = if operation.is_empty() {
            "redis"
        } else {
            operation
        };
        tracing::info_span!(
            "redis",
            otel.name = name,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system.name = "redis",
            db.operation.name = (!operation.is_empty()).then_some(operation),
            server.address = address.as_str(),
            server.port = *port,
            error.type = tracing::field::Empty,
        )
    }

    /// `PING`, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn();
        self.run_op("PING", async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(|_| ())
    }

    /// A connection of its own, for blocking commands (`XREAD BLOCK`) that
    /// would stall every other caller of the shared multiplexed connection.
    /// Its response timeout is `block + timeout`, so the block itself is allowed.
    pub async fn dedicated(&self, block: Duration) -> Result<Conn, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(block + self.timeout));
        let client = match &self.backend {
            Backend::Standalone { client, .. } => client.clone(),
            Backend::Sentinel(follower) => match &*follower.current.load() {
                Some(primary) => primary.client.clone(),
                None => {
                    follower.wake.notify_one();
                    return Err(StoreError::Unavailable(no_primary().to_string()));
                }
            },
            Backend::Cluster { client, .. } => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(self.timeout)
                    .set_response_timeout(block + self.timeout);
                let connect = client.get_async_connection_with_config(config);
                return self.run_op("CONNECT", connect).await.map(Conn::Cluster);
            }
        };
        let sentinel = matches!(self.backend, Backend::Sentinel(_));
        let connect = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            if sentinel {
                is_master(&mut conn).await?;
            }
            Ok(conn)
        };
        self.run_op("CONNECT", connect).await.map(Conn::Multiplexed)
    }

    /// The command timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The retry schedule of a self-healing connection.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        // Few quick retries: the next command triggers a new reconnect anyway,
        // so a short schedule makes the service heal fast when Redis returns.
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(250))
}

/// `server.address`/`server.port` of the spans for `addr`.
fn span_address(addr: &ConnectionAddr) -> (String, Option<u16>) {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), Some(*port))
        }
        ConnectionAddr::Unix(path) => (path.display().to_string(), None),
        // A future address kind: name it as best we can.
        _ => (String::from("redis"), None),
    }
}
