//! The SSE fan-out of one feed: the tail publishes each event here once, as
//! a finished SSE frame, on a channel for watchers of everything and on the
//! channel of the event's scope (a namespace, a service), so a watcher of one
//! scope is not even woken by the others' changes.
//!
//! A scope's channel exists while someone watches that scope; it is made by
//! the first subscriber and dropped with the last one (under the same lock,
//! so no subscriber joins a channel on its way out). When the feed stops (shutdown) it
//! closes every channel, which ends every watch: a watch never polls the
//! shutdown token itself, so an event costs it no look at the token.
//!
//! # Gaps
//!
//! A watcher knows the revision it has reached (`last`) and must notice when
//! its channel skipped events it should have had (say Redis answered its
//! replay from behind the feed). Revisions on a scope's channel are not
//! consecutive, so each [`Delivery`] carries `after`: the revision of the
//! channel's previous delivery (or, for its first, the feed's revision when
//! the channel was made). No event of that channel lies between `after` and
//! the delivered one, so a watcher with `after <= last` missed nothing; with
//! `after > last` it reads Redis. On the channel of everything `after` is
//! simply the previous revision.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::Bytes;
use tokio::sync::broadcast;

use super::{Event, sse};

/// Deliveries a watcher of everything may fall behind by before it replays from Redis.
const ALL_CAPACITY: usize = 4096;
/// The same for a scope's channel (each one allocates this many slots).
const SCOPE_CAPACITY: usize = 1024;

/// One event as the watchers send it: the event (for their filters) and its
/// SSE frame, encoded once.
#[derive(Debug)]
pub(super) struct Frame {
    /// The event.
    pub(super) event: Arc<Event>,
    /// Its SSE text.
    pub(super) bytes: Bytes,
}

/// A frame on one channel: cloning it is one reference-count increment.
#[derive(Debug, Clone)]
pub(super) struct Delivery {
    /// No event of this channel lies between `after` and this frame's revision
    /// (see the module docs).
    pub(super) after: u64,
    /// The frame.
    pub(super) frame: Arc<Frame>,
}

struct ScopeChannel {
    sender: broadcast::Sender<Delivery>,
    /// The revision of its last delivery (or the feed's when it was made).
    last: u64,
}

/// What the tail and the subscribers change together, under one lock.
struct Routes {
    /// The revision of the last event published.
    published: u64,
    /// The channel of everything; `None` once closed.
    all: Option<broadcast::Sender<Delivery>>,
    scopes: HashMap<String, ScopeChannel>,
}

/// The channels SSE watchers receive from (see the module docs).
pub(super) struct Fanout {
    routes: Mutex<Routes>,
}

impl Fanout {
    pub(super) fn new() -> Self {
        Self {
            routes: Mutex::new(Routes {
                published: 0,
                all: Some(broadcast::channel(ALL_CAPACITY).0),
                scopes: HashMap::new(),
            }),
        }
    }

    fn routes(&self) -> MutexGuard<'_, Routes> {
        // The map holds no invariant a panic elsewhere could break halfway.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publish one event from the tail. The frame is built only when someone
    /// watches it; the lock is held while sending so a subscriber never sees
    /// a channel's `last` ahead of what it was sent.
    pub(super) fn publish(&self, event: &Arc<Event>) {
        let mut routes = self.routes();
        let after = std::mem::replace(&mut routes.published, event.revision);
        let mut built: Option<Arc<Frame>> = None;
        let mut frame = || {
            built
                .get_or_insert_with(|| {
                    Arc::new(Frame {
                        event: event.clone(),
                        bytes: sse::frame(event),
                    })
                })
                .clone()
        };
        if let Some(all) = routes.all.as_ref().filter(|all| all.receiver_count() > 0) {
            let _ = all.send(Delivery {
                after,
                frame: frame(),
            });
        }
        if let Some(channel) = routes.scopes.get_mut(&event.scope) {
            if channel.sender.receiver_count() == 0 {
                routes.scopes.remove(&event.scope);
            } else {
                let after = std::mem::replace(&mut channel.last, event.revision);
                let _ = channel.sender.send(Delivery {
                    after,
                    frame: frame(),
                });
            }
        }
    }

    /// Tell every watcher that history restarts at `revision` (Redis lost or
    /// replaced its data).
    pub(super) fn reset(&self, revision: u64) {
        let event = Arc::new(Event::reset(revision));
        let frame = Arc::new(Frame {
            bytes: sse::frame(&event),
            event,
        });
        let delivery = Delivery { after: 0, frame };
        let mut routes = self.routes();
        routes.published = revision;
        if let Some(all) = &routes.all {
            let _ = all.send(delivery.clone());
        }
        routes.scopes.retain(|_, channel| {
            channel.last = revision;
            channel.sender.send(delivery.clone()).is_ok()
        });
    }

    /// Close every channel: the watches end (the feed stopped).
    pub(super) fn close(&self) {
        let mut routes = self.routes();
        routes.all = None;
        routes.scopes.clear();
    }

