//! Server-side printing: `meta.k8s.io/v1` `Table`s built from a CRD's
//! `additionalPrinterColumns`, which is how `kubectl get` shows custom columns, and Events'
//! built-in columns (LAST SEEN, TYPE, REASON, OBJECT, MESSAGE).

use super::event_views::{self, EventShape};
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
    let (columns, cells) = match EventShape::of(&resource.group, &resource.plural) {
        Some(shape) => (
            event_columns(),
            objects.iter().map(|o| event_cells(o, shape, now)).collect(),
        ),
        None => custom_columns(resource, objects, now),
    };
    let rows: Vec<Value> = objects
        .iter()
        .zip(cells)
        .map(|(object, cells)| {
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

/// The Name column, then the CRD's printer columns (or Age).
fn custom_columns(
    resource: &ResourceType,
    objects: &[&Value],
    now: Timestamp,
) -> (Vec<Value>, Vec<Vec<Value>>) {
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
    let cells = objects
        .iter()
        .map(|object| {
            let mut cells = vec![object["metadata"]["name"].clone()];
            for (_, type_, path) in &custom {
                cells.push(cell(object, type_, path, now));
            }
            cells
        })
        .collect();
    (columns, cells)
}

/// The columns the real API server prints Events with (the wide-only ones reduced to Name).
fn event_columns() -> Vec<Value> {
    let column = |name: &str, priority: u8, description: &str| {
        json!({"name": name, "type": "string", "format": if name == "Name" { "name" } else { "" },
               "priority": priority, "description": description})
    };
    vec![
        column("Last Seen", 0, "When the event was last seen"),
        column("Type", 0, "Type of this event (Normal, Warning)"),
        column("Reason", 0, "Why the action was taken"),
        column("Object", 0, "The object this event is about"),
        column(
            "Message",
            0,
            "A human-readable description of the status of this operation",
        ),
        column("Name", 1, "Name must be unique within a namespace."),
    ]
}

/// An Event's row, read in its core shape whichever API it was asked through.
fn event_cells(object: &Value, shape: EventShape, now: Timestamp) -> Vec<Value> {
    let core = match shape {
        EventShape::Core => object.clone(),
        EventShape::EventsV1 => event_views::convert(object, shape),
    };
    let last_seen = [
        &core["series"]["lastObservedTime"],
        &core["lastTimestamp"],
        &core["eventTime"],
        &core["metadata"]["creationTimestamp"],
    ]
    .into_iter()
    .find_map(|time| time.as_str()?.parse::<Timestamp>().ok())
    .map(|then| human_age(now, then))
    .unwrap_or_else(|| "<unknown>".to_string());
    let regarding = &core["involvedObject"];
    let kind = regarding["kind"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    let name = regarding["name"].as_str().unwrap_or_default();
    vec![
        json!(last_seen),
        core["type"].clone(),
        core["reason"].clone(),
        json!(format!("{kind}/{name}")),
        core["message"].clone(),
        core["metadata"]["name"].clone(),
    ]
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
    use crate::apiserver::registry::PrinterColumn;

    #[test]
    fn printer_columns_are_evaluated_with_jsonpath_filters() {
        let mut resource = crate::apiserver::registry::Registry::with_builtins().types[0].clone();
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
    fn events_print_like_kubectl_shows_them_through_either_api() {
        let registry = crate::apiserver::registry::Registry::with_builtins();
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "verify-carol.1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "regarding": {"kind": "SelfUpgradeDecision", "name": "verify-carol"},
            "note": "QuickSight could not complete VERIFY", "reason": "VerifyFailed",
            "type": "Warning", "eventTime": "2026-01-01T00:01:00.000000Z",
        });
        let core = event_views::convert(&event, EventShape::EventsV1);
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().expect("time");
        let expected = json!([
            "4m",
            "Warning",
            "VerifyFailed",
            "selfupgradedecision/verify-carol",
            "QuickSight could not complete VERIFY",
            "verify-carol.1"
        ]);
        for (object, group) in [(&event, "events.k8s.io"), (&core, "")] {
            let resource = registry
                .types
                .iter()
                .find(|t| t.group == group && t.plural == "events")
                .expect("events");
            let table = table(resource, &[object], "7", "Metadata", now);
            assert_eq!(table["rows"][0]["cells"], expected, "{group}");
            assert_eq!(table["columnDefinitions"][0]["name"], "Last Seen");
        }
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
