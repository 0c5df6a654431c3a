//! The bodies of config-svc's HTTP API: an entry ([`ConfigEntry`]), the
//! listings ([`ConfigList`], [`ConfigHistory`], [`NamespaceList`]), the
//! write bodies ([`ConfigWrite`], [`ConfigRollback`]), the dry-run answers
//! ([`DryRunEntry`], [`SchemaDryRun`]), the propagation status
//! ([`ClientList`]) and the data of the watch's events (a `put` carries the
//! [`ConfigEntry`], a `delete` a [`ConfigDeletion`]).
//!
//! config-svc documents every body with these types' `ToSchema`; the SDK
//! (`mcp-client`) and `mcpctl` send and read the same types, so the three
//! cannot drift. For speed config-svc serves entries as the JSON text Redis
//! holds and parses a write with a borrowing type of its own; its tests
//! check that what it serves deserializes into these types and that its
//! parser accepts exactly the bodies [`ConfigWrite`] does.

use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};

/// The longest `message` accepted on a write.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// A key as a JSON Schema pattern: `/`-separated segments of `A-Za-z0-9._-`,
/// none `.` or `..`, and (when it has several) not ending in `history` or
/// `rollback`, which name the key's sub-resources (see [`crate::names`]).
pub const KEY_PATTERN: &str = r"^(?!.*/(?:history|rollback)$)(?!\.\.?(?:/|$))[A-Za-z0-9._-]+(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._-]+)*$";

/// The example namespace of the documents, as the contract run seeds it.
pub const EXAMPLE_NAMESPACE: &str = "echo";
/// The example key of the documents, as the contract run seeds it.
pub const EXAMPLE_KEY: &str = "log/level";

/// A configuration entry: one version of a key, as config-svc stores and
/// serves it. `version` counts the writes of this key; `revision` orders
/// every change in the store. `value` is the JSON the client wrote, as
/// written. The members are in the order config-svc writes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(examples(json!({
    "version": 3, "revision": 42, "namespace": EXAMPLE_NAMESPACE, "key": EXAMPLE_KEY,
    "value": "debug", "updated_at": "2025-01-01T00:00:00.000Z", "updated_by": "alice",
    "message": null,
}))))]
pub struct ConfigEntry {
    /// Writes of this key so far (1, 2, …).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    /// The global revision of this write.
    pub revision: u64,
    /// Namespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub namespace: String,
    /// Key.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::key))]
    pub key: String,
    /// The value (any JSON).
    pub value: Value,
    /// When it was written (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub updated_at: String,
    /// The writer's subject (the JWT `sub` the gateway forwards), or `anonymous`.
    pub updated_by: String,
    /// The writer's message (`null` when none was given).
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::message, required = true))]
    pub message: Option<String>,
}

/// The data of a `delete` event of `GET /v1/watch`: which key went, and the
/// change's place in the store's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigDeletion {
    /// The key's version count at the delete (its next write continues it).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    /// The global revision of the delete.
    pub revision: u64,
    /// Namespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub namespace: String,
    /// Key.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::key))]
    pub key: String,
}

/// `GET /v1/namespaces/{ns}/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigList {
    /// Namespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub namespace: String,
    /// The config store's revision this answer reflects.
    pub revision: u64,
    /// The entries, sorted by key.
    pub entries: Vec<ConfigEntry>,
}

/// `GET /v1/namespaces/{ns}/keys/{key}/history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigHistory {
    /// Namespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub namespace: String,
    /// Key.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::key))]
    pub key: String,
    /// Newest first; the last `CONFIG_HISTORY_LIMIT` (at least 100) versions.
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub versions: Vec<ConfigEntry>,
}

/// `GET /v1/namespaces`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NamespaceList {
    /// Namespaces holding keys or a schema, sorted.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::names))]
    pub namespaces: Vec<String>,
}

/// The body of `PUT /v1/namespaces/{ns}/keys/{key}`. Unknown members are
/// refused. The value's JSON text (whitespace removed) may be at most
/// `CONFIG_MAX_VALUE_BYTES` (else `413`) and must meet the namespace's
/// schema (else `422`).
///
/// The value is kept as JSON text, so it travels with its members in the
/// order they were written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigWrite {
    /// The value: any JSON (`null` too).
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub value: Box<RawValue>,
    /// Why the change was made (kept in the history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::message))]
    pub message: Option<String>,
}

impl ConfigWrite {
    /// A write of `value` (serialized as it is) with an optional message.
    pub fn new<V: Serialize + ?Sized>(
        value: &V,
        message: Option<String>,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            value: serde_json::value::to_raw_value(value)?,
            message,
        })
    }
}

/// The body of `POST /v1/namespaces/{ns}/keys/{key}/rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigRollback {
    /// The version whose value becomes the new version.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    /// Why (kept in the history); defaults to `rollback to version N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::rollback_message))]
    pub message: Option<String>,
}