    /// Receive the deliveries of `scope` (`None`: of everything) from now on
    /// (after [`Fanout::close`], a receiver that is closed already).
    pub(super) fn subscribe(self: &Arc<Self>, scope: Option<String>) -> Subscription {
        let mut routes = self.routes();
        let published = routes.published;
        let receiver = match (&scope, &routes.all) {
            (_, None) => broadcast::channel(1).1,
            (None, Some(all)) => all.subscribe(),
            (Some(scope), Some(_)) => routes
                .scopes
                .entry(scope.clone())
                .or_insert_with(|| ScopeChannel {
                    sender: broadcast::channel(SCOPE_CAPACITY).0,
                    last: published,
                })
                .sender
                .subscribe(),
        };
        drop(routes);
        Subscription {
            receiver: Some(receiver),
            scope,
            fanout: self.clone(),
        }
    }
}

/// One watcher's receiver; dropping the last one of a scope drops its channel.
pub(super) struct Subscription {
    /// `None` only while being dropped.
    receiver: Option<broadcast::Receiver<Delivery>>,
    scope: Option<String>,
    fanout: Arc<Fanout>,
}

impl Subscription {
    /// The receiver.
    pub(super) fn receiver(&mut self) -> Option<&mut broadcast::Receiver<Delivery>> {
        self.receiver.as_mut()
    }

    /// The scope it receives (`None`: everything).
    pub(super) fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(scope) = &self.scope else {
            return;
        };
        let mut routes = self.fanout.routes();
        // Dropped under the lock, so no subscriber joins between the drop and the count.
        drop(self.receiver.take());
        if routes
            .scopes
            .get(scope)
            .is_some_and(|c| c.sender.receiver_count() == 0)
        {
            routes.scopes.remove(scope);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u64, scope: &str) -> Arc<Event> {
        Arc::new(Event {
            revision,
            kind: "put".to_owned(),
            scope: scope.to_owned(),
            data: "{}".to_owned(),
        })
    }

    fn next(subscription: &mut Subscription) -> (u64, u64) {
        let delivery = subscription
            .receiver()
            .unwrap()
            .try_recv()
            .expect("a delivery");
        (delivery.after, delivery.frame.event.revision)
    }

    #[test]
    fn a_scope_channel_carries_only_its_scope_and_the_revision_before_each() {
        let fanout = Arc::new(Fanout::new());
        fanout.publish(&event(1, "a"));
        let mut a = fanout.subscribe(Some("a".to_owned()));
        let mut all = fanout.subscribe(None);
        for (revision, scope) in [(2, "b"), (3, "a"), (4, "b"), (5, "a")] {
            fanout.publish(&event(revision, scope));
        }
        assert_eq!(next(&mut a), (1, 3));
        assert_eq!(next(&mut a), (3, 5));
        assert!(a.receiver().unwrap().try_recv().is_err());
        let all: Vec<_> = (0..4).map(|_| next(&mut all)).collect();
        assert_eq!(all, [(1, 2), (2, 3), (3, 4), (4, 5)]);
    }

    #[test]
    fn the_frame_is_encoded_once_for_every_channel() {
        let fanout = Arc::new(Fanout::new());
        let mut a = fanout.subscribe(Some("a".to_owned()));
        let mut all = fanout.subscribe(None);
        fanout.publish(&event(1, "a"));
        let one = a.receiver().unwrap().try_recv().unwrap().frame;
        let other = all.receiver().unwrap().try_recv().unwrap().frame;
        assert!(Arc::ptr_eq(&one, &other));
    }

    #[test]
    fn the_last_subscriber_of_a_scope_takes_its_channel_along() {
        let fanout = Arc::new(Fanout::new());
        let first = fanout.subscribe(Some("a".to_owned()));
        let second = fanout.subscribe(Some("a".to_owned()));
        drop(first);
        assert_eq!(fanout.routes().scopes.len(), 1);
        drop(second);
        assert!(fanout.routes().scopes.is_empty());
    }

    #[test]
    fn closing_ends_every_channel_and_every_later_subscription() {
        let fanout = Arc::new(Fanout::new());
        let mut a = fanout.subscribe(Some("a".to_owned()));
        let mut all = fanout.subscribe(None);
        fanout.close();
        let mut later = fanout.subscribe(Some("b".to_owned()));
        for subscription in [&mut a, &mut all, &mut later] {
            let received = subscription.receiver().unwrap().try_recv();
            assert_eq!(
                received.unwrap_err(),
                broadcast::error::TryRecvError::Closed
            );
        }
    }

    #[test]
    fn a_reset_reaches_every_channel() {
        let fanout = Arc::new(Fanout::new());
        let mut a = fanout.subscribe(Some("a".to_owned()));
        let mut all = fanout.subscribe(None);
        fanout.reset(9);
        for subscription in [&mut a, &mut all] {
            let delivery = subscription.receiver().unwrap().try_recv().unwrap();
            assert!(delivery.frame.event.is_reset());
        }
        fanout.publish(&event(10, "a"));
        assert_eq!(next(&mut a), (9, 10));
    }
}
