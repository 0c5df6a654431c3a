//! `mcpctl config …`: read and write keys (compare-and-swap), list,
//! history, rollback, follow the changes, and the namespace's schema.

use std::{io::Write, path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::Subcommand;
use mcp_client::{Client, PutOptions};
use serde_json::Value;

use super::print_json;
use crate::output::{Table, compact, progress};

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

/// The value of `config put`: JSON when it parses, else the text as a string.
pub fn parse_value(text: &str, force_string: bool) -> Value {
    if force_string {
        return Value::String(text.to_owned());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

pub(super) async fn config(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
