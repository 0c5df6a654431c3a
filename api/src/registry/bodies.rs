//! The bodies of registry-svc's HTTP API besides the [`Instance`] itself:
//! the registration body ([`InstanceSpec`]) and the two listings
//! ([`InstanceList`], [`ServiceList`]). registry-svc serializes the
//! listings with these types and documents every body with their
//! `ToSchema`; the SDK (`mcp-client`) and `mcpctl` send and read the same
//! types, so the three cannot drift.
//!
//! registry-svc validates a registration field by field (so each error names
//! its field) rather than through serde; [`InstanceSpec`]'s schema states the
//! same limits ([`super::limits`]) the validation applies.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Check, Instance};

/// The body of `PUT /v1/services/{service}/instances/{id}`: a registration.
/// Members may be `null` (= absent); unknown members are refused. Not
/// expressible here: `check.timeout_ms` must be shorter than
/// `check.interval_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Host name or IP address to reach the instance at.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::host))]
    pub host: String,
    /// Port to reach the instance at.
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::port))]
    pub port: u16,
    /// Free-form tags (`v2`, `canary`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::tags))]
    pub tags: Vec<String>,
    /// Free-form string metadata; keys are names.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::metadata))]
    pub metadata: BTreeMap<String, String>,
    /// Lease length (the registry's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::ttl_seconds))]
    pub ttl_seconds: Option<u32>,
    /// Active health check; without one the lease alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(schema_with = schema::check))]
    pub check: Option<Check>,
}

impl InstanceSpec {
    /// An instance at `host:port` with no tags, metadata, TTL or check.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            ttl_seconds: None,
            check: None,
        }
    }
}

/// `null` as the type's default, as registry-svc reads an optional member.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// `GET /v1/services/{service}/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceList {
    /// The service.
    pub service: String,
    /// The registry revision this list reflects.
    pub revision: u64,
    /// Its instances (filtered), by id.
    pub instances: Vec<Instance>,
}

/// One service in `GET /v1/services`, with its instance counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceSummary {
    /// Service name.
    pub name: String,
    /// Instances registered.
    pub instances: u64,
    /// Instances `passing`.
    pub passing: u64,
    /// Whether mass-expiry protection holds back its expiries right now.
    pub protected: bool,
}

/// `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceList {
    /// The registry revision this list reflects.
    pub revision: u64,
    /// Every service with at least one instance, by name.
    pub services: Vec<ServiceSummary>,
}

/// The schemas of [`InstanceSpec`]'s members: what registry-svc's
/// validation accepts, built from the same [`limits`](super::limits).
#[cfg(feature = "openapi")]
mod schema {
    use utoipa::openapi::{
        ArrayBuilder, ObjectBuilder, OneOfBuilder, Type,
        schema::{AdditionalProperties, Schema, SchemaType},
    };

    use crate::{names::name_schema, registry::limits::*};

    /// Printable text: no control characters (what registry-svc's
    /// `valid_text` refuses).
    const PRINTABLE: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
    /// An HTTP check path: absolute, one leading `/`, no whitespace, `\` or
    /// control characters (what registry-svc's `valid_check_path` refuses).
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

    fn text(max: usize, min: usize) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(Some(max))
            .pattern(Some(PRINTABLE))
    }

    fn closed(object: ObjectBuilder) -> ObjectBuilder {
        object.additional_properties(Some(AdditionalProperties::FreeForm(false)))
    }

    pub(super) fn host() -> Schema {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("Host name or IP address to reach the instance at."))
            .min_length(Some(1))
            .max_length(Some(MAX_HOST_LEN))
            .examples(["10.0.0.7"])
            .into()
    }

    pub(super) fn port() -> Schema {
        integer(1, u64::from(u16::MAX)).examples([9000]).into()
    }

    pub(super) fn tags() -> Schema {
        ArrayBuilder::new()
            .schema_type(or_null(Type::Array))
            .items(text(MAX_TAG_LEN, 1))
            .max_items(Some(MAX_TAGS))
            .description(Some("Free-form tags (`v2`, `canary`)."))
            .into()
    }

    pub(super) fn metadata() -> Schema {
        ObjectBuilder::new()
            .schema_type(or_null(Type::Object))
            .description(Some("Free-form string metadata; keys are names."))
            .max_properties(Some(MAX_METADATA))
            .property_names(Some(name_schema()))
            .additional_properties(Some(text(MAX_METADATA_VALUE_LEN, 0)))
            .into()
    }

    pub(super) fn ttl_seconds() -> Schema {
        integer(1, MAX_TTL_SECONDS)
            .schema_type(or_null(Type::Integer))
            .description(Some(format!(
                "Lease length (default {DEFAULT_TTL_SECONDS}); a heartbeat renews it, and the \
                 instance is removed (event `expired`) once it runs out."
            )))
            .into()
    }

    pub(super) fn check() -> Schema {
        OneOfBuilder::new()
            .description(Some(
                "An active health check run by health-svc; without one the lease alone \
                 decides and the instance is `passing`.",
            ))
            .item(check_of("http"))
            .item(check_of("tcp"))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .into()
    }

    /// A check of one `type`: an `http` one needs a `path`, a `tcp` one has none.
    fn check_of(kind: &str) -> ObjectBuilder {
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
        let check = check
            .property(
                "interval_seconds",
                integer(1, MAX_CHECK_INTERVAL_SECONDS)
                    .schema_type(or_null(Type::Integer))
                    .description(Some(format!(
                        "Seconds between checks (default {DEFAULT_CHECK_INTERVAL_SECONDS})."
                    ))),
            )
            .property(
                "timeout_ms",
                integer(1, MAX_CHECK_TIMEOUT_MS)
                    .schema_type(or_null(Type::Integer))
                    .description(Some(format!(
                        "Timeout of one check (default {DEFAULT_CHECK_TIMEOUT_MS}); must be \
                         shorter than the interval."
                    ))),
            )
            .property(
                "deregister_critical_after_seconds",
                integer(1, MAX_DEREGISTER_AFTER_SECONDS)
                    .schema_type(or_null(Type::Integer))
                    .description(Some(
                        "Remove the instance once it has been critical this long.",
                    )),
            );
        closed(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_sends_only_what_is_set() {
        let spec = InstanceSpec::new("10.0.0.7", 9000);
        let json = serde_json::to_string(&spec).unwrap_or_default();
        assert_eq!(json, r#"{"host":"10.0.0.7","port":9000}"#);
    }

    #[test]
    fn a_spec_reads_null_members_as_absent_and_refuses_unknown_ones() {
        let spec: Result<InstanceSpec, _> = serde_json::from_str(
            r#"{"host":"h","port":1,"tags":null,"metadata":null,"ttl_seconds":null,"check":null}"#,
        );
        assert_eq!(spec.ok(), Some(InstanceSpec::new("h", 1)));
        let unknown: Result<InstanceSpec, _> =
            serde_json::from_str(r#"{"host":"h","port":1,"zone":"a"}"#);
        assert!(unknown.is_err());
    }
}
