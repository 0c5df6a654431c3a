//! A slow instance (answers after the timeout) and a black-holed one
//! (accepts TCP, never answers) behind the gateway: requests that hit them
//! get 504 within the upstream timeout, their circuits open, and the
//! healthy instance carries the load.

use std::time::Duration;

use axum::{Router, routing::any};
use mcp_testkit::{prefix, redis};

use crate::common::{
    self, BlackHole, ControlPlane, Sample, UNUSED, Upstream, Watched, admin_instance, client,
    sample, token,
};

/// The gateway's `--upstream-timeout-ms`.
const TIMEOUT: Duration = Duration::from_millis(300);
/// What a 504 may take beyond the timeout (scheduling on a busy machine).
const SLACK: Duration = Duration::from_millis(700);
/// The slow instance answers after this.
const SLOW: Duration = Duration::from_millis(1500);
/// `--cb-failure-threshold`.
const THRESHOLD: usize = 3;

/// An instance that answers 200 only after [`SLOW`].
async fn slow() -> Upstream {
    Upstream::start(
        "slow",
        Router::new().fallback(any(|| async {
            tokio::time::sleep(SLOW).await;
            "late"
        })),
    )
    .await
}

/// registry-svc and a gateway with a short upstream timeout; circuits stay
/// open for the whole test once opened.
async fn stack() -> (Watched, Watched) {
    let (url, prefix) = (redis().url(), prefix());
    let registry = common::registry(&url, &prefix, &[]).await;
    let gateway = common::gateway(
        &url,
        &prefix,
        ControlPlane {
            registry: &registry.service.url,
            config: UNUSED,
            health: UNUSED,
        },
        &[
            "--upstream-timeout-ms",
            &TIMEOUT.as_millis().to_string(),
            "--cb-failure-threshold",
            &THRESHOLD.to_string(),
            "--cb-open-seconds",
            "60",
        ],
    )
    .await;
    (registry, gateway)
}

async fn get(gateway: &Watched, service: &str) -> Sample {
    let request = client()
        .get(gateway.at(&format!("/svc/{service}/work")))
        .bearer_auth(token(""));
    sample("GET /svc/…/work", request).await.0
}

fn assert_timed_out(s: &Sample, what: &str) {
    assert!(
        s.status == Some(504) && s.problem_json,
        "{what}: {:?} {}",
        s.status,
        s.body
    );
    assert!(
        s.elapsed < TIMEOUT + SLACK,
        "{what}: the 504 took {:?} (timeout {TIMEOUT:?})",
        s.elapsed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_black_holed_instances_answer_504_within_the_timeout() {
    let (registry, gateway) = stack().await;
    let reg = &registry.service.url;
    let slow = slow().await;
    let hole = BlackHole::start().await;
    assert_eq!(
        common::register(reg, "slow", "slow-1", slow.addr.port(), 60).await,
        201
    );
    assert_eq!(
        common::register(reg, "hole", "hole-1", hole.addr.port(), 60).await,
        201
    );
    assert!(common::wait_routable(&gateway, "slow", "slow-1").await);
    assert!(common::wait_routable(&gateway, "hole", "hole-1").await);

    // Up to the threshold: each one reaches its instance (then the circuit opens).
    for _ in 0..THRESHOLD {
        assert_timed_out(&get(&gateway, "slow").await, "slow instance");
        assert_timed_out(&get(&gateway, "hole").await, "black-holed instance");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_instances_open_their_circuits_and_the_healthy_one_carries_the_load() {
    let (registry, gateway) = stack().await;
    let reg = &registry.service.url;
    let slow = slow().await;
    let hole = BlackHole::start().await;
    let healthy = Upstream::echo("healthy").await;
    for (id, port) in [
        ("slow-1", slow.addr.port()),
        ("hole-1", hole.addr.port()),
        ("ok-1", healthy.addr.port()),
    ] {
        assert_eq!(common::register(reg, "mixed", id, port, 60).await, 201);
        assert!(common::wait_routable(&gateway, "mixed", id).await);
    }

    // Until both circuits are open (bounded): every answer is the healthy
    // instance's 200 or a timely 504.
    let mut opened = false;
    let mut timeouts = 0;
    for _ in 0..60 {
        let s = get(&gateway, "mixed").await;
        if s.ok() {
            assert!(s.body.contains("\"healthy\""), "{}", s.body);
        } else {
            assert_timed_out(&s, "slow or black-holed instance");
            timeouts += 1;
        }
        let slow = admin_instance(&gateway, "mixed", "slow-1").await.unwrap();
        let hole = admin_instance(&gateway, "mixed", "hole-1").await.unwrap();
        if slow["circuit"] == "open" && hole["circuit"] == "open" {
            opened = true;
            break;
        }
    }
    assert!(
        opened,
        "the circuits did not both open ({timeouts} timeouts)"
    );
    assert_eq!(
        timeouts,
        2 * THRESHOLD,
        "each circuit opens after the threshold"
    );
    let ok = admin_instance(&gateway, "mixed", "ok-1").await.unwrap();
    assert_eq!(ok["circuit"], "closed", "{ok}");

    for i in 0..50 {
        let s = get(&gateway, "mixed").await;
        assert!(
            s.ok() && s.body.contains("\"healthy\""),
            "request {i} after the circuits opened: {:?} {}",
            s.status,
            s.body
        );
    }
}
