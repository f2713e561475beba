//! Reads the approval mode of every QuickSight namespace a binding declares one for
//! (`spec.selfUpgrade`), at start and then every `--approval-mode-interval`, through the same
//! port, pacing, metrics and credentials as the decisions' calls. A drift is reported — in the
//! binding's status (written by [`crate::account_status`]), a Warning Event, the
//! `selfupgrade_approval_mode_drift` gauge and the decisions of that namespace — and, under
//! `Enforce`, the declared mode is set back once per drift. A refused restore is reported and
//! tried again after a backoff, never in a loop.

use crate::api::{ApprovalMode, ApprovalModeStatus, QuickSightAccount, SelfUpgradeSettings};
use crate::approval_modes::{Judgement, judge, watched_namespaces};
use crate::context::Context;
use crate::metrics::{ApprovalModeLabels, RestoreLabels};
use crate::quicksight::Scope;
use crate::retry::backoff_delay;
use crate::tenancy;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::{info, warn};

/// What is kept of one watched namespace between readings.
struct Tracked {
    status: ApprovalModeStatus,
    /// The drift gauge's series for this namespace, removed when it is no longer watched.
    series: ApprovalModeLabels,
    /// The settings the last reading was judged against: a changed spec is read again at once.
    settings: SelfUpgradeSettings,
    next_read: Instant,
    /// Refused restores in a row, and when the next may be tried.
    refused_restores: u32,
    restore_not_before: Option<Instant>,
    /// Whether the drift was already announced (one Warning Event per drift).
    announced: bool,
}

/// (binding name, QuickSight namespace).
type Key = (String, String);

/// Watches the modes until dropped (it runs while the controller does).
pub async fn maintain(ctx: Arc<Context>) {
    let mut tracked: HashMap<Key, Tracked> = HashMap::new();
    let mut binding_changes = ctx.bindings.changes().boxed();
    loop {
        let next = pass(&ctx, &mut tracked).await;
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            _ = binding_changes.next() => {}
        }
    }
}

/// Reads every namespace that is due; returns when the next one is.
async fn pass(ctx: &Context, tracked: &mut HashMap<Key, Tracked>) -> Instant {
    let interval = ctx.timing.approval_mode_interval;
    let mut declaring = Vec::new();
    let mut watched = Vec::new();
    for binding in ctx.bindings.accounts() {
        let Ok(binding) = &binding.0 else { continue };
        let Some(settings) = binding.spec.self_upgrade else {
            continue;
        };
        let name = binding.name_any();
        let mut statuses = Vec::new();
        for namespace in watched_namespaces(binding) {
            let key = (name.clone(), namespace.clone());
            let entry = tracked.entry(key.clone()).or_insert_with(|| Tracked {
                status: ApprovalModeStatus {
                    quicksight_namespace: namespace.clone(),
                    ..Default::default()
                },
                series: ApprovalModeLabels {
                    account: binding.spec.account_id.clone(),
                    quicksight_namespace: namespace.clone(),
                },
                settings,
                next_read: Instant::now(),
                refused_restores: 0,
                restore_not_before: None,
                announced: false,
            });
            if entry.next_read <= Instant::now() || entry.settings != settings {
                entry.settings = settings;
                read(ctx, binding, entry).await;
                entry.next_read = Instant::now() + interval;
                if let Some(retry) = entry.restore_not_before {
                    entry.next_read = entry.next_read.min(retry);
                }
            }
            statuses.push(entry.status.clone());
            watched.push(key);
        }
        ctx.approval_modes
            .record(&name, &binding.spec.account_id, statuses);
        declaring.push((name, binding.spec.account_id.clone()));
    }
    // A deleted binding (or one that no longer declares a mode) must not keep an alert firing.
    tracked.retain(|key, entry| {
        let keep = watched.contains(key);
        if !keep {
            ctx.metrics.approval_mode_drift.remove(&entry.series);
            drift_ended(ctx, &entry.series);
        }
        keep
    });
    ctx.approval_modes.retain(&declaring);
    let fallback = Instant::now() + interval;
    tracked
        .values()
        .map(|t| t.next_read)
        .fold(fallback, Instant::min)
}

/// Reads one namespace's mode, judges it, and acts on the judgement.
async fn read(ctx: &Context, binding: &QuickSightAccount, entry: &mut Tracked) {
    let namespace = entry.status.quicksight_namespace.clone();
    entry.status.observed_at = Some(Time(Timestamp::now()));
    let Some(scope) = scope_of(ctx, binding, &namespace) else {
        entry.status.observed_mode = None;
        entry.status.error = Some(
            "neither the binding nor the operator names a region (--region / AWS_REGION)".into(),
        );
        return;
    };
    let observed = ctx
        .directory
        .approval_mode(&scope)
        .await
        .map_err(|e| e.to_string());
    let restore_due = entry
        .restore_not_before
        .is_none_or(|at| at <= Instant::now());
    match judge(&entry.settings, &observed, restore_due) {
        Judgement::InSync => {
            entry.status.observed_mode = Some(entry.settings.mode);
            entry.status.error = None;
            (entry.refused_restores, entry.restore_not_before) = (0, None);
            entry.announced = false;
            drift_ended(ctx, &entry.series);
        }
        Judgement::Unreadable(error) => {
            warn!(binding = %binding.name_any(), %namespace, %error, "cannot read the approval mode");
            entry.status.observed_mode = None;
            entry.status.error = Some(error);
        }
        Judgement::Drift { observed } => {
            entry.status.observed_mode = Some(observed);
            announce_drift(ctx, binding, entry, observed).await;
        }
        Judgement::Restore { observed } => {
            entry.status.observed_mode = Some(observed);
            announce_drift(ctx, binding, entry, observed).await;
            match ctx.dry_run {
                true => {
                    warn!(binding = %binding.name_any(), "dry run: would set the approval mode back to {}", entry.settings.mode)
                }
                false => restore(ctx, binding, &scope, entry, observed).await,
            }
        }
    }
    let drifting = entry
        .status
        .observed_mode
        .is_some_and(|mode| mode != entry.settings.mode);
    ctx.metrics
        .approval_mode_drift
        .get_or_create(&entry.series)
        .set(i64::from(drifting));
}

