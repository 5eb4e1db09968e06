//! The OpenAPI document: generated from the routes' descriptions and the wire types'
//! schemas, then finished by hand where the generator cannot say it (the problem schema,
//! the optional bearer token, and answers that extend a request body).

use super::{AppState, server, v1_documented};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa::PartialSchema;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;

/// The document describing every route, generated from the routes and the wire types.
pub fn openapi() -> Value {
    let mut doc = OpenApiRouter::<AppState>::new()
        .merge(v1_documented())
        .merge(server::documented())
        .into_openapi();
    doc.info.title = "Switchyard".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "A local-first event router: topics with SNS filter policies fanning out to \
         SQS-style queues, Kinesis-style streams, webhooks and WebAssembly functions. Errors \
         are RFC 9457 problems. With --token every /v1 call needs \
         `Authorization: Bearer TOKEN`."
            .into(),
    );
    doc.info.license = None;
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Problem".into(), crate::wire::Problem::schema());
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    // The token is optional: a server started without one takes calls without it (and
    // `/metrics` needs it only with `--token-metrics`).
    let optional_bearer = vec![
        SecurityRequirement::default(),
        SecurityRequirement::new("bearer", Vec::<String>::new()),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") && path != "/metrics" {
            continue;
        }
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation.security = Some(optional_bearer.clone());
        }
    }
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    merge_all_of(&mut doc);
    link_created_resources(&mut doc);
    doc
}

/// Adds OpenAPI links from each resource's `PUT` to the operations under its path: what
/// a `PUT /v1/queues/{queue}` created, `POST /v1/queues/{queue}/messages` can use. Tools
/// that follow links (schemathesis's stateful tests) then call those operations on
/// resources that exist, not only on names that answer 404.
fn link_created_resources(doc: &mut Value) {
    let Some(paths) = doc.get("paths").and_then(Value::as_object).cloned() else {
        return;
    };
    for (path, item) in &paths {
        if !path.starts_with("/v1/") || item.get("put").is_none() {
            continue;
        }
        let params: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let mut links = Map::new();
        for (other, other_item) in &paths {
            let Some(rest) = other.strip_prefix(path.as_str()) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with('/')) {
                continue;
            }
            for (method, op) in other_item.as_object().into_iter().flatten() {
                let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                    continue;
                };
                if rest.is_empty() && method == "put" {
                    continue;
                }
                let parameters: Map<String, Value> = params
                    .iter()
                    .map(|p| (p.to_string(), format!("$request.path.{p}").into()))
                    .collect();
                links.insert(
                    id.to_string(),
                    serde_json::json!({"operationId": id, "parameters": parameters}),
                );
            }
        }
        if links.is_empty() {
            continue;
        }
        for status in ["200", "201"] {
            if let Some(response) = doc["paths"][path]["put"]["responses"].get_mut(status) {
                response["links"] = Value::Object(links.clone());
            }
        }
    }
}

/// Rewrites each component schema made of `allOf` parts (what `#[serde(flatten)]`
/// generates) as one object with the parts' properties. An answer like `TopicInfo` is a
/// request body's spec plus a few members; the spec refuses members it does not name
/// (`additionalProperties: false`), so as an `allOf` part it would refuse the very
/// members the answer adds.
fn merge_all_of(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    for (name, schema) in &schemas {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array) else {
            continue;
        };
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let target = r.trim_start_matches("#/components/schemas/");
                    &schemas[target]
                }
                None => part,
            };
            if let Some(p) = part.get("properties").and_then(Value::as_object) {
                properties.extend(p.clone());
            }
            if let Some(r) = part.get("required").and_then(Value::as_array) {
                required.extend(
                    r.iter()
                        .filter(|x| !required.contains(x))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
        let mut merged = Map::new();
        merged.insert("type".into(), "object".into());
        if let Some(d) = schema.get("description") {
            merged.insert("description".into(), d.clone());
        }
        merged.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            merged.insert("required".into(), Value::Array(required));
        }
        doc["components"]["schemas"][name] = Value::Object(merged);
    }
}

/// Every error answer an operation may give: a problem with a 4xx status for what the
/// caller got wrong, and 5xx when storage cannot serve (503: retry later).
pub(super) struct Problems;

impl utoipa::IntoResponses for Problems {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
                .into()
        };
        BTreeMap::from([
            (
                "4XX".to_string(),
                problem("What the caller got wrong, named in the problem's detail."),
            ),
            (
                "5XX".to_string(),
                problem("The server cannot serve it now (503: storage unavailable, retry)."),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_put_links_to_the_operations_under_its_path() {
        let mut doc = json!({"paths": {
            "/v1/queues/{queue}": {
                "put": {"operationId": "put_queue", "responses": {"200": {}, "201": {}}},
                "get": {"operationId": "get_queue"}},
            "/v1/queues/{queue}/messages": {"post": {"operationId": "send"}},
            "/v1/queuesx": {"get": {"operationId": "other"}},
        }});
        link_created_resources(&mut doc);
        for status in ["200", "201"] {
            let links = &doc["paths"]["/v1/queues/{queue}"]["put"]["responses"][status]["links"];
            let ids: Vec<&String> = links.as_object().unwrap().keys().collect();
            assert_eq!(ids, ["get_queue", "send"]);
            assert_eq!(links["send"]["parameters"]["queue"], "$request.path.queue");
        }
    }

    #[test]
    fn all_of_parts_merge_into_one_open_object() {
        let mut doc = json!({"components": {"schemas": {
            "Spec": {"type": "object", "additionalProperties": false,
                "properties": {"fifo": {"type": "boolean"}, "endpoint": {}},
                "required": ["endpoint"]},
            "Info": {"description": "shown", "allOf": [
                {"$ref": "#/components/schemas/Spec"},
                {"type": "object", "properties": {"name": {"type": "string"}},
                    "required": ["name", "endpoint"]}]}
        }}});
        merge_all_of(&mut doc);
        let info = &doc["components"]["schemas"]["Info"];
        assert_eq!(info["description"], "shown");
        assert_eq!(info["required"], json!(["endpoint", "name"]));
        let names: Vec<&String> = info["properties"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["endpoint", "fifo", "name"]);
        assert!(info.get("additionalProperties").is_none());
        assert!(info.get("allOf").is_none());
        assert_eq!(
            doc["components"]["schemas"]["Spec"]["additionalProperties"],
            false
        );
    }
}
