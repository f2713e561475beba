//! The pause switch: `quicksight.selfupgrade.io/paused: "true"` on a decision, or on the
//! `QuickSightAccount` that binds its account, stops its QuickSight calls until it goes. An
//! annotation, not a spec field, so that it changes no generation, is kept out of Git's
//! decision files where a team prefers, and works the same on bindings (which are not the
//! tenant's). Pure.

use std::collections::BTreeMap;

pub const PAUSED_ANNOTATION: &str = "quicksight.selfupgrade.io/paused";

/// Whether `annotations` pause their object (only the value `"true"` does: a typo pauses
/// nothing rather than everything).
pub fn is_paused(annotations: &BTreeMap<String, String>) -> bool {
    annotations
        .get(PAUSED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_true_pauses() {
        let with =
            |value: &str| BTreeMap::from([(PAUSED_ANNOTATION.to_string(), value.to_string())]);
        assert!(is_paused(&with("true")));
        for other in ["false", "True", "yes", ""] {
            assert!(!is_paused(&with(other)), "{other:?}");
        }
        assert!(!is_paused(&BTreeMap::new()));
    }
}