fn scope_of(ctx: &Context, binding: &QuickSightAccount, namespace: &str) -> Option<Scope> {
    let region = binding
        .spec
        .region
        .as_ref()
        .or(ctx.default_region.as_ref())?;
    Some(Scope {
        account_id: binding.spec.account_id.clone(),
        region: region.clone(),
        namespace: namespace.to_string(),
        credentials: tenancy::credentials_of(binding),
    })
}

/// One Warning Event when a namespace starts drifting; the notification is offered at every
/// reading that finds it (the notifier sends it once per drift).
async fn announce_drift(
    ctx: &Context,
    binding: &QuickSightAccount,
    entry: &mut Tracked,
    observed: ApprovalMode,
) {
    if let Some(notifier) = &ctx.notifier {
        notifier.offer(crate::notify::approval_mode_drift(&crate::notify::Drift {
            binding: &binding.name_any(),
            account: &binding.spec.account_id,
            quicksight_namespace: &entry.status.quicksight_namespace,
            observed,
            declared: entry.settings.mode,
        }));
    }
    if entry.announced {
        return;
    }
    let note = format!(
        "QuickSight namespace {} of account {} is {observed}; this binding declares {}",
        entry.status.quicksight_namespace, binding.spec.account_id, entry.settings.mode
    );
    warn!(binding = %binding.name_any(), "{note}");
    entry.announced = publish(ctx, binding, EventType::Warning, "ApprovalModeDrift", note).await;
}

/// A drift that ended (or is no longer watched) is notified again when it comes back.
fn drift_ended(ctx: &Context, series: &ApprovalModeLabels) {
    if let Some(notifier) = &ctx.notifier {
        notifier.forget(&crate::notify::Subject::ApprovalModeDrift {
            account: series.account.clone(),
            quicksight_namespace: series.quicksight_namespace.clone(),
        });
    }
}

/// Sets the declared mode back (`Enforce`); a refusal is recorded and waits out a backoff.
async fn restore(
    ctx: &Context,
    binding: &QuickSightAccount,
    scope: &Scope,
    entry: &mut Tracked,
    observed: ApprovalMode,
) {
    let declared = entry.settings.mode;
    let result = ctx.directory.set_approval_mode(scope, declared).await;
    let outcome = match &result {
        Ok(()) => "ok".to_string(),
        Err(error) => error.code.clone(),
    };
    ctx.metrics
        .approval_mode_restores
        .get_or_create(&RestoreLabels {
            account: scope.account_id.clone(),
            quicksight_namespace: scope.namespace.clone(),
            outcome,
        })
        .inc();
    let what = format!(
        "QuickSight namespace {} of account {} from {observed} to {declared}",
        scope.namespace, scope.account_id
    );
    match result {
        Ok(()) => restored(ctx, binding, entry, what).await,
        Err(error) => refused(ctx, binding, entry, what, error).await,
    }
}

/// The declared mode is back: recorded, announced, and the drift over.
async fn restored(ctx: &Context, binding: &QuickSightAccount, entry: &mut Tracked, what: String) {
    info!(binding = %binding.name_any(), "set {what}");
    entry.status.observed_mode = Some(entry.settings.mode);
    entry.status.restored_at = Some(Time(Timestamp::now()));
    entry.status.error = None;
    (entry.refused_restores, entry.restore_not_before) = (0, None);
    entry.announced = false;
    let note = format!("set {what}");
    publish(
        ctx,
        binding,
        EventType::Normal,
        "ApprovalModeRestored",
        note,
    )
    .await;
}

/// QuickSight refused to set the mode back: recorded, announced, and tried again after a
/// backoff that grows with each refusal in a row.
async fn refused(
    ctx: &Context,
    binding: &QuickSightAccount,
    entry: &mut Tracked,
    what: String,
    error: crate::quicksight::QuickSightError,
) {
    entry.refused_restores = entry.refused_restores.saturating_add(1);
    let timing = &ctx.timing;
    let delay = backoff_delay(
        entry.refused_restores,
        timing.backoff_base,
        timing.backoff_cap,
    );
    entry.restore_not_before = Some(Instant::now() + delay);
    warn!(binding = %binding.name_any(), %error, ?delay, "could not set {what}");
    entry.status.error = Some(error.to_string());
    let note = format!("could not set {what}: {error}; trying again in {delay:?}");
    publish(
        ctx,
        binding,
        EventType::Warning,
        "ApprovalModeRestoreFailed",
        note,
    )
    .await;
}

/// Whether the Event was published (a failure is logged, never fatal).
async fn publish(
    ctx: &Context,
    binding: &QuickSightAccount,
    type_: EventType,
    reason: &str,
    note: String,
) -> bool {
    let action = match reason {
        "ApprovalModeDrift" => "DescribeSelfUpgradeConfiguration",
        _ => "UpdateSelfUpgradeConfiguration",
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    ctx.events.publish(&event, &binding.object_ref(&())).await
}
