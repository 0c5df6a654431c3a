//! `mcpctl policy …`: gateway policies and routes, the values of
//! config-svc's reserved namespace `gateway` (`services/{service}`,
//! `routes/{name}`; see `mcp_shared::policy`).
//!
//! Everything goes through the gateway with the user's token, like every
//! other command. `apply -f` is declarative (like Kong's decK): it diffs a
//! JSON file of the README's shape (`{"services":{…},"routes":{…}}`) against
//! what is stored, dry-runs every entry it would write (so nothing is
//! written unless all of them pass config-svc's validator), then writes
//! each change with `If-Match` of the version it read, so a concurrent
//! writer is detected instead of overwritten.
//!
//! `apply -f` lives in `apply`, `edit` in `edit`.

mod apply;
mod edit;

use std::{collections::BTreeMap, io::Write, path::PathBuf};

use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use mcp_client::{Client, Error as ApiError, PutOptions};
use mcp_shared::policy::{NAMESPACE, ROUTES_PREFIX, SERVICES_PREFIX};
use serde_json::Value;

use crate::{
    cli::{history, print_json, rollback},
    output::{Table, compact},
};
use apply::{Document, apply};
use edit::edit;

/// `mcpctl policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// One service's policy with its version, or (without SERVICE) every
    /// policy and route (`--json`: the whole set, in the shape `apply -f` reads).
    Get {
        /// Service name.
        service: Option<String>,
    },
    /// Write one service's policy (or, with `--route`, one route) from JSON.
    Set {
        /// NAME is a route (`routes/NAME`), not a service.
        #[arg(long)]
        route: bool,
        /// Service (or route) name.
        name: String,
        /// The policy (or route) as JSON: `'{"timeout_ms": 3000}'`.
        #[arg(value_name = "JSON")]
        value: String,
        /// Write only if the current version is this (compare-and-swap).
        #[arg(long)]
        if_version: Option<u64>,
        /// Why (kept in the history).
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Open $EDITOR (else $VISUAL, else `vi`) on a service's policy (or,
    /// with `--route`, a route), dry-run the result, then save it with
    /// `If-Match` of the version opened.
    Edit {
        /// NAME is a route, not a service.
        #[arg(long)]
        route: bool,
        /// Service (or route) name.
        name: String,
        /// Why (kept in the history).
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Make the stored policies match FILE: print the diff, dry-run every
    /// entry to write (nothing is written if any is invalid), then write.
    ///
    /// FILE (`-`: stdin) is JSON (YAML is not supported) shaped
    /// `{"services": {"NAME": POLICY, …}, "routes": {"NAME": ROUTE, …}}`,
    /// as in the README's "Gateway policies" section.
    Apply {
        /// The JSON file.
        #[arg(short = 'f', long)]
        file: PathBuf,
        /// Print the diff and stop.
        #[arg(long)]
        dry_run: bool,
        /// Also delete stored policies and routes that FILE does not name.
        #[arg(long)]
        prune: bool,
        /// Why (kept in the history of every entry written).
        #[arg(long, short)]
        message: Option<String>,
    },
    /// A service's policy versions, newest first.
    History {
        /// NAME is a route, not a service.
        #[arg(long)]
        route: bool,
        /// Service (or route) name.
        name: String,
    },
    /// Write a new version of a service's policy with an old version's value.
    Rollback {
        /// NAME is a route, not a service.
        #[arg(long)]
        route: bool,
        /// Service (or route) name.
        name: String,
        /// The version whose value to restore.
        #[arg(value_name = "VERSION")]
        to_version: u64,
    },
}

/// The config key of a service policy or a route.
fn key(route: bool, name: &str) -> String {
    let prefix = if route {
        ROUTES_PREFIX
    } else {
        SERVICES_PREFIX
    };
    format!("{prefix}{name}")
}

/// Run one `policy` command.
pub async fn run(
    client: &Client,
    command: &PolicyCommand,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Get {
            service: Some(name),
        } => {
            let entry = client
                .get_config(NAMESPACE, &key(false, name))
                .await
                .map_err(|e| not_found(e, name))?;
            if json {
                return print_json(out, &entry);
            }
            writeln!(
                out,
                "# {NAMESPACE}/services/{name}, version {}",
                entry.version
            )?;
            print_json(out, &entry.value)
        }
        PolicyCommand::Get { service: None } => get_all(client, json, out).await,
        PolicyCommand::Set {
            route,
            name,
            value: text,
            if_version,
            message,
        } => {
            let value: Value = serde_json::from_str(text).context("the policy is not JSON")?;
            let options = PutOptions {
                message: message.clone(),
                if_match: *if_version,
                create_only: false,
            };
            let key = key(*route, name);
            let entry = client
                .put_config(NAMESPACE, &key, &value, &options)
                .await
                .map_err(|e| conflict(e, &key, None))?;
            if json {
                return print_json(out, &entry);
            }
            writeln!(out, "{key}: version {}", entry.version)?;
            Ok(())
        }
        PolicyCommand::Edit {
            route,
            name,
            message,
        } => edit(client, &key(*route, name), message.clone(), out).await,
        PolicyCommand::Apply {
            file,
            dry_run,
            prune,
            message,
        } => apply(client, file, *dry_run, *prune, message.clone(), out).await,
        PolicyCommand::History { route, name } => {
            history(client, NAMESPACE, &key(*route, name), json, out).await
        }
        PolicyCommand::Rollback {
            route,
            name,
            to_version,
        } => {
            rollback(
                client,
                NAMESPACE,
                &key(*route, name),
                *to_version,
                json,
                out,
            )
            .await
        }
    }
}

/// A 404 on a service's policy says what it means.
fn not_found(error: ApiError, name: &str) -> anyhow::Error {
    if error.is_not_found() {
        anyhow!("service {name} has no policy (the global settings apply)")
    } else {
        error.into()
    }
}

/// A 412 explained: someone else wrote the key since it was read.
fn conflict(error: ApiError, key: &str, kept: Option<&std::path::Path>) -> anyhow::Error {
    let ApiError::Api { problem, .. } = &error else {
        return error.into();
    };
    if problem.status != 412 {
        return error.into();
    }
    let now = problem
        .extensions
        .get("current_version")
        .and_then(Value::as_u64)
        .map_or_else(
            || "it no longer exists".to_owned(),
            |v| format!("it is now at version {v}"),
        );
    let kept = kept.map_or(String::new(), |p| {
        format!("; your edit is kept in {}", p.display())
    });
    anyhow!(
        "{key} changed since it was read ({now}): nothing written{kept}; read it again and retry ({problem})"
    )
}

/// `policy get` without a service: a table, or the whole set as `apply -f` reads it.
async fn get_all(client: &Client, json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let stored = stored(client).await?;
    if json {
        let mut document = Document::default();
        for (key, (_, value)) in &stored {
            document.insert(key, value.clone());
        }
        return print_json(out, &document.into_value());
    }
    let mut table = Table::new(&["KEY", "VERSION", "VALUE"]);
    for (key, (version, value)) in &stored {
        table.row(vec![key.clone(), version.to_string(), compact(value, 60)]);
    }
    table.write(out)?;
    Ok(())
}

/// Every stored policy and route: key → (version, value).
async fn stored(client: &Client) -> anyhow::Result<BTreeMap<String, (u64, Value)>> {
    let list = match client.list_config(NAMESPACE, None).await {
        Ok(list) => list.entries,
        // A namespace nothing was ever written to.
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(list
        .into_iter()
        .map(|e| (e.key, (e.version, e.value)))
        .collect())
}
