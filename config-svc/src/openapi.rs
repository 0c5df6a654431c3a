//! The hand-written parts of config-svc's OpenAPI document: parameters and
//! bodies the handlers parse by hand (headers, raw queries, entries served as
//! the JSON text Redis holds), built from the same constants the checks use.
//!
//! The operations themselves are documented on the handlers in [`crate::api`]
//! (`#[utoipa::path]`), and [`crate::api::routes`] builds the router and the
//! document from one list.

use std::borrow::Cow;

use mcp_shared::{
    names::MAX_NAME_LEN,
    openapi::{name_parameter, name_schema},
};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{
        AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, RefOr, Required, Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{
            AdditionalProperties, AnyOfBuilder, KnownFormat, Schema, SchemaFormat, SchemaType,
        },
    },
};

use crate::model::{MAX_MESSAGE_LEN, MAX_SUBJECT_LEN, MAX_WAIT};

/// A key: `/`-separated segments of `A-Za-z0-9._-`, none `.` or `..`, and
/// (when it has several) not ending in `history` or `rollback`, which name
/// the key's sub-resources.
pub const KEY_PATTERN: &str = r"^(?!.*/(?:history|rollback)$)(?!\.\.?(?:/|$))[A-Za-z0-9._-]+(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._-]+)*$";
/// A list prefix: what a key may hold, cut anywhere (or nothing).
const PREFIX_PATTERN: &str = "^[A-Za-z0-9._/-]*$";
/// An entity tag holding a version (`"3"`).
const ETAG_PATTERN: &str = r#"^"[0-9]{1,19}"$"#;
/// The common forms of `wait` (the service takes any humantime duration);
/// empty is the default.
const WAIT_PATTERN: &str = "^([0-9]{1,9}(ms|s|m|h)?)?$";

/// The example namespace, as the contract run seeds it.
pub const EXAMPLE_NAMESPACE: &str = "echo";
/// The example key, as the contract run seeds it.
pub const EXAMPLE_KEY: &str = "log/level";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn revision() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
}

fn version() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
}

fn date_time() -> ObjectBuilder {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
}

/// `[type, "null"]`.
fn or_null(schema_type: Type) -> SchemaType {
    SchemaType::from_iter([schema_type, Type::Null])
}

fn closed(object: ObjectBuilder) -> ObjectBuilder {
    object.additional_properties(Some(AdditionalProperties::FreeForm(false)))
}

/// The schema of a key ([`KEY_PATTERN`]).
pub fn key_schema() -> ObjectBuilder {
    string()
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_LEN))
        .pattern(Some(KEY_PATTERN))
}

fn message_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(or_null(Type::String))
        .max_length(Some(MAX_MESSAGE_LEN))
        .description(Some("Why the change was made (kept in the history)."))
}

fn query(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
}

fn header(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

// ---------------------------------------------------------------- parameters

/// The path parameter `{ns}`.
pub struct NamespacePath;

impl IntoParams for NamespacePath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![name_parameter("ns", "Namespace.", EXAMPLE_NAMESPACE)]
    }
}

/// The path parameters `{ns}` and `{key}`.
pub struct KeyPath;

impl IntoParams for KeyPath {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut parameters = NamespacePath::into_params(parameter_in);
        parameters.push(
            ParameterBuilder::new()
                .name("key")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some(
                    "Key: segments of `A-Za-z0-9._-` joined by `/` (sent as is or as `%2F`).",
                ))
                .schema(Some(key_schema()))
                .example(Some(EXAMPLE_KEY.into()))
                .build(),
        );
        parameters
    }
}

/// `?index=&wait=`: a blocking query.
pub struct BlockingQuery;

impl IntoParams for BlockingQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let max_wait = MAX_WAIT.as_secs();
        vec![
            query(
                "index",
                "Blocking query: answer once a change passes this revision (the `X-Mcp-Index` \
                 of an earlier answer), or when `wait` runs out.",
                revision(),
            )
            .build(),
            query(
                "wait",
                &format!(
                    "Blocking query: the longest to hold the request, as `30s`, `500ms`, `5m` \
                     or bare seconds (any humantime duration such as `1m 30s` is accepted too); \
                     capped at (and, with `index` alone or `wait` empty, defaulting to) \
                     {max_wait} s. Without `index` it has no effect."
                ),
                string()
                    .pattern(Some(WAIT_PATTERN))
                    .examples(["30s", "500ms", "5"]),
            )
            .build(),
        ]
    }
}

