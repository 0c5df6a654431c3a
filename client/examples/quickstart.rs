//! The SDK tour of the README ("From Rust"): register, watch config, discover, call.
//! Run against `mcpctl up` with `MCP_TOKEN` set: `cargo run -p mcp-client --example quickstart`.

use std::time::Duration;

use mcp_client::{
    Client, ConfigWatcher, InstanceQuery, InstanceSpec, Registration, ServiceWatcher, http_check,
};

#[tokio::main]
async fn main() -> Result<(), mcp_client::Error> {
    let client = Client::new("http://127.0.0.1:8080", std::env::var("MCP_TOKEN").ok())?;

    // Stay registered: heartbeats every ttl/3, backoff with jitter, registers
    // again after a lost lease, deregisters on shutdown.
    let mut spec = InstanceSpec::new("127.0.0.1", 9000);
    spec.ttl_seconds = Some(10);
    spec.check = Some(http_check("/health", 5));
    let registration = Registration::start(client.clone(), "billing", "billing-1", spec);
    let state = registration.state(); // a watch: Connecting → Connected (→ Reconnecting …)
    registration.connected(Duration::from_secs(5)).await;
    println!("registration: {:?}", *state.borrow());

    // A typed config value, hot-updated. It never goes back to an older
    // revision, and it keeps the last good value when a new one does not parse.
    #[derive(serde::Deserialize)]
    struct Limits {
        rps: u32,
    }
    let limits = ConfigWatcher::<Limits>::start(client.clone(), "shop", "limits");
    limits.synced(Duration::from_secs(5)).await;
    if let Some(limits) = limits.get() {
        println!("rps = {}", limits.rps);
    }

    // Discovery: a service's instances, kept current from the watch stream.
    let echo = ServiceWatcher::start(client.clone(), "echo");
    echo.synced(Duration::from_secs(5)).await;
    for instance in echo.snapshot().passing() {
        println!("{}:{}", instance.host, instance.port);
    }

    // One-off calls. Errors carry the server's problem+json.
    let list = client
        .list_instances(
            "echo",
            &InstanceQuery {
                healthy: true,
                ..Default::default()
            },
        )
        .await?;
    println!(
        "{} passing echo instances at revision {}",
        list.instances.len(),
        list.revision
    );
    match client.get_config("shop", "missing").await {
        Err(e) if e.is_not_found() => println!("no such key: {e}"),
        other => println!("{other:?}"),
    }

    registration.shutdown().await; // deregisters
    Ok(())
}
