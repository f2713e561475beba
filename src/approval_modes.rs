//! The approval mode of the QuickSight namespaces bindings declare one for: what was found
//! (shared with the binding statuses and the decisions), and the pure rules for what a reading
//! means — in sync, drifted, unreadable — and whether to set the mode back. The reading itself
//! is [`crate::approval_watch`]'s.

use crate::api::{
    ApprovalMode, ApprovalModeStatus, DEFAULT_QUICKSIGHT_NAMESPACE, Enforcement, QuickSightAccount,
    SelfUpgradeSettings,
};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

/// What one reading of a namespace's mode calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The namespace has the declared mode.
    InSync,
    /// It has another; nothing is done about it (`Observe`, or a restore waiting out its backoff).
    Drift { observed: ApprovalMode },
    /// It has another and the declared one is to be set back now (`Enforce`).
    Restore { observed: ApprovalMode },
    /// The mode could not be read (the QuickSight error).
    Unreadable(String),
}

/// Judges one reading against the declared settings; `restore_due` is false while an earlier
/// refused restore waits out its backoff, so that a refusal is retried, never looped on.
pub fn judge(
    settings: &SelfUpgradeSettings,
    observed: &Result<ApprovalMode, String>,
    restore_due: bool,
) -> Judgement {
    match observed {
        Err(error) => Judgement::Unreadable(error.clone()),
        Ok(mode) if *mode == settings.mode => Judgement::InSync,
        Ok(mode) => match settings.enforcement {
            Enforcement::Enforce if restore_due => Judgement::Restore { observed: *mode },
            _ => Judgement::Drift { observed: *mode },
        },
    }
}

/// The QuickSight namespaces whose mode `binding` declares: its `quicksightNamespaces`, or
/// QuickSight's `default` when it admits all of them (their names cannot be listed with the
/// self-upgrade permissions).
pub fn watched_namespaces(binding: &QuickSightAccount) -> Vec<String> {
    match &binding.spec.quicksight_namespaces {
        Some(namespaces) if !namespaces.is_empty() => namespaces.clone(),
        _ => vec![DEFAULT_QUICKSIGHT_NAMESPACE.to_string()],
    }
}

/// Why a binding with `spec.selfUpgrade` is not Ready on account of its modes, as a condition
/// reason and message; `None` when every namespace has been read and has the declared mode.
pub fn not_ready_because(
    settings: &SelfUpgradeSettings,
    modes: &[ApprovalModeStatus],
) -> Option<(&'static str, String)> {
    let drifted: Vec<String> = modes
        .iter()
        .filter_map(|m| {
            let observed = m.observed_mode.filter(|mode| *mode != settings.mode)?;
            let mut text = format!(
                "QuickSight namespace {} is {observed}, this binding declares {}",
                m.quicksight_namespace, settings.mode
            );
            if observed == ApprovalMode::AutoApproval {
                text.push_str(
                    " (QuickSight approves every request itself; decisions are not needed)",
                );
            }
            if let Some(error) = &m.error {
                text.push_str(&format!("; setting it back failed: {error}"));
            }
            Some(text)
        })
        .collect();
    if !drifted.is_empty() {
        return Some(("ApprovalModeDrift", drifted.join("; ")));
    }
    let unreadable: Vec<String> = modes
        .iter()
        .filter(|m| m.observed_mode.is_none())
        .map(|m| {
            let why = m.error.as_deref().unwrap_or("not read yet");
            format!("QuickSight namespace {}: {why}", m.quicksight_namespace)
        })
        .collect();
    (!unreadable.is_empty()).then(|| {
        let message = format!(
            "the approval mode cannot be read: {}",
            unreadable.join("; ")
        );
        ("ApprovalModeUnknown", message)
    })
}

/// What the approval-mode watch found, shared with the binding statuses (per binding) and the
/// decisions (per account and QuickSight namespace).
#[derive(Default)]
pub struct ApprovalModes {
    /// By binding name: one status per watched QuickSight namespace.
    by_binding: Mutex<HashMap<String, Vec<ApprovalModeStatus>>>,
    /// By (account, QuickSight namespace): the mode last read.
    observed: Mutex<HashMap<(String, String), ApprovalMode>>,
    /// Bumped when a binding's statuses change (the binding statuses are written then) ...
    statuses_changed: watch::Sender<u64>,
    /// ... and when an observed mode changes (the decisions of that namespace show it).
    modes_changed: watch::Sender<u64>,
}

impl ApprovalModes {
    /// The statuses found for `binding`, empty when it declares no mode.
    pub fn of_binding(&self, binding: &str) -> Vec<ApprovalModeStatus> {
        lock(&self.by_binding)
            .get(binding)
            .cloned()
            .unwrap_or_default()
    }

    /// The mode last read for an account's QuickSight namespace, if a binding observes it.
    pub fn observed(&self, account: &str, quicksight_namespace: &str) -> Option<ApprovalMode> {
        let key = (account.to_string(), quicksight_namespace.to_string());
        lock(&self.observed).get(&key).copied()
    }

    /// Records what was found of `binding` (account `account`), replacing what was known;
    /// announces the changes.
    pub fn record(&self, binding: &str, account: &str, statuses: Vec<ApprovalModeStatus>) {
        let mut modes_changed = false;
        {
            let mut observed = lock(&self.observed);
            for status in &statuses {
                let key = (account.to_string(), status.quicksight_namespace.clone());
                let before = match status.observed_mode {
                    Some(mode) => observed.insert(key, mode),
                    None => observed.remove(&key),
                };
                modes_changed |= before != status.observed_mode;
            }
        }
        let changed =
            lock(&self.by_binding).insert(binding.to_string(), statuses.clone()) != Some(statuses);
        if changed {
            self.statuses_changed.send_modify(|n| *n += 1);
        }
        if modes_changed {
            self.modes_changed.send_modify(|n| *n += 1);
        }
    }