/// `?prefix=` plus a blocking query (`GET …/keys`).
pub struct ListQuery;

impl IntoParams for ListQuery {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let mut parameters = vec![
            query(
                "prefix",
                "Only keys starting with this.",
                string()
                    .max_length(Some(MAX_NAME_LEN))
                    .pattern(Some(PREFIX_PATTERN)),
            )
            .build(),
        ];
        parameters.extend(BlockingQuery::into_params(parameter_in));
        parameters
    }
}

/// `?dry_run=`.
pub struct DryRunQuery;

impl IntoParams for DryRunQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query(
                "dry_run",
                "Validate (schema, preconditions) and answer what would be written, without \
                 writing (`true`/`1`, or empty; `false`/`0` writes).",
                ObjectBuilder::new().schema_type(Type::Boolean),
            )
            .build(),
        ]
    }
}

/// `If-None-Match` on a read: `304` when the entry still has that tag.
pub struct ReadHeaders;

impl IntoParams for ReadHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header(
            "If-None-Match",
            "Entity tags (`\"3\"`, comma-separated) or `*`: `304 Not Modified` when the entry's \
             `ETag` is among them.",
            string().examples([r#""3""#]),
        )]
    }
}

fn if_match() -> Parameter {
    header(
        "If-Match",
        "Compare-and-swap: `\"<version>\"` (the entry's `ETag`) writes only over that version, \
         `*` only over an existing key; else `412` and nothing is written.",
        OneOfBuilder::new()
            .item(string().pattern(Some(ETAG_PATTERN)))
            .item(string().enum_values(Some(["*"]))),
    )
}

/// `If-Match`, `If-None-Match: *` and `X-Auth-Subject` on a write.
pub struct WriteHeaders;

impl IntoParams for WriteHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            if_match(),
            header(
                "If-None-Match",
                "`*`: create only; `412` when the key exists. Not with `If-Match`.",
                string().enum_values(Some(["*"])),
            ),
            header(
                "X-Auth-Subject",
                &format!(
                    "Who writes (the gateway forwards the token's subject); kept as `updated_by` \
                     (at most {MAX_SUBJECT_LEN} characters), `anonymous` when absent."
                ),
                string(),
            ),
        ]
    }
}

/// `If-Match` on a delete.
pub struct DeleteHeaders;

impl IntoParams for DeleteHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![if_match()]
    }
}

/// `?namespace=&client_id=` and `Last-Event-ID` (`GET /v1/watch`).
pub struct WatchParams;

impl IntoParams for WatchParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query(
                "namespace",
                "Only this namespace's events (empty: all).",
                OneOfBuilder::new()
                    .item(name_schema())
                    .item(string().max_length(Some(0))),
            )
            .build(),
            query(
                "client_id",
                "The watcher's name: its deliveries show in \
                 `GET /v1/namespaces/{ns}/clients` (propagation status).",
                name_schema(),
            )
            .build(),
            header(
                "Last-Event-ID",
                "The `id` (revision) of the last event seen: the watch resumes right after it \
                 without losing an event, or sends `reset` when it was trimmed.",
                revision(),
            ),
        ]
    }
}

// ---------------------------------------------------------------- bodies

macro_rules! named {
    ($($type:ident),+ $(,)?) => {
        $(
            impl ToSchema for $type {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($type))
                }
            }
        )+
    };
}

/// Body of `PUT …/keys/{key}`.
pub struct PutEntry;
/// Body of `POST …/keys/{key}/rollback`.
pub struct Rollback;
/// An entry, as stored and served.
pub struct Entry;
/// The answer of a dry-run write.
pub struct DryRunEntry;
/// `GET …/keys`.
pub struct EntryList;
/// `GET …/keys/{key}/history`.
pub struct History;
/// `GET /v1/namespaces`.
pub struct NamespaceList;
/// A namespace's JSON Schema.
pub struct JsonSchema;
/// The answer of a dry-run schema write.
pub struct SchemaDryRun;
/// `GET …/clients`.
pub struct ClientList;
/// One event of `GET /v1/watch`.
pub struct WatchEvent;
/// The 200 of `PUT …/keys/{key}`: an entry, or a dry run's answer.
pub struct EntryOrDryRun;
/// The 200 of `PUT …/schema`: the schema, or a dry run's verdict.
pub struct SchemaOrDryRun;