/// The answer of a dry-run write (`?dry_run=true`): what the write would
/// store (no revision: nothing changed).
//
// Its members after `version` are `ConfigEntry`'s, repeated rather than
// shared through `#[serde(flatten)]`: flattening would turn both schemas
// into `allOf` compositions and make every entry read go through serde's
// buffered path, for six lines. (A `//` comment: `///` would land in the
// document's description.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DryRunEntry {
    /// Always `true`.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::always_true))]
    pub dry_run: bool,
    /// Whether the write would create the key.
    pub created: bool,
    /// The version the write would make.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub version: u64,
    /// Namespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub namespace: String,
    /// Key.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::key))]
    pub key: String,
    /// The value (any JSON).
    pub value: Value,
    /// When it would be written (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub updated_at: String,
    /// The writer's subject, or `anonymous`.
    pub updated_by: String,
    /// The writer's message (`null` when none was given).
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::message, required = true))]
    pub message: Option<String>,
}

/// The answer of a dry-run schema write: the schema is valid and every
/// present value meets it (otherwise the answer is a `422`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SchemaDryRun {
    /// Always `true`.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::always_true))]
    pub dry_run: bool,
    /// Namespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub namespace: String,
    /// Whether the schema would be accepted.
    pub valid: bool,
}

/// `GET /v1/namespaces/{ns}/clients`. Propagation status: which watching
/// client (`client_id`) has received which revision, against the
/// namespace's latest change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientList {
    /// Namespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub namespace: String,
    /// The revision of the namespace's latest change.
    pub revision: u64,
    /// The clients watching this namespace or all, by `client_id`.
    pub clients: Vec<ClientStatus>,
}

/// One watching client in [`ClientList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientStatus {
    /// The watcher's name (`?client_id=` of its watch).
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::name))]
    pub client_id: String,
    /// What it watches.
    pub scope: WatchScope,
    /// The latest revision delivered to it.
    pub revision: u64,
    /// When that revision was delivered (RFC 3339).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub delivered_at: String,
    /// Whether it has the namespace's latest change.
    pub in_sync: bool,
    /// `in_sync` as a word.
    pub status: SyncStatus,
}

/// What a watching client watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WatchScope {
    /// This namespace (`?namespace=`).
    Namespace,
    /// Every namespace.
    All,
}

/// Whether a watching client has the latest change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// It has received the namespace's latest change.
    InSync,
    /// It has not yet.
    Lagging,
}

/// The schema of a key ([`KEY_PATTERN`]).
#[cfg(feature = "openapi")]
pub fn key_schema() -> utoipa::openapi::ObjectBuilder {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .min_length(Some(1))
        .max_length(Some(crate::names::MAX_NAME_LEN))
        .pattern(Some(KEY_PATTERN))
}

/// The schemas of members the derives cannot state from the type alone.
#[cfg(feature = "openapi")]
mod schema {
    use utoipa::openapi::{
        ArrayBuilder, ObjectBuilder, RefOr, Type,
        schema::{Schema, SchemaType},
    };

    use super::MAX_MESSAGE_LEN;

    pub(super) fn name() -> Schema {
        crate::names::name_schema()
    }

    pub(super) fn key() -> Schema {
        super::key_schema().into()
    }

    pub(super) fn names() -> Schema {
        ArrayBuilder::new()
            .items(RefOr::T(name()))
            .description(Some("Namespaces holding keys or a schema, sorted."))
            .into()
    }

    fn message_of(description: &str) -> Schema {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .max_length(Some(MAX_MESSAGE_LEN))
            .description(Some(description))
            .into()
    }

    pub(super) fn message() -> Schema {
        message_of("Why the change was made (kept in the history).")
    }

    pub(super) fn rollback_message() -> Schema {
        message_of(
            "Why the change was made (kept in the history); defaults to `rollback to version N`.",
        )
    }

    pub(super) fn always_true() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([true]))
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_keeps_the_value_as_written() {
        #[derive(Serialize)]
        struct Pool {
            max: u32,
            idle: u32,
        }
        let write =
            ConfigWrite::new(&Pool { max: 10, idle: 2 }, None).unwrap_or_else(|e| panic!("{e}"));
        let json = serde_json::to_string(&write).unwrap_or_default();
        assert_eq!(json, r#"{"value":{"max":10,"idle":2}}"#);
    }

    #[test]
    fn a_write_needs_a_value_and_takes_null_as_one() {
        let null: Result<ConfigWrite, _> = serde_json::from_str(r#"{"value":null}"#);
        assert_eq!(
            null.map(|w| w.value.get().to_owned()).ok().as_deref(),
            Some("null")
        );
        assert!(serde_json::from_str::<ConfigWrite>(r#"{"message":"m"}"#).is_err());
        assert!(serde_json::from_str::<ConfigWrite>(r#"{"value":1,"x":2}"#).is_err());
    }
}
