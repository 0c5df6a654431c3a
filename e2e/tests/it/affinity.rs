//! `HTTP_CPU_AFFINITY` on real processes, read back from `/proc`: `off`
//! (the default) leaves every thread free to run on any allowed CPU; `auto`
//! pins each serving thread to one of them, taken in turn, on the shared
//! runtime and on per-core workers (`HTTP_WORKERS`), and the service serves.

use std::collections::BTreeSet;

use crate::processes::Process;

/// `0-2,5` → {0, 1, 2, 5}.
fn cpu_list(text: &str) -> BTreeSet<usize> {
    text.trim()
        .split(',')
        .filter(|part| !part.is_empty())
        .flat_map(|part| {
            let (first, last) = part.split_once('-').unwrap_or((part, part));
            first.parse::<usize>().unwrap()..=last.parse::<usize>().unwrap()
        })
        .collect()
}

/// The CPUs a `/proc/…/status` file says its thread may run on.
fn allowed_in(status: &str) -> BTreeSet<usize> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("a Cpus_allowed_list line");
    cpu_list(line)
}

/// Each thread of `pid`: its name and the CPUs it may run on.
fn threads(pid: u32) -> Vec<(String, BTreeSet<usize>)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|task| {
            let dir = task.unwrap().path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap();
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            (name.trim().to_owned(), allowed_in(&status))
        })
        .collect()
}

/// The CPUs of the threads of `pid` named `name`.
fn named(pid: u32, name: impl Fn(&str) -> bool) -> Vec<(String, BTreeSet<usize>)> {
    let mut found: Vec<_> = threads(pid).into_iter().filter(|(n, _)| name(n)).collect();
    found.sort();
    found
}

#[tokio::test]
async fn serving_threads_are_pinned_to_a_cpu_each_only_when_asked() {
    let prefix = mcp_testkit::prefix();
    let cpus = allowed_in(&std::fs::read_to_string("/proc/self/status").unwrap());
    assert!(!cpus.is_empty());

    // Off by default: every thread may run anywhere the process may.
    let free = Process::start("config-svc", &prefix, &[]).await;
    for (name, allowed) in threads(free.pid()) {
        assert_eq!(
            allowed, cpus,
            "thread {name} of a config-svc without affinity"
        );
    }
    drop(free);

    // The shared runtime pinned: each of its threads on one CPU, and its
    // workers (one per core, started first) on all of them between them.
    let shared = Process::start(
        "config-svc",
        &prefix,
        &[("HTTP_CPU_AFFINITY", "auto".to_owned())],
    )
    .await;
    let runtime = named(shared.pid(), |n| n == "tokio-rt-worker");
    assert!(runtime.len() >= cpus.len(), "{runtime:?}");
    for (name, allowed) in &runtime {
        assert_eq!(allowed.len(), 1, "{name} is pinned to one CPU: {allowed:?}");
        assert!(allowed.is_subset(&cpus));
    }
    let covered: BTreeSet<usize> = runtime.iter().flat_map(|(_, a)| a.clone()).collect();
    assert_eq!(covered, cpus);
    let ready = reqwest::get(shared.at("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "a pinned config-svc serves");
    drop(shared);

    // Per-core serving workers pinned: worker i on the i-th allowed CPU.
    let workers = Process::start(
        "config-svc",
        &prefix,
        &[
            ("HTTP_CPU_AFFINITY", "auto".to_owned()),
            ("HTTP_WORKERS", "auto".to_owned()),
        ],
    )
    .await;
    let serving = named(workers.pid(), |n| n.starts_with("http-worker-"));
    let mut expected: Vec<(String, BTreeSet<usize>)> = cpus
        .iter()
        .enumerate()
        .map(|(i, &cpu)| (format!("http-worker-{i}"), BTreeSet::from([cpu])))
        .collect();
    expected.sort();
    assert_eq!(serving, expected);
    let ready = reqwest::get(workers.at("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "config-svc on pinned workers serves");
}
