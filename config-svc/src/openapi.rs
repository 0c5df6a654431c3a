//! The hand-written parts of config-svc's OpenAPI document: parameters the
//! handlers parse by hand (headers, raw queries), built from the same
//! constants the checks use, and the schemas that are no body type (a JSON
//! Schema, the SSE events). The bodies' schemas (entries, listings, write
//! bodies, dry runs, the propagation status) are derived from the shared
//! types in [`mcp_shared::config`], though the handlers serve entries as
//! the JSON text Redis holds and parse a write with a borrowing type
//! (`tests/openapi.rs` and the model's tests hold the two together).
//!
//! The operations themselves are documented on the handlers in [`crate::api`]
//! (`#[utoipa::path]`), and [`crate::api::router`] builds the router and the
//! document from one list.

use std::borrow::Cow;

pub use mcp_shared::config::{EXAMPLE_KEY, EXAMPLE_NAMESPACE, KEY_PATTERN, key_schema};
use mcp_shared::{
    config::{ConfigDeletion, ConfigEntry, DryRunEntry, SchemaDryRun},
    names::MAX_NAME_LEN,
    openapi::{name_parameter, name_schema},
};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{
        AllOfBuilder, ObjectBuilder, OneOfBuilder, Ref, RefOr, Required, Type,
        path::{Parameter, ParameterBuilder, ParameterIn},
        schema::{AdditionalProperties, AnyOfBuilder, Schema},
    },
};

/// A list prefix: what a key may hold, cut anywhere (or nothing).
const PREFIX_PATTERN: &str = "^[A-Za-z0-9._/-]*$";
/// An entity tag holding a version (`"3"`).
const ETAG_PATTERN: &str = r#"^"[0-9]{1,19}"$"#;

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn revision() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
}

fn closed(object: ObjectBuilder) -> ObjectBuilder {
    object.additional_properties(Some(AdditionalProperties::FreeForm(false)))
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
        mcp_shared::http::parameters(
            "Blocking query: answer once a change passes this revision (the `X-Mcp-Index` \
             of an earlier answer), or when `wait` runs out.",
        )
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
                mcp_shared::http::flag_schema(),
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

/// `If-Match` and `If-None-Match: *` on a write (`updated_by` is the
/// subject of the gateway's internal credential, not a header).
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
//
// The bodies are the shared types of `mcp_shared::config` (their derived
// schemas); what follows are the schemas that are no body type: a JSON
// Schema (any object or boolean), the unions of a 200 that may be a dry
// run's answer, and the SSE events.

/// A namespace's JSON Schema.
pub struct JsonSchema;
/// One event of `GET /v1/watch`.
pub struct WatchEvent;
/// The 200 of `PUT …/keys/{key}`: an entry, or a dry run's answer.
pub struct EntryOrDryRun;
/// The 200 of `PUT …/schema`: the schema, or a dry run's verdict.
pub struct SchemaOrDryRun;

/// `name` plus `T`'s schema and the ones it refers to.
fn with_schema<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

impl ToSchema for JsonSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonSchema")
    }
}

impl ToSchema for WatchEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("WatchEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        with_schema::<ConfigEntry>(schemas);
    }
}

impl ToSchema for EntryOrDryRun {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EntryOrDryRun")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        with_schema::<ConfigEntry>(schemas);
        with_schema::<DryRunEntry>(schemas);
    }
}

impl PartialSchema for EntryOrDryRun {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(Ref::from_schema_name(ConfigEntry::name()))
            .item(Ref::from_schema_name(DryRunEntry::name()))
            .into()
    }
}

impl ToSchema for SchemaOrDryRun {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SchemaOrDryRun")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        with_schema::<JsonSchema>(schemas);
        with_schema::<SchemaDryRun>(schemas);
    }
}

impl PartialSchema for SchemaOrDryRun {
    fn schema() -> RefOr<Schema> {
        // A dry run's answer is an object, so a schema too: any of them.
        AnyOfBuilder::new()
            .item(Ref::from_schema_name(JsonSchema::name()))
            .item(Ref::from_schema_name(SchemaDryRun::name()))
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

/// [`ConfigDeletion`]'s own schema, closed: a `put`'s entry carries its
/// members too, so only "nothing else" tells a `delete`'s data apart in the
/// `oneOf`. (The type itself stays open, so a newer service's extra member
/// does not break an older SDK.)
fn closed_deletion() -> RefOr<Schema> {
    let mut deletion = ConfigDeletion::schema();
    if let RefOr::T(Schema::Object(object)) = &mut deletion {
        object.title = Some("delete".to_owned());
        object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
    }
    deletion
}

impl PartialSchema for WatchEvent {
    fn schema() -> RefOr<Schema> {
        let delete = closed_deletion();
        let reset = closed(ObjectBuilder::new().schema_type(Type::Object))
            .title(Some("reset"))
            .property("revision", revision())
            .required("revision");
        let put = AllOfBuilder::new()
            .title(Some("put"))
            .item(Ref::from_schema_name(ConfigEntry::name()));
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

// The gateway serves this document from `docs/openapi/`: keep it exact.
#[cfg(test)]
mcp_testkit::snapshot_test!(crate::api::openapi);
