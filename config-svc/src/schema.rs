//! Namespace schemas: JSON Schema 2020-12, compiled once per schema id and
//! cached in memory.
//!
//! Several replicas share Redis, so a cached schema may be stale. Every write
//! passes the id of the schema it validated against to the put script, which
//! compares it with the stored id in the same atomic step; on a mismatch the
//! caller reloads the schema and validates again. A value the cached schema
//! refuses is refused only after one `HGET` confirms that schema is current.
//! Ids come from a counter and are never reused, so an id names one schema text.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use jsonschema::Validator;
use mcp_shared::problem::FieldError;
use serde_json::Value;

/// The most validator errors reported for one value.
const MAX_ERRORS: usize = 50;

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
        let validator = jsonschema::draft202012::new(schema).map_err(|e| e.to_string())?;
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
#[derive(Default)]
pub struct SchemaCache {
    by_namespace: RwLock<HashMap<String, Arc<CompiledSchema>>>,
}

impl SchemaCache {
    /// The cached schema of `namespace` (whatever id it has).
    pub fn get(&self, namespace: &str) -> Option<Arc<CompiledSchema>> {
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
