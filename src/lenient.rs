//! Decoding watched objects that may not fit their type, at the cost of one pass.
//!
//! kube's `DeserializeGuard<K>` keeps the watch alive when an object does not deserialize as
//! `K` (a CRD installed without validation, `action: MAYBE`): the object becomes an
//! `InvalidObject` with its metadata. But its decoder buffers every object into a generic value
//! tree, deep-clones that tree and decodes the clone (its source says "FIXME: can we avoid
//! cloning the whole object?"): at 10,000 decisions that was a large share of the operator's
//! CPU (BENCHMARKS.md). [`Lenient`] decodes the same way without the clone — one
//! `serde_json::Value`, read by reference — and then hands the watch a plain `DeserializeGuard`,
//! so the store and the reconciler keep using kube's type.

use kube::core::error_boundary::InvalidObject;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::watcher;
use kube::{Resource, core::ObjectMeta};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;

/// A watched object as `DeserializeGuard<K>`, decoded without the clone.
#[derive(Clone, Debug)]
pub struct Lenient<K>(pub DeserializeGuard<K>);

impl<'de, K> Deserialize<'de> for Lenient<K>
where
    K: DeserializeOwned + Resource,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The value tree is needed only when `K` refuses the object: then its metadata is
        // still read from the same tree.
        let value = serde_json::Value::deserialize(deserializer)?;
        let guarded = match K::deserialize(&value) {
            Ok(object) => Ok(object),
            Err(error) => {
                let PartialObjectMeta { metadata, .. } =
                    PartialObjectMeta::<K>::deserialize(&value)
                        .map_err(serde::de::Error::custom)?;
                // Decoded once more, tracking where, only for an object that does not fit, so
                // that the message names the bad field (`spec.action: unknown variant ...`).
                let located = serde_path_to_error::deserialize::<_, K>(&value)
                    .err()
                    .map(|located| located.to_string());
                Err(InvalidObject {
                    error: located.unwrap_or_else(|| error.to_string()),
                    metadata,
                })
            }
        };
        Ok(Lenient(DeserializeGuard(guarded)))
    }
}

/// The API location is `K`'s; the metadata is the guard's (the object's, or an invalid one's).
impl<K: Resource> Resource for Lenient<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

/// The same watch event with the object unwrapped into kube's `DeserializeGuard`.
pub fn into_guarded<K>(event: watcher::Event<Lenient<K>>) -> watcher::Event<DeserializeGuard<K>> {
    match event {
        watcher::Event::Apply(Lenient(object)) => watcher::Event::Apply(object),
        watcher::Event::Delete(Lenient(object)) => watcher::Event::Delete(object),
        watcher::Event::InitApply(Lenient(object)) => watcher::Event::InitApply(object),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SelfUpgradeDecision;
    use kube::ResourceExt;
    use serde_json::json;

    fn decode(object: serde_json::Value) -> DeserializeGuard<SelfUpgradeDecision> {
        let text = object.to_string();
        serde_json::from_str::<Lenient<SelfUpgradeDecision>>(&text)
            .expect("decodes")
            .0
    }

    fn decision(action: &str) -> serde_json::Value {
        json!({
            "apiVersion": "quicksight.selfupgrade.io/v1alpha1",
            "kind": "SelfUpgradeDecision",
            "metadata": {"name": "approve-alice", "namespace": "team-a", "uid": "u-1"},
            "spec": {
                "awsAccountId": "123456789012",
                "quicksightNamespace": "default",
                "upgradeRequestId": "r-1",
                "action": action
            }
        })
    }

    #[test]
    fn an_object_that_fits_decodes_as_kube_would() {
        let text = decision("APPROVE").to_string();
        let ours = decode(decision("APPROVE"));
        let kubes: DeserializeGuard<SelfUpgradeDecision> =
            serde_json::from_str(&text).expect("kube decodes");
        let spec = |guard: &DeserializeGuard<SelfUpgradeDecision>| {
            guard.0.as_ref().ok().map(|d| d.spec.clone())
        };
        assert!(spec(&ours).is_some());
        assert_eq!(spec(&ours), spec(&kubes));
        assert_eq!(ours.name_any(), "approve-alice");
    }

    #[test]
    fn an_object_that_does_not_fit_keeps_its_metadata_and_the_reason() {
        let guarded = decode(decision("MAYBE"));
        let invalid = guarded.0.expect_err("MAYBE is no action");
        assert_eq!(invalid.metadata.name.as_deref(), Some("approve-alice"));
        assert_eq!(invalid.metadata.uid.as_deref(), Some("u-1"));
        assert!(
            invalid
                .error
                .starts_with("spec.action: unknown variant `MAYBE`"),
            "{}",
            invalid.error
        );
    }

    #[test]
    fn inside_a_list_whose_decoder_buffers_the_items() {
        // kube's ObjectList flattens its TypeMeta, so serde buffers the items before they reach
        // this decoder: it must not depend on reading straight from the JSON text.
        let list = json!({
            "apiVersion": "quicksight.selfupgrade.io/v1alpha1",
            "kind": "SelfUpgradeDecisionList",
            "metadata": {"resourceVersion": "7"},
            "items": [decision("APPROVE"), decision("MAYBE")]
        });
        let decoded: kube::core::ObjectList<Lenient<SelfUpgradeDecision>> =
            serde_json::from_str(&list.to_string()).expect("the list decodes");
        let valid: Vec<bool> = decoded.items.iter().map(|item| item.0.0.is_ok()).collect();
        assert_eq!(valid, [true, false]);
    }

    #[test]
    fn the_watch_event_keeps_its_kind() {
        let object = decode(decision("DENY"));
        let applied = into_guarded(watcher::Event::Apply(Lenient(object.clone())));
        assert!(matches!(
            applied,
            watcher::Event::Apply(DeserializeGuard(Ok(_)))
        ));
        let deleted = into_guarded(watcher::Event::Delete(Lenient(object)));
        assert!(matches!(deleted, watcher::Event::Delete(_)));
        assert!(matches!(
            into_guarded::<SelfUpgradeDecision>(watcher::Event::InitDone),
            watcher::Event::InitDone
        ));
    }
}
