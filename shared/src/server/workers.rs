//! Serving runtimes, one thread each, as nginx, HAProxy and Pingora run a
//! worker per core: an accepted connection is handed to one of them and
//! lives there, with every task it spawns (hyper's upstream connection
//! tasks among them), so a request's wake-ups stay on one thread instead of
//! crossing between the work-stealing runtime's workers (each crossing a
//! futex call and a cache miss on a loaded machine).
//!
//! tokio has no runtime-per-core mode, so this is a small pool of
//! `current_thread` runtimes, each driven by a thread of its own; the
//! caller's runtime keeps the accept loop and the background tasks.
//! [`worker`] tells code on the request path which worker it runs on, so a
//! per-worker resource (the gateway's upstream pools) can be picked without
//! a lock.

use std::cell::Cell;

use tokio::{runtime::Handle, sync::oneshot};

use super::affinity::Pinning;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the serving worker this thread is (`None` off the workers:
/// the caller's runtime, a test's).
pub fn worker() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// The running workers; dropping this stops them (tasks still on them are
/// dropped, so drop it after the connections are drained).
pub(super) struct Workers {
    handles: Vec<Handle>,
    /// Each worker runs until its sender is dropped.
    _stop: Vec<oneshot::Sender<()>>,
    /// How many connections were handed out (the accept loop's alone).
    handed: usize,
}

impl Workers {
    /// Start `count` workers named `{name}-{index}`, each on a CPU of its
    /// own when `pin` (`HTTP_CPU_AFFINITY=auto`).
    pub(super) fn start(count: usize, name: &str, pin: bool) -> std::io::Result<Self> {
        let mut handles = Vec::with_capacity(count);
        let mut stop = Vec::with_capacity(count);
        let pinning = pin.then(Pinning::new);
        for index in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (tx, rx) = oneshot::channel::<()>();
            stop.push(tx);
            let pinning = pinning.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    if let Some(pinning) = pinning {
                        pinning.pin_current_thread_to(index);
                    }
                    WORKER.with(|w| w.set(Some(index)));
                    // Ends when the sender is dropped; dropping the runtime
                    // then drops the tasks left on it.
                    let _ = runtime.block_on(rx);
                })?;
        }
        Ok(Self {
            handles,
            _stop: stop,
            handed: 0,
        })
    }

    /// The worker the next connection goes to (round robin).
    pub(super) fn next(&mut self) -> &Handle {
        self.handed = self.handed.wrapping_add(1);
        &self.handles[self.handed % self.handles.len()]
    }
}
