//! `mcpctl policy apply -f FILE`: diff the file against what is stored,
//! dry-run every write, then write each change with `If-Match` of the
//! version read (creations with `If-None-Match: *`), in an order that lets a
//! new route take a pruned one's place.

use std::{collections::BTreeMap, io::Write};

use anyhow::{Context as _, bail};
use mcp_client::{Client, Error as ApiError, PutOptions};
use mcp_shared::policy::{NAMESPACE, ROUTES_PREFIX, SERVICES_PREFIX};
use serde_json::{Map, Value};

use super::{conflict, key, stored};

/// The file of `apply -f`: `{"services": {…}, "routes": {…}}`.
#[derive(Debug, Default)]
pub(super) struct Document {
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
    pub(super) fn insert(&mut self, key: &str, value: Value) {
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

    pub(super) fn into_value(self) -> Value {
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
pub(super) async fn apply(
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
