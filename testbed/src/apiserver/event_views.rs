//! Core `v1` Events and `events.k8s.io/v1` Events are one resource in two shapes on a real API
//! server: controllers (this operator included) write `events.k8s.io` Events, and
//! `kubectl describe` reads core ones. The store keeps each Event in both shapes under one
//! resourceVersion, converted field by field as Kubernetes' own conversion does
//! (`pkg/apis/events/v1`: `regarding`↔`involvedObject`, `note`↔`message`, …).

use super::registry::Registry;
use serde_json::{Map, Value, json};

/// Fields whose names differ: (`events.k8s.io/v1`, core `v1`). The rest (`reason`, `type`,
/// `action`, `related`, `eventTime`, `series`, `reportingInstance`, `metadata`) are the same.
const RENAMED: [(&str, &str); 7] = [
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// The shape an Event is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventShape {
    Core,
    EventsV1,
}

impl EventShape {
    /// The shape of the resource `group`/`plural`, if it is an Event at all.
    pub fn of(group: &str, plural: &str) -> Option<Self> {
        match (group, plural) {
            ("", "events") => Some(Self::Core),
            ("events.k8s.io", "events") => Some(Self::EventsV1),
            _ => None,
        }
    }
}

/// Which Event shape the type `type_id` is, if it is an Event at all.
pub fn shape_of(registry: &Registry, type_id: usize) -> Option<EventShape> {
    let resource = registry.types.get(type_id)?;
    EventShape::of(&resource.group, &resource.plural)
}

/// The registry index of the other shape's type.
pub fn other_type(registry: &Registry, shape: EventShape) -> Option<usize> {
    let group = match shape {
        EventShape::Core => "events.k8s.io",
        EventShape::EventsV1 => "",
    };
    registry
        .types
        .iter()
        .position(|t| t.group == group && t.plural == "events")
}

/// `event`, written in `shape`, in the other shape.
pub fn convert(event: &Value, shape: EventShape) -> Value {
    let (api_version, rename): (&str, fn(&str) -> Option<&'static str>) = match shape {
        EventShape::Core => ("events.k8s.io/v1", |field| {
            RENAMED
                .iter()
                .find(|(_, core)| *core == field)
                .map(|(v1, _)| *v1)
        }),
        EventShape::EventsV1 => ("v1", |field| {
            RENAMED
                .iter()
                .find(|(v1, _)| *v1 == field)
                .map(|(_, core)| *core)
        }),
    };
    let mut converted = Map::new();
    if let Some(fields) = event.as_object() {
        for (field, value) in fields {
            let name = rename(field).unwrap_or(field);
            converted.insert(name.to_string(), value.clone());
        }
    }
    converted.insert("apiVersion".into(), json!(api_version));
    converted.insert("kind".into(), json!("Event"));
    Value::Object(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_v1_event_reads_as_a_core_event_and_back() {
        let written = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "approve.1", "namespace": "default"},
            "regarding": {"kind": "SelfUpgradeDecision", "name": "approve", "uid": "u-1"},
            "note": "QuickSight applied APPROVE",
            "reason": "Applied", "type": "Normal", "action": "Reconcile",
            "reportingController": "selfupgrade-operator", "reportingInstance": "pod-a",
            "eventTime": "2026-11-26T14:00:00.000000Z",
        });
        let core = convert(&written, EventShape::EventsV1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["uid"], "u-1");
        assert_eq!(core["message"], "QuickSight applied APPROVE");
        assert_eq!(core["reportingComponent"], "selfupgrade-operator");
        assert_eq!(core["reason"], "Applied");
        assert!(core.get("regarding").is_none() && core.get("note").is_none());
        assert_eq!(convert(&core, EventShape::Core), written);
    }

    #[test]
    fn only_the_two_event_types_have_shapes() {
        let registry = Registry::with_builtins();
        let core = registry
            .types
            .iter()
            .position(|t| t.group.is_empty() && t.plural == "events")
            .expect("core events");
        let v1 = other_type(&registry, EventShape::Core).expect("events.k8s.io");
        assert_eq!(shape_of(&registry, core), Some(EventShape::Core));
        assert_eq!(shape_of(&registry, v1), Some(EventShape::EventsV1));
        assert_eq!(other_type(&registry, EventShape::EventsV1), Some(core));
        let leases = registry
            .types
            .iter()
            .position(|t| t.plural == "leases")
            .expect("leases");
        assert_eq!(shape_of(&registry, leases), None);
    }
}
