//! `mcpctl services`, `instances` and `register` (once, or kept alive
//! with heartbeats until Ctrl-C).

use std::{collections::BTreeMap, io::Write, time::Duration};

use clap::Args;
use mcp_client::{Client, InstanceQuery, InstanceSpec, Registration, http_check, tcp_check};
use tokio_util::sync::CancellationToken;

use super::print_json;
use crate::output::{Table, progress};

/// `mcpctl instances`.
#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// Service name.
    pub service: String,
    /// Only passing instances.
    #[arg(long)]
    pub healthy: bool,
    /// Only instances with this tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only instances with this metadata, `name=value` (repeatable).
    #[arg(long = "meta", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
}

/// `mcpctl register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Service name.
    pub service: String,
    /// Instance id (unique within the service).
    pub id: String,
    /// Host the instance is reached at.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port the instance is reached at.
    #[arg(long)]
    pub port: u16,
    /// Tag (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Metadata `name=value` (repeatable).
    #[arg(long = "meta", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// Lease length (`30s`); the instance is removed when it runs out without heartbeats.
    #[arg(long, value_parser = mcp_shared::settings::parse_duration)]
    pub ttl: Option<Duration>,
    /// HTTP check on this path (`/health`).
    #[arg(long, conflicts_with = "tcp_check")]
    pub http_check: Option<String>,
    /// TCP connect check.
    #[arg(long)]
    pub tcp_check: bool,
    /// Interval of the check.
    #[arg(long, default_value = "5s", value_parser = mcp_shared::settings::parse_duration)]
    pub check_interval: Duration,
    /// Stay in the foreground heartbeating; deregister on Ctrl-C.
    #[arg(long)]
    pub keep_alive: bool,
}

fn parse_pair(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| "expected name=value".to_owned())
}

pub(super) async fn services(
    client: &Client,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let list = client.list_services().await?;
    if json {
        return print_json(out, &list);
    }
    let mut table = Table::new(&["SERVICE", "INSTANCES", "PASSING", "PROTECTED"]);
    for service in &list.services {
        table.row(vec![
            service.name.clone(),
            service.instances.to_string(),
            service.passing.to_string(),
            yes_no(service.protected).to_owned(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// `yes` or `no`, for a table cell.
fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

pub(super) async fn instances(
    client: &Client,
    args: &InstancesArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let query = InstanceQuery {
        healthy: args.healthy,
        tags: args.tags.clone(),
        metadata: args.metadata.iter().cloned().collect(),
        ..InstanceQuery::default()
    };
    let list = client.list_instances(&args.service, &query).await?;
    if json {
        return print_json(out, &list);
    }
    let mut table = Table::new(&["ID", "ADDRESS", "STATUS", "TAGS", "EXPIRES"]);
    for instance in &list.instances {
        table.row(vec![
            instance.id.clone(),
            format!("{}:{}", instance.host, instance.port),
            instance.status.as_str().to_owned(),
            instance.tags.join(","),
            instance.expires_at.clone().unwrap_or_default(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

pub(super) async fn register(
    client: &Client,
    args: &RegisterArgs,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut spec = InstanceSpec::new(args.host.clone(), args.port);
    spec.tags = args.tags.clone();
    spec.metadata = args.metadata.iter().cloned().collect::<BTreeMap<_, _>>();
    spec.ttl_seconds = args
        .ttl
        .map(|ttl| u32::try_from(ttl.as_secs().max(1)).unwrap_or(u32::MAX));
    let interval_seconds = u32::try_from(args.check_interval.as_secs().max(1)).unwrap_or(u32::MAX);
    if let Some(path) = &args.http_check {
        spec.check = Some(http_check(path, interval_seconds));
    } else if args.tcp_check {
        spec.check = Some(tcp_check(interval_seconds));
    }
    if !args.keep_alive {
        let instance = client.register(&args.service, &args.id, &spec).await?;
        if json {
            return print_json(out, &instance);
        }
        writeln!(
            out,
            "registered {}/{} at {}:{} (status {}, lease {}s)",
            instance.service,
            instance.id,
            instance.host,
            instance.port,
            instance.status.as_str(),
            instance.ttl_seconds
        )?;
        return Ok(());
    }
    // Kept alive: the SDK's Registration heartbeats until Ctrl-C, then deregisters.
    let registration = Registration::start(client.clone(), &args.service, &args.id, spec);
    progress(&format!("registering {}/{}", args.service, args.id));
    let mut state = registration.state();
    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        ctrl_c.cancel();
    });
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *state.borrow_and_update();
                writeln!(out, "{}/{}: {now:?}", args.service, args.id)?;
                out.flush()?;
            }
        }
    }
    progress("deregistering");
    registration.shutdown().await;
    writeln!(out, "deregistered {}/{}", args.service, args.id)?;
    Ok(())
}
