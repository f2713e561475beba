//! The request mirror (`run --mirror-requests`): every remote request of the mirrored accounts
//! as a read-only `SelfUpgradeRequest` in one namespace, linked to the decision that decides
//! it. Synced every `--mirror-interval` while leading; objects are written only when they
//! changed and removed when their request disappears. [`plan`] is the pure part.

use crate::api::{SelfUpgradeRequest, SelfUpgradeRequestSpec, SelfUpgradeRequestStatus};
use crate::context::{Context, FIELD_MANAGER};
use crate::quicksight::{Credentials, RequestDetail, Scope};
use crate::tenancy;
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Marks the objects the mirror owns (it never touches others).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "selfupgrade-operator");
pub const ACCOUNT_LABEL: &str = "quicksight.selfupgrade.io/account";
pub const QUICKSIGHT_NAMESPACE_LABEL: &str = "quicksight.selfupgrade.io/quicksight-namespace";
/// The decision that decides the request: its name, and its namespace.
pub const DECISION_LABEL: &str = "quicksight.selfupgrade.io/decision";
pub const DECISION_NAMESPACE_LABEL: &str = "quicksight.selfupgrade.io/decision-namespace";

/// Writes in flight at once during a sync.
const WRITE_CONCURRENCY: usize = 8;

/// What to mirror, and where.
#[derive(Clone, Debug)]
pub struct MirrorSettings {
    /// The namespace that holds the `SelfUpgradeRequest`s.
    pub namespace: String,
    /// Accounts to mirror with the operator's own credentials besides the bound ones
    /// (single-tenant clusters without bindings).
    pub accounts: Vec<String>,
    pub interval: Duration,
}

/// The object name for a request: `<account>-[<quicksight namespace>-]<request id>`, made a
/// valid Kubernetes name; where that changed it (case, characters, length), a hash of the whole
/// keeps two requests' names apart (see [`crate::names`]).
pub fn object_name(account: &str, quicksight_namespace: &str, request_id: &str) -> String {
    let mut raw = account.to_string();
    if quicksight_namespace != crate::api::DEFAULT_QUICKSIGHT_NAMESPACE {
        raw.push('-');
        raw.push_str(quicksight_namespace);
    }
    raw.push('-');
    raw.push_str(request_id);
    crate::names::object_name(&raw)
}

/// The object for one listed request.
pub fn desired(
    scope: &Scope,
    detail: &RequestDetail,
    decision: Option<&str>,
    namespace: &str,
) -> SelfUpgradeRequest {
    let mut object = SelfUpgradeRequest::new(
        &object_name(
            &scope.account_id,
            &scope.namespace,
            &detail.upgrade_request_id,
        ),
        SelfUpgradeRequestSpec {
            aws_account_id: scope.account_id.clone(),
            quicksight_namespace: scope.namespace.clone(),
            upgrade_request_id: detail.upgrade_request_id.clone(),
        },
    );
    object.metadata.namespace = Some(namespace.to_string());
    let mut labels = BTreeMap::from([
        (MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string()),
        (ACCOUNT_LABEL.to_string(), scope.account_id.clone()),
        (
            QUICKSIGHT_NAMESPACE_LABEL.to_string(),
            crate::names::label_value(&scope.namespace),
        ),
    ]);
    // Label values hold 63 characters; names and QuickSight namespaces may be longer (they are
    // then shortened with a hash; `status.decision` has the whole name).
    if let Some((decision_namespace, decision_name)) = decision.and_then(|d| d.split_once('/')) {
        labels.insert(
            DECISION_LABEL.to_string(),
            crate::names::label_value(decision_name),
        );
        labels.insert(
            DECISION_NAMESPACE_LABEL.to_string(),
            decision_namespace.to_string(),
        );
    }
    object.metadata.labels = Some(labels);
    object.status = Some(SelfUpgradeRequestStatus {
        request: detail.into(),
        decision: decision.map(str::to_string),
    });
    object
}

