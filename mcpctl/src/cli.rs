//! The command line: clap definitions and one function per command.
//!
//! Every command talks to the gateway through [`mcp_client::Client`] (the
//! SDK is the CLI's only way in, so both see the same API), prints an
//! aligned table or, with `--json`, the API's JSON to stdout, and fails with
//! one clear line (see [`explain`]) and exit code 1.

use std::{collections::BTreeMap, io::Write, path::PathBuf, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use mcp_client::{
    Client, Error as ApiError, InstanceQuery, InstanceSpec, PutOptions, Registration, http_check,
    tcp_check, token::dev_token,
};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::output::{Table, compact, progress};

/// mcpctl: the command line of MCP (Microservice Control Plane).
#[derive(Debug, Parser)]
#[command(name = "mcpctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The MCP gateway.
    #[arg(
        long,
        global = true,
        env = "MCP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,

    /// Bearer token for the gateway (`mcpctl up` prints one; `mcpctl token` mints one).
    #[arg(long, global = true, env = "MCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List services with their instance counts.
    Services,
    /// List the instances of a service.
    Instances(InstancesArgs),
    /// Register an instance (once, or kept alive with --keep-alive).
    Register(RegisterArgs),
    /// Deregister an instance.
    Deregister {
        /// Service name.
        service: String,
        /// Instance id.
        id: String,
    },
    /// Read and write configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Gateway policies and routes (config namespace `gateway`), one at a
    /// time or declaratively from a JSON file (`apply -f`).
    #[command(subcommand)]
    Policy(crate::policy::PolicyCommand),
    /// Health of every service, or of one service's instances.
    Health {
        /// Show this service's instances.
        service: Option<String>,
    },
    /// Mint an HS256 development token signed with the gateway's JWT secret
    /// (or, with `--internal`, an internal credential for calling a service directly).
    Token(TokenArgs),
    /// Run the whole stack locally: Redis, registry, config, health, gateway.
    Up(crate::up::UpArgs),
}

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

/// `mcpctl config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a key's value (`--json`: the whole entry).
    Get {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
    },
    /// Write a value: JSON (`42`, `true`, `{"a":1}`); anything else is taken as a string.
    Put {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
        /// The value.
        value: String,
        /// Always store the value as a JSON string.
        #[arg(long)]
        string: bool,
        /// Why (kept in the history).
        #[arg(long, short)]
        message: Option<String>,
        /// Write only if the current version is this (compare-and-swap).
        #[arg(long)]
        if_version: Option<u64>,
        /// Write only if the key does not exist yet.
        #[arg(long, conflicts_with = "if_version")]
        create: bool,
    },
    /// Delete a key.
    Delete {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
        /// Delete only if the current version is this.
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// List the keys of a namespace (or the namespaces, without one).
    List {
        /// Namespace.
        namespace: Option<String>,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// A key's versions, newest first.
    History {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
    },
    /// Write a new version with an old version's value.
    Rollback {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
        /// The version whose value to restore.
        #[arg(value_name = "VERSION")]
        to_version: u64,
    },
    /// Follow the changes of a namespace (Ctrl-C to stop).
    Watch {
        /// Namespace.
        namespace: String,
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// Resume after this revision.
        #[arg(long)]
        after: Option<u64>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The JSON Schema every value of a namespace must meet.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

/// `mcpctl config schema …`.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Print the schema.
    Get {
        /// Namespace.
        namespace: String,
    },
    /// Set the schema from a file (`-`: stdin).
    Put {
        /// Namespace.
        namespace: String,
        /// JSON Schema file.
        file: PathBuf,
    },
    /// Remove the schema.
    Delete {
        /// Namespace.
        namespace: String,
    },
}

/// `mcpctl token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The gateway's HS256 secret (not needed with `--internal`).
    #[arg(
        long,
        env = "JWT_SECRET",
        hide_env_values = true,
        required_unless_present = "internal"
    )]
    pub secret: Option<String>,
    /// Mint an internal credential instead: the token the gateway sends the
    /// control-plane services, for calling one directly
    /// (`curl -H "Authorization: Bearer $(mcpctl token --internal)" http://127.0.0.1:8082/v1/namespaces`).
    #[arg(long)]
    pub internal: bool,
    /// The secret shared by the gateway and the services (with `--internal`).
    #[arg(
        long,
        env = "MCP_INTERNAL_SECRET",
        hide_env_values = true,
        required_if_eq("internal", "true")
    )]
    pub internal_secret: Option<String>,
    /// Subject (`sub`): who the token speaks for.
    #[arg(long, default_value = "dev")]
    pub sub: String,
    /// Space- or comma-separated scopes: `admin`, or `registry:read config:write health:read`…
    #[arg(long, default_value = "admin")]
    pub scopes: String,
    /// Lifetime (`15m`, `24h`).
    #[arg(long, default_value = "24h", value_parser = mcp_shared::settings::parse_duration)]
    pub ttl: Duration,
}

