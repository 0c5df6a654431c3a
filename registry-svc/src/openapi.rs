//! The hand-written parts of registry-svc's OpenAPI document: what the
//! derives cannot say because the types are parsed by hand (the queries from
//! raw pairs) or are no body type (the SSE events). Each parameter is built
//! from the same constants the validation uses, so the document and the
//! checks cannot drift apart. The bodies' schemas are derived from the
//! shared types in [`mcp_shared::registry`] (the registration body is
//! [`InstanceSpec`](mcp_shared::registry::InstanceSpec)).
//!
//! The operations themselves are documented on the handlers in [`crate::api`]
//! (`#[utoipa::path]`), and [`crate::api::router`] builds the router and the
//! document from one list.

use std::borrow::Cow;

use mcp_shared::{names::MAX_NAME_LEN, openapi::name_schema, registry::kinds};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{
        ArrayBuilder, ObjectBuilder, OneOfBuilder, Ref, RefOr, Required, Type,
        path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle},
        schema::Schema,
    },
};

use crate::model::{InstanceQuery, WatchQuery};

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

/// `?index=&wait=`: a blocking query (the shared parser's parameters).
pub struct BlockingQuery;

impl IntoParams for BlockingQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        mcp_shared::http::parameters(
            "Blocking query: answer once the registry revision passes this one (the \
             `X-Mcp-Index` of an earlier answer), or when `wait` runs out.",
        )
    }
}

/// `?stale`: answer from the replica's memory without the fence.
pub struct StaleQuery;

impl IntoParams for StaleQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query(
                "stale",
                "Answer from this replica's in-memory copy of the registry at once, without \
                 first learning Redis's revision (`true`/`1`, or empty as Consul's `?stale`): \
                 possibly a little behind, and still answered while Redis is down. Without it \
                 the answer holds every write acknowledged before the request, on any replica.",
                mcp_shared::http::flag_schema(),
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
                "Only `passing` instances (`true`/`1`, or empty as Consul's `?passing`); \
                 `false`/`0` is no filter.",
                mcp_shared::http::flag_schema(),
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
        parameters.extend(BlockingQuery::into_params(&parameter_in));
        parameters.extend(StaleQuery::into_params(parameter_in));
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

// The gateway serves this document from `docs/openapi/`: keep it exact.
#[cfg(test)]
mcp_testkit::snapshot_test!(crate::api::openapi);