/// The writes one sync makes.
#[derive(Debug, Default)]
pub struct MirrorPlan {
    /// Objects that are new or whose labels or status changed.
    pub apply: Vec<SelfUpgradeRequest>,
    /// Names of objects whose request is gone (or whose account is no longer mirrored).
    pub delete: Vec<String>,
}

/// Compares what exists with what should. Objects of scopes whose listing failed this time are
/// `kept` as they are: a failed listing proves nothing gone.
pub fn plan(
    existing: &[SelfUpgradeRequest],
    desired: Vec<SelfUpgradeRequest>,
    kept: &BTreeSet<(String, String)>,
) -> MirrorPlan {
    let by_name: BTreeMap<String, &SelfUpgradeRequest> =
        existing.iter().map(|o| (o.name_any(), o)).collect();
    let wanted: BTreeSet<String> = desired.iter().map(|o| o.name_any()).collect();
    let apply = desired
        .into_iter()
        .filter(|want| {
            by_name.get(&want.name_any()).is_none_or(|have| {
                have.status != want.status
                    || have.labels() != want.labels()
                    || have.spec != want.spec
            })
        })
        .collect();
    let delete = existing
        .iter()
        .filter(|o| {
            let scope = (
                o.spec.aws_account_id.clone(),
                o.spec.quicksight_namespace.clone(),
            );
            !wanted.contains(&o.name_any()) && !kept.contains(&scope)
        })
        .map(|o| o.name_any())
        .collect();
    MirrorPlan { apply, delete }
}

/// The scopes to list (to mirror, to notify of): every binding's account (its region,
/// credentials and QuickSight namespaces, `default` when it allows all), and `accounts` with
/// the operator's own credentials.
pub fn scopes(ctx: &Context, accounts: &[String]) -> Vec<Scope> {
    let mut scopes = BTreeSet::new();
    for binding in ctx.bindings.accounts() {
        let Ok(binding) = &binding.0 else { continue };
        let Some(region) = binding.spec.region.clone().or(ctx.default_region.clone()) else {
            continue;
        };
        let namespaces = binding
            .spec
            .quicksight_namespaces
            .clone()
            .unwrap_or_else(|| vec![crate::api::DEFAULT_QUICKSIGHT_NAMESPACE.to_string()]);
        for namespace in namespaces {
            scopes.insert(Scope {
                account_id: binding.spec.account_id.clone(),
                region: region.clone(),
                namespace,
                credentials: tenancy::credentials_of(binding),
            });
        }
    }
    if let Some(region) = &ctx.default_region {
        for account in accounts {
            scopes.insert(Scope {
                account_id: account.clone(),
                region: region.clone(),
                namespace: crate::api::DEFAULT_QUICKSIGHT_NAMESPACE.to_string(),
                credentials: Credentials::Operator,
            });
        }
    }
    scopes.into_iter().collect()
}

/// Whether the mirror holds the requests of `scope`: only then may a decision's
/// `status.mirroredAs` name an object (a binding that allows every QuickSight namespace is
/// mirrored for `default` only, and a decision's own `spec.region` may differ from the
/// binding's).
pub fn covers(ctx: &Context, settings: &MirrorSettings, scope: &Scope) -> bool {
    scopes(ctx, &settings.accounts).contains(scope)
}

/// Syncs the mirror every `settings.interval`, until dropped.
pub async fn run(ctx: Arc<Context>, settings: MirrorSettings) {
    let mut tick = tokio::time::interval(settings.interval);
    loop {
        tick.tick().await;
        if let Err(error) = sync(&ctx, &settings).await {
            warn!(%error, "request mirror: sync failed; retrying next interval");
        }
    }
}

/// How long, in whole seconds, the oldest PENDING request has waited at `now` (0 when none
/// waits, or none says when it was made).
pub fn oldest_pending_age(requests: &[RequestDetail], now: k8s_openapi::jiff::Timestamp) -> i64 {
    requests
        .iter()
        .filter(|r| r.request_status == crate::quicksight::RequestStatus::Pending)
        .filter_map(|r| r.creation_time)
        .map(|made| (now.as_second() - made.as_second()).max(0))
        .max()
        .unwrap_or(0)
}