fn parse_pair(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| "expected name=value".to_owned())
}

/// The value of `config put`: JSON when it parses, else the text as a string.
pub fn parse_value(text: &str, force_string: bool) -> Value {
    if force_string {
        return Value::String(text.to_owned());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Run one API command, writing its output to `out`. (`up` and `token` are
/// handled by the binary: they do not talk to a gateway.)
pub async fn execute(cli: &Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = Client::new(&cli.gateway, cli.token.clone())?;
    let run = async {
        match &cli.command {
            Command::Services => services(&client, cli.json, out).await,
            Command::Instances(args) => instances(&client, args, cli.json, out).await,
            Command::Register(args) => register(&client, args, cli.json, out).await,
            Command::Deregister { service, id } => {
                client.deregister(service, id).await?;
                writeln!(out, "deregistered {service}/{id}")?;
                Ok(())
            }
            Command::Config(command) => config(&client, command, cli.json, out).await,
            Command::Policy(command) => crate::policy::run(&client, command, cli.json, out).await,
            Command::Health { service } => health(&client, service.as_deref(), cli.json, out).await,
            Command::Token(args) => token(args, out),
            Command::Up(_) => bail!("`up` runs the stack; call it through the binary"),
        }
    };
    run.await.map_err(|e| explain(e, &cli.gateway))
}

/// Turn an SDK error into the one line a person needs.
pub fn explain(error: anyhow::Error, gateway: &str) -> anyhow::Error {
    let Some(api) = error.downcast_ref::<ApiError>() else {
        return error;
    };
    match api {
        ApiError::Transport { reason, .. } => anyhow!(
            "cannot reach the gateway at {gateway} ({}); is `mcpctl up` running, and is --gateway / MCP_GATEWAY_URL right?",
            short_reason(reason)
        ),
        ApiError::Api { problem, .. } if problem.status == 401 => anyhow!(
            "the gateway rejected the token ({problem}); set --token / MCP_TOKEN to the token `mcpctl up` printed, or mint one with `mcpctl token`"
        ),
        ApiError::Api { problem, .. } if problem.status == 403 => {
            anyhow!("the token lacks the scope for this ({problem})")
        }
        _ => error,
    }
}

/// The innermost useful part of a transport error chain (`Connection refused`).
fn short_reason(reason: &str) -> &str {
    reason
        .rsplit(": ")
        .find(|part| !part.trim().is_empty())
        .unwrap_or(reason)
}

pub(crate) fn print_json<T: Serialize + ?Sized>(
    out: &mut dyn Write,
    value: &T,
) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

async fn services(client: &Client, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
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

async fn instances(
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

async fn register(
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

async fn config(
    client: &Client,
    command: &ConfigCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Get { namespace, key } => {
            let entry = client.get_config(namespace, key).await?;
            if json {
                return print_json(out, &entry);
            }
            print_json(out, &entry.value)
        }
        ConfigCommand::Put {
            namespace,
            key,
            value,
            string,
            message,
            if_version,
            create,
        } => {
            let options = PutOptions {
                message: message.clone(),
                if_match: *if_version,
                create_only: *create,
            };
            let value = parse_value(value, *string);
            let entry = client.put_config(namespace, key, &value, &options).await?;
            if json {
                return print_json(out, &entry);
            }
            writeln!(
                out,
                "{namespace}/{key} = {} (version {}, revision {})",
                compact(&entry.value, 60),
                entry.version,
                entry.revision
            )?;
            Ok(())
        }
        ConfigCommand::Delete {
            namespace,
            key,
            if_version,
        } => {
            client.delete_config(namespace, key, *if_version).await?;
            writeln!(out, "deleted {namespace}/{key}")?;
            Ok(())
        }
        ConfigCommand::List {
            namespace: None, ..
        } => {
            let names = client.list_namespaces().await?;
            if json {
                return print_json(out, &names);
            }
            let mut table = Table::new(&["NAMESPACE"]);
            for name in names {
                table.row(vec![name]);
            }
            table.write(out)?;
            Ok(())
        }
        ConfigCommand::List {
            namespace: Some(namespace),
            prefix,
        } => {
            let list = client.list_config(namespace, prefix.as_deref()).await?;
            if json {
                return print_json(out, &list);
            }
            let mut table = Table::new(&["KEY", "VERSION", "REVISION", "VALUE"]);
            for entry in &list.entries {
                table.row(vec![
                    entry.key.clone(),
                    entry.version.to_string(),
                    entry.revision.to_string(),
                    compact(&entry.value, 60),
                ]);
            }
            table.write(out)?;
            Ok(())
        }
        ConfigCommand::History { namespace, key } => {
            history(client, namespace, key, json, out).await
        }
        ConfigCommand::Rollback {
            namespace,
            key,
            to_version: version,
        } => rollback(client, namespace, key, *version, json, out).await,
        ConfigCommand::Watch {
            namespace,
            key,
            after,
            count,
        } => watch(client, namespace, key.as_deref(), *after, *count, json, out).await,
        ConfigCommand::Schema(SchemaCommand::Get { namespace }) => {
            let schema = client.get_schema(namespace).await?;
            print_json(out, &schema)
        }
        ConfigCommand::Schema(SchemaCommand::Put { namespace, file }) => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("cannot read the schema from stdin")?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let schema: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            client.put_schema(namespace, &schema).await?;
            writeln!(out, "schema of {namespace} set")?;
            Ok(())
        }
        ConfigCommand::Schema(SchemaCommand::Delete { namespace }) => {
            client.delete_schema(namespace).await?;
            writeln!(out, "schema of {namespace} removed")?;
            Ok(())
        }
    }
}

/// Print a key's versions, newest first (`config history`, `policy history`).
pub(crate) async fn history(
    client: &Client,
    namespace: &str,
    key: &str,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let history = client.config_history(namespace, key).await?;
    if json {
        return print_json(out, &history);
    }
    let mut table = Table::new(&["VERSION", "UPDATED_AT", "BY", "VALUE", "MESSAGE"]);
    for entry in &history.versions {
        table.row(vec![
            entry.version.to_string(),
            entry.updated_at.clone(),
            entry.updated_by.clone(),
            compact(&entry.value, 40),
            entry.message.clone().unwrap_or_default(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// Restore `version`'s value as a new version (`config rollback`, `policy rollback`).
pub(crate) async fn rollback(
    client: &Client,
    namespace: &str,
    key: &str,
    version: u64,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let entry = client.rollback_config(namespace, key, version).await?;
    if json {
        return print_json(out, &entry);
    }
    writeln!(
        out,
        "{namespace}/{key} = {} (version {}, restored from version {version})",
        compact(&entry.value, 60),
        entry.version
    )?;
    Ok(())
}

/// Print a namespace's events as they come; reconnect with the last revision
/// when the stream breaks, so nothing is missed.
async fn watch(
    client: &Client,
    namespace: &str,
    key: Option<&str>,
    mut after: Option<u64>,
    count: Option<u64>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut seen = 0u64;
    let mut connected = false;
    let mut backoff = mcp_client::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    progress(&format!("watching {namespace} (Ctrl-C to stop)"));
    if !json {
        writeln!(out, "REVISION  EVENT   KEY  VALUE")?;
    }
    loop {
        // The first open must work (bad token, no gateway: say so and exit);
        // later breaks are retried.
        let mut stream = match client.watch_config(namespace, after).await {
            Ok(stream) => {
                connected = true;
                stream
            }
            Err(e) if connected && e.is_transient() => {
                progress(&format!("watch interrupted ({e}); reconnecting"));
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { break };
            backoff.reset();
            if let Some(revision) = event.revision() {
                after = Some(revision);
            }
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            let event_key = data.get("key").and_then(Value::as_str).unwrap_or("");
            if key.is_some_and(|k| k != event_key) {
                continue;
            }
            if json {
                let line = serde_json::json!({
                    "revision": event.revision(),
                    "event": event.event,
                    "data": data,
                });
                writeln!(out, "{line}")?;
            } else {
                writeln!(
                    out,
                    "{}  {}  {}  {}",
                    event.id.as_deref().unwrap_or("-"),
                    event.event,
                    event_key,
                    data.get("value")
                        .map(|v| compact(v, 60))
                        .unwrap_or_default()
                )?;
            }
            out.flush()?;
            seen += 1;
            if count.is_some_and(|n| seen >= n) {
                return Ok(());
            }
        }
        progress("watch interrupted; reconnecting");
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn health(
    client: &Client,
    service: Option<&str>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match service {
        None => {
            let summary = client.health_summary().await?;
            if json {
                return print_json(out, &summary);
            }
            let mut table = Table::new(&[
                "SERVICE", "STATUS", "PASSING", "WARNING", "CRITICAL", "UNKNOWN",
            ]);
            for s in &summary.services {
                table.row(vec![
                    s.name.clone(),
                    s.status.as_str().to_owned(),
                    s.passing.to_string(),
                    s.warning.to_string(),
                    s.critical.to_string(),
                    s.unknown.to_string(),
                ]);
            }
            table.write(out)?;
            writeln!(out, "overall: {}", summary.status.as_str())?;
            Ok(())
        }
        Some(service) => {
            let health = client.service_health(service).await?;
            if json {
                return print_json(out, &health);
            }
            let mut table = Table::new(&["ID", "STATUS", "FAILURES", "LAST_CHECKED", "OUTPUT"]);
            for i in &health.instances {
                table.row(vec![
                    i.id.clone(),
                    i.status.as_str().to_owned(),
                    i.consecutive_failures.to_string(),
                    i.last_checked_at.clone().unwrap_or_default(),
                    i.output.as_deref().unwrap_or("").chars().take(60).collect(),
                ]);
            }
            table.write(out)?;
            writeln!(out, "{service}: {}", health.status.as_str())?;
            Ok(())
        }
    }
}

fn token(args: &TokenArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let scopes = args
        .scopes
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let token = if args.internal {
        let secret = args.internal_secret.as_deref().unwrap_or_default();
        mcp_shared::internal::InternalKey::new(secret.as_bytes())
            .map_err(|e| anyhow!(e))?
            .token(Some(&args.sub), &scopes, args.ttl)?
    } else {
        let secret = args.secret.as_deref().unwrap_or_default();
        dev_token(secret, &args.sub, &scopes, args.ttl)?
    };
    writeln!(out, "{token}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn values_are_json_or_else_strings() {
        assert_eq!(parse_value("42", false), serde_json::json!(42));
        assert_eq!(
            parse_value(r#"{"a":1}"#, false),
            serde_json::json!({"a": 1})
        );
        assert_eq!(
            parse_value("hello there", false),
            serde_json::json!("hello there")
        );
        assert_eq!(parse_value("42", true), serde_json::json!("42"));
    }

    #[test]
    fn transport_errors_shrink_to_their_cause() {
        assert_eq!(
            short_reason(
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)"
            ),
            "Connection refused (os error 111)"
        );
    }
}
