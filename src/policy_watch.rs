//! Evaluates every `SelfUpgradePolicy` while leading — when it changes and every
//! `--policy-interval` — against its account's listing, read through the listing cache the
//! decisions share (a listing they fetched serves it; otherwise it fetches at most one per
//! interval and scope, which then serves them), writes what its rules decide into its status
//! and, in `Enforce`, has [`crate::policy_apply`] create the decisions (within the brake). A
//! policy acts only where a decision in its namespace could: the bindings admit it exactly as
//! they would admit such a decision.

use crate::api::{
    Action, PolicyMode, SelfUpgradeDecision, SelfUpgradeDecisionSpec, SelfUpgradePolicy,
    SelfUpgradePolicyStatus,
};
use crate::context::{Context, FIELD_MANAGER};
use crate::controller::WatchScope;
use crate::metrics::{PolicyLabels, PolicyRuleLabels};
use crate::policy::{
    Enforced, Evaluation, Health, compile, evaluate, evaluated_status, unconditional_rules,
    with_conditions,
};
use crate::policy_apply::{self, Created};
use crate::policy_plan::{BRAKE_WINDOW, Generated, Plan, creator_uid, has_acted, plan};
use crate::quicksight::{RequestDetail, Scope};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tracing::warn;

/// (namespace, name) of a policy.
type PolicyKey = (String, String);

/// The decisions the controller watches, as its reflector stores them.
pub type Decisions = Store<DeserializeGuard<SelfUpgradeDecision>>;

/// What the watch keeps per policy.
#[derive(Default)]
struct Known {
    policies: HashMap<PolicyKey, SelfUpgradePolicy>,
    /// The metric series each policy exports, to remove when it or its rules go.
    series: HashMap<PolicyKey, Vec<PolicyRuleLabels>>,
    /// The decisions each policy created within the brake's window, by name, with when: the
    /// store may not show a decision created a moment ago, and the brake counts it anyway.
    created: HashMap<PolicyKey, BTreeMap<String, Timestamp>>,
}

fn key_of(policy: &SelfUpgradePolicy) -> PolicyKey {
    (policy.namespace().unwrap_or_default(), policy.name_any())
}

/// Watches the policies in `scope` until dropped (it runs while the controller does).
pub async fn maintain(ctx: Arc<Context>, scope: WatchScope, decisions: Decisions) {
    let api: Api<DeserializeGuard<SelfUpgradePolicy>> = match &scope {
        WatchScope::AllNamespaces => Api::all(ctx.client.clone()),
        WatchScope::Namespace(namespace) => Api::namespaced(ctx.client.clone(), namespace),
    };
    let mut events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    let mut known = Known::default();
    let mut tick = tokio::time::interval(ctx.timing.policy_interval);
    // A binding's change may admit or refuse a policy's namespace: evaluate at once.
    let mut binding_changes = ctx.bindings.changes().boxed();
    loop {
        let due: Vec<SelfUpgradePolicy> = tokio::select! {
            _ = tick.tick() => known.policies.values().cloned().collect(),
            Some(()) = binding_changes.next() => known.policies.values().cloned().collect(),
            event = events.next() => match event {
                Some(Ok(event)) => apply(&mut known, &ctx, event),
                // The watcher retries with backoff (a missing CRD, the API server away).
                Some(Err(error)) => {
                    warn!(%error, "watching SelfUpgradePolicies");
                    Vec::new()
                }
                None => return,
            },
        };
        for policy in &due {
            report(&ctx, &decisions, policy, &mut known).await;
        }
    }
}

