//! Shared arrangement for the gateway's tests: a gateway in-process and axum
//! upstreams on 127.0.0.1:0 (`mcp_testkit::gateway`), instances written into
//! Redis in the registry's documented format (registry-svc itself is not
//! needed), and the test keys and certificates.

use std::{collections::BTreeMap, time::Duration};

use mcp_shared::{
    Redis,
    events::{EventLog, script},
    registry::{self, HealthStatus, Instance, RegistryKeys},
};
use mcp_testkit::TestService;

pub use mcp_testkit::gateway::{bearer, client, echo, token, upstream};

/// Start a gateway with the test secret, `prefix` on `redis_url`, and `extra` flags.
pub async fn gateway(redis_url: &str, prefix: &str, extra: &[&str]) -> TestService {
    mcp_testkit::gateway::start(redis_url, prefix, extra, gateway::run).await
}

/// Writes instances into Redis as registry-svc would.
pub struct Registry {
    redis: Redis,
    keys: RegistryKeys,
    log: EventLog,
}

const REGISTER: &str = r#"
-- KEYS: revision, stream, services set, service hash. ARGV: maxlen, service, id, tail, status, kind
local rev = mcp_next_revision(KEYS[1])
local json = '{"status":"' .. ARGV[5] .. '","revision":' .. rev .. ',' .. ARGV[4]
redis.call('HSET', KEYS[4], ARGV[3], json)
redis.call('SADD', KEYS[3], ARGV[2])
mcp_append(KEYS[2], ARGV[1], rev, ARGV[6], ARGV[2],
  '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[3] .. '","instance":' .. json .. '}')
return rev
"#;

const DEREGISTER: &str = r#"
-- KEYS: revision, stream, services set, service hash. ARGV: maxlen, service, id
local rev = mcp_next_revision(KEYS[1])
redis.call('HDEL', KEYS[4], ARGV[3])
if redis.call('HLEN', KEYS[4]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
mcp_append(KEYS[2], ARGV[1], rev, 'deregistered', ARGV[2],
  '{"service":"' .. ARGV[2] .. '","id":"' .. ARGV[3] .. '"}')
return rev
"#;

impl Registry {
    pub fn new(redis_url: &str, prefix: &str) -> Self {
        let redis = Redis::new(redis_url, prefix, Duration::from_secs(2)).unwrap();
        Self {
            keys: RegistryKeys::new(redis.clone()),
            log: EventLog::new(redis.clone(), registry::LOG_NAME, 10_000),
            redis,
        }
    }

    /// Register (or update) `service`/`id` at `addr` (`127.0.0.1:port`) with `status`.
    pub async fn register(
        &self,
        service: &str,
        id: &str,
        addr: std::net::SocketAddr,
        status: HealthStatus,
    ) {
        let instance = Instance {
            status,
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
        };
        let tail = registry::stored_tail(&instance).unwrap();
        let script = script(REGISTER);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.log.revision_key())
            .key(self.log.stream_key())
            .key(&self.keys.services)
            .key(self.keys.instances(service))
            .arg(10_000)
            .arg(service)
            .arg(id)
            .arg(tail)
            .arg(status.as_str())
            .arg("registered");
        self.invoke(&invocation).await;
    }

    pub async fn deregister(&self, service: &str, id: &str) {
        let script = script(DEREGISTER);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.log.revision_key())
            .key(self.log.stream_key())
            .key(&self.keys.services)
            .key(self.keys.instances(service))
            .arg(10_000)
            .arg(service)
            .arg(id);
        self.invoke(&invocation).await;
    }

    /// Run a script, retrying while a restarted Redis reconnects.
    async fn invoke(&self, invocation: &redis::ScriptInvocation<'_>) {
        let mut last = None;
        for _ in 0..50 {
            let mut conn = self.redis.conn();
            match invocation.invoke_async::<u64>(&mut conn).await {
                Ok(_) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("registry write failed: {last:?}");
    }
}

/// GET `url` with `token`; returns status and JSON body (Null if not JSON).
pub async fn get(url: &str, token: &str) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let response = client()
        .get(url)
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, headers, body)
}

/// The path of `name` among the test keys and certificates (`tests/keys/`).
pub fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A TLS connection to the gateway at `addr`, trusting the test CA.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio_rustls::{
        TlsConnector,
        rustls::{
            ClientConfig, RootCertStore,
            pki_types::{CertificateDer, ServerName, pem::PemObject},
        },
    };
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(key_file("tls-ca.pem")).unwrap())
        .unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}
