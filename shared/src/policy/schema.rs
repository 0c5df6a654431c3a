//! The forms of [`SCHEMA`]: one kind of key's schema (config-svc validates
//! with it), and the OpenAPI components the gateway's document carries.

use super::SCHEMA;

/// The schema of one kind of key: [`SCHEMA`] with its root pointing at `definition`.
pub fn schema_of(definition: &str) -> serde_json::Value {
    let mut schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.remove("anyOf");
        object.insert(
            "$ref".to_owned(),
            serde_json::Value::String(format!("#/$defs/{definition}")),
        );
    }
    schema
}

/// The schema's `$defs` as OpenAPI components (name → schema JSON), their
/// `$ref`s pointing at `#/components/schemas/…`, with the names prefixed
/// `Gateway` (`GatewayServicePolicy`, `GatewayRoute`, …).
pub fn openapi_schemas() -> Vec<(String, serde_json::Value)> {
    let text = SCHEMA.replace("\"#/$defs/", "\"#/components/schemas/Gateway");
    let Ok(schema) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    schema
        .get("$defs")
        .and_then(|d| d.as_object())
        .map(|defs| {
            defs.iter()
                .map(|(name, schema)| {
                    let mut schema = schema.clone();
                    openapi_subset(&mut schema, defs);
                    (format!("Gateway{name}"), schema)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Drop what an OpenAPI schema object cannot hold (`if`/`then`, and
/// `oneOf`/`anyOf` lists that only require members; the descriptions say
/// it in words, and config-svc enforces the full schema), and inline the
/// definitions `propertyNames` refers to (it takes no `$ref` there).
fn openapi_subset(
    schema: &mut serde_json::Value,
    defs: &serde_json::Map<String, serde_json::Value>,
) {
    match schema {
        serde_json::Value::Object(object) => {
            object.remove("if");
            object.remove("then");
            let inlined = object
                .get("propertyNames")
                .and_then(|p| p.get("$ref"))
                .and_then(|r| r.as_str())
                .and_then(|r| r.strip_prefix("#/components/schemas/Gateway"))
                .and_then(|name| defs.get(name))
                .cloned();
            if let Some(definition) = inlined {
                object.insert("propertyNames".to_owned(), definition);
            }
            for list in ["oneOf", "anyOf"] {
                let only_required = object
                    .get(list)
                    .and_then(|l| l.as_array())
                    .is_some_and(|l| {
                        l.iter().all(|item| {
                            item.as_object()
                                .is_some_and(|o| o.keys().all(|k| k == "required"))
                        })
                    });
                if only_required {
                    object.remove(list);
                }
            }
            for value in object.values_mut() {
                openapi_subset(value, defs);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                openapi_subset(item, defs);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_schema_and_its_openapi_form_parse() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        assert!(schema["$defs"]["ServicePolicy"].is_object());
        assert_eq!(schema_of("Route")["$ref"], "#/$defs/Route");
        let components = openapi_schemas();
        assert!(components.iter().any(|(n, _)| n == "GatewayServicePolicy"));
        assert!(
            components
                .iter()
                .all(|(_, s)| !s.to_string().contains("$defs"))
        );
    }
}
