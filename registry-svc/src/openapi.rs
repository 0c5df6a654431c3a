//! The hand-written parts of registry-svc's OpenAPI document: what the
//! derives cannot say because the types are parsed by hand (the registration
//! body is validated field by field, the queries from raw pairs). Each
//! schema is built from the same constants the validation uses, so the
//! document and the checks cannot drift apart.
//!
//! The operations themselves are documented on the handlers in [`crate::api`]
//! (`#[utoipa::path]`), and [`crate::api::routes`] builds the router and the
//! document from one list.

use std::borrow::Cow;

use mcp_shared::{names::MAX_NAME_LEN, openapi::name_schema, registry::kinds};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{
        ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, RefOr, Required, Type,
        path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle},
        schema::{Schema, SchemaType},
    },
};

use crate::model::{
    Blocking, InstanceQuery, MAX_CHECK_INTERVAL_SECONDS, MAX_CHECK_PATH_LEN, MAX_CHECK_TIMEOUT_MS,
    MAX_DEREGISTER_AFTER_SECONDS, MAX_HOST_LEN, MAX_METADATA, MAX_METADATA_VALUE_LEN, MAX_TAG_LEN,
    MAX_TAGS, MAX_TTL_SECONDS, MAX_WAIT, Registration, WatchQuery,
};

/// Printable text: no control characters (what `valid_text` refuses).
const PRINTABLE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// The common forms of `wait` (the service takes any humantime duration).
const WAIT: &str = "^[0-9]{1,9}(ms|s|m|h)?$";
/// An HTTP check path: absolute, one leading `/`, no whitespace, `\` or
/// control characters (what `valid_check_path` refuses).
const CHECK_PATH: &str = r"^/(?!/)[^\s\\\u0000-\u001F\u007F-\u009F]*$";

fn integer(min: u64, max: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
}

/// `[type, "null"]`: optional members may be sent as `null` (= absent).
fn or_null(schema_type: Type) -> SchemaType {
    SchemaType::from_iter([schema_type, Type::Null])
}

fn query(name: &str, description: &str, schema: impl Into<RefOr<Schema>>) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
}

fn revision_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
}

impl IntoParams for Blocking {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let max_wait = MAX_WAIT.as_secs();
        vec![
            query(
                "index",
                "Blocking query: answer once the registry revision passes this one (the \
                 `X-Mcp-Index` of an earlier answer), or when `wait` runs out.",
                revision_schema(),
            )
            .build(),
            query(
                "wait",
                &format!(
                    "Blocking query: the longest to hold the request, as `30s`, `500ms`, `5m` \
                     or bare seconds (any humantime duration such as `1m 30s` is accepted too); \
                     capped at (and, with `index` alone, defaulting to) {max_wait} s. Without \
                     `index` it has no effect."
                ),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(WAIT))
                    .examples(["30s", "500ms", "5"]),
            )
            .build(),
        ]
    }
}

impl IntoParams for InstanceQuery {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let meta_key = format!(r"^meta\.(?!\.\.?$)[A-Za-z0-9._-]{{1,{MAX_NAME_LEN}}}$");
        let mut parameters = vec![
            query(
                "healthy",
                "Only `passing` instances (`true`/`1`); `false`/`0` is no filter.",
                ObjectBuilder::new().schema_type(Type::Boolean),
            )
            .build(),
            query(
                "tag",
                "Only instances holding this tag; repeat for several (all must match).",
                ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)),
            )
            .style(Some(ParameterStyle::Form))
            .explode(Some(true))
            .build(),
            query(
                "meta",
                "Metadata filters, sent as `meta.KEY=VALUE` (for example `meta.zone=a`): only \
                 instances whose metadata holds each pair. Any other query parameter is refused.",
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .property_names(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(meta_key)),
                    ))
                    .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String))),
            )
            .style(Some(ParameterStyle::Form))
            .explode(Some(true))
            .build(),
        ];
        parameters.extend(Blocking::into_params(parameter_in));
        parameters
    }
}

impl IntoParams for WatchQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query("service", "Only this service's events.", name_schema()).build(),
            query(
                "index",
                "Resume after this revision (replayed from the event stream); \
                 `Last-Event-ID` wins when both are sent.",
                revision_schema(),
            )
            .build(),
            ParameterBuilder::new()
                .name("Last-Event-ID")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "The `id` (revision) of the last event seen: the watch resumes right after \
                     it without losing an event, or sends `reset` when it was trimmed.",
                ))
                .schema(Some(revision_schema()))
                .build(),
        ]
    }
}

