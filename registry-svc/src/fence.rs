//! Fences, batched: a fenced read (see [`crate::discovery`]) must learn
//! where the registry stands in Redis from a read that *starts after the
//! request arrived*; any such read will do, so concurrent requests share
//! one, as etcd batches its ReadIndex requests.
//!
//! One task per process runs the fences one after the other. A request
//! joins the batch that has not started yet (naming the service whose lease
//! version it needs, or asking for the protected services) and waits for
//! it; the task takes the whole batch the moment the previous round trip
//! is answered and reads everything the batch asked for in one pipeline
//! ([`Store::fence`]). Under load a round trip serves every request that
//! arrived during the one before, so Redis sees a few fences per round
//! trip instead of one per request; alone, a request waits for just its
//! own round trip (plus one wake-up of the task). The round trip runs in the
//! span of the request that opened the batch, so with traces exported that
//! request shows the Redis call as its child, as an unbatched read would.

use std::sync::{Arc, Mutex, PoisonError};

use mcp_shared::StoreError;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::store::{Fenced, Store};

/// What a fence answers its waiters: the reading, or why it failed.
type Outcome = Option<Result<Arc<Fenced>, StoreError>>;

/// The batch that has not started yet.
struct Batch {
    /// Services whose lease version was asked for (a few distinct names).
    services: Vec<String>,
    /// Whether a waiter needs the protected services.
    protected: bool,
    /// Rings its waiters once the round trip is answered.
    done: watch::Sender<Outcome>,
    /// The span of the request that opened the batch: the round trip runs
    /// in it, so that request's trace shows the Redis call it waited on.
    span: tracing::Span,
}

struct Shared {
    store: Store,
    /// The next batch; a plain mutex held for a push, never across an await
    /// (it stands in for a network round trip per request).
    next: Mutex<Option<Batch>>,
    /// Wakes the task when a batch is waiting.
    wake: Notify,
}

/// The handle requests fence through (cheap to clone).
#[derive(Clone)]
pub struct Fences {
    shared: Arc<Shared>,
}

impl Fences {
    /// Start the task that runs the fences until `stop` (which must outlive
    /// the last request: a draining blocking query still fences).
    pub fn spawn(store: Store, stop: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let shared = Arc::new(Shared {
            store,
            next: Mutex::new(None),
            wake: Notify::new(),
        });
        let task = tokio::spawn(run(shared.clone(), stop));
        (Self { shared }, task)
    }

    /// Where the registry stands in Redis now (`head`).
    pub async fn head(&self) -> Result<Arc<Fenced>, StoreError> {
        self.join(None, false).await
    }

    /// Where the registry stands, and `service`'s lease version (in
    /// `lease_versions`, naming the last renewal when there was one).
    pub async fn of_service(&self, service: &str) -> Result<Arc<Fenced>, StoreError> {
        self.join(Some(service), false).await
    }

    /// Where the registry stands, and the protected services (`protected`).
    pub async fn with_protected(&self) -> Result<Arc<Fenced>, StoreError> {
        self.join(None, true).await
    }

    /// Join the batch that has not started, and wait for its reading.
    async fn join(
        &self,
        service: Option<&str>,
        protected: bool,
    ) -> Result<Arc<Fenced>, StoreError> {
        let mut done = {
            let mut next = self
                .shared
                .next
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let batch = next.get_or_insert_with(|| Batch {
                services: Vec::new(),
                protected: false,
                done: watch::channel(None).0,
                span: tracing::Span::current(),
            });
            if let Some(service) = service
                && !batch.services.iter().any(|s| s == service)
            {
                batch.services.push(service.to_owned());
            }
            batch.protected |= protected;
            batch.done.subscribe()
        };
        self.shared.wake.notify_one();
        match done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(stopped())),
            // The task stopped with this batch unread.
            Err(_) => Err(stopped()),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the service is stopping".into())
}

/// Run each waiting batch's round trip, one at a time, until `stop`.
async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = shared.wake.notified() => {}
        }
        // Let the requests that are ready to run on this worker join first:
        // one more round of the scheduler batches them into this read
        // instead of the next (group commit's trick).
        tokio::task::yield_now().await;
        // Take the batch only now: everyone in it arrived before this read
        // starts, and whoever comes during it waits for the next one.
        let batch = shared
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(batch) = batch else { continue };
        let fence = shared
            .store
            .fence(&batch.services, batch.protected)
            .instrument(batch.span.clone());
        let read = tokio::select! {
            _ = stop.cancelled() => return,
            read = fence => read,
        };
        // Nobody waiting any more is fine.
        let _ = batch.done.send(Some(read.map(Arc::new)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use futures_util::future::join_all;
    use mcp_shared::{Redis, events::EventLog, registry};

    use super::*;

    #[tokio::test]
    async fn requests_that_arrive_together_share_one_reading_and_later_ones_read_again() {
        let redis = Redis::new(
            &mcp_testkit::redis().url(),
            &mcp_testkit::prefix(),
            Duration::from_secs(2),
        )
        .unwrap();
        let log = EventLog::new(redis.clone(), registry::LOG_NAME, 100);
        let bump = || async {
            let mut conn = redis.conn();
            let _: u64 = ::redis::cmd("INCR")
                .arg(log.revision_key())
                .query_async(&mut conn)
                .await
                .unwrap();
        };
        bump().await;
        let stop = CancellationToken::new();
        let (fences, _task) = Fences::spawn(Store::new(redis.clone(), log.clone()), stop.clone());

        // On this single-threaded runtime all of them join before the task
        // first runs: one batch, one reading, every service's version in it.
        let services: Vec<String> = (0..50).map(|n| format!("s-{n}")).collect();
        let readings = join_all(services.iter().map(|s| fences.of_service(s))).await;
        let first = readings[0].as_ref().unwrap();
        assert_eq!(first.head.revision, 1);
        for reading in &readings {
            assert!(Arc::ptr_eq(reading.as_ref().unwrap(), first));
        }
        assert_eq!(first.lease_versions.len(), 50);

        // A request after that reading gets a reading of its own, from after
        // it arrived.
        bump().await;
        let later = fences.with_protected().await.unwrap();
        assert_eq!(later.head.revision, 2);
        assert_eq!(later.protected.as_deref(), Some(&[][..]));
        stop.cancel();
    }
}
