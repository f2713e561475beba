//! Evaluates every `SelfUpgradePolicy` while leading — when it changes and every
//! `--policy-interval` — against its account's listing, read through the listing cache the
//! decisions share (a listing they fetched serves it; otherwise it fetches at most one per
//! interval and scope, which then serves them), and writes what its rules would
//! decide into its status. A policy acts only where a decision in its namespace could: the
//! bindings admit it exactly as they would admit such a decision.

use crate::api::{Action, SelfUpgradeDecisionSpec, SelfUpgradePolicy, SelfUpgradePolicyStatus};
use crate::context::{Context, FIELD_MANAGER};
use crate::controller::WatchScope;
use crate::metrics::PolicyRuleLabels;
use crate::policy::{
    Health, compile, evaluate, evaluated_status, unconditional_rules, with_conditions,
};
use crate::quicksight::Scope;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;
use tracing::warn;

/// (namespace, name) of a policy.
type PolicyKey = (String, String);

/// Watches the policies in `scope` until dropped (it runs while the controller does).
pub async fn maintain(ctx: Arc<Context>, scope: WatchScope) {
    let api: Api<DeserializeGuard<SelfUpgradePolicy>> = match &scope {
        WatchScope::AllNamespaces => Api::all(ctx.client.clone()),
        WatchScope::Namespace(namespace) => Api::namespaced(ctx.client.clone(), namespace),
    };
    let mut events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    let mut policies: HashMap<PolicyKey, SelfUpgradePolicy> = HashMap::new();
    let mut series: HashMap<PolicyKey, Vec<PolicyRuleLabels>> = HashMap::new();
    let mut tick = tokio::time::interval(ctx.timing.policy_interval);
    // A binding's change may admit or refuse a policy's namespace: evaluate at once.
    let mut binding_changes = ctx.bindings.changes().boxed();
    loop {
        let due: Vec<SelfUpgradePolicy> = tokio::select! {
            _ = tick.tick() => policies.values().cloned().collect(),
            Some(()) = binding_changes.next() => policies.values().cloned().collect(),
            event = events.next() => match event {
                Some(Ok(event)) => apply(&mut policies, &mut series, &ctx, event),
                // The watcher retries with backoff (a missing CRD, the API server away).
                Some(Err(error)) => {
                    warn!(%error, "watching SelfUpgradePolicies");
                    Vec::new()
                }
                None => return,
            },
        };
        for policy in &due {
            report(&ctx, policy, &mut series).await;
        }
    }
}

