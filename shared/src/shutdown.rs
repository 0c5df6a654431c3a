//! Waiting for shutdown on a hot path.
//!
//! `CancellationToken::cancelled()` takes the token's mutex on every poll
//! (its `is_cancelled` locks the tree node), and every connection of a
//! service waits on clones of the same token: a thousand SSE connections
//! woken by one event would each take that one lock, from every worker
//! thread. [`Cancelled`] polls the token only when the token itself woke it
//! (or on the first poll), so the other wake-ups cost an atomic swap.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Wake, Waker},
};

use futures_util::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The waker handed to the token: notes that the token woke us, then wakes
/// whichever task polls the [`Cancelled`] now.
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Resolves when `token` is cancelled, like `token.cancelled_owned()`, but
/// looks at the token only when it has signalled (see the module docs).
pub struct Cancelled {
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    signal: Arc<Signal>,
    waker: Waker,
    done: bool,
}

impl Cancelled {
    /// Wait for `token`.
    pub fn new(token: CancellationToken) -> Self {
        let signal = Arc::new(Signal {
            // Set: the first poll looks (and registers with the token).
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            wait: Box::pin(token.cancelled_owned()),
            waker: Waker::from(signal.clone()),
            signal,
            done: false,
        }
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(());
        }
        // Register before reading the flag: a signal in between sets the
        // flag (seen below) or wakes the task just registered.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let ready = this
            .wait
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker));
        this.done = ready.is_ready();
        ready
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn resolves_on_cancel_and_not_before() {
        let token = CancellationToken::new();
        let mut cancelled = Cancelled::new(token.clone());
        let early = tokio::time::timeout(Duration::from_millis(20), &mut cancelled).await;
        assert!(early.is_err(), "resolved before the cancel");
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            token.cancel();
        });
        tokio::time::timeout(Duration::from_secs(5), &mut cancelled)
            .await
            .expect("resolved after the cancel");
        canceller.await.unwrap();
        // Polled again after completion: still resolved.
        tokio::time::timeout(Duration::from_secs(1), &mut cancelled)
            .await
            .expect("stays resolved");
    }

    #[tokio::test]
    async fn an_already_cancelled_token_resolves_at_once() {
        let token = CancellationToken::new();
        token.cancel();
        tokio::time::timeout(Duration::from_secs(1), Cancelled::new(token))
            .await
            .expect("resolved");
    }
}