fn check_schema(kind: &str) -> ObjectBuilder {
    let mut check = ObjectBuilder::new()
        .schema_type(Type::Object)
        .title(Some(format!("{kind} check")))
        .property(
            "type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([kind])),
        )
        .required("type");
    if kind == "http" {
        check = check
            .property(
                "path",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(
                        "Path on the instance's own host:port (no scheme or host).",
                    ))
                    .min_length(Some(1))
                    .max_length(Some(MAX_CHECK_PATH_LEN))
                    .pattern(Some(CHECK_PATH)),
            )
            .required("path");
    }
    check
        .property(
            "interval_seconds",
            integer(1, MAX_CHECK_INTERVAL_SECONDS)
                .schema_type(or_null(Type::Integer))
                .description(Some("Seconds between checks (default 10).")),
        )
        .property(
            "timeout_ms",
            integer(1, MAX_CHECK_TIMEOUT_MS)
                .schema_type(or_null(Type::Integer))
                .description(Some(
                    "Timeout of one check (default 1000); must be shorter than the interval.",
                )),
        )
        .property(
            "deregister_critical_after_seconds",
            integer(1, MAX_DEREGISTER_AFTER_SECONDS)
                .schema_type(or_null(Type::Integer))
                .description(Some(
                    "Remove the instance once it has been critical this long.",
                )),
        )
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
}

impl PartialSchema for Registration {
    fn schema() -> RefOr<Schema> {
        let text = |max: usize, min: usize| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(min))
                .max_length(Some(max))
                .pattern(Some(PRINTABLE))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A registration. Members may be `null` (= absent); unknown members are refused. \
                 Not expressible here: `check.timeout_ms` must be shorter than \
                 `check.interval_seconds`.",
            ))
            .property(
                "host",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Host name or IP address to reach the instance at."))
                    .min_length(Some(1))
                    .max_length(Some(MAX_HOST_LEN))
                    .examples(["10.0.0.7"]),
            )
            .required("host")
            .property("port", integer(1, u64::from(u16::MAX)).examples([9000]))
            .required("port")
            .property(
                "tags",
                ArrayBuilder::new()
                    .schema_type(or_null(Type::Array))
                    .items(text(MAX_TAG_LEN, 1))
                    .max_items(Some(MAX_TAGS))
                    .description(Some("Free-form tags (`v2`, `canary`).")),
            )
            .property(
                "metadata",
                ObjectBuilder::new()
                    .schema_type(or_null(Type::Object))
                    .description(Some("Free-form string metadata; keys are names."))
                    .max_properties(Some(MAX_METADATA))
                    .property_names(Some(name_schema()))
                    .additional_properties(Some(text(MAX_METADATA_VALUE_LEN, 0))),
            )
            .property(
                "ttl_seconds",
                integer(1, MAX_TTL_SECONDS)
                    .schema_type(or_null(Type::Integer))
                    .description(Some(
                        "Lease length (default 30); a heartbeat renews it, and the instance is \
                         removed (event `expired`) once it runs out.",
                    )),
            )
            .property(
                "check",
                OneOfBuilder::new()
                    .description(Some(
                        "An active health check run by health-svc; without one the lease alone \
                         decides and the instance is `passing`.",
                    ))
                    .item(check_schema("http"))
                    .item(check_schema("tcp"))
                    .item(ObjectBuilder::new().schema_type(Type::Null)),
            )
            .additional_properties(Some(
                utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
            ))
            .into()
    }
}

impl ToSchema for Registration {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Registration")
    }
}

/// One event of `GET /v1/watch`, as the SSE fields `id`, `event`, `data`.
pub struct WatchEvent;

impl PartialSchema for WatchEvent {
    fn schema() -> RefOr<Schema> {
        let reset = ObjectBuilder::new()
            .schema_type(Type::Object)
            .title(Some("reset"))
            .property("revision", revision_schema())
            .required("revision");
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "A server-sent event. `data` is JSON: a `RegistryEvent` (`registered`, `updated` \
                 and `health` carry the instance after the change), or `{\"revision\"}` on \
                 `reset` (the asked-for revision was trimmed from the stream: re-list, then \
                 resume from it). Comment lines (`:heartbeat`) keep idle streams open.",
            ))
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("The registry revision of the change."))
                    .pattern(Some("^[0-9]+$")),
            )
            .required("id")
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([
                        kinds::REGISTERED,
                        kinds::UPDATED,
                        kinds::DEREGISTERED,
                        kinds::EXPIRED,
                        kinds::HEALTH,
                        "reset",
                    ])),
            )
            .required("event")
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type("application/json")
                    .content_schema(Some(
                        OneOfBuilder::new()
                            .item(Ref::from_schema_name("RegistryEvent"))
                            .item(reset),
                    )),
            )
            .required("data")
            .into()
    }
}

impl ToSchema for WatchEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("WatchEvent")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use mcp_shared::registry::RegistryEvent;
        schemas.push((RegistryEvent::name().into_owned(), RegistryEvent::schema()));
        <RegistryEvent as ToSchema>::schemas(schemas);
    }
}
