//! The control plane's documents from the snapshots in `docs/openapi/`
//! (see [`super::CONTROL_PLANE`] for why snapshots).

use utoipa::openapi::OpenApi;

/// A service's document from its snapshot. The services' tests write the
/// snapshots from a real document and the gateway's tests read them back,
/// so a snapshot that does not parse cannot ship; if one did, its area
/// would be missing from the document (logged), not the gateway down.
pub(super) fn snapshot(text: &str) -> OpenApi {
    serde_json::from_str(text)
        .and_then(|mut json| {
            mark_typeless(&mut json, false);
            serde_json::from_value(json)
        })
        .unwrap_or_else(|error| {
            tracing::error!(%error, "a control-plane OpenAPI snapshot does not parse");
            OpenApi::default()
        })
}

/// utoipa writes a schema of any type (config-svc's `value`) without a
/// `type` but cannot read one back without it; `"type": null` is how its
/// `SchemaType::AnyValue` reads, and writes back as no `type` at all. So
/// give every schema in `value` that has no `type`, `$ref` or composition
/// a `"type": null` (`schema`: whether `value` itself is a schema).
fn mark_typeless(value: &mut serde_json::Value, schema: bool) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let typed = ["type", "$ref", "oneOf", "allOf", "anyOf"]
                .iter()
                .any(|key| map.contains_key(*key));
            if schema && !typed {
                map.insert("type".to_owned(), Value::Null);
            }
            for (key, child) in map.iter_mut() {
                match key.as_str() {
                    // Values, not schemas.
                    "example" | "examples" | "default" | "enum" | "const" => {}
                    "schema" | "items" | "additionalProperties" => mark_typeless(child, true),
                    "properties" | "schemas" => {
                        for member in child
                            .as_object_mut()
                            .into_iter()
                            .flat_map(|m| m.values_mut())
                        {
                            mark_typeless(member, true);
                        }
                    }
                    "oneOf" | "allOf" | "anyOf" => {
                        for member in child.as_array_mut().into_iter().flatten() {
                            mark_typeless(member, true);
                        }
                    }
                    _ => mark_typeless(child, false),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| mark_typeless(item, false)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::CONTROL_PLANE;

    /// Each snapshot parses, and nothing is lost on the way: the document
    /// the gateway merges is the one the service's tests wrote.
    #[test]
    fn every_snapshot_parses_without_losing_a_member() {
        let texts = [
            include_str!("../../../docs/openapi/registry-svc.json"),
            include_str!("../../../docs/openapi/config-svc.json"),
            include_str!("../../../docs/openapi/health-svc.json"),
        ];
        assert_eq!(texts.len(), CONTROL_PLANE.len());
        for (text, (area, build)) in texts.iter().zip(CONTROL_PLANE) {
            let stored: serde_json::Value = serde_json::from_str(text).unwrap();
            let parsed = serde_json::to_value(build()).unwrap();
            assert_eq!(parsed, stored, "{area}");
            assert!(!build().paths.paths.is_empty(), "{area}");
        }
    }
}
