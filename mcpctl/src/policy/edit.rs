//! `mcpctl policy edit`: open the stored value in `$EDITOR`, dry-run the
//! result, and save it with `If-Match` of the version read.

use std::io::Write;

use anyhow::{Context as _, bail};
use mcp_client::{Client, PutOptions};
use mcp_shared::policy::NAMESPACE;
use serde_json::{Map, Value};

use super::conflict;

/// `policy edit`: edit, dry-run, save with `If-Match`.
pub(super) async fn edit(
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
