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

use std::{collections::BTreeMap, io::Write, path::PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Subcommand;
use mcp_client::{Client, Error as ApiError, PutOptions};
use mcp_shared::policy::{NAMESPACE, ROUTES_PREFIX, SERVICES_PREFIX};
use serde_json::{Map, Value};

use crate::{
    cli::{history, print_json, rollback},
    output::{Table, compact},
};

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

/// The file of `apply -f`: `{"services": {…}, "routes": {…}}`.
#[derive(Debug, Default)]
struct Document {
    services: Map<String, Value>,
    routes: Map<String, Value>,
}

impl Document {
    /// Parse the file's JSON, refusing any other top-level member.
    fn parse(text: &str) -> anyhow::Result<Self> {
        let value: Value = serde_json::from_str(text)?;
        let Value::Object(members) = value else {
            bail!(r#"expected an object {{"services": {{…}}, "routes": {{…}}}}"#);
        };
        let mut document = Self::default();
        for (member, value) in members {
            let target = match member.as_str() {
                "services" => &mut document.services,
                "routes" => &mut document.routes,
                other => bail!("unknown member {other:?} (expected \"services\" and \"routes\")"),
            };
            match value {
                Value::Object(entries) => *target = entries,
                _ => bail!("{member:?} must be an object of name → value"),
            }
        }
        Ok(document)
    }

    /// Add a stored entry by its key (other keys are not policies: skipped).
    fn insert(&mut self, key: &str, value: Value) {
        if let Some(name) = key.strip_prefix(SERVICES_PREFIX) {
            self.services.insert(name.to_owned(), value);
        } else if let Some(name) = key.strip_prefix(ROUTES_PREFIX) {
            self.routes.insert(name.to_owned(), value);
        }
    }

    /// Key → value of every entry.
    fn entries(&self) -> BTreeMap<String, Value> {
        let services = self
            .services
            .iter()
            .map(|(n, v)| (key(false, n), v.clone()));
        let routes = self.routes.iter().map(|(n, v)| (key(true, n), v.clone()));
        services.chain(routes).collect()
    }

    fn into_value(self) -> Value {
        serde_json::json!({ "services": self.services, "routes": self.routes })
    }
}

/// One line of the diff of `apply`.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    /// Not stored yet: created (`If-None-Match: *`).
    Added(Value),
    /// Stored at this version with another value: replaced (`If-Match`).
    Changed(u64, Value),
    /// Stored with the same value.
    Unchanged(u64),
    /// Stored, not in the file: deleted with `--prune` (`If-Match`).
    Removed(u64),
}

/// The diff of `desired` against `stored`, by key.
fn diff(
    desired: BTreeMap<String, Value>,
    stored: &BTreeMap<String, (u64, Value)>,
) -> BTreeMap<String, Change> {
    let mut changes: BTreeMap<String, Change> = stored
        .iter()
        .filter(|(key, _)| !desired.contains_key(*key))
        .map(|(key, (version, _))| (key.clone(), Change::Removed(*version)))
        .collect();
    for (key, value) in desired {
        let change = match stored.get(&key) {
            None => Change::Added(value),
            Some((version, current)) if *current == value => Change::Unchanged(*version),
            Some((version, _)) => Change::Changed(*version, value),
        };
        changes.insert(key, change);
    }
    changes
}

/// The write options of a change.
fn options(change: &Change, message: Option<String>) -> PutOptions {
    PutOptions {
        message,
        if_match: match change {
            Change::Changed(version, _) => Some(*version),
            _ => None,
        },
        create_only: matches!(change, Change::Added(_)),
    }
}

/// The order of writes: pruned routes go first (a new route may take their
/// place), then services, then routes, then pruned services.
fn write_order(key: &str, change: &Change) -> u8 {
    let route = key.starts_with(ROUTES_PREFIX);
    match (change, route) {
        (Change::Removed(_), true) => 0,
        (Change::Removed(_), false) => 3,
        (_, false) => 1,
        (_, true) => 2,
    }
}

/// `policy apply -f FILE`.
async fn apply(
    client: &Client,
    file: &std::path::Path,
    dry_run: bool,
    prune: bool,
    message: Option<String>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let document = Document::parse(&text)
        .with_context(|| format!("{} is not a policy file (JSON)", file.display()))?;
    let stored = stored(client).await?;
    let changes = diff(document.entries(), &stored);

    let (mut added, mut changed, mut unchanged, mut removed) = (0, 0, 0, 0);
    for (key, change) in &changes {
        let line = match change {
            Change::Added(_) => {
                added += 1;
                format!("+ {key} (new)")
            }
            Change::Changed(version, _) => {
                changed += 1;
                format!("~ {key} (version {version})")
            }
            Change::Unchanged(version) => {
                unchanged += 1;
                format!("= {key} (version {version})")
            }
            Change::Removed(version) if prune => {
                removed += 1;
                format!("- {key} (version {version})")
            }
            Change::Removed(version) => {
                format!("  {key} (version {version}, not in the file; kept without --prune)")
            }
        };
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{added} added, {changed} changed, {unchanged} unchanged, {removed} removed"
    )?;
    let mut writes: Vec<(&String, &Change)> = changes
        .iter()
        .filter(|(_, c)| match c {
            Change::Added(_) | Change::Changed(..) => true,
            Change::Removed(_) => prune,
            Change::Unchanged(_) => false,
        })
        .collect();
    if dry_run || writes.is_empty() {
        return Ok(());
    }
    writes.sort_by_key(|(key, change)| write_order(key, change));

    // Validate everything first: one invalid entry and nothing is written.
    let mut invalid = Vec::new();
    for (key, change) in &writes {
        let value = match change {
            Change::Added(v) | Change::Changed(_, v) => v,
            _ => continue,
        };
        let checked = client
            .put_config_dry_run(NAMESPACE, key, value, &options(change, None))
            .await;
        match checked {
            Ok(_) => {}
            Err(ApiError::Api { problem, .. })
                if problem.status < 500 && problem.status != 401 && problem.status != 403 =>
            {
                invalid.push(format!("  {key}: {problem}"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !invalid.is_empty() {
        bail!(
            "{} of {} entries refused by the validator; nothing written:\n{}",
            invalid.len(),
            writes.len(),
            invalid.join("\n")
        );
    }

    for (key, change) in writes {
        match change {
            Change::Added(value) | Change::Changed(_, value) => {
                let entry = client
                    .put_config(NAMESPACE, key, value, &options(change, message.clone()))
                    .await
                    .map_err(|e| conflict(e, key, None))
                    .with_context(|| format!("writing {key}"))?;
                writeln!(out, "wrote {key} (version {})", entry.version)?;
            }
            Change::Removed(version) => {
                client
                    .delete_config(NAMESPACE, key, Some(*version))
                    .await
                    .map_err(|e| conflict(e, key, None))
                    .with_context(|| format!("deleting {key}"))?;
                writeln!(out, "deleted {key}")?;
            }
            Change::Unchanged(_) => {}
        }
    }
    Ok(())
}

/// `policy edit`: edit, dry-run, save with `If-Match`.
async fn edit(
    client: &Client,
    key: &str,
    message: Option<String>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (version, current) = match client.get_config(NAMESPACE, key).await {
        Ok(entry) => (Some(entry.version), entry.value),
        Err(e) if e.is_not_found() => (None, Value::Object(Map::new())),
        Err(e) => return Err(e.into()),
    };
    let path = std::env::temp_dir().join(format!(
        "mcpctl-policy-{}-{}.json",
        key.replace('/', "-"),
        std::process::id()
    ));
    let before = serde_json::to_string_pretty(&current)? + "\n";
    std::fs::write(&path, &before).with_context(|| format!("cannot write {}", path.display()))?;
    run_editor(&path).await?;
    let after = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = serde_json::from_str(&after).with_context(|| {
        format!(
            "the edited policy is not JSON; nothing written (your edit is kept in {})",
            path.display()
        )
    })?;
    if value == current {
        let _ = std::fs::remove_file(&path);
        writeln!(out, "{key}: no change")?;
        return Ok(());
    }
    let options = PutOptions {
        message,
        if_match: version,
        create_only: version.is_none(),
    };
    let checked = client
        .put_config_dry_run(NAMESPACE, key, &value, &options)
        .await;
    if let Err(e) = checked {
        return Err(conflict(e, key, Some(&path))).with_context(|| {
            format!(
                "{key} refused; nothing written (your edit is kept in {})",
                path.display()
            )
        });
    }
    let entry = client
        .put_config(NAMESPACE, key, &value, &options)
        .await
        .map_err(|e| conflict(e, key, Some(&path)))?;
    let _ = std::fs::remove_file(&path);
    writeln!(out, "{key}: version {}", entry.version)?;
    Ok(())
}

/// Run `$EDITOR` (else `$VISUAL`, else `vi`) on `path` and wait for it.
/// The variable may carry arguments (`code --wait`): split on whitespace.
async fn run_editor(path: &std::path::Path) -> anyhow::Result<()> {
    let editor = std::env::var("EDITOR")
        .or_else(|_| std::env::var("VISUAL"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_owned());
    let mut words = editor.split_whitespace();
    let program = words.next().unwrap_or("vi");
    let status = tokio::process::Command::new(program)
        .args(words)
        .arg(path)
        .status()
        .await
        .with_context(|| format!("cannot run the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}); nothing written");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_tells_added_changed_unchanged_and_removed() {
        let desired = BTreeMap::from([
            ("services/a".to_owned(), json!({"timeout_ms": 1})),
            ("services/b".to_owned(), json!({"timeout_ms": 2})),
            ("routes/r".to_owned(), json!({"service": "a"})),
        ]);
        let stored = BTreeMap::from([
            ("services/b".to_owned(), (3, json!({"timeout_ms": 9}))),
            ("routes/r".to_owned(), (1, json!({"service": "a"}))),
            ("services/gone".to_owned(), (2, json!({}))),
        ]);
        let changes = diff(desired, &stored);
        assert_eq!(
            changes["services/a"],
            Change::Added(json!({"timeout_ms": 1}))
        );
        assert_eq!(
            changes["services/b"],
            Change::Changed(3, json!({"timeout_ms": 2}))
        );
        assert_eq!(changes["routes/r"], Change::Unchanged(1));
        assert_eq!(changes["services/gone"], Change::Removed(2));
    }

    #[test]
    fn policy_files_have_only_services_and_routes() {
        assert!(Document::parse(r#"{"services": {}, "extra": {}}"#).is_err());
        assert!(Document::parse(r#"{"services": []}"#).is_err());
        assert!(Document::parse("services: {}").is_err());
        let document = Document::parse(r#"{"routes": {"r": {"service": "a"}}}"#).unwrap();
        assert_eq!(
            document.entries().keys().collect::<Vec<_>>(),
            vec!["routes/r"]
        );
    }
}