async fn sync(ctx: &Context, settings: &MirrorSettings) -> Result<(), kube::Error> {
    let api: Api<SelfUpgradeRequest> = Api::namespaced(ctx.client.clone(), &settings.namespace);
    let managed = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
    let existing = api
        .list(&ListParams::default().labels(&managed))
        .await?
        .items;
    let mut desired_objects = Vec::new();
    let mut kept = BTreeSet::new();
    for scope in scopes(ctx, &settings.accounts) {
        match ctx.directory.list(&scope).await {
            Ok(requests) => {
                let waited = oldest_pending_age(&requests, k8s_openapi::jiff::Timestamp::now());
                let labels = crate::metrics::ApprovalModeLabels {
                    account: scope.account_id.clone(),
                    quicksight_namespace: scope.namespace.clone(),
                };
                ctx.metrics
                    .oldest_pending_request_age
                    .get_or_create(&labels)
                    .set(waited);
                for detail in &requests {
                    let decision = ctx.claims.decider(
                        &scope.account_id,
                        &scope.namespace,
                        &detail.upgrade_request_id,
                        |namespace, region| admitted(ctx, namespace, region, &scope),
                    );
                    desired_objects.push(desired(
                        &scope,
                        detail,
                        decision.as_deref(),
                        &settings.namespace,
                    ));
                }
            }
            Err(error) => {
                warn!(%error, %scope, "request mirror: listing failed; keeping its objects");
                kept.insert((scope.account_id.clone(), scope.namespace.clone()));
            }
        }
    }
    let MirrorPlan { apply, delete } = plan(&existing, desired_objects, &kept);
    if !apply.is_empty() || !delete.is_empty() {
        info!(
            writes = apply.len(),
            deletes = delete.len(),
            "request mirror: syncing"
        );
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let writes = futures::stream::iter(apply.into_iter().map(|object| {
        let (api, params) = (api.clone(), params.clone());
        async move { write(&api, &params, object).await }
    }))
    .buffer_unordered(WRITE_CONCURRENCY)
    .collect::<Vec<_>>();
    let deletes = futures::stream::iter(delete.into_iter().map(|name| {
        let api = api.clone();
        async move {
            api.delete(&name, &DeleteParams::default())
                .await
                .map(|_| ())
        }
    }))
    .buffer_unordered(WRITE_CONCURRENCY)
    .collect::<Vec<_>>();
    let (writes, deletes) = futures::join!(writes, deletes);
    writes
        .into_iter()
        .chain(deletes)
        .collect::<Result<Vec<()>, _>>()?;
    Ok(())
}

/// Whether a decision in `namespace` may act on `scope`'s account (only such a decision is
/// linked as the decider).
fn admitted(ctx: &Context, namespace: &str, region: Option<&str>, scope: &Scope) -> bool {
    let spec = crate::api::SelfUpgradeDecisionSpec {
        aws_account_id: scope.account_id.clone(),
        quicksight_namespace: scope.namespace.clone(),
        upgrade_request_id: String::new(),
        action: crate::api::Action::Approve,
        region: region.map(str::to_string),
        retry: None,
    };
    ctx.bindings.authorize(namespace, &spec).is_ok()
}

/// Server-side applies the object (spec, labels), then its status.
async fn write(
    api: &Api<SelfUpgradeRequest>,
    params: &PatchParams,
    object: SelfUpgradeRequest,
) -> Result<(), kube::Error> {
    let name = object.name_any();
    let body = serde_json::json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1",
        "kind": "SelfUpgradeRequest",
        "metadata": { "name": name, "labels": object.metadata.labels },
        "spec": object.spec,
    });
    api.patch(&name, params, &Patch::Apply(&body)).await?;
    let status = serde_json::json!({
        "apiVersion": "quicksight.selfupgrade.io/v1alpha1",
        "kind": "SelfUpgradeRequest",
        "status": object.status,
    });
    api.patch_status(&name, params, &Patch::Apply(&status))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quicksight::RequestStatus;

    #[test]
    fn the_oldest_pending_request_says_how_long_requests_wait() {
        let at = |second: i64| k8s_openapi::jiff::Timestamp::from_second(second).expect("valid");
        let made = |id: &str, status: RequestStatus, second: Option<i64>| RequestDetail {
            creation_time: second.map(at),
            ..RequestDetail::new(id, status)
        };
        let requests = [
            made("decided", RequestStatus::Approved, Some(0)),
            made("old", RequestStatus::Pending, Some(1_000)),
            made("new", RequestStatus::Pending, Some(9_000)),
            made("undated", RequestStatus::Pending, None),
        ];
        assert_eq!(oldest_pending_age(&requests, at(10_000)), 9_000);
        assert_eq!(
            oldest_pending_age(&requests[..1], at(10_000)),
            0,
            "none waits"
        );
        assert_eq!(
            oldest_pending_age(&requests[1..2], at(500)),
            0,
            "a clock behind counts 0"
        );
    }

    fn scope(account: &str) -> Scope {
        Scope {
            account_id: account.into(),
            region: "us-east-1".into(),
            namespace: "default".into(),
            credentials: Credentials::Operator,
        }
    }

    fn object(
        account: &str,
        id: &str,
        status: RequestStatus,
        decision: Option<&str>,
    ) -> SelfUpgradeRequest {
        desired(
            &scope(account),
            &RequestDetail::new(id, status),
            decision,
            "mirror",
        )
    }

    #[test]
    fn names_are_valid_and_name_the_scope() {
        assert_eq!(
            object_name("111122223333", "default", "5c1e-7a52"),
            "111122223333-5c1e-7a52"
        );
        assert_eq!(
            object_name("111122223333", "finance", "r-1"),
            "111122223333-finance-r-1"
        );
        // Changed to be valid: a hash keeps it apart from the id it now resembles.
        let upper = object_name("111122223333", "default", "5C1E-7A52");
        assert!(upper.starts_with("111122223333-5c1e-7a52-"), "{upper}");
        assert_ne!(upper, object_name("111122223333", "default", "5c1e-7a52"));
        let long = object_name("111122223333", "default", &"x/".repeat(200));
        assert!(long.len() <= 253 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn only_changed_objects_are_written_and_gone_requests_removed() {
        let unchanged = object("111122223333", "r-1", RequestStatus::Pending, None);
        let changed_before = object("111122223333", "r-2", RequestStatus::Pending, None);
        let gone = object("111122223333", "r-3", RequestStatus::Pending, None);
        let existing = [unchanged.clone(), changed_before, gone];
        let changed_now = object(
            "111122223333",
            "r-2",
            RequestStatus::Approved,
            Some("team-a/approve-r2"),
        );
        let new = object("111122223333", "r-4", RequestStatus::Pending, None);
        let plan = plan(
            &existing,
            vec![unchanged, changed_now.clone(), new.clone()],
            &BTreeSet::new(),
        );
        let applied: Vec<String> = plan.apply.iter().map(|o| o.name_any()).collect();
        assert_eq!(applied, [changed_now.name_any(), new.name_any()]);
        assert_eq!(plan.apply[0].status, changed_now.status);
        assert_eq!(plan.delete, ["111122223333-r-3"]);
        let labels = changed_now.labels();
        assert_eq!(labels[DECISION_LABEL], "approve-r2");
        assert_eq!(labels[DECISION_NAMESPACE_LABEL], "team-a");
    }

    #[test]
    fn a_failed_listing_keeps_its_objects() {
        let existing = [object("111122223333", "r-1", RequestStatus::Pending, None)];
        let kept = BTreeSet::from([("111122223333".to_string(), "default".to_string())]);
        assert!(plan(&existing, Vec::new(), &kept).delete.is_empty());
        assert_eq!(
            plan(&existing, Vec::new(), &BTreeSet::new()).delete.len(),
            1
        );
    }
}
