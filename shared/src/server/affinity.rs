//! Serving threads pinned to CPUs (`HTTP_CPU_AFFINITY=auto`), as nginx's
//! `worker_cpu_affinity auto` and HAProxy's `cpu-map` do. Off by default.
//!
//! Why: on a small machine the kernel may stack a service's threads on one
//! CPU while the other idles, and leave them there for milliseconds (its
//! load balancer acts late on a burst). A config watch fan-out is such a
//! burst: `perf` showed both serving threads taking turns on one CPU for
//! 8–16 ms while the other CPU had nothing to run (bench/RESULTS.md).
//! Pinned, each thread keeps a CPU of its own and a burst runs on all of them.
//!
//! The price: a pinned thread cannot move to an idle CPU when its own is
//! busy with another process, so it suits a machine (or a cpuset) given to
//! the service, not one shared with a load generator or other busy
//! processes. The CPUs are the ones the process may use
//! (`sched_getaffinity`: a container's cpuset), taken in turn.
//!
//! By hand on `nix`'s safe `sched_setaffinity` (already in the tree): the
//! crates that pin threads do no more than this.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use nix::{
    sched::{CpuSet, sched_getaffinity, sched_setaffinity},
    unistd::Pid,
};

/// The CPUs the calling thread may run on (at start-up, those of the
/// process), in order; empty when the kernel does not say.
fn allowed() -> Vec<usize> {
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect()
}

/// Hands out the allowed CPUs in turn, one per thread that asks.
#[derive(Clone)]
pub(crate) struct Pinning {
    cpus: Arc<[usize]>,
    next: Arc<AtomicUsize>,
}

impl Pinning {
    /// The allowed CPUs, handed out from the first.
    pub(crate) fn new() -> Self {
        Self {
            cpus: allowed().into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Pin the calling thread to the next CPU in turn.
    pub(crate) fn pin_current_thread(&self) {
        self.pin_current_thread_to(self.next.fetch_add(1, Ordering::Relaxed));
    }

    /// Pin the calling thread to the CPU of `turn` (the allowed CPUs taken
    /// round). A refusal (a seccomp profile, say) leaves the thread where
    /// the kernel puts it.
    pub(crate) fn pin_current_thread_to(&self, turn: usize) {
        if self.cpus.is_empty() {
            return;
        }
        let cpu = self.cpus[turn % self.cpus.len()];
        let mut set = CpuSet::new();
        let pinned = set
            .set(cpu)
            .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
        if let Err(error) = pinned {
            tracing::warn!(%error, cpu, "could not pin a serving thread to its CPU");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_pinned_to_the_allowed_cpus_in_turn() {
        let pinning = Pinning::new();
        let cpus = pinning.cpus.to_vec();
        assert!(!cpus.is_empty(), "the kernel names the allowed CPUs");
        let count = cpus.len() + 1;
        let pinned: Vec<Vec<usize>> = (0..count)
            .map(|_| {
                let pinning = pinning.clone();
                // One thread at a time, so the turns are in order.
                std::thread::spawn(move || {
                    pinning.pin_current_thread();
                    allowed()
                })
                .join()
                .unwrap()
            })
            .collect();
        let expected: Vec<Vec<usize>> = (0..count)
            .map(|turn| vec![cpus[turn % cpus.len()]])
            .collect();
        assert_eq!(pinned, expected);
        // The thread that made the pinning is not pinned itself.
        assert_eq!(allowed(), cpus);
    }
}
