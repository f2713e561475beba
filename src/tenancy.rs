//! Step 1 of a decision's path: may this namespace act on this account, and with which
//! credentials? Judged from the cluster admins' `QuickSightAccount` bindings. Pure.
//!
//! The rule, as `docs/security.md` states it: a decision is admitted by a binding when the
//! binding names the decision's AWS account, admits its Kubernetes namespace (by name or label
//! selector) and allows its QuickSight namespace. With no admitting binding the decision makes
//! no AWS call (default deny), unless the account has no binding at all and the operator runs
//! with `--allow-unbound-accounts`. Several admitting bindings must agree on the credentials and
//! regions; otherwise which role signs would depend on an accident, so the decision is refused.
//! The region a decision calls must be one its grant admits, in the operator's partition
//! ([`crate::regions`]).

use crate::api::{QuickSightAccount, SelfUpgradeDecisionSpec};
use crate::quicksight::{AssumeRole, Credentials};
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;

/// The STS session name's prefix when a binding does not set one; the namespace that acts is
/// appended ([`session_name`]).
pub const DEFAULT_SESSION_NAME: &str = "sud";

/// STS `RoleSessionName`s are at most 64 characters of `[\w+=,.@-]`.
const SESSION_NAME_MAX: usize = 64;

/// What an admitted decision acts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The admitting binding, `None` for an unbound account under `--allow-unbound-accounts`.
    pub binding: Option<String>,
    pub credentials: Credentials,
    /// The region the decision calls: its own, else the binding's, else the operator's; `None`
    /// when none of them names one.
    pub region: Option<String>,
    /// The regions the grant admits.
    pub regions: Vec<String>,
}

/// The operator's own rules, for what no binding says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorRules {
    /// `--allow-unbound-accounts`: accounts no binding names are acted on with the operator's
    /// credentials, from any namespace.
    pub allow_unbound_accounts: bool,
    /// `--allowed-regions`: the regions decisions of such accounts may call.
    pub unbound_regions: Vec<String>,
    /// The operator's region (`--region`): the region of decisions and bindings naming none,
    /// and the partition every region must be in.
    pub default_region: Option<String>,
}

impl OperatorRules {
    /// A single-tenant operator in `region`: unbound accounts allowed, in that region only.
    pub fn single_tenant(region: &str) -> Self {
        Self {
            allow_unbound_accounts: true,
            unbound_regions: vec![region.to_string()],
            default_region: Some(region.to_string()),
        }
    }
}

/// The Kubernetes namespace a decision lives in, as the bindings see it.
#[derive(Clone, Copy, Debug)]
pub struct NamespaceView<'a> {
    pub name: &'a str,
    /// Its labels; `None` when the namespace is not (yet) known, which no selector matches.
    pub labels: Option<&'a BTreeMap<String, String>>,
}

/// Why a decision is refused: `message` for its status (what its namespace may know: its own
/// namespace and account, never another binding or another tenant's namespaces), `detail`
/// for the operator's log (the bindings involved and their errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub detail: String,
}