named!(
    PutEntry,
    Rollback,
    Entry,
    DryRunEntry,
    NamespaceList,
    JsonSchema,
    SchemaDryRun,
    ClientList,
);

/// Schemas that refer to [`Entry`]: named, and bringing it along.
macro_rules! with_entry {
    ($($type:ident),+ $(,)?) => {
        $(
            impl ToSchema for $type {
                fn name() -> Cow<'static, str> {
                    Cow::Borrowed(stringify!($type))
                }

                fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                    schemas.push((Entry::name().into_owned(), Entry::schema()));
                }
            }
        )+
    };
}

with_entry!(EntryList, History, WatchEvent);

impl ToSchema for EntryOrDryRun {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EntryOrDryRun")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Entry::name().into_owned(), Entry::schema()));
        schemas.push((DryRunEntry::name().into_owned(), DryRunEntry::schema()));
    }
}

impl PartialSchema for EntryOrDryRun {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(Ref::from_schema_name("Entry"))
            .item(Ref::from_schema_name("DryRunEntry"))
            .into()
    }
}

impl ToSchema for SchemaOrDryRun {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SchemaOrDryRun")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((JsonSchema::name().into_owned(), JsonSchema::schema()));
        schemas.push((SchemaDryRun::name().into_owned(), SchemaDryRun::schema()));
    }
}

impl PartialSchema for SchemaOrDryRun {
    fn schema() -> RefOr<Schema> {
        // A dry run's answer is an object, so a schema too: any of them.
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("JsonSchema"))
            .item(Ref::from_schema_name("SchemaDryRun"))
            .into()
    }
}

/// Any JSON value.
fn any() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::AnyValue)
        .into()
}

impl PartialSchema for PutEntry {
    fn schema() -> RefOr<Schema> {
        closed(ObjectBuilder::new().schema_type(Type::Object))
            .description(Some(
                "Unknown members are refused. The value's JSON text (whitespace removed) may be \
                 at most `CONFIG_MAX_VALUE_BYTES` (else `413`) and must meet the namespace's \
                 schema (else `422`).",
            ))
            .property("value", any())
            .required("value")
            .property("message", message_schema())
            .into()
    }
}

impl PartialSchema for Rollback {
    fn schema() -> RefOr<Schema> {
        closed(ObjectBuilder::new().schema_type(Type::Object))
            .property(
                "version",
                version().description(Some("The version whose value becomes the new version.")),
            )
            .required("version")
            .property(
                "message",
                message_schema().description(Some("Defaults to `rollback to version N`.")),
            )
            .into()
    }
}

/// The members every entry (and a dry run) carries after `version`/`revision`.
fn entry_members(object: ObjectBuilder) -> ObjectBuilder {
    object
        .property("namespace", name_schema())
        .required("namespace")
        .property("key", key_schema())
        .required("key")
        .property("value", any())
        .required("value")
        .property("updated_at", date_time())
        .required("updated_at")
        .property(
            "updated_by",
            string().description(Some("The writer's subject, or `anonymous`.")),
        )
        .required("updated_by")
        .property("message", message_schema())
        .required("message")
}

impl PartialSchema for Entry {
    fn schema() -> RefOr<Schema> {
        let object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "`version` counts the writes of this key; `revision` orders every change in \
                 the store. `value` is the JSON the client wrote, as written.",
            ))
            .property("version", version())
            .required("version")
            .property("revision", revision())
            .required("revision");
        entry_members(object)
            .examples([serde_json::json!({
                "version": 3, "revision": 42, "namespace": EXAMPLE_NAMESPACE,
                "key": EXAMPLE_KEY, "value": "debug", "updated_at": "2025-01-01T00:00:00.000Z",
                "updated_by": "alice", "message": null,
            })])
            .into()
    }
}

impl PartialSchema for DryRunEntry {
    fn schema() -> RefOr<Schema> {
        let object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "What the write would store (no revision: nothing changed).",
            ))
            .property(
                "dry_run",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true])),
            )
            .required("dry_run")
            .property("created", ObjectBuilder::new().schema_type(Type::Boolean))
            .required("created")
            .property("version", version())
            .required("version");
        entry_members(object).into()
    }
}

