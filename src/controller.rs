//! Wires [`reconcile`] into a kube-runtime `Controller`: watch, reflector store, triggers.

use crate::api::SelfUpgradeDecision;
use crate::context::Context;
use crate::lenient::{Lenient, into_guarded};
use crate::reconcile::{error_policy_guarded, reconcile_guarded};
use futures::future::Either;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, ResourceExt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// How stale the decision gauges may be; a recount walks the store once.
const COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// Which namespaces the controller watches.
#[derive(Clone, Debug)]
pub enum WatchScope {
    AllNamespaces,
    Namespace(String),
}

/// Runs the controller until `shutdown` resolves, finishing the reconciles already running.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let api: Api<Lenient<SelfUpgradeDecision>> = match &scope {
        WatchScope::AllNamespaces => Api::all(ctx.client.clone()),
        WatchScope::Namespace(ns) => Api::namespaced(ctx.client.clone(), ns),
    };
    let (store, writer) = reflector::store();
    let decisions = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .map_ok(into_guarded)
        .map_ok(|event| event.modify(keep_what_is_read))
        .inspect_ok({
            let ctx = ctx.clone();
            move |event| ctx.claims.on_event(event)
        })
        .reflect(writer)
        .applied_objects()
        // Status writes (ours included) do not change the generation: only spec changes,
        // pausing and resuming, and the reconciler's own requeues trigger a reconcile.
        .predicate_filter(generation_and_pause, Default::default());

    // A decision judged before the bindings are read would be refused for want of a binding.
    // (If the QuickSightAccount CRD is missing, this waits, logging the watch's errors.)
    let shutdown = shutdown.boxed().shared();
    let ready = ctx.bindings.wait_until_ready();
    if let Either::Right(_) = futures::future::select(std::pin::pin!(ready), shutdown.clone()).await
    {
        info!("stopped before the account bindings were read");
        return;
    }
    info!(?scope, concurrency, "starting controller");
    let pruner = tokio::spawn(prune_backoff(ctx.clone(), store.clone()));
    let counter = tokio::spawn(count_decisions(ctx.clone(), store.clone()));
    ctx.metrics.leader.set(1);
    let mirror = ctx
        .mirror
        .clone()
        .map(|settings| tokio::spawn(crate::mirror::run(ctx.clone(), settings)));
    let account_status = tokio::spawn(crate::account_status::maintain(ctx.clone(), store.clone()));
    let approval_modes = tokio::spawn(crate::approval_watch::maintain(ctx.clone()));
    let policies = tokio::spawn(crate::policy_watch::maintain(
        ctx.clone(),
        scope.clone(),
        store.clone(),
    ));
    let notifications = tokio::spawn(crate::notify::run(ctx.clone(), store.clone()));
    Controller::for_stream(decisions, store)
        .with_config(
            controller::Config::default()
                .concurrency(concurrency)
                .debounce(ctx.timing.debounce),
        )
        // A binding or a namespace's labels changed: any decision may be admitted or refused
        // now. Such changes are rare; a reconcile that changes nothing writes nothing.
        .reconcile_all_on(ctx.bindings.changes())
        // An account's approval mode changed: its decisions show it. Rarer still.
        .reconcile_all_on(ctx.approval_modes.modes_changed())
        // A decision that won a request went: the one that lost to it may decide now.
        .reconcile_on(
            ctx.claims
                .released()
                .map(|(namespace, name)| reflector::ObjectRef::new(&name).within(&namespace)),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_guarded, error_policy_guarded, ctx.clone())
        .for_each(|result| {
            match result {
                Ok((object, action)) => debug!(%object, ?action, "reconciled"),
                Err(error) => warn!(%error, "reconcile error"),
            }
            futures::future::ready(())
        })
        .await;
    pruner.abort();
    counter.abort();
    if let Some(mirror) = mirror {
        mirror.abort();
    }
    ctx.metrics.leader.set(0);
    account_status.abort();
    approval_modes.abort();
    policies.abort();
    notifications.abort();
    info!("controller stopped");
}

/// Recounts the decision gauges (by request status, by condition) from the store.
async fn count_decisions(
    ctx: Arc<Context>,
    store: reflector::Store<DeserializeGuard<SelfUpgradeDecision>>,
) {
    let mut tick = tokio::time::interval(COUNT_INTERVAL);
    loop {
        tick.tick().await;
        ctx.metrics.count_decisions(&store.state());
        ctx.metrics
            .count_listing_scopes(ctx.directory.scopes_by_region());
    }
}

/// Forgets the backoff state of deleted decisions, once a minute rather than per reconcile so
/// that the cost does not grow with the number of objects times the number of reconciles.
async fn prune_backoff(
    ctx: Arc<Context>,
    store: reflector::Store<DeserializeGuard<SelfUpgradeDecision>>,
) {
    let mut tick = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        tick.tick().await;
        let live: HashSet<String> = store.state().iter().filter_map(|d| d.uid()).collect();
        ctx.retain_backoff(&live);
    }
}

/// What makes a decision worth a reconcile: its generation, and whether it is paused.
fn generation_and_pause(decision: &DeserializeGuard<SelfUpgradeDecision>) -> Option<u64> {
    let generation = predicates::generation(decision)?;
    let paused = crate::pause::is_paused(decision.annotations());
    Some(generation.wrapping_mul(2) + u64::from(paused))
}

/// Trims a decision to what the operator reads before the store keeps it: managedFields and
/// annotations other than the pause switch are never read, and are often larger than the spec
/// (`kubectl apply` and Argo CD's default client-side apply keep the whole applied object in an
/// annotation).
fn keep_what_is_read(decision: &mut DeserializeGuard<SelfUpgradeDecision>) {
    decision.managed_fields_mut().clear();
    decision
        .annotations_mut()
        .retain(|key, _| key == crate::pause::PAUSED_ANNOTATION);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Action, SelfUpgradeDecisionSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn the_store_keeps_what_the_reconciler_reads_and_drops_the_rest() {
        let spec = SelfUpgradeDecisionSpec {
            aws_account_id: "111122223333".into(),
            quicksight_namespace: "default".into(),
            upgrade_request_id: "r-1".into(),
            action: Action::Approve,
            region: None,
            retry: None,
        };
        let mut decision = SelfUpgradeDecision::new("approve-r1", spec);
        decision.metadata.uid = Some("u-1".into());
        decision.metadata.generation = Some(2);
        decision.metadata.labels = Some([("team".into(), "a".into())].into());
        decision.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "{\"spec\":{}}".into(),
            )]
            .into(),
        );
        decision.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        let mut kept = DeserializeGuard(Ok(decision.clone()));
        keep_what_is_read(&mut kept);
        let kept = kept.0.expect("readable");
        assert!(kept.annotations().is_empty());
        // The pause switch is read: it stays.
        let mut paused = DeserializeGuard(Ok(decision.clone()));
        paused
            .annotations_mut()
            .insert(crate::pause::PAUSED_ANNOTATION.into(), "true".into());
        keep_what_is_read(&mut paused);
        assert_eq!(paused.annotations().len(), 1);
        assert!(kept.managed_fields().is_empty());
        decision.metadata.annotations = None;
        decision.metadata.managed_fields = None;
        assert_eq!(kept.spec, decision.spec);
        assert_eq!(kept.metadata.uid, decision.metadata.uid);
        assert_eq!(kept.metadata.generation, decision.metadata.generation);
        assert_eq!(kept.labels(), decision.labels());
    }
}