impl Refusal {
    fn new(message: String, detail: impl FnOnce(&str) -> String) -> Self {
        let detail = detail(&message);
        Self { message, detail }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Admits or refuses one decision; a refusal names what is missing.
pub fn authorize(
    namespace: NamespaceView<'_>,
    spec: &SelfUpgradeDecisionSpec,
    bindings: &[&QuickSightAccount],
    rules: &OperatorRules,
) -> Result<Grant, Refusal> {
    let grant = granting(namespace, spec, bindings, rules)?;
    let region = spec
        .region
        .clone()
        .or(grant.region)
        .or_else(|| rules.default_region.clone());
    let partition = crate::regions::operator_partition(rules.default_region.as_deref());
    if let Some(refused) = region
        .as_deref()
        .and_then(|r| crate::regions::refusal(r, &grant.regions, partition))
    {
        let message = format!(
            "{refused} for AWS account {} in namespace {:?}",
            spec.aws_account_id, namespace.name
        );
        return Err(Refusal::new(message, str::to_string));
    }
    let credentials = match grant.credentials {
        Credentials::AssumeRole(role) => Credentials::AssumeRole(AssumeRole {
            session_name: session_name(&role.session_name, namespace.name),
            ..role
        }),
        operator => operator,
    };
    Ok(Grant {
        region,
        credentials,
        ..grant
    })
}

/// The STS session name of calls made for decisions in `namespace`: `<prefix>-<namespace>`, so
/// that CloudTrail shows which namespace acted. Namespace names are DNS labels, within STS's
/// characters; where the whole would pass 64 characters, the namespace is cut and a hash of it
/// keeps names of different namespaces apart.
pub fn session_name(prefix: &str, namespace: &str) -> String {
    let whole = format!("{prefix}-{namespace}");
    if whole.len() <= SESSION_NAME_MAX {
        return whole;
    }
    let hash = format!("{:016x}", crate::names::fnv1a(namespace));
    let room = SESSION_NAME_MAX.saturating_sub(prefix.len() + hash.len() + 2);
    let head: String = namespace.chars().take(room).collect();
    format!("{prefix}-{head}-{hash}")
}

/// The grant of the binding that admits the decision (its default region unresolved).
fn granting(
    namespace: NamespaceView<'_>,
    spec: &SelfUpgradeDecisionSpec,
    bindings: &[&QuickSightAccount],
    rules: &OperatorRules,
) -> Result<Grant, Refusal> {
    let account = &spec.aws_account_id;
    let mut for_account: Vec<&QuickSightAccount> = bindings
        .iter()
        .copied()
        .filter(|b| &b.spec.account_id == account)
        .collect();
    for_account.sort_by_key(|b| b.name_any());
    if for_account.is_empty() {
        return if rules.allow_unbound_accounts {
            Ok(Grant {
                binding: None,
                credentials: Credentials::Operator,
                region: None,
                regions: rules.unbound_regions.clone(),
            })
        } else {
            let message = format!(
                "no QuickSightAccount binds AWS account {account}; a cluster admin must create one \
                 that admits namespace {:?}",
                namespace.name
            );
            Err(Refusal::new(message, str::to_string))
        };
    }
    let in_namespace: Vec<&QuickSightAccount> = for_account
        .iter()
        .copied()
        .filter(|b| admits_namespace(b, namespace))
        .collect();
    if in_namespace.is_empty() {
        let message = format!(
            "namespace {:?} is not bound to AWS account {account}; a cluster admin must admit it \
             in a QuickSightAccount",
            namespace.name
        );
        return Err(Refusal::new(message, |m| {
            format!(
                "{m} (QuickSightAccount {} admits other namespaces)",
                names(&for_account)
            )
        }));
    }
    let qs_namespace = &spec.quicksight_namespace;
    let admitting: Vec<&QuickSightAccount> = in_namespace
        .iter()
        .copied()
        .filter(|b| allows_quicksight_namespace(b, qs_namespace))
        .collect();
    let Some(first) = admitting.first() else {
        let message = format!(
            "QuickSight namespace {qs_namespace:?} of AWS account {account} is not allowed for \
             namespace {:?} by its QuickSightAccount",
            namespace.name
        );
        return Err(Refusal::new(message, |m| {
            format!("{m} ({})", names(&in_namespace))
        }));
    };
    let grant = grant_of(first, rules);
    if let Some(other) = admitting.iter().find(|b| grant_of(b, rules) != grant) {
        let message = "two QuickSightAccounts admit this decision but name different roles or \
                       regions; a cluster admin must make them agree or remove one"
            .to_string();
        return Err(Refusal::new(message, |m| {
            format!("{m} ({} and {})", first.name_any(), other.name_any())
        }));
    }
    Ok(Grant {
        binding: Some(first.name_any()),
        ..grant
    })
}

/// Whether `binding` admits decisions in `namespace` (by name, or by its label selector).
pub fn admits_namespace(binding: &QuickSightAccount, namespace: NamespaceView<'_>) -> bool {
    if binding.spec.namespaces.iter().any(|n| n == namespace.name) {
        return true;
    }
    match (selector_of(binding), namespace.labels) {
        (Ok(Some(selector)), Some(labels)) => selector.matches(labels),
        _ => false,
    }
}

/// The binding's label selector, or why it is not one (an unknown operator, `In` without
/// values). An invalid selector admits nothing; the binding's status says why.
pub fn selector_of(binding: &QuickSightAccount) -> Result<Option<Selector>, String> {
    binding
        .spec
        .namespace_selector
        .clone()
        .map(Selector::try_from)
        .transpose()
        .map_err(|e| format!("spec.namespaceSelector is invalid: {e}"))
}

fn allows_quicksight_namespace(binding: &QuickSightAccount, qs_namespace: &str) -> bool {
    binding
        .spec
        .quicksight_namespaces
        .as_ref()
        .is_none_or(|allowed| allowed.iter().any(|n| n == qs_namespace))
}

/// The credentials and regions a binding grants (without its name): the regions it lists,
/// else its own region (the operator's, when it names none).
fn grant_of(binding: &QuickSightAccount, rules: &OperatorRules) -> Grant {
    let own = binding
        .spec
        .region
        .clone()
        .or_else(|| rules.default_region.clone());
    let regions = match binding.spec.regions.is_empty() {
        true => own.iter().cloned().collect(),
        false => binding.spec.regions.clone(),
    };
    Grant {
        binding: None,
        credentials: credentials_of(binding),
        region: binding.spec.region.clone(),
        regions,
    }
}

/// The credentials calls under `binding` are signed with.
pub fn credentials_of(binding: &QuickSightAccount) -> Credentials {
    let spec = &binding.spec;
    match &spec.role_arn {
        None => Credentials::Operator,
        Some(role_arn) => Credentials::AssumeRole(AssumeRole {
            role_arn: role_arn.clone(),
            external_id: spec.external_id.clone(),
            session_name: spec
                .session_name
                .clone()
                .unwrap_or_else(|| DEFAULT_SESSION_NAME.to_string()),
        }),
    }
}

/// A binding the operator cannot read (it does not match the operator's types: the CRD was
/// installed without validation, or from another version): its name and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub name: String,
    pub error: String,
}

/// [`authorize`]'s verdict, given the bindings the operator cannot read. An unreadable binding
/// may be the one that binds the decision's account, so a grant that rests on no binding
/// binding it (`--allow-unbound-accounts`) is refused rather than let the decision bypass it,
/// and a refusal names it. A grant by a readable binding stands: one broken binding does not
/// stop the accounts others bind.
pub fn considering_unreadable(
    verdict: Result<Grant, Refusal>,
    unreadable: &[Unreadable],
) -> Result<Grant, Refusal> {
    if unreadable.is_empty() {
        return verdict;
    }
    let named = unreadable
        .iter()
        .map(|u| format!("{} ({})", u.name, u.error))
        .collect::<Vec<_>>()
        .join(", ");
    match verdict {
        Ok(grant) if grant.binding.is_some() => Ok(grant),
        Ok(_) => {
            let message = "a QuickSightAccount cannot be read and may bind this account; accounts \
                           no binding binds are refused until a cluster admin fixes it"
                .to_string();
            Err(Refusal::new(message, |m| format!("{m} ({named})")))
        }
        Err(refusal) => Err(Refusal {
            message: format!("{}; a QuickSightAccount cannot be read", refusal.message),
            detail: format!(
                "{}; QuickSightAccount {named} cannot be read",
                refusal.detail
            ),
        }),
    }
}

fn names(bindings: &[&QuickSightAccount]) -> String {
    bindings
        .iter()
        .map(|b| b.name_any())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operator's rules, in us-east-1; `unbound`: with `--allow-unbound-accounts`.
    fn rules(unbound: bool) -> OperatorRules {
        OperatorRules {
            allow_unbound_accounts: unbound,
            unbound_regions: vec!["us-east-1".into()],
            default_region: Some("us-east-1".into()),
        }
    }
    use crate::api::{Action, QuickSightAccountSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    const ACCOUNT: &str = "111122223333";

    fn spec(qs_namespace: &str) -> SelfUpgradeDecisionSpec {
        SelfUpgradeDecisionSpec {
            aws_account_id: ACCOUNT.into(),
            quicksight_namespace: qs_namespace.into(),
            upgrade_request_id: "r-1".into(),
            action: Action::Approve,
            region: None,
            retry: None,
        }
    }

    fn binding(name: &str, edit: impl FnOnce(&mut QuickSightAccountSpec)) -> QuickSightAccount {
        let mut spec = QuickSightAccountSpec {
            account_id: ACCOUNT.into(),
            role_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/approver")),
            region: Some("eu-west-1".into()),
            namespaces: vec!["team-a".into()],
            ..Default::default()
        };
        edit(&mut spec);
        QuickSightAccount::new(name, spec)
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn ns<'a>(name: &'a str, labels: Option<&'a BTreeMap<String, String>>) -> NamespaceView<'a> {
        NamespaceView { name, labels }
    }

    #[test]
    fn a_binding_naming_the_namespace_grants_its_role_and_region() {
        let grant = authorize(
            ns("team-a", None),
            &spec("default"),
            &[&binding("a", |_| {})],
            &rules(false),
        )
        .expect("admitted");
        assert_eq!(grant.binding.as_deref(), Some("a"));
        assert_eq!(grant.region.as_deref(), Some("eu-west-1"));
        let Credentials::AssumeRole(role) = grant.credentials else {
            panic!("expected a role")
        };
        assert_eq!(
            role.role_arn,
            format!("arn:aws:iam::{ACCOUNT}:role/approver")
        );
        // CloudTrail shows which namespace acted.
        assert_eq!(role.session_name, "sud-team-a");
    }

    #[test]
    fn session_names_name_the_namespace_within_stss_limit() {
        assert_eq!(session_name("sud", "analytics"), "sud-analytics");
        let long = "n".repeat(63);
        let other = format!("{}m", "n".repeat(62));
        let (a, b) = (session_name("sud", &long), session_name("sud", &other));
        assert!(a.len() <= 64 && b.len() <= 64, "{a} {b}");
        assert_ne!(a, b, "cut names stay apart");
        assert!(a.starts_with("sud-nnnn"), "{a}");
        let prefix = "p".repeat(32);
        assert!(session_name(&prefix, &long).len() <= 64);
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
        assert!(a.chars().all(allowed), "{a}");
    }

    #[test]
    fn an_unbound_account_is_denied_unless_unbound_accounts_are_allowed() {
        let denied =
            authorize(ns("team-a", None), &spec("default"), &[], &rules(false)).unwrap_err();
        assert!(
            denied
                .message
                .contains("no QuickSightAccount binds AWS account 111122223333"),
            "{denied}"
        );
        let other_account = binding("b", |s| s.account_id = "444455556666".into());
        assert!(
            authorize(
                ns("team-a", None),
                &spec("default"),
                &[&other_account],
                &rules(false)
            )
            .is_err()
        );
        let allowed =
            authorize(ns("team-a", None), &spec("default"), &[], &rules(true)).expect("allowed");
        assert_eq!(allowed.credentials, Credentials::Operator);
        assert_eq!(allowed.binding, None);
    }

    #[test]
    fn an_unreadable_binding_closes_unbound_accounts_and_is_named_in_refusals() {
        let broken = [Unreadable {
            name: "broken".into(),
            error: "spec.namespaces: invalid type: string".into(),
        }];
        let unbound = authorize(ns("team-a", None), &spec("default"), &[], &rules(true));
        assert!(unbound.is_ok());
        let refused = considering_unreadable(unbound.clone(), &broken).expect_err("refused");
        // Which binding is broken, and how, is for the operator's log: bindings are the
        // cluster admins', not the tenant's.
        assert!(
            refused.detail.contains("broken") && refused.detail.contains("invalid type"),
            "{refused:?}"
        );
        assert!(!refused.message.contains("broken"), "{refused:?}");
        assert!(considering_unreadable(unbound, &[]).is_ok());

        let bound = authorize(
            ns("team-a", None),
            &spec("default"),
            &[&binding("a", |_| {})],
            &rules(false),
        );
        assert_eq!(
            considering_unreadable(bound.clone(), &broken),
            bound,
            "a binding's grant stands"
        );

        let not_bound = authorize(
            ns("team-b", None),
            &spec("default"),
            &[&binding("a", |_| {})],
            &rules(false),
        );
        let refusal = considering_unreadable(not_bound, &broken).expect_err("still refused");
        assert!(refusal.message.contains("team-b"), "{refusal:?}");
        assert!(refusal.detail.contains("broken"), "{refusal:?}");
        assert!(!refusal.message.contains("broken"), "{refusal:?}");
    }

    #[test]
    fn allow_unbound_accounts_does_not_open_a_bound_account_to_other_namespaces() {
        let denied = authorize(
            ns("team-b", None),
            &spec("default"),
            &[&binding("a", |_| {})],
            &rules(true),
        )
        .unwrap_err();
        assert!(
            denied.message.contains("namespace \"team-b\" is not bound"),
            "{denied}"
        );
        // Binding a admits another tenant's namespaces: team-b learns nothing of it.
        assert!(
            !denied.message.contains("QuickSightAccount a"),
            "{denied:?}"
        );
        assert!(
            denied.detail.contains("QuickSightAccount a admits"),
            "{denied:?}"
        );
    }

    #[test]
    fn a_label_selector_admits_matching_namespaces_only() {
        let by_label = binding("a", |s| {
            s.namespaces.clear();
            s.namespace_selector = Some(LabelSelector {
                match_labels: Some(labels(&[("quicksight-approvers", "true")])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "In".into(),
                    values: Some(vec!["prod".into(), "staging".into()]),
                }]),
            });
        });
        let matching = labels(&[("quicksight-approvers", "true"), ("env", "prod")]);
        let wrong_env = labels(&[("quicksight-approvers", "true"), ("env", "dev")]);
        let bindings = [&by_label];
        assert!(
            authorize(
                ns("x", Some(&matching)),
                &spec("default"),
                &bindings,
                &rules(false)
            )
            .is_ok()
        );
        assert!(
            authorize(
                ns("x", Some(&wrong_env)),
                &spec("default"),
                &bindings,
                &rules(false)
            )
            .is_err()
        );
        // A namespace whose labels are unknown is not matched.
        assert!(authorize(ns("x", None), &spec("default"), &bindings, &rules(false)).is_err());
    }

    #[test]
    fn an_empty_selector_admits_every_namespace() {
        let everyone = binding("a", |s| {
            s.namespaces.clear();
            s.namespace_selector = Some(LabelSelector::default());
        });
        let none = BTreeMap::new();
        assert!(
            authorize(
                ns("any", Some(&none)),
                &spec("default"),
                &[&everyone],
                &rules(false)
            )
            .is_ok()
        );
    }

    #[test]
    fn an_invalid_selector_admits_nothing() {
        let broken = binding("a", |s| {
            s.namespaces.clear();
            s.namespace_selector = Some(LabelSelector {
                match_labels: None,
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "Resembles".into(),
                    values: Some(vec!["prod".into()]),
                }]),
            });
        });
        assert!(selector_of(&broken).is_err());
        let prod = labels(&[("env", "prod")]);
        assert!(
            authorize(
                ns("x", Some(&prod)),
                &spec("default"),
                &[&broken],
                &rules(false)
            )
            .is_err()
        );
    }

    #[test]
    fn a_quicksight_namespace_outside_the_allowed_list_is_denied() {
        let only_default = binding("a", |s| {
            s.quicksight_namespaces = Some(vec!["default".into()])
        });
        let denied = authorize(
            ns("team-a", None),
            &spec("finance"),
            &[&only_default],
            &rules(false),
        )
        .unwrap_err();
        assert!(
            denied.message.contains("QuickSight namespace \"finance\""),
            "{denied}"
        );
        assert!(
            authorize(
                ns("team-a", None),
                &spec("default"),
                &[&only_default],
                &rules(false)
            )
            .is_ok()
        );
    }

    #[test]
    fn two_admitting_bindings_must_agree_on_the_role() {
        let a = binding("a", |_| {});
        let same = binding("b", |_| {});
        let granted = authorize(
            ns("team-a", None),
            &spec("default"),
            &[&same, &a],
            &rules(false),
        )
        .expect("agreeing bindings admit");
        assert_eq!(
            granted.binding.as_deref(),
            Some("a"),
            "the first by name is reported"
        );
        let other_role = binding("c", |s| {
            s.role_arn = Some(format!("arn:aws:iam::{ACCOUNT}:role/other"))
        });
        let denied = authorize(
            ns("team-a", None),
            &spec("default"),
            &[&a, &other_role],
            &rules(false),
        )
        .unwrap_err();
        assert!(denied.detail.contains("(a and c)"), "{denied:?}");
        assert!(!denied.message.contains("a and c"), "{denied:?}");
    }

    #[test]
    fn a_binding_that_does_not_admit_is_ignored_beside_one_that_does() {
        let elsewhere = binding("a", |s| {
            s.namespaces = vec!["team-b".into()];
            s.role_arn = Some(format!("arn:aws:iam::{ACCOUNT}:role/other"));
        });
        let here = binding("b", |_| {});
        let grant = authorize(
            ns("team-a", None),
            &spec("default"),
            &[&elsewhere, &here],
            &rules(false),
        )
        .expect("admitted");
        assert_eq!(grant.binding.as_deref(), Some("b"));
    }

    #[test]
    fn without_a_role_the_operator_credentials_are_used() {
        let plain = binding("a", |s| s.role_arn = None);
        let grant = authorize(
            ns("team-a", None),
            &spec("default"),
            &[&plain],
            &rules(false),
        )
        .expect("ok");
        assert_eq!(grant.credentials, Credentials::Operator);
    }

    #[test]
    fn a_decision_calls_only_a_region_its_grant_admits() {
        let in_region = |region: Option<&str>| SelfUpgradeDecisionSpec {
            region: region.map(str::to_string),
            ..spec("default")
        };
        let own_region = binding("a", |_| {});
        let judge = |spec: &SelfUpgradeDecisionSpec, bindings: &[&QuickSightAccount], unbound| {
            authorize(ns("team-a", None), spec, bindings, &rules(unbound))
        };
        // Its own region only, unless the binding lists others.
        let grant = judge(&in_region(None), &[&own_region], false).expect("admitted");
        assert_eq!(grant.region.as_deref(), Some("eu-west-1"));
        let refused = judge(&in_region(Some("us-west-2")), &[&own_region], false).unwrap_err();
        assert!(
            refused
                .message
                .contains("region \"us-west-2\" is not admitted (admitted: eu-west-1)"),
            "{refused:?}"
        );
        let listing = binding("a", |s| {
            s.regions = vec!["eu-west-1".into(), "us-west-2".into()]
        });
        let grant = judge(&in_region(Some("us-west-2")), &[&listing], false).expect("admitted");
        assert_eq!(grant.region.as_deref(), Some("us-west-2"));
        // Another partition is refused even where a binding lists it.
        let china = binding("a", |s| s.regions = vec!["cn-north-1".into()]);
        let refused = judge(&in_region(Some("cn-north-1")), &[&china], false).unwrap_err();
        assert!(
            refused
                .message
                .contains("not a region of the aws partition"),
            "{refused:?}"
        );
        // Unbound accounts: --allowed-regions (here the operator's region).
        assert!(judge(&in_region(Some("us-east-1")), &[], true).is_ok());
        let refused = judge(&in_region(Some("ap-south-1")), &[], true).unwrap_err();
        assert!(
            refused.message.contains("admitted: us-east-1"),
            "{refused:?}"
        );
        // Two bindings admitting different regions disagree.
        let other = binding("b", |s| s.regions = vec!["us-west-2".into()]);
        assert!(judge(&in_region(None), &[&own_region, &other], false).is_err());
    }
}
