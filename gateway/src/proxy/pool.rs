//! The pool of HTTP/1.1 connections to plain `http` instances (the
//! proxy's common case), one per thread.
//!
//! hyper-util's legacy pool, which the other ways of speaking keep (see
//! [`super::clients`]), cost a sixth of the gateway's user-space
//! instructions per request here: a `Mutex` and several SipHash lookups
//! of the key per request, a task per connection that waits for its
//! readiness after each answer before putting it back, and large futures
//! moved into boxes. This one is a thread's map from instance to idle
//! senders: a request takes the most recently used one that is ready
//! (LIFO keeps few connections warm), puts it back once the answer's head
//! is in, and opens a connection through the egress rules only when none
//! is ready. A serving worker's requests and the connections' tasks stay
//! on the worker's thread.
//!
//! Written by hand: hyper offers the connection (`client::conn::http1`),
//! and no maintained crate offers a pool over it that is not hyper-util's.
//!
//! Bounds: at most [`MAX_IDLE`] idle connections per instance and thread;
//! one unused for [`IDLE_TIMEOUT`] or closed by the instance is dropped
//! when met, and every [`SWEEP_EVERY`] put-backs a thread drops all such
//! ones (an instance that went away leaves nothing behind).

use std::{
    cell::{Cell, RefCell},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    http::{Request, Response, Uri},
};
use hyper::{body::Incoming, client::conn::http1};
use tower::Service as _;

use super::clients::SendError;
use crate::{FastMap, egress::EgressConnector};

/// Idle connections kept per instance and thread.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed (as hyper-util's default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Put-backs between two sweeps of a thread's whole map.
const SWEEP_EVERY: u32 = 4096;

/// One pool: its connections are told apart from another pool's (another
/// gateway in the same process, with its own egress rules) by its id.
pub(super) struct Http1Pool {
    id: u64,
    connector: EgressConnector,
}

/// An idle connection's sender, and since when it is idle.
struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

impl Idle {
    fn expired(&self, now: Instant) -> bool {
        self.sender.is_closed() || now.duration_since(self.since) > IDLE_TIMEOUT
    }
}

/// One pool's idle connections on a thread, by instance (its authority's
/// text: looked up without making a key).
type Instances = FastMap<Box<str>, Vec<Idle>>;

thread_local! {
    /// This thread's idle connections, by pool.
    static IDLE: RefCell<FastMap<u64, Instances>> = RefCell::new(FastMap::default());
    /// Put-backs since the last sweep.
    static PUT_BACKS: Cell<u32> = const { Cell::new(0) };
}

impl Http1Pool {
    /// A pool opening its connections with `connector`.
    pub(super) fn new(connector: EgressConnector) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            connector,
        }
    }

    /// Send `request` (an absolute `http` URI, a `Host` header) on an idle
    /// connection to its instance, else on a new one.
    pub(super) async fn send(
        &self,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        // HTTP/1.1 wants the origin form on the wire.
        let origin = origin_form(request.uri());
        let uri = std::mem::replace(request.uri_mut(), origin);
        let Some(authority) = uri.authority() else {
            return Err(SendError::Connect("upstream URI without a host".into()));
        };
        let authority = authority.as_str();
        // A connection the instance closed as it was taken gives the request
        // back unsent: the next one (or a new one) gets it.
        while let Some(mut sender) = take(self.id, authority) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    put_back(self.id, authority, sender);
                    return Ok(response);
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(SendError::Exchange(failed.into_error().into())),
                },
            }
        }
        let io = self
            .connector
            .clone()
            .call(uri.clone())
            .await
            .map_err(SendError::Connect)?;
        let (mut sender, connection) = http1::handshake(io)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        // Ends when the instance closes it, or once its sender is dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream connection ended with an error");
            }
        });
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Exchange(e.into()))?;
        put_back(self.id, authority, sender);
        Ok(response)
    }
}

/// The path and query of `uri` alone.
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(path) => Uri::from(path.clone()),
        None => Uri::from_static("/"),
    }
}

/// The most recently used idle connection of pool `id` to `authority` that
/// is ready for a request; the closed or expired ones met on the way are dropped.
fn take(id: u64, authority: &str) -> Option<http1::SendRequest<Body>> {
    IDLE.with_borrow_mut(|idle| {
        let senders = idle.get_mut(&id)?.get_mut(authority)?;
        let now = Instant::now();
        while let Some(index) = senders
            .iter()
            .rposition(|s| s.sender.is_ready() || s.expired(now))
        {
            let found = senders.swap_remove(index);
            if !found.expired(now) {
                return Some(found.sender);
            }
        }
        None
    })
}

/// Keep `sender` for pool `id`'s next request to `authority` (it is ready
/// again once the answer's body is read); every [`SWEEP_EVERY`] calls,
/// drop what expired.
fn put_back(id: u64, authority: &str, sender: http1::SendRequest<Body>) {
    let now = Instant::now();
    let sweep = PUT_BACKS.with(|count| {
        let next = count.get() + 1;
        count.set(next % SWEEP_EVERY);
        next == SWEEP_EVERY
    });
    IDLE.with_borrow_mut(|idle| {
        if sweep {
            idle.retain(|_, pool| {
                pool.retain(|_, senders| {
                    senders.retain(|s| !s.expired(now));
                    !senders.is_empty()
                });
                !pool.is_empty()
            });
        }
        let pool = idle.entry(id).or_default();
        let senders = match pool.get_mut(authority) {
            Some(senders) => senders,
            None => pool.entry(authority.into()).or_default(),
        };
        if senders.len() >= MAX_IDLE {
            // The least recently used goes.
            senders.remove(0);
        }
        senders.push(Idle { sender, since: now });
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_form_keeps_the_path_and_query() {
        let uri: Uri = "http://127.0.0.1:8080/a/b?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        let bare: Uri = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(origin_form(&bare), "/");
    }
}
