//! [`ConfigWatcher`]: one configuration key as a typed, hot-updated value.
//!
//! Two guarantees on top of the watch stream: the value never moves back to
//! an older revision (a late listing or a replayed event is ignored), and a
//! new value that does not deserialize into `T` is logged and skipped while
//! the last good value stays in place, so a typo in the config store cannot
//! take a running service down.

use std::{marker::PhantomData, sync::Arc, time::Duration};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use crate::{
    Client, Error,
    follow::{Followed, Following},
    model::{ConfigDeletion, ConfigEntry},
    sse::{EventStream, SseEvent},
};

/// The value of a watched key at one revision.
#[derive(Debug)]
pub struct ConfigValue<T> {
    /// The value, `None` while the key does not exist.
    pub value: Option<Arc<T>>,
    /// Revision of the write that produced `value` (0: none seen yet).
    pub revision: u64,
    /// The key's version (0 when absent).
    pub version: u64,
    /// Whether the first fetch has completed.
    pub synced: bool,
    /// The last value that did not deserialize (its revision and the error), if newer than `value`.
    pub rejected: Option<(u64, String)>,
}

impl<T> Clone for ConfigValue<T> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            revision: self.revision,
            version: self.version,
            synced: self.synced,
            rejected: self.rejected.clone(),
        }
    }
}

impl<T> Default for ConfigValue<T> {
    fn default() -> Self {
        Self {
            value: None,
            revision: 0,
            version: 0,
            synced: false,
            rejected: None,
        }
    }
}

/// A typed, hot-updated config value; see the module docs.
#[derive(Debug)]
pub struct ConfigWatcher<T> {
    current: watch::Receiver<ConfigValue<T>>,
    following: Following,
}

impl<T: DeserializeOwned + Send + Sync + 'static> ConfigWatcher<T> {
    /// Start watching `namespace`/`key`. Must be called inside a Tokio runtime.
    pub fn start(client: Client, namespace: &str, key: &str) -> Self {
        let (tx, current) = watch::channel(ConfigValue::default());
        let follower = KeyFollower {
            client,
            namespace: namespace.to_owned(),
            key: key.to_owned(),
            seen: 0,
            tx,
            _value: PhantomData,
        };
        Self {
            current,
            following: Following::spawn(follower),
        }
    }
}

impl<T> ConfigWatcher<T> {
    /// The current value (`None` while the key is absent or not fetched yet).
    pub fn get(&self) -> Option<Arc<T>> {
        self.current.borrow().value.clone()
    }

    /// The current value with its revision and version.
    pub fn current(&self) -> ConfigValue<T> {
        self.current.borrow().clone()
    }

    /// A receiver that wakes on every change.
    pub fn subscribe(&self) -> watch::Receiver<ConfigValue<T>> {
        self.current.clone()
    }

    /// Wait for the first fetch, at most `within`; true once synced.
    pub async fn synced(&self, within: Duration) -> bool {
        crate::follow::synced(&self.current, within, |v| v.synced).await
    }

    /// Stop watching (dropping the watcher stops it too, without waiting).
    pub async fn stop(self) {
        self.following.stop().await;
    }
}

struct KeyFollower<T> {
    client: Client,
    namespace: String,
    key: String,
    /// Newest revision of this key seen (applied or rejected): nothing older is applied.
    seen: u64,
    tx: watch::Sender<ConfigValue<T>>,
    _value: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> KeyFollower<T> {
    /// Apply a write (`Some` value) or a deletion (`None`) at `revision`.
    fn update(&mut self, revision: u64, version: u64, value: Option<Value>) {
        if revision != 0 && revision <= self.seen {
            self.tx.send_modify(|v| v.synced = true);
            return;
        }
        self.seen = self.seen.max(revision);
        let parsed = value.map(serde_json::from_value::<T>);
        self.tx.send_modify(|current| {
            current.synced = true;
            match parsed {
                None => {
                    current.value = None;
                    current.revision = revision.max(current.revision);
                    current.version = 0;
                    current.rejected = None;
                }
                Some(Ok(value)) => {
                    current.value = Some(Arc::new(value));
                    current.revision = revision;
                    current.version = version;
                    current.rejected = None;
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        namespace = %self.namespace, key = %self.key, revision, error = %e,
                        "config value does not fit the expected type; keeping the last good one"
                    );
                    current.rejected = Some((revision, e.to_string()));
                }
            }
        });
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> Followed for KeyFollower<T> {
    fn describe(&self) -> String {
        format!("config/{}/{}", self.namespace, self.key)
    }

    async fn open(&self, after: Option<u64>) -> Result<EventStream, Error> {
        self.client.watch_config(&self.namespace, after).await
    }

    async fn relist(&mut self) -> Result<Option<u64>, Error> {
        match self.client.get_config(&self.namespace, &self.key).await {
            Ok(entry) => {
                self.update(entry.revision, entry.version, Some(entry.value));
                // Everything after the entry's own revision is on the stream.
                Ok(Some(entry.revision))
            }
            Err(e) if e.is_not_found() => {
                // Absent now; the stream opened before this GET brings what follows.
                self.tx.send_modify(|current| {
                    current.synced = true;
                    current.value = None;
                    current.version = 0;
                });
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn apply(&mut self, event: &SseEvent, revision: u64) {
        // The data is the shared type of its kind: the entry on `put`, a
        // `ConfigDeletion` on `delete` (`reset` is the follower's own).
        let change = match event.event.as_str() {
            "put" => serde_json::from_str::<ConfigEntry>(&event.data)
                .map(|e| (e.key, e.revision, e.version, Some(e.value))),
            "delete" => serde_json::from_str::<ConfigDeletion>(&event.data)
                .map(|d| (d.key, d.revision, 0, None)),
            _ => return,
        };
        let Ok((key, data_revision, version, value)) = change else {
            tracing::warn!(event = %event.event, "unreadable config event; skipped");
            return;
        };
        if key != self.key {
            return;
        }
        let revision = if data_revision != 0 {
            data_revision
        } else {
            revision
        };
        self.update(revision, version, value);
    }
}
