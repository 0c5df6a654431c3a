//! The in-memory view of the registry that discovery reads are answered
//! from, as Consul's servers and Nacos answer discovery from memory. Redis
//! stays the source of truth: every write still goes there, and the view
//! follows it through the registry's event stream with the workspace's one
//! follower loop ([`mcp_shared::events::follow`]: subscribe, load at
//! revision R, apply the events after R, reload on a gap, a lag or lost
//! data).
//!
//! The view is published as immutable [`Snapshot`]s swapped whole, so a
//! read takes one lock-free load and never sees a half-applied change, and a
//! later read never sees an older revision than an earlier one (within one
//! history of Redis). A `watch` channel rings on every publication: a
//! blocking query waits on it for the first change after its index, and a
//! fenced read (see [`crate::discovery`]) waits on it until the view has
//! reached the revision Redis reported.
//!
//! What the event stream does not carry is kept beside it: lease deadlines
//! (a heartbeat renews a lease without an event) are cached per service,
//! labelled with the lease version they were read at (see
//! [`mcp_shared::registry`], `reg:lease-versions`), and refreshed by a
//! fenced read that finds the version moved; the protected services are
//! whatever the last fenced services listing read.
//!
//! - [`snapshot`]: the snapshot, each service's view and its rendered bodies.
//! - [`follower`]: the [`Follower`](mcp_shared::events::Follower) that keeps it.

pub mod follower;
pub mod snapshot;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use mcp_shared::events::Head;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use follower::ViewFollower;
pub use snapshot::{Leases, ServiceView, Snapshot};

/// The shared handle on the view (cheap to clone).
#[derive(Clone)]
pub struct View {
    shared: Arc<Shared>,
}

struct Shared {
    /// The latest snapshot: one lock-free load per read.
    current: ArcSwap<Snapshot>,
    /// How many snapshots were published: rings every waiter.
    published: watch::Sender<u64>,
    /// The protected services as last read from Redis.
    protected: ArcSwap<BTreeSet<String>>,
}

impl Default for View {
    fn default() -> Self {
        Self::new()
    }
}

impl View {
    /// An empty view that has loaded nothing yet.
    pub fn new() -> Self {
        let (published, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(Snapshot::default()),
                published,
                protected: ArcSwap::from_pointee(BTreeSet::new()),
            }),
        }
    }

    /// The latest snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.shared.current.load_full()
    }

    /// Make `snapshot` the current one and wake every waiter.
    pub(crate) fn publish(&self, snapshot: Snapshot) {
        self.shared.current.store(Arc::new(snapshot));
        self.shared.published.send_modify(|count| *count += 1);
    }

    /// The protected services as last read from Redis.
    pub fn protected(&self) -> Arc<BTreeSet<String>> {
        self.shared.protected.load_full()
    }

    /// Remember the protected services a fence or a load read (and return them).
    pub fn set_protected(
        &self,
        protected: impl IntoIterator<Item = String>,
    ) -> Arc<BTreeSet<String>> {
        let protected = Arc::new(protected.into_iter().collect());
        self.shared.protected.store(Arc::clone(&protected));
        protected
    }

    /// The snapshot once it has reached `head` (Redis's revision, in
    /// Redis's epoch), waiting at most `within`; `None` when it has not by
    /// then (the caller reads Redis instead).
    pub async fn reached(&self, head: &Head, within: Duration) -> Option<Arc<Snapshot>> {
        // Hot path: the view is almost always there already, and then no
        // receiver is made.
        let snapshot = self.current();
        if snapshot.has_reached(head) {
            return Some(snapshot);
        }
        let deadline = tokio::time::Instant::now() + within;
        let mut published = self.shared.published.subscribe();
        loop {
            // Mark what is published as seen before reading it, so a
            // publication after the read rings the `changed` below.
            published.borrow_and_update();
            let snapshot = self.current();
            if snapshot.has_reached(head) {
                return Some(snapshot);
            }
            match tokio::time::timeout_at(deadline, published.changed()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
        }
    }

    /// Wait until `ready` holds of the current snapshot, at most `wait` (or
    /// until `shutdown`), and return the snapshot seen last: the
    /// blocking-query primitive.
    pub async fn wait_until(
        &self,
        wait: Duration,
        shutdown: &CancellationToken,
        ready: impl Fn(&Snapshot) -> bool,
    ) -> Arc<Snapshot> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut published = self.shared.published.subscribe();
        loop {
            published.borrow_and_update();
            let snapshot = self.current();
            if ready(&snapshot) {
                return snapshot;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return snapshot,
                changed = tokio::time::timeout_at(deadline, published.changed()) => {
                    if !matches!(changed, Ok(Ok(()))) {
                        return self.current();
                    }
                }
            }
        }
    }
}
