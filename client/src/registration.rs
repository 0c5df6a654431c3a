//! [`Registration`]: keep one instance registered for as long as it lives.
//!
//! A background task registers the instance, heartbeats at a third of the
//! TTL (so two heartbeats may be lost before the lease runs out), backs off
//! exponentially with full jitter when the gateway or the registry fails,
//! registers again when a heartbeat gets 404 (the lease expired, or Redis
//! lost it), and deregisters on [`Registration::shutdown`]. Its
//! [`ConnectionState`] is published on a `tokio::sync::watch`.

use std::time::Duration;

use mcp_api::registry::Instance;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{Client, Error, backoff::Backoff, model::InstanceSpec};

/// Lease length when the spec does not set one (the registry's own default).
const DEFAULT_TTL_SECONDS: u32 = 30;
/// First retry delay after a failure.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// How long shutdown waits for the deregistration.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a [`Registration`] stands with the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not registered any more: after shutdown.
    Disconnected,
    /// Registering for the first time (the state right after `start`).
    Connecting,
    /// Registered, heartbeats succeed.
    Connected,
    /// Was registered; heartbeats or registration fail and are being retried.
    Reconnecting,
}

/// One instance kept registered by a background task; see the module docs.
#[derive(Debug)]
pub struct Registration {
    state: watch::Receiver<ConnectionState>,
    instance: watch::Receiver<Option<Instance>>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Registration {
    /// Start keeping `service`/`id` registered with `spec`. Must be called
    /// inside a Tokio runtime.
    pub fn start(client: Client, service: &str, id: &str, spec: InstanceSpec) -> Self {
        let (state_tx, state) = watch::channel(ConnectionState::Connecting);
        let (instance_tx, instance) = watch::channel(None);
        let stop = CancellationToken::new();
        let keeper = Keeper {
            client,
            service: service.to_owned(),
            id: id.to_owned(),
            spec,
            state: state_tx,
            instance: instance_tx,
            stop: stop.clone(),
        };
        let task = tokio::spawn(keeper.run());
        Self {
            state,
            instance,
            stop,
            task: Some(task),
        }
    }

    /// The connection state, to read now or to wait on changes.
    pub fn state(&self) -> watch::Receiver<ConnectionState> {
        self.state.clone()
    }

    /// The instance as the registry last returned it on registration.
    pub fn instance(&self) -> Option<Instance> {
        self.instance.borrow().clone()
    }

    /// Wait until the state is `Connected` or `within` passes; true when connected.
    pub async fn connected(&self, within: Duration) -> bool {
        let mut state = self.state.clone();
        tokio::time::timeout(within, state.wait_for(|s| *s == ConnectionState::Connected))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stop heartbeating and deregister (bounded by a short timeout).
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registration {
    /// Dropped without [`shutdown`](Registration::shutdown) (a crash, a
    /// panic): the task stops at once without deregistering, so the registry
    /// learns of it the way it learns of a dead process: the check fails or
    /// the lease runs out.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Keeper {
    client: Client,
    service: String,
    id: String,
    spec: InstanceSpec,
    state: watch::Sender<ConnectionState>,
    instance: watch::Sender<Option<Instance>>,
    stop: CancellationToken,
}

impl Keeper {
    async fn run(self) {
        let ttl = Duration::from_secs(u64::from(
            self.spec.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS).max(1),
        ));
        let interval = ttl / 3;
        // Retrying more slowly than the heartbeat would let the lease run out.
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP.min(interval));
        let mut registered = false;
        while !self.stop.is_cancelled() {
            if !registered {
                match self
                    .client
                    .register(&self.service, &self.id, &self.spec)
                    .await
                {
                    Ok(instance) => {
                        tracing::debug!(service = %self.service, id = %self.id, "registered");
                        self.instance.send_replace(Some(instance));
                        self.state.send_replace(ConnectionState::Connected);
                        registered = true;
                        backoff.reset();
                        self.pause(interval).await;
                    }
                    Err(e) => self.failed(&e, &mut backoff).await,
                }
                continue;
            }
            match self.client.heartbeat(&self.service, &self.id).await {
                Ok(_) => {
                    self.state.send_replace(ConnectionState::Connected);
                    backoff.reset();
                    self.pause(interval).await;
                }
                Err(e) if e.is_not_found() => {
                    // The lease is gone (expired, or Redis lost it): register at once.
                    tracing::info!(service = %self.service, id = %self.id, "lease lost; registering again");
                    self.state.send_replace(ConnectionState::Reconnecting);
                    registered = false;
                }
                Err(e) => self.failed(&e, &mut backoff).await,
            }
        }
        // Never connected: nothing to remove (a 404 would be harmless, but slow).
        if *self.state.borrow() != ConnectionState::Connecting {
            let deregister = self.client.deregister(&self.service, &self.id);
            match tokio::time::timeout(DEREGISTER_TIMEOUT, deregister).await {
                Ok(Ok(())) => {
                    tracing::debug!(service = %self.service, id = %self.id, "deregistered")
                }
                Ok(Err(e)) if e.is_not_found() => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "deregistration failed; the lease will expire")
                }
                Err(_) => tracing::warn!("deregistration timed out; the lease will expire"),
            }
        }
        self.state.send_replace(ConnectionState::Disconnected);
    }

    async fn failed(&self, error: &Error, backoff: &mut Backoff) {
        tracing::warn!(service = %self.service, id = %self.id, error = %error, "registry call failed; retrying");
        self.state.send_if_modified(|state| {
            let next = match state {
                ConnectionState::Connecting => ConnectionState::Connecting,
                _ => ConnectionState::Reconnecting,
            };
            std::mem::replace(state, next) != next
        });
        self.pause(backoff.next_delay()).await;
    }

    async fn pause(&self, duration: Duration) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = tokio::time::sleep(duration) => {}
        }
    }
}