/// Updates the known policies from a watch event; returns those to evaluate now (changed
/// specs, and policies whose deletion began). Policies that do not deserialize are left out
/// (the schema keeps them rare).
fn apply(
    known: &mut Known,
    ctx: &Context,
    event: watcher::Event<DeserializeGuard<SelfUpgradePolicy>>,
) -> Vec<SelfUpgradePolicy> {
    match event {
        watcher::Event::Apply(DeserializeGuard(Ok(policy)))
        | watcher::Event::InitApply(DeserializeGuard(Ok(policy))) => {
            let before = known.policies.insert(key_of(&policy), policy.clone());
            let changed = before.is_none_or(|b| {
                b.metadata.generation != policy.metadata.generation
                    || b.metadata.deletion_timestamp != policy.metadata.deletion_timestamp
            });
            if changed { vec![policy] } else { Vec::new() }
        }
        watcher::Event::Delete(DeserializeGuard(Ok(policy))) => {
            let key = key_of(&policy);
            known.policies.remove(&key);
            known.created.remove(&key);
            for labels in known.series.remove(&key).unwrap_or_default() {
                ctx.metrics.policy_matches.remove(&labels);
                ctx.metrics.policy_decisions_created.remove(&labels);
            }
            let (namespace, policy) = key;
            ctx.metrics
                .policy_held_back
                .remove(&PolicyLabels { namespace, policy });
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// Evaluates `policy`, acts on it, and writes its status when it says something new; a
/// policy being deleted is finalized instead.
async fn report(
    ctx: &Context,
    decisions: &Decisions,
    policy: &SelfUpgradePolicy,
    known: &mut Known,
) {
    let key = key_of(policy);
    let now = Timestamp::now();
    let recent = known.created.entry(key.clone()).or_default();
    recent.retain(|_, at| *at > now - BRAKE_WINDOW);
    let generated = generated_by(ctx, decisions, policy);
    if policy.metadata.deletion_timestamp.is_some() {
        let shown = |name: &String| generated.iter().any(|(g, _)| &g.name == name);
        let pending = recent.keys().any(|name| !shown(name));
        policy_apply::finalize(ctx, policy, &generated, pending).await;
        return;
    }
    let judged = judge(ctx, policy).await;
    let matches = judged
        .as_ref()
        .map_or(&[][..], |j| &j.evaluation.matches[..]);
    let judged_generated: Vec<Generated> = generated.into_iter().map(|(g, _)| g).collect();
    let spec = &policy.spec;
    let plan = plan(
        spec.mode,
        matches,
        &judged_generated,
        recent,
        spec.max_decisions_per_hour,
        now,
    );
    policy_apply::stand_down(ctx, policy, &plan.stand_down).await;
    let (mut status, created) = match judged {
        Err(status) => (status, Created::default()),
        Ok(judged) => enforce(ctx, policy, &judged, &plan, recent, now).await,
    };
    export(ctx, policy, &status, &created, &mut known.series);
    let previous = policy.status.as_ref();
    keep_transition_times(&mut status, previous);
    policy_apply::announce(ctx, policy, &created, &status).await;
    if previous.is_some_and(|p| same_findings(p, &status)) {
        return;
    }
    status.last_evaluated = Some(Time(now));
    write(ctx, policy, &status).await;
}

/// What the rules decided and the listing they decided from.
struct Judged {
    evaluation: Evaluation,
    requests: Vec<RequestDetail>,
}

/// Creates what `plan` says (in `Enforce`) and returns the status reporting it.
async fn enforce(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    judged: &Judged,
    plan: &Plan,
    recent: &mut BTreeMap<String, Timestamp>,
    now: Timestamp,
) -> (SelfUpgradePolicyStatus, Created) {
    let generation = policy.meta().generation;
    let unconditional = unconditional_rules(&policy.spec);
    if policy.spec.mode == PolicyMode::DryRun {
        let status = evaluated_status(generation, &judged.evaluation, &unconditional, None);
        return (status, Created::default());
    }
    let created = policy_apply::create(ctx, policy, &plan.create, &judged.requests).await;
    for (name, _) in &created.names {
        recent.insert(name.clone(), now);
    }
    let enforced = Enforced {
        created_last_hour: plan.created_last_hour + created.names.len(),
        held_back: plan.held_back,
        limit: policy.spec.max_decisions_per_hour,
        room_at: plan.room_at,
        failed: created.failed.clone(),
    };
    let status = evaluated_status(
        generation,
        &judged.evaluation,
        &unconditional,
        Some(&enforced),
    );
    (status, created)
}

/// The decisions `policy` created, as the store shows them, each with the decision itself.
fn generated_by(
    ctx: &Context,
    decisions: &Decisions,
    policy: &SelfUpgradePolicy,
) -> Vec<(Generated, SelfUpgradeDecision)> {
    let (namespace, uid) = (policy.namespace(), policy.uid());
    decisions
        .state()
        .iter()
        .filter_map(|guarded| guarded.0.as_ref().ok())
        .filter(|d| d.namespace() == namespace && creator_uid(d) == uid.as_deref())
        .map(|decision| {
            let generated = Generated {
                name: decision.name_any(),
                created: decision.metadata.creation_timestamp.as_ref().map(|t| t.0),
                acted: has_acted(decision.status.as_ref()),
                resource_version: decision.resource_version(),
                person_decision: person_deciding(ctx, decisions, decision),
            };
            (generated, decision.clone())
        })
        .collect()
}

/// A decision no policy created that names `created`'s request and may act on it (judged as it
/// is written), as `created`'s namespace may be told of it ([`crate::conflicts::shown_to`]).
fn person_deciding(
    ctx: &Context,
    decisions: &Decisions,
    created: &SelfUpgradeDecision,
) -> Option<String> {
    let spec = &created.spec;
    let own_namespace = created.namespace().unwrap_or_default();
    let is_person_admitted = |(namespace, name): &(String, String)| {
        let reference = ObjectRef::new(name).within(namespace);
        let claimant = decisions.get(&reference);
        let claimant = claimant
            .as_ref()
            .and_then(|guarded| guarded.0.as_ref().ok());
        claimant.is_some_and(|d| {
            creator_uid(d).is_none() && ctx.bindings.authorize(namespace, &d.spec).is_ok()
        })
    };
    ctx.claims
        .claimants(
            &spec.aws_account_id,
            &spec.quicksight_namespace,
            &spec.upgrade_request_id,
        )
        .into_iter()
        .filter(|(namespace, name)| !(*namespace == own_namespace && *name == created.name_any()))
        .find(is_person_admitted)
        .map(|(namespace, name)| crate::conflicts::shown_to(&own_namespace, &namespace, &name))
}

/// What the policy's rules decide now, or the status saying why they cannot be evaluated.
async fn judge(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
) -> Result<Judged, SelfUpgradePolicyStatus> {
    let generation = policy.meta().generation;
    let blank = SelfUpgradePolicyStatus {
        observed_generation: generation,
        ..Default::default()
    };
    let stalled =
        |reason: &str, why: String| with_conditions(blank.clone(), Health::Stalled, reason, why);
    let compiled = compile(&policy.spec).map_err(|why| stalled("InvalidSpec", why))?;
    let scope = scope_of(ctx, policy).map_err(|(reason, why)| stalled(reason, why))?;
    let requests = match ctx.directory.cached_list(&scope).await {
        Ok(requests) => requests,
        Err(error) => {
            let health = match error.is_retryable() {
                true => Health::Retrying,
                false => Health::Stalled,
            };
            let reason = error.code.clone();
            return Err(with_conditions(blank, health, &reason, error.to_string()));
        }
    };
    let (account, namespace) = (&scope.account_id, &scope.namespace);
    let as_decision = as_decision(policy);
    let decided = |id: &str| {
        let admitted =
            |ns: &str, region: Option<&str>| ctx.bindings.admits(ns, &as_decision, region);
        ctx.claims
            .decider(account, namespace, id, admitted)
            .is_some()
    };
    let evaluation = evaluate(&compiled, &requests, decided, Timestamp::now());
    Ok(Judged {
        evaluation,
        requests,
    })
}

/// The tenant guard judges decisions; a policy is asked about as the decision it stands for.
fn as_decision(policy: &SelfUpgradePolicy) -> SelfUpgradeDecisionSpec {
    SelfUpgradeDecisionSpec {
        aws_account_id: policy.spec.aws_account_id.clone(),
        quicksight_namespace: policy.spec.quicksight_namespace.clone(),
        upgrade_request_id: String::new(),
        action: Action::Deny,
        region: policy.spec.region.clone(),
        retry: None,
    }
}

/// Where the policy's requests are and whose credentials list them: what the bindings grant a
/// decision for the policy's account in the policy's namespace.
fn scope_of(ctx: &Context, policy: &SelfUpgradePolicy) -> Result<Scope, (&'static str, String)> {
    let namespace = policy.namespace().unwrap_or_default();
    let grant = ctx
        .bindings
        .authorize(&namespace, &as_decision(policy))
        .map_err(|refusal| {
            tracing::info!(detail = %refusal.detail, policy = %policy.name_any(), "not authorized");
            ("NotAuthorized", refusal.message)
        })?;
    let region = grant.region.ok_or(("InvalidSpec", "spec.region is not set, the binding names no region and the operator has no default region".to_string()))?;
    Ok(Scope {
        account_id: policy.spec.aws_account_id.clone(),
        region,
        namespace: policy.spec.quicksight_namespace.clone(),
        credentials: grant.credentials,
    })
}

/// `selfupgrade_policy_matches` per rule, the decisions created by rule, and what the brake
/// holds back; series of rules that are gone are removed.
fn export(
    ctx: &Context,
    policy: &SelfUpgradePolicy,
    status: &SelfUpgradePolicyStatus,
    created: &Created,
    series: &mut HashMap<PolicyKey, Vec<PolicyRuleLabels>>,
) {
    let key = key_of(policy);
    let (namespace, name) = key.clone();
    let held_back = PolicyLabels {
        namespace,
        policy: name,
    };
    ctx.metrics
        .policy_held_back
        .get_or_create(&held_back)
        .set(status.held_back.unwrap_or(0));
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
    for (_, rule) in &created.names {
        if let Some(labels) = labels.iter().find(|l| &l.rule == rule) {
            ctx.metrics
                .policy_decisions_created
                .get_or_create(labels)
                .inc();
        }
    }
    for gone in series.insert(key, labels.clone()).unwrap_or_default() {
        if !labels.contains(&gone) {
            ctx.metrics.policy_matches.remove(&gone);
            ctx.metrics.policy_decisions_created.remove(&gone);
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
