//! Propagation status: which watcher (by `client_id`) has received which revision.
//!
//! A watch's `on_delivered` callback runs on the watch's own task for every
//! event it processes, so it must never wait: it only stores the revision and
//! the time in atomics of the client's `Slot`. A background writer flushes
//! changed slots to Redis every `CONFIG_CLIENT_STATUS_INTERVAL` in one
//! pipelined round trip (throttled, and a slow Redis never slows a stream).
//! A slot whose watches have all ended is flushed one last time and dropped.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use mcp_shared::time::now_ms;
use tokio_util::sync::CancellationToken;

use crate::store::{ClientRecord, ConfigStore};

/// The latest delivery to one client (shared by its open watches).
#[derive(Debug, Default)]
struct Slot {
    revision: AtomicU64,
    at_ms: AtomicU64,
    dirty: AtomicBool,
}

impl Slot {
    fn deliver(&self, revision: u64) {
        self.revision.fetch_max(revision, Ordering::Relaxed);
        self.at_ms.store(now_ms(), Ordering::Relaxed);
        self.dirty.store(true, Ordering::Release);
    }
}

type SlotKey = (Option<String>, String);

/// The in-process table of watching clients.
#[derive(Debug, Default)]
pub struct Propagation {
    slots: Mutex<HashMap<SlotKey, Arc<Slot>>>,
}

/// The callback type `EventFeed::open_watch` takes.
pub type OnDelivered = Box<dyn Fn(u64) + Send + Sync>;

impl Propagation {
    /// Track a watch of `namespace` (`None` = all) by `client`, which has seen
    /// `start` already. Returns the watch's `on_delivered` callback.
    pub fn track(&self, namespace: Option<String>, client: String, start: u64) -> OnDelivered {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.entry((namespace, client)).or_default().clone()
        };
        slot.deliver(start);
        Box::new(move |revision| slot.deliver(revision))
    }

    /// Take the changed slots as records; drop slots no watch holds any more.
    fn drain(&self) -> Vec<ClientRecord> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut records = Vec::new();
        slots.retain(|(namespace, client), slot| {
            if slot.dirty.swap(false, Ordering::Acquire) {
                records.push(ClientRecord {
                    namespace: namespace.clone(),
                    client: client.clone(),
                    json: format!(
                        r#"{{"revision":{},"at":{}}}"#,
                        slot.revision.load(Ordering::Relaxed),
                        slot.at_ms.load(Ordering::Relaxed)
                    ),
                });
            }
            // Only this map holds it: every watch of the client has ended.
            Arc::strong_count(slot) > 1
        });
        records
    }

    /// Put records that failed to write back, so the next flush retries them.
    fn retry_later(&self, records: Vec<ClientRecord>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            let key = (record.namespace, record.client);
            let slot = slots.entry(key).or_default();
            if let Some((revision, at)) = parse_record(&record.json) {
                slot.revision.fetch_max(revision, Ordering::Relaxed);
                slot.at_ms.fetch_max(at, Ordering::Relaxed);
                slot.dirty.store(true, Ordering::Release);
            }
        }
    }
}

/// `{"revision":R,"at":T}` → `(R, T)`.
pub fn parse_record(json: &str) -> Option<(u64, u64)> {
    #[derive(serde::Deserialize)]
    struct Record {
        revision: u64,
        at: u64,
    }
    serde_json::from_str::<Record>(json)
        .ok()
        .map(|r| (r.revision, r.at))
}

/// The background writer: flush every `interval` until `shutdown`, then once more.
/// Also refreshes the `config_entries` gauge.
pub async fn run_writer(
    propagation: Arc<Propagation>,
    store: ConfigStore,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(interval) => false,
        };
        let records = propagation.drain();
        if let Err(error) = store.record_clients(&records).await {
            tracing::debug!(%error, "could not record propagation status; will retry");
            propagation.retry_later(records);
        }
        if stopping {
            return;
        }
        if let Ok(count) = store.entry_count().await {
            metrics::gauge!("config_entries").set(count as f64);
        }
    }
}
