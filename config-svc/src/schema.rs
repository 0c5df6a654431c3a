//! Namespace schemas: JSON Schema 2020-12, compiled once per schema id and
//! cached in memory.
//!
//! Several replicas share Redis, so a cached schema may be stale. Every write
//! passes the id of the schema it validated against to the put script, which
//! compares it with the stored id in the same atomic step; on a mismatch the
//! caller reloads the schema and validates again. A value the cached schema
//! refuses is refused only after one `HGET` confirms that schema is current.
//! Ids come from a counter and are never reused, so an id names one schema text.
//!
//! # Patterns cannot stall a worker
//!
//! A schema's `pattern`/`patternProperties` are regular expressions from a
//! client, run on the async workers for every write. A pattern without
//! lookaround or backreferences runs on the `regex` crate's engine, linear in
//! the input whatever the pattern (`^(a+)+$` cannot backtrack
//! catastrophically there). Only lookaround and backreferences need
//! fancy-regex's backtracking engine, and its backtracking is capped at
//! [`BACKTRACK_LIMIT`] steps per match (fancy-regex's default is 1,000,000):
//! a match that would go beyond fails, and the value is refused with a 422
//! naming the field and saying the pattern was too costly. With the value
//! size (`CONFIG_MAX_VALUE_BYTES`) and depth ([`mcp_shared::json`])
//! bounded, one validation costs a bounded amount of work. Compiled
//! patterns are capped at [`REGEX_SIZE_LIMIT`] bytes too.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use jsonschema::Validator;
use mcp_shared::{events::EventFeed, problem::FieldError};
use serde_json::Value;

/// The most validator errors reported for one value.
const MAX_ERRORS: usize = 50;
/// The most backtracking steps one pattern match may take (fancy-regex
/// engine only: lookaround, backreferences); beyond, the match fails.
pub const BACKTRACK_LIMIT: usize = 10_000;
/// The most bytes one compiled pattern (and its lazy DFA cache) may take.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compiled schema and the id it was stored under.
pub struct CompiledSchema {
    /// Its id in Redis.
    pub id: u64,
    validator: Validator,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("id", &self.id)
            .finish()
    }
}

impl CompiledSchema {
    /// Compile `schema` (JSON Schema 2020-12); the error says why it is invalid.
    pub fn compile(id: u64, schema: &Value) -> Result<Self, String> {
        // No remote `$ref` resolution: the crate is built without it, so a
        // schema cannot make the service fetch URLs or files.
        // Bounded patterns: see the module docs.
        let validator = jsonschema::draft202012::options()
            .with_pattern_options(
                jsonschema::PatternOptions::fancy_regex()
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT),
            )
            .build(schema)
            .map_err(|e| e.to_string())?;
        Ok(Self { id, validator })
    }

    /// The validator's errors for `instance`, each at `{base}{instance pointer}`.
    pub fn violations(&self, instance: &Value, base: &str) -> Vec<FieldError> {
        self.validator
            .iter_errors(instance)
            .take(MAX_ERRORS)
            .map(|e| {
                FieldError::new(
                    format!("{base}{}", e.instance_path().as_str()),
                    e.to_string(),
                )
            })
            .collect()
    }
}

/// Compiled schemas by namespace, shared by every request of this process.
///
/// Ids restart at 1 when Redis loses its data, so after a loss an id could
/// name a different schema text: the cache follows the event feed and is
/// emptied when the feed resets (see `mcp_shared::events`, epoch).
pub struct SchemaCache {
    by_namespace: RwLock<HashMap<String, Arc<CompiledSchema>>>,
    feed: EventFeed,
    /// The feed's reset count the cached schemas were loaded under.
    resets: AtomicU64,
}

impl SchemaCache {
    /// An empty cache, emptied again whenever `feed` resets.
    pub fn following(feed: EventFeed) -> Self {
        let resets = AtomicU64::new(feed.resets());
        Self {
            by_namespace: RwLock::default(),
            feed,
            resets,
        }
    }

    /// The cached schema of `namespace` (whatever id it has).
    pub fn get(&self, namespace: &str) -> Option<Arc<CompiledSchema>> {
        // One atomic load on the write path: no Redis round trip.
        let resets = self.feed.resets();
        if self.resets.swap(resets, Ordering::AcqRel) != resets {
            let mut map = self.by_namespace.write().unwrap_or_else(|e| e.into_inner());
            map.clear();
            return None;
        }
        // A poisoned lock only means a panic elsewhere; the map is still usable.
        let map = self.by_namespace.read().unwrap_or_else(|e| e.into_inner());
        map.get(namespace).cloned()
    }

    /// Cache `schema` for `namespace`. A racing insert of an older schema is
    /// harmless: the next write's id check finds it stale and reloads.
    pub fn insert(&self, namespace: &str, schema: Arc<CompiledSchema>) {
        let mut map = self.by_namespace.write().unwrap_or_else(|e| e.into_inner());
        map.insert(namespace.to_owned(), schema);
    }

    /// Forget `namespace`'s schema (it has none now).
    pub fn remove(&self, namespace: &str) {
        let mut map = self.by_namespace.write().unwrap_or_else(|e| e.into_inner());
        map.remove(namespace);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    #[test]
    fn pathological_patterns_answer_promptly() {
        let evil = format!("{}!", "a".repeat(30));
        for pattern in [
            // Linear on the regex engine.
            "^(a+)+$",
            // A backreference: fancy-regex's backtracking engine, capped.
            r"^(a+)+\1$",
            r"^(?=(a|aa)+$)(a|aa)+\2$",
        ] {
            let schema = CompiledSchema::compile(1, &json!({"pattern": pattern})).unwrap();
            let started = Instant::now();
            let errors = schema.violations(&json!(evil), "/value");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{pattern}: {:?}",
                started.elapsed()
            );
            assert_eq!(errors.len(), 1, "{pattern}");
            assert!(schema.violations(&json!("aaaa"), "/value").len() <= 1);
        }
    }
}