    /// Forgets bindings no longer declaring a mode (deleted, or `spec.selfUpgrade` removed) and
    /// the modes only they observed.
    pub fn retain(&self, bindings: &[(String, String)]) {
        let keep: HashMap<&str, &str> = bindings
            .iter()
            .map(|(b, a)| (b.as_str(), a.as_str()))
            .collect();
        let mut by_binding = lock(&self.by_binding);
        let before = by_binding.len();
        by_binding.retain(|name, _| keep.contains_key(name.as_str()));
        let watched: Vec<(String, String)> = by_binding
            .iter()
            .flat_map(|(name, statuses)| {
                let account = keep.get(name.as_str()).copied().unwrap_or_default();
                statuses
                    .iter()
                    .map(move |s| (account.to_string(), s.quicksight_namespace.clone()))
            })
            .collect();
        let removed = by_binding.len() != before;
        drop(by_binding);
        let mut observed = lock(&self.observed);
        let count = observed.len();
        observed.retain(|key, _| watched.contains(key));
        if observed.len() != count {
            self.modes_changed.send_modify(|n| *n += 1);
        }
        if removed {
            self.statuses_changed.send_modify(|n| *n += 1);
        }
    }

    /// Fires when a binding's statuses change.
    pub fn statuses_changed(&self) -> watch::Receiver<u64> {
        self.statuses_changed.subscribe()
    }

    /// Fires when an observed mode changes.
    pub fn modes_changed(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        crate::bindings::changes_of(self.modes_changed.subscribe())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApprovalMode::{AdminApproval as Admin, AutoApproval as Auto};

    fn settings(mode: ApprovalMode, enforcement: Enforcement) -> SelfUpgradeSettings {
        SelfUpgradeSettings { mode, enforcement }
    }

    #[test]
    fn a_reading_is_judged_against_the_declared_mode() {
        use Enforcement::{Enforce, Observe};
        let cases = [
            // (declared, enforcement, read, restore due, judgement)
            (Admin, Observe, Ok(Admin), true, Judgement::InSync),
            (
                Admin,
                Observe,
                Ok(Auto),
                true,
                Judgement::Drift { observed: Auto },
            ),
            (
                Admin,
                Enforce,
                Ok(Auto),
                true,
                Judgement::Restore { observed: Auto },
            ),
            // A refused restore waits out its backoff before it is tried again.
            (
                Admin,
                Enforce,
                Ok(Auto),
                false,
                Judgement::Drift { observed: Auto },
            ),
            (
                Auto,
                Enforce,
                Ok(Admin),
                true,
                Judgement::Restore { observed: Admin },
            ),
            (Auto, Enforce, Ok(Auto), true, Judgement::InSync),
            (
                Admin,
                Enforce,
                Err("AccessDeniedException: no".to_string()),
                true,
                Judgement::Unreadable("AccessDeniedException: no".to_string()),
            ),
        ];
        for (declared, enforcement, read, due, expected) in cases {
            assert_eq!(
                judge(&settings(declared, enforcement), &read, due),
                expected,
                "{declared} {enforcement:?} read {read:?} due {due}"
            );
        }
    }

    fn status(
        namespace: &str,
        mode: Option<ApprovalMode>,
        error: Option<&str>,
    ) -> ApprovalModeStatus {
        ApprovalModeStatus {
            quicksight_namespace: namespace.into(),
            observed_mode: mode,
            error: error.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn drift_names_the_namespace_and_both_modes() {
        let declared = settings(Admin, Enforcement::Observe);
        let modes = [
            status("default", Some(Admin), None),
            status("sales", Some(Auto), None),
        ];
        let (reason, message) = not_ready_because(&declared, &modes).expect("drift");
        assert_eq!(reason, "ApprovalModeDrift");
        assert!(message.contains("sales is AUTO_APPROVAL"), "{message}");
        assert!(message.contains("declares ADMIN_APPROVAL"), "{message}");
        assert!(!message.contains("default"), "{message}");
    }

    #[test]
    fn an_unreadable_mode_is_not_ready_and_in_sync_modes_are() {
        let declared = settings(Admin, Enforcement::Observe);
        let denied = [status(
            "default",
            None,
            Some("AccessDeniedException: denied"),
        )];
        let (reason, message) = not_ready_because(&declared, &denied).expect("unknown");
        assert_eq!(reason, "ApprovalModeUnknown");
        assert!(message.contains("AccessDeniedException"), "{message}");
        let fine = [status("default", Some(Admin), None)];
        assert_eq!(not_ready_because(&declared, &fine), None);
    }

    #[test]
    fn decisions_hear_of_a_changed_mode_and_not_of_a_mere_re_reading() {
        let modes = ApprovalModes::default();
        let mut changes = modes.modes_changed.subscribe();
        modes.record(
            "b",
            "111122223333",
            vec![status("default", Some(Admin), None)],
        );
        assert!(changes.has_changed().expect("open"));
        changes.borrow_and_update();
        let reread = ApprovalModeStatus {
            observed_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            )),
            ..status("default", Some(Admin), None)
        };
        modes.record("b", "111122223333", vec![reread]);
        assert!(!changes.has_changed().expect("open"), "same mode, no news");
        modes.record(
            "b",
            "111122223333",
            vec![status("default", Some(Auto), None)],
        );
        assert!(changes.has_changed().expect("open"));
        assert_eq!(modes.observed("111122223333", "default"), Some(Auto));
        modes.retain(&[]);
        assert_eq!(modes.observed("111122223333", "default"), None);
        assert!(modes.of_binding("b").is_empty());
    }
}