/// Updates the known policies from a watch event; returns those to evaluate now (changed
/// specs). Policies that do not deserialize are left out (the schema keeps them rare).
fn apply(
    policies: &mut HashMap<PolicyKey, SelfUpgradePolicy>,
    series: &mut HashMap<PolicyKey, Vec<PolicyRuleLabels>>,
    ctx: &Context,
    event: watcher::Event<DeserializeGuard<SelfUpgradePolicy>>,
) -> Vec<SelfUpgradePolicy> {
    let key_of = |p: &SelfUpgradePolicy| (p.namespace().unwrap_or_default(), p.name_any());
    match event {
        watcher::Event::Apply(DeserializeGuard(Ok(policy)))
        | watcher::Event::InitApply(DeserializeGuard(Ok(policy))) => {
            let before = policies.insert(key_of(&policy), policy.clone());
            let changed =
                before.is_none_or(|b| b.metadata.generation != policy.metadata.generation);
            if changed { vec![policy] } else { Vec::new() }
        }
        watcher::Event::Delete(DeserializeGuard(Ok(policy))) => {
            let key = key_of(&policy);
            policies.remove(&key);
            for labels in series.remove(&key).unwrap_or_default() {
                ctx.metrics.policy_matches.remove(&labels);
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Evaluates `policy` and writes its status when it says something new.
async fn report(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    series: &mut HashMap<PolicyKey, Vec<PolicyRuleLabels>>,
) {
    let mut status = judge(ctx, policy).await;
    export(ctx, policy, &status, series);
    let previous = policy.status.as_ref();
    keep_transition_times(&mut status, previous);
    if previous.is_some_and(|p| same_findings(p, &status)) {
        return;
    }
    status.last_evaluated = Some(Time(Timestamp::now()));
    write(ctx, policy, &status).await;
}

/// What the policy's rules decide now, or why they cannot be evaluated.
async fn judge(ctx: &Context, policy: &SelfUpgradePolicy) -> SelfUpgradePolicyStatus {
    let generation = policy.meta().generation;
    let blank = SelfUpgradePolicyStatus {
        observed_generation: generation,
        ..Default::default()
    };
    let compiled = match compile(&policy.spec) {
        Ok(compiled) => compiled,
        Err(why) => return with_conditions(blank, Health::Stalled, "InvalidSpec", why),
    };
    let scope = match scope_of(ctx, policy) {
        Ok(scope) => scope,
        Err((reason, why)) => return with_conditions(blank, Health::Stalled, reason, why),
    };
    let requests = match ctx.directory.cached_list(&scope).await {
        Ok(requests) => requests,
        Err(error) => {
            let health = match error.is_retryable() {
                true => Health::Retrying,
                false => Health::Stalled,
            };
            let reason = error.code.clone();
            return with_conditions(blank, health, &reason, error.to_string());
        }
    };
    let (account, namespace) = (&scope.account_id, &scope.namespace);
    let decided = |id: &str| {
        ctx.claims
            .decider(account, namespace, id, |_| true)
            .is_some()
    };
    let evaluation = evaluate(&compiled, &requests, decided, Timestamp::now());
    evaluated_status(generation, &evaluation, &unconditional_rules(&policy.spec))
}

/// Where the policy's requests are and whose credentials list them: what the bindings grant a
/// decision for the policy's account in the policy's namespace.
fn scope_of(ctx: &Context, policy: &SelfUpgradePolicy) -> Result<Scope, (&'static str, String)> {
    // The tenant guard judges decisions; a policy is asked about as the decision it stands for.
    let as_decision = SelfUpgradeDecisionSpec {
        aws_account_id: policy.spec.aws_account_id.clone(),
        quicksight_namespace: policy.spec.quicksight_namespace.clone(),
        upgrade_request_id: String::new(),
        action: Action::Deny,
        region: policy.spec.region.clone(),
        retry: None,
    };
    let namespace = policy.namespace().unwrap_or_default();
    let grant = ctx
        .bindings
        .authorize(&namespace, &as_decision)
        .map_err(|why| ("NotAuthorized", why))?;
    let region = policy
        .spec
        .region
        .clone()
        .or(grant.region)
        .or_else(|| ctx.default_region.clone())
        .ok_or(("InvalidSpec", "spec.region is not set, the binding names no region and the operator has no default region".to_string()))?;
    Ok(Scope {
        account_id: policy.spec.aws_account_id.clone(),
        region,
        namespace: policy.spec.quicksight_namespace.clone(),
        credentials: grant.credentials,
    })
}

/// `selfupgrade_policy_matches` per rule; series of rules that are gone are removed.
fn export(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    status: &SelfUpgradePolicyStatus,
    series: &mut HashMap<PolicyKey, Vec<PolicyRuleLabels>>,
) {
    let key = (policy.namespace().unwrap_or_default(), policy.name_any());
    let labels: Vec<PolicyRuleLabels> = status
        .rules
        .iter()
        .map(|count| {
            let labels = PolicyRuleLabels {
                namespace: key.0.clone(),
                policy: key.1.clone(),
                rule: count.rule.clone(),
            };
            ctx.metrics
                .policy_matches
                .get_or_create(&labels)
                .set(count.matched);
            labels
        })
        .collect();
    for gone in series.insert(key, labels.clone()).unwrap_or_default() {
        if !labels.contains(&gone) {
            ctx.metrics.policy_matches.remove(&gone);
        }
    }
}

/// Conditions whose status did not change keep their transition time.
fn keep_transition_times(
    status: &mut SelfUpgradePolicyStatus,
    previous: Option<&SelfUpgradePolicyStatus>,
) {
    let now = Time(Timestamp::now());
    for condition in &mut status.conditions {
        condition.last_transition_time = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == condition.type_))
            .filter(|c| c.status == condition.status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
    }
}

/// Whether two statuses report the same findings (when they were found aside), so that
/// re-evaluations that find nothing new write nothing.
fn same_findings(a: &SelfUpgradePolicyStatus, b: &SelfUpgradePolicyStatus) -> bool {
    let without_time = |s: &SelfUpgradePolicyStatus| SelfUpgradePolicyStatus {
        last_evaluated: None,
        ..s.clone()
    };
    without_time(a) == without_time(b)
}

async fn write(ctx: &Context, policy: &SelfUpgradePolicy, status: &SelfUpgradePolicyStatus) {
    let namespace = policy.namespace().unwrap_or_default();
    let api: Api<SelfUpgradePolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({
        "apiVersion": SelfUpgradePolicy::api_version(&()),
        "kind": SelfUpgradePolicy::kind(&()),
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // The next evaluation writes it again; a failed write is only logged.
    if let Err(error) = api
        .patch_status(&policy.name_any(), &params, &Patch::Apply(&patch))
        .await
    {
        warn!(%error, policy = %policy.name_any(), %namespace, "could not write the SelfUpgradePolicy status");
    }
}