impl PartialSchema for EntryList {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("namespace", name_schema())
            .required("namespace")
            .property("revision", revision())
            .required("revision")
            .property(
                "entries",
                ArrayBuilder::new().items(Ref::from_schema_name("Entry")),
            )
            .required("entries")
            .into()
    }
}

impl PartialSchema for History {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("namespace", name_schema())
            .required("namespace")
            .property("key", key_schema())
            .required("key")
            .property(
                "versions",
                ArrayBuilder::new()
                    .items(Ref::from_schema_name("Entry"))
                    .min_items(Some(1))
                    .description(Some(
                        "Newest first; the last `CONFIG_HISTORY_LIMIT` (at least 100) versions.",
                    )),
            )
            .required("versions")
            .into()
    }
}

impl PartialSchema for NamespaceList {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "namespaces",
                ArrayBuilder::new()
                    .items(RefOr::T(name_schema()))
                    .description(Some("Namespaces holding keys or a schema, sorted.")),
            )
            .required("namespaces")
            .into()
    }
}

impl PartialSchema for JsonSchema {
    fn schema() -> RefOr<Schema> {
        // `anyOf` rather than a type list: schemathesis 4.32 cannot analyse
        // a type list inside a composition (the `200` of `putSchema`).
        AnyOfBuilder::new()
            .description(Some(
                "A JSON Schema (2020-12) every value of the namespace must meet: an object or a \
                 boolean. Remote `$ref`s are not resolved.",
            ))
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .examples([serde_json::json!({"type": "string"})])
            .into()
    }
}

impl PartialSchema for SchemaDryRun {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "dry_run",
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .enum_values(Some([true])),
            )
            .required("dry_run")
            .property("namespace", name_schema())
            .required("namespace")
            .property("valid", ObjectBuilder::new().schema_type(Type::Boolean))
            .required("valid")
            .into()
    }
}

impl PartialSchema for ClientList {
    fn schema() -> RefOr<Schema> {
        let client = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("client_id", name_schema())
            .required("client_id")
            .property(
                "scope",
                string()
                    .enum_values(Some(["namespace", "all"]))
                    .description(Some(
                        "`namespace`: it watches this namespace; `all`: every namespace.",
                    )),
            )
            .required("scope")
            .property(
                "revision",
                revision().description(Some("The latest revision delivered to it.")),
            )
            .required("revision")
            .property("delivered_at", date_time())
            .required("delivered_at")
            .property("in_sync", ObjectBuilder::new().schema_type(Type::Boolean))
            .required("in_sync")
            .property("status", string().enum_values(Some(["in_sync", "lagging"])))
            .required("status");
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Propagation status: which watching client (`client_id`) has received which \
                 revision, against the namespace's latest change.",
            ))
            .property("namespace", name_schema())
            .required("namespace")
            .property(
                "revision",
                revision().description(Some("The revision of the namespace's latest change.")),
            )
            .required("revision")
            .property("clients", ArrayBuilder::new().items(client))
            .required("clients")
            .into()
    }
}

impl PartialSchema for WatchEvent {
    fn schema() -> RefOr<Schema> {
        let delete = closed(ObjectBuilder::new().schema_type(Type::Object))
            .title(Some("delete"))
            .property("version", version())
            .required("version")
            .property("revision", revision())
            .required("revision")
            .property("namespace", name_schema())
            .required("namespace")
            .property("key", key_schema())
            .required("key");
        let reset = closed(ObjectBuilder::new().schema_type(Type::Object))
            .title(Some("reset"))
            .property("revision", revision())
            .required("revision");
        let put = AllOfBuilder::new()
            .title(Some("put"))
            .item(Ref::from_schema_name("Entry"));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A server-sent event. `data` is JSON: the entry after the change on `put`, \
                 `{version, revision, namespace, key}` on `delete`, or `{\"revision\"}` on \
                 `reset` (the asked-for revision was trimmed from the stream: re-read, then \
                 resume from it). Comment lines (`:heartbeat`) keep idle streams open.",
            ))
            .property(
                "id",
                string()
                    .description(Some("The revision of the change."))
                    .pattern(Some("^[0-9]+$")),
            )
            .required("id")
            .property(
                "event",
                string().enum_values(Some(["put", "delete", "reset"])),
            )
            .required("event")
            .property(
                "data",
                string()
                    .content_media_type("application/json")
                    .content_schema(Some(OneOfBuilder::new().item(put).item(delete).item(reset))),
            )
            .required("data")
            .into()
    }
}
