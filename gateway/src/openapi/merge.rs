//! Merging a service's document into the gateway's: its `/v1/…` operations
//! re-rooted under `/api/v1/{area}/…` with area-prefixed ids and tags, and
//! schemas whose names clash with another service's renamed.

use std::collections::{BTreeMap, BTreeSet};

use mcp_shared::openapi as docs;

use utoipa::openapi::{
    OpenApi, RefOr,
    path::{Operation, PathItem},
    schema::Schema,
    tag::TagBuilder,
};

use super::PROBES_TAG;

/// `area`'s operations (`/v1/…` paths of `service`) re-rooted under
/// `/api/v1/{area}/…`, with area-prefixed operation ids and tags, merged
/// into `document`; the service's own probes and document are dropped.
/// A schema whose name another service already gave a different
/// definition (each service's `WatchEvent`) is renamed `{Area}{Name}`.
pub(super) fn merge_area(document: &mut OpenApi, area: &str, service: OpenApi) {
    let mut service = rename_clashing_schemas(document, area, service);
    if let Some(components) = &mut service.components {
        components.security_schemes.remove(docs::INTERNAL_SCHEME);
    }
    let paths = std::mem::take(&mut service.paths.paths);
    for (path, mut item) in paths {
        let Some(rest) = path.strip_prefix("/v1/") else {
            continue; // /healthz, /readyz, /metrics, /openapi.json
        };
        for (_, operation) in operations_mut(&mut item) {
            if let Some(id) = &mut operation.operation_id {
                *id = prefixed(area, id);
            }
            // The internal credential is the gateway's business: a client
            // needs the bearer token ([`gate`]) and gets the gateway's 401.
            operation.security = None;
            operation.responses.responses.remove("401");
            for tag in operation.tags.iter_mut().flatten() {
                *tag = area_tag(area, tag);
            }
        }
        document
            .paths
            .paths
            .insert(format!("/api/v1/{area}/{rest}"), item);
    }
    let tags = service.tags.get_or_insert_with(Vec::new);
    // The probes' tag went with the probes (the gateway has its own).
    tags.retain(|tag| tag.name != PROBES_TAG);
    for tag in tags.iter_mut() {
        tag.name = area_tag(area, &tag.name);
    }
    // Listed tags come first on the docs page: list the area's own too.
    let used: BTreeSet<String> = document
        .paths
        .paths
        .iter()
        .filter(|(path, _)| path.starts_with(&format!("/api/v1/{area}/")))
        .flat_map(|(_, item)| [&item.get, &item.put, &item.post, &item.delete, &item.patch])
        .flatten()
        .flat_map(|operation| operation.tags.iter().flatten().cloned())
        .collect();
    for name in used {
        if !tags.iter().any(|tag| tag.name == name) {
            tags.push(
                TagBuilder::new()
                    .name(name)
                    .description(Some(format!(
                        "The {area} API, served by {area}-svc behind the gateway."
                    )))
                    .build(),
            );
        }
    }
    document.merge(service);
}

/// The tag of a service's operation in the merged document: the area
/// itself (`registry`), or `config/entries` for a service's finer tags.
fn area_tag(area: &str, tag: &str) -> String {
    if tag == area {
        tag.to_owned()
    } else {
        format!("{area}/{tag}")
    }
}

/// `service` with each schema that `document` already holds under the
/// same name but a different definition renamed to `{Area}{Name}`, and its
/// `$ref`s (in operations and in other schemas) with it.
fn rename_clashing_schemas(document: &OpenApi, area: &str, mut service: OpenApi) -> OpenApi {
    let (Some(ours), Some(theirs)) = (&document.components, &mut service.components) else {
        return service;
    };
    let clashes: Vec<String> = theirs
        .schemas
        .iter()
        .filter(|(name, schema)| {
            // Compared as JSON: the same definition read from a snapshot
            // may list its properties in another order.
            ours.schemas
                .get(*name)
                .is_some_and(|o| serde_json::to_value(o).ok() != serde_json::to_value(schema).ok())
        })
        .map(|(name, _)| name.clone())
        .collect();
    if clashes.is_empty() {
        return service;
    }
    let mut renames = BTreeMap::new();
    for name in clashes {
        let renamed = format!("{}{name}", capitalized(area));
        renames.insert(format!("{SCHEMAS}{name}"), format!("{SCHEMAS}{renamed}"));
        if let Some(schema) = theirs.schemas.remove(&name) {
            theirs.schemas.insert(renamed, schema);
        }
    }
    for schema in theirs.schemas.values_mut() {
        retarget(schema, &renames);
    }
    for item in service.paths.paths.values_mut() {
        for (_, operation) in operations_mut(item) {
            let bodies = operation.request_body.iter_mut().flat_map(|b| match b {
                RefOr::T(body) => body.content.values_mut().collect(),
                RefOr::Ref(_) => Vec::new(),
            });
            let answers = operation
                .responses
                .responses
                .values_mut()
                .flat_map(|r| match r {
                    RefOr::T(response) => response.content.values_mut().collect(),
                    RefOr::Ref(_) => Vec::new(),
                });
            for content in bodies.chain(answers) {
                if let RefOr::T(content) = content
                    && let Some(schema) = &mut content.schema
                {
                    retarget(schema, &renames);
                }
            }
            for parameter in operation.parameters.iter_mut().flatten() {
                if let RefOr::T(parameter) = parameter
                    && let Some(schema) = &mut parameter.schema
                {
                    retarget(schema, &renames);
                }
            }
        }
    }
    service
}

/// Where schema references point.
const SCHEMAS: &str = "#/components/schemas/";

/// Point `schema`'s references (itself or nested) as `renames` says. A
/// nested one is rewritten through JSON; a schema that does not refer to a
/// renamed one is left as it is.
fn retarget(schema: &mut RefOr<Schema>, renames: &BTreeMap<String, String>) {
    match schema {
        RefOr::Ref(reference) => {
            if let Some(to) = renames.get(&reference.ref_location) {
                reference.ref_location.clone_from(to);
            }
        }
        RefOr::T(_) => {
            let Ok(mut json) = serde_json::to_value(&*schema) else {
                return;
            };
            if rename_refs(&mut json, renames)
                && let Ok(renamed) = serde_json::from_value(json)
            {
                *schema = renamed;
            }
        }
    }
}

/// Replace every `"$ref"` in `value` that `renames` names; whether any was.
fn rename_refs(value: &mut serde_json::Value, renames: &BTreeMap<String, String>) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut renamed = false;
            for (key, child) in map.iter_mut() {
                let to = (key == "$ref")
                    .then(|| child.as_str().and_then(|from| renames.get(from)))
                    .flatten();
                if let Some(to) = to {
                    *child = to.as_str().into();
                    renamed = true;
                } else {
                    renamed |= rename_refs(child, renames);
                }
            }
            renamed
        }
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |renamed, child| {
            rename_refs(child, renames) | renamed
        }),
        _ => false,
    }
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => format!("{}{}", first.to_ascii_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// `registry` + `listServices` → `registryListServices`.
fn prefixed(area: &str, id: &str) -> String {
    format!("{area}{}", capitalized(id))
}

/// Every operation of `item` with its method.
pub(super) fn operations_mut(
    item: &mut PathItem,
) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("GET", &mut item.get),
        ("PUT", &mut item.put),
        ("POST", &mut item.post),
        ("DELETE", &mut item.delete),
        ("OPTIONS", &mut item.options),
        ("HEAD", &mut item.head),
        ("PATCH", &mut item.patch),
        ("TRACE", &mut item.trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.as_mut().map(|o| (method, o)))
}
