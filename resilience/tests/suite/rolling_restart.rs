//! A rolling restart of an upstream's three instances under a bounded GET
//! load through the gateway loses no request: each instance deregisters,
//! the gateway drops it, it stops (draining in-flight requests), starts
//! again on the same port, registers, and is routable again before the
//! next one goes.

use std::time::Duration;

use mcp_testkit::{eventually, prefix, redis};
use tokio_util::sync::CancellationToken;

use crate::common::{
    self, ControlPlane, UNUSED, Upstream, admin_instance, client, collect, load, sample, token,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_of_an_upstream_fails_no_request() {
    let (url, prefix) = (redis().url(), prefix());
    let registry = common::registry(&url, &prefix, &[]).await;
    let reg = registry.service.url.clone();
    let gateway = common::gateway(
        &url,
        &prefix,
        ControlPlane {
            registry: &reg,
            config: UNUSED,
            health: UNUSED,
        },
        &[],
    )
    .await;
    let names = ["web-0", "web-1", "web-2"];
    let mut instances = Vec::new();
    for name in names {
        let upstream = Upstream::echo(name).await;
        assert_eq!(
            common::register(&reg, "web", name, upstream.addr.port(), 60).await,
            201
        );
        instances.push(upstream);
    }
    for name in names {
        assert!(
            common::wait_routable(&gateway, "web", name).await,
            "{name} never routable"
        );
    }

    let stop = CancellationToken::new();
    let bearer = token("");
    let loops: Vec<_> = (0..3)
        .map(|_| {
            let (http, target, bearer) = (client(), gateway.at("/svc/web/hello"), bearer.clone());
            load(3_000, Duration::from_millis(5), stop.clone(), move |_| {
                let request = http.get(&target).bearer_auth(&bearer);
                async move { vec![sample("GET /svc/web/hello", request).await.0] }
            })
        })
        .collect();

    for (i, name) in names.into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(common::deregister(&reg, "web", name).await, 204);
        let dropped = eventually(Duration::from_secs(10), || async {
            admin_instance(&gateway, "web", name).await.is_none()
        })
        .await;
        assert!(dropped, "the gateway kept routing to deregistered {name}");
        let upstream = instances.remove(i).restart().await;
        assert_eq!(
            common::register(&reg, "web", name, upstream.addr.port(), 60).await,
            201
        );
        assert!(
            common::wait_routable(&gateway, "web", name).await,
            "{name} not routable after its restart"
        );
        instances.insert(i, upstream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let samples = collect(loops).await;

    assert!(samples.len() >= 100, "only {} requests ran", samples.len());
    let failed: Vec<_> = samples.iter().filter(|s| !s.ok()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rolling restart, e.g. {:?}",
        failed.len(),
        samples.len(),
        failed.first()
    );
    for name in names {
        assert!(
            samples.iter().any(|s| s.body.contains(name)),
            "{name} served nothing"
        );
    }
}
