//! Server-side printing: `meta.k8s.io/v1` `Table`s built from a CRD's
//! `additionalPrinterColumns`, which is how `kubectl get` shows custom columns.

use super::registry::ResourceType;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

/// Whether the client asked for a Table (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .next()
            .is_some_and(|first| first.contains("as=Table"))
    })
}

/// A Table of `objects`; rows carry the object (`includeObject=Object`) or its metadata.
pub fn table(
    resource: &ResourceType,
    objects: &[&Value],
    resource_version: &str,
    include_object: &str,
    now: Timestamp,
) -> Value {
    let mut columns = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace.",
    })];
    let custom: Vec<(String, String, String)> = if resource.printer_columns.is_empty() {
        vec![(
            "Age".into(),
            "date".into(),
            ".metadata.creationTimestamp".into(),
        )]
    } else {
        resource
            .printer_columns
            .iter()
            .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
            .collect()
    };
    for (index, (name, type_, _)) in custom.iter().enumerate() {
        let description = resource
            .printer_columns
            .get(index)
            .map(|c| c.description.clone())
            .unwrap_or_default();
        let priority = resource
            .printer_columns
            .get(index)
            .map(|c| c.priority)
            .unwrap_or(0);
        let shown_type = if type_ == "date" {
            "string"
        } else {
            type_.as_str()
        };
        columns.push(json!({"name": name, "type": shown_type, "format": "", "description": description, "priority": priority}));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut cells = vec![object["metadata"]["name"].clone()];
            for (_, type_, path) in &custom {
                cells.push(cell(object, type_, path, now));
            }
            let row_object = if include_object == "Object" {
                (*object).clone()
            } else {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"]})
            };
            json!({"cells": cells, "object": row_object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn cell(object: &Value, type_: &str, json_path: &str, now: Timestamp) -> Value {
    let query = format!("${json_path}");
    let found = serde_json_path::JsonPath::parse(&query)
        .ok()
        .and_then(|path| path.query(object).all().first().map(|v| (*v).clone()));
    match (type_, found) {
        ("date", Some(Value::String(time))) => match time.parse::<Timestamp>() {
            Ok(then) => Value::String(human_age(now, then)),
            Err(_) => Value::String(time),
        },
        (_, Some(value)) => value,
        (_, None) => Value::Null,
    }
}

/// `kubectl`'s age format: 45s, 12m, 5h, 3d, 2y.
pub fn human_age(now: Timestamp, then: Timestamp) -> String {
    let seconds = now.as_second().saturating_sub(then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 2 * 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::apiserver::registry::PrinterColumn;

    #[test]
    fn printer_columns_are_evaluated_with_jsonpath_filters() {
        let mut resource =
            crate::sim::apiserver::registry::Registry::with_builtins().types[0].clone();
        resource.printer_columns = vec![
            PrinterColumn {
                name: "Ready".into(),
                type_: "string".into(),
                json_path: ".status.conditions[?(@.type==\"Ready\")].status".into(),
                description: String::new(),
                priority: 0,
            },
            PrinterColumn {
                name: "Age".into(),
                type_: "date".into(),
                json_path: ".metadata.creationTimestamp".into(),
                description: String::new(),
                priority: 0,
            },
        ];
        let object = json!({
            "metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [{"type": "Stalled", "status": "False"}, {"type": "Ready", "status": "True"}]}
        });
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().expect("time");
        let table = table(&resource, &[&object], "7", "Metadata", now);
        assert_eq!(table["rows"][0]["cells"], json!(["x", "True", "5m"]));
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn table_requests_are_recognised_from_the_accept_header() {
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json, */*")));
        assert!(!wants_table(None));
    }
}
