//! A `SelfUpgradePolicy`'s rules, compiled and matched against requests: which rule decides
//! which PENDING request, and the status that says so. Pure: the listing, the clock and what is
//! already decided are handed in.

use crate::api::{
    Action, PolicyMatch, PolicyRule, RuleCount, SelfUpgradePolicySpec, SelfUpgradePolicyStatus,
};
use crate::quicksight::{RequestDetail, RequestStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use regex::{Regex, RegexBuilder};
use std::time::Duration;

/// How many matches the status lists: enough to review, small enough for any object.
pub const LISTED_MATCHES: usize = 20;

/// The most memory one compiled note pattern or glob may take; a pattern that needs more is
/// refused rather than allowed to cost every evaluation (`regex` has no backtracking, so time
/// is linear; this bounds the automaton).
const PATTERN_SIZE_LIMIT: usize = 1 << 16;

/// One rule, ready to match.
#[derive(Clone, Debug)]
pub struct CompiledRule {
    pub name: String,
    pub action: Action,
    requested_roles: Vec<String>,
    original_roles: Vec<String>,
    user_names: Vec<Regex>,
    note: Option<Regex>,
    older_than: Option<Duration>,
    younger_than: Option<Duration>,
}

/// The rules of a policy, in order.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub rules: Vec<CompiledRule>,
}

/// Compiles every rule; the error names the first rule that cannot be compiled, and why.
pub fn compile(spec: &SelfUpgradePolicySpec) -> Result<CompiledPolicy, String> {
    for (key, value) in &spec.decision_labels {
        label_problem(key, value).map_err(|why| format!("decisionLabels {key:?}: {why}"))?;
    }
    let rules = spec
        .rules
        .iter()
        .map(|rule| compile_rule(rule).map_err(|why| format!("rule {:?}: {why}", rule.name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledPolicy { rules })
}

/// Why the API server would refuse `key: value` as a label (`IsQualifiedName` and
/// `IsValidLabelValue` in `k8s.io/apimachinery/pkg/util/validation`), or why the policy may
/// not set it (its own labels).
fn label_problem(key: &str, value: &str) -> Result<(), String> {
    use crate::api::{POLICY_LABEL, RULE_LABEL};
    if key == POLICY_LABEL || key == RULE_LABEL {
        return Err("the policy sets this label itself".to_string());
    }
    let part = |text: &str| {
        let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        edges(text.chars().next())
            && edges(text.chars().last())
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    // A DNS-1123 subdomain: dot-separated lower-case labels.
    let dns_label = |label: &str| {
        part(label)
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let prefix_ok =
        prefix.is_none_or(|p| p.len() <= crate::names::MAX_NAME && p.split('.').all(dns_label));
    if !prefix_ok || name.len() > 63 || !part(name) {
        return Err("not a valid label key".to_string());
    }
    if value.len() > 63 || !(value.is_empty() || part(value)) {
        return Err(format!("{value:?} is not a valid label value"));
    }
    Ok(())
}

fn compile_rule(rule: &PolicyRule) -> Result<CompiledRule, String> {
    let user_names = rule
        .user_names
        .iter()
        .map(|pattern| glob(pattern).map_err(|e| format!("userNames {pattern:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let note = rule
        .note_matches
        .as_deref()
        .map(|pattern| bounded(pattern).map_err(|e| format!("noteMatches: {e}")))
        .transpose()?;
    let age = |field: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| age_limit(t).ok_or_else(|| format!("{field} {t:?} is not a duration")))
            .transpose()
    };
    Ok(CompiledRule {
        name: rule.name.clone(),
        action: rule.action,
        requested_roles: rule.requested_roles.clone(),
        original_roles: rule.original_roles.clone(),
        user_names,
        note,
        older_than: age("olderThan", &rule.older_than)?,
        younger_than: age("youngerThan", &rule.younger_than)?,
    })
}

/// A glob (`*` any run of characters, `?` one; nothing else is special) as an anchored,
/// case-insensitive regular expression: user names are e-mail addresses, whose case does not
/// matter. Translated here rather than with a glob crate, as `regex` is already linked and two
/// wildcards are all a user name needs.
fn glob(pattern: &str) -> Result<Regex, String> {
    let mut translated = String::from("(?i)^");
    for c in pattern.chars() {
        match c {
            '*' => translated.push_str(".*"),
            '?' => translated.push('.'),
            other => translated.push_str(&regex::escape(&other.to_string())),
        }
    }
    translated.push('$');
    bounded(&translated)
}

fn bounded(pattern: &str) -> Result<Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// `30s`, `15m`, `12h`, `30d`.
fn age_limit(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(seconds)?))
}

impl CompiledRule {
    /// Whether every condition of the rule holds for `request` at `now`. An age condition
    /// does not hold for a request without a creation time.
    pub fn matches(&self, request: &RequestDetail, now: Timestamp) -> bool {
        let one_of = |wanted: &[String], role: &Option<String>| {
            wanted.is_empty() || role.as_ref().is_some_and(|r| wanted.contains(r))
        };
        let age = request
            .creation_time
            .and_then(|created| Duration::try_from(now.duration_since(created)).ok());
        one_of(&self.requested_roles, &request.requested_role)
            && one_of(&self.original_roles, &request.original_role)
            && (self.user_names.is_empty()
                || request
                    .user_name
                    .as_deref()
                    .is_some_and(|user| self.user_names.iter().any(|glob| glob.is_match(user))))
            && self.note.as_ref().is_none_or(|note| {
                note.is_match(request.request_note.as_deref().unwrap_or_default())
            })
            && self
                .older_than
                .is_none_or(|limit| age.is_some_and(|age| age >= limit))
            && self
                .younger_than
                .is_none_or(|limit| age.is_some_and(|age| age < limit))
    }
}

/// What a policy decides of an account's requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// Every match, oldest request first.
    pub matches: Vec<PolicyMatch>,
    /// Matches by rule, in rule order.
    pub counts: Vec<RuleCount>,
}

/// Matches `requests` against `policy`: PENDING requests that `decided` does not claim, each
/// decided by the first rule that matches it.
pub fn evaluate(
    policy: &CompiledPolicy,
    requests: &[RequestDetail],
    decided: impl Fn(&str) -> bool,
    now: Timestamp,
) -> Evaluation {
    let mut open: Vec<&RequestDetail> = requests
        .iter()
        .filter(|r| r.request_status == RequestStatus::Pending)
        .filter(|r| !decided(&r.upgrade_request_id))
        .collect();
    open.sort_by(|a, b| {
        (a.creation_time, &a.upgrade_request_id).cmp(&(b.creation_time, &b.upgrade_request_id))
    });
    let mut counts: Vec<RuleCount> = policy
        .rules
        .iter()
        .map(|rule| RuleCount {
            rule: rule.name.clone(),
            matched: 0,
        })
        .collect();
    let mut matches = Vec::new();
    for request in open {
        let Some(index) = policy.rules.iter().position(|r| r.matches(request, now)) else {
            continue;
        };
        counts[index].matched += 1;
        let rule = &policy.rules[index];
        matches.push(PolicyMatch {
            upgrade_request_id: request.upgrade_request_id.clone(),
            rule: rule.name.clone(),
            action: rule.action,
            user_name: request.user_name.clone(),
            original_role: request.original_role.clone(),
            requested_role: request.requested_role.clone(),
        });
    }
    Evaluation { matches, counts }
}

/// What an `Enforce` evaluation did, for the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enforced {
    /// Decisions created in the last hour, this evaluation's included.
    pub created_last_hour: usize,
    /// Matches the brake held back.
    pub held_back: usize,
    /// The brake (`spec.maxDecisionsPerHour`).
    pub limit: u32,
    /// When the brake has room again, while it holds.
    pub room_at: Option<Timestamp>,
    /// Why creating a decision failed (the first failure), if one did.
    pub failed: Option<String>,
}

/// The status reporting `evaluation` (the first [`LISTED_MATCHES`] matches listed), and what
/// enforcing it did (`None`: a dry run).
pub fn evaluated_status(
    generation: Option<i64>,
    evaluation: &Evaluation,
    rules_matching_everything: &[String],
    enforced: Option<&Enforced>,
) -> SelfUpgradePolicyStatus {
    let matched = evaluation.matches.len();
    let (health, reason, mut message) = match enforced {
        None => (
            Health::Ready,
            "Evaluated",
            format!("dry run: the rules would decide {matched} PENDING request(s)"),
        ),
        Some(enforced) => enforced_summary(matched, enforced),
    };
    if !rules_matching_everything.is_empty() {
        message.push_str(&format!(
            "; rule(s) {} have no condition and match every request",
            rules_matching_everything.join(", ")
        ));
    }
    let count = |n: usize| Some(n as i64);
    let status = SelfUpgradePolicyStatus {
        observed_generation: generation,
        matched: count(matched),
        created_last_hour: enforced.and_then(|e| count(e.created_last_hour)),
        held_back: enforced.and_then(|e| count(e.held_back)),
        rules: evaluation.counts.clone(),
        would_decide: evaluation
            .matches
            .iter()
            .take(LISTED_MATCHES)
            .cloned()
            .collect(),
        last_evaluated: None,
        conditions: Vec::new(),
    };
    with_conditions(status, health, reason, message)
}

/// Ready while the brake lets every match through; Reconciling (it waits, and goes on by
/// itself) while it holds some back or a creation failed (tried again at the next
/// evaluation).
fn enforced_summary(matched: usize, enforced: &Enforced) -> (Health, &'static str, String) {
    let Enforced {
        created_last_hour,
        held_back,
        limit,
        room_at,
        failed,
    } = enforced;
    let mut message = format!(
        "{matched} PENDING request(s) matched without a decision; {created_last_hour} \
         decision(s) created in the last hour (at most {limit})"
    );
    if let Some(failed) = failed {
        message.push_str(&format!("; {failed}"));
        return (Health::Retrying, "CreateFailed", message);
    }
    if *held_back == 0 {
        return (Health::Ready, "Enforced", message);
    }
    message.push_str(&format!("; {held_back} held back by the brake"));
    if let Some(at) = room_at {
        message.push_str(&format!(" until {at}"));
    }
    (Health::Retrying, "BrakeHolding", message)
}

/// Where a policy stands, for its kstatus conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Evaluated against the current listing.
    Ready,
    /// Not evaluated this time (the listing failed); tried again.
    Retrying,
    /// Cannot be evaluated until its spec (or a binding) changes.
    Stalled,
}

/// `status` with Ready, Reconciling and Stalled set for `health`, all with `reason` and
/// `message` (their transition times are the caller's to keep).
pub fn with_conditions(
    mut status: SelfUpgradePolicyStatus,
    health: Health,
    reason: &str,
    message: String,
) -> SelfUpgradePolicyStatus {
    let (ready, reconciling, stalled) = match health {
        Health::Ready => ("True", "False", "False"),
        Health::Retrying => ("False", "True", "False"),
        Health::Stalled => ("False", "False", "True"),
    };
    status.conditions = [
        ("Ready", ready),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    ]
    .into_iter()
    .map(|(type_, value)| Condition {
        type_: type_.to_string(),
        status: value.to_string(),
        reason: reason.to_string(),
        message: message.clone(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    })
    .collect();
    status
}

/// The names of the rules without any condition.
pub fn unconditional_rules(spec: &SelfUpgradePolicySpec) -> Vec<String> {
    spec.rules
        .iter()
        .filter(|r| {
            r.requested_roles.is_empty()
                && r.original_roles.is_empty()
                && r.user_names.is_empty()
                && r.note_matches.is_none()
                && r.older_than.is_none()
                && r.younger_than.is_none()
        })
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Action::{Approve, Deny, Verify};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid")
    }

    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn request(id: &str, user: &str, from: &str, to: &str, age_days: i64) -> RequestDetail {
        RequestDetail {
            user_name: Some(user.into()),
            original_role: Some(from.into()),
            requested_role: Some(to.into()),
            request_note: Some("for the quarterly dashboards".into()),
            creation_time: Some(at(NOW - age_days * DAY)),
            ..RequestDetail::new(id, RequestStatus::Pending)
        }
    }

    fn rule(name: &str, action: Action) -> PolicyRule {
        PolicyRule {
            name: name.into(),
            action,
            requested_roles: Vec::new(),
            original_roles: Vec::new(),
            user_names: Vec::new(),
            note_matches: None,
            older_than: None,
            younger_than: None,
        }
    }

    fn spec_of(rules: Vec<PolicyRule>) -> SelfUpgradePolicySpec {
        SelfUpgradePolicySpec {
            aws_account_id: "111122223333".into(),
            quicksight_namespace: "default".into(),
            region: None,
            rules,
            mode: Default::default(),
            max_decisions_per_hour: 10,
            decision_labels: Default::default(),
            retry: None,
        }
    }

    fn compiled(rules: Vec<PolicyRule>) -> CompiledPolicy {
        compile(&spec_of(rules)).expect("compiles")
    }

    #[test]
    fn every_condition_must_hold() {
        let alice = request(
            "r",
            "alice@analytics.example.com",
            "READER",
            "READER_PRO",
            3,
        );
        let cases: Vec<(&str, PolicyRule, bool)> = vec![
            ("no condition", rule("all", Approve), true),
            (
                "requested role",
                PolicyRule {
                    requested_roles: vec!["READER_PRO".into()],
                    ..rule("a", Approve)
                },
                true,
            ),
            (
                "other requested role",
                PolicyRule {
                    requested_roles: vec!["ADMIN".into()],
                    ..rule("a", Approve)
                },
                false,
            ),
            (
                "original role",
                PolicyRule {
                    original_roles: vec!["AUTHOR".into(), "READER".into()],
                    ..rule("a", Approve)
                },
                true,
            ),
            (
                "other original role",
                PolicyRule {
                    original_roles: vec!["AUTHOR".into()],
                    ..rule("a", Approve)
                },
                false,
            ),
            (
                "glob",
                PolicyRule {
                    user_names: vec!["*@analytics.example.com".into()],
                    ..rule("a", Approve)
                },
                true,
            ),
            (
                "glob, any case",
                PolicyRule {
                    user_names: vec!["ALICE@*".into()],
                    ..rule("a", Approve)
                },
                true,
            ),
            (
                "glob is anchored",
                PolicyRule {
                    user_names: vec!["*@example.com".into(), "alice".into()],
                    ..rule("a", Approve)
                },
                false,
            ),
            (
                "glob ? is one character",
                PolicyRule {
                    user_names: vec!["alic?@*".into()],
                    ..rule("a", Approve)
                },
                true,
            ),
            (
                "a dot in a glob is a dot",
                PolicyRule {
                    user_names: vec!["alice@analytics.example.co.".into()],
                    ..rule("a", Approve)
                },
                false,
            ),
            (
                "note",
                PolicyRule {
                    note_matches: Some("quarterly".into()),
                    ..rule("a", Approve)
                },
                true,
            ),
            (
                "other note",
                PolicyRule {
                    note_matches: Some("^urgent".into()),
                    ..rule("a", Approve)
                },
                false,
            ),
            (
                "all of them",
                PolicyRule {
                    requested_roles: vec!["READER_PRO".into()],
                    user_names: vec!["alice@*".into()],
                    note_matches: Some("dashboards".into()),
                    ..rule("a", Approve)
                },
                true,
            ),
            (
                "all but one",
                PolicyRule {
                    requested_roles: vec!["READER_PRO".into()],
                    user_names: vec!["bob@*".into()],
                    ..rule("a", Approve)
                },
                false,
            ),
        ];
        for (what, rule, expected) in cases {
            let policy = compiled(vec![rule]);
            assert_eq!(policy.rules[0].matches(&alice, at(NOW)), expected, "{what}");
        }
    }

    #[test]
    fn ages_hold_at_their_boundaries() {
        let thirty_days = request("r", "u", "READER", "AUTHOR", 30);
        let older = |limit: &str| PolicyRule {
            older_than: Some(limit.into()),
            ..rule("o", Deny)
        };
        let younger = |limit: &str| PolicyRule {
            younger_than: Some(limit.into()),
            ..rule("y", Deny)
        };
        let cases = [
            (older("30d"), true), // waited thirty days: it is "older than 30d"
            (older("31d"), false),
            (older("720h"), true),
            (younger("30d"), false),
            (younger("2592001s"), true),
        ];
        for (rule, expected) in cases {
            let what = format!("{:?} {:?}", rule.older_than, rule.younger_than);
            let policy = compiled(vec![rule]);
            assert_eq!(
                policy.rules[0].matches(&thirty_days, at(NOW)),
                expected,
                "{what}"
            );
        }
        let undated = RequestDetail {
            creation_time: None,
            ..thirty_days
        };
        assert!(!compiled(vec![older("1s")]).rules[0].matches(&undated, at(NOW)));
        assert!(!compiled(vec![younger("365d")]).rules[0].matches(&undated, at(NOW)));
    }

    #[test]
    fn the_first_matching_rule_decides_and_only_open_undecided_requests_count() {
        let policy = compiled(vec![
            PolicyRule {
                requested_roles: vec!["ADMIN".into()],
                ..rule("never-admin", Deny)
            },
            PolicyRule {
                requested_roles: vec!["READER_PRO".into()],
                ..rule("reader-pro", Approve)
            },
            PolicyRule {
                user_names: vec!["*@sso.example.com".into()],
                ..rule("sso", Verify)
            },
        ]);
        let requests = vec![
            request("new-admin", "eve@sso.example.com", "READER", "ADMIN", 1),
            request("old-reader", "bob@example.com", "READER", "READER_PRO", 9),
            request("sso-author", "carol@sso.example.com", "READER", "AUTHOR", 2),
            request("nobody", "dan@example.com", "READER", "AUTHOR", 5),
            request("decided", "fay@example.com", "READER", "READER_PRO", 4),
            RequestDetail {
                request_status: RequestStatus::Approved,
                ..request("approved", "gus@example.com", "READER", "READER_PRO", 4)
            },
        ];
        let evaluation = evaluate(&policy, &requests, |id| id == "decided", at(NOW));
        let decided: Vec<(&str, &str, Action)> = evaluation
            .matches
            .iter()
            .map(|m| (m.upgrade_request_id.as_str(), m.rule.as_str(), m.action))
            .collect();
        // Oldest first; ADMIN is denied by the first rule although the third matches too.
        assert_eq!(
            decided,
            [
                ("old-reader", "reader-pro", Approve),
                ("sso-author", "sso", Verify),
                ("new-admin", "never-admin", Deny),
            ]
        );
        let counts: Vec<(&str, i64)> = evaluation
            .counts
            .iter()
            .map(|c| (c.rule.as_str(), c.matched))
            .collect();
        assert_eq!(counts, [("never-admin", 1), ("reader-pro", 1), ("sso", 1)]);
    }

    #[test]
    fn a_rule_that_cannot_be_compiled_is_named() {
        let spec = |second: PolicyRule| spec_of(vec![rule("fine", Approve), second]);
        let bad_regex = PolicyRule {
            note_matches: Some("(unclosed".into()),
            ..rule("notes", Deny)
        };
        let error = compile(&spec(bad_regex)).expect_err("refused");
        assert!(error.starts_with("rule \"notes\": noteMatches"), "{error}");
        let huge = PolicyRule {
            note_matches: Some("\\w{1000}{1000}".into()),
            ..rule("huge", Deny)
        };
        let error = compile(&spec(huge)).expect_err("refused");
        assert!(
            error.contains("rule \"huge\"") && error.contains("size limit"),
            "{error}"
        );
        let bad_age = PolicyRule {
            older_than: Some("soon".into()),
            ..rule("age", Deny)
        };
        let error = compile(&spec(bad_age)).expect_err("refused");
        assert!(error.contains("olderThan \"soon\""), "{error}");
    }

    #[test]
    fn decision_labels_are_refused_where_the_api_server_would_refuse_them() {
        let labelled = |key: &str, value: &str| SelfUpgradePolicySpec {
            decision_labels: [(key.to_string(), value.to_string())].into(),
            ..spec_of(vec![rule("any", Approve)])
        };
        for (key, value) in [
            ("team", "bi"),
            ("example.com/team", "bi-2_x.y"),
            ("app.kubernetes.io/part-of", ""),
        ] {
            assert!(compile(&labelled(key, value)).is_ok(), "{key}: {value}");
        }
        for (key, value, why) in [
            ("team", "-bi", "not a valid label value"),
            ("team", &"x".repeat(64), "not a valid label value"),
            ("Example.com/team", "bi", "not a valid label key"),
            ("/team", "bi", "not a valid label key"),
            ("a..b/team", "bi", "not a valid label key"),
            (&"k".repeat(64), "bi", "not a valid label key"),
            (
                "quicksight.selfupgrade.io/policy",
                "x",
                "sets this label itself",
            ),
        ] {
            let error = compile(&labelled(key, value)).expect_err(key);
            assert!(
                error.contains(why) && error.contains("decisionLabels"),
                "{error}"
            );
        }
    }

    #[test]
    fn an_enforced_status_counts_what_was_created_and_says_when_the_brake_holds() {
        let policy = compiled(vec![rule("everyone", Approve)]);
        let requests = [request("r-1", "u", "READER", "AUTHOR", 1)];
        let evaluation = evaluate(&policy, &requests, |_| false, at(NOW));
        let enforced = Enforced {
            created_last_hour: 3,
            held_back: 0,
            limit: 3,
            room_at: None,
            failed: None,
        };
        let status = evaluated_status(Some(1), &evaluation, &[], Some(&enforced));
        assert_eq!(
            (status.created_last_hour, status.held_back),
            (Some(3), Some(0))
        );
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "Enforced")
        );
        let held = Enforced {
            held_back: 1,
            room_at: Some(at(NOW + 60)),
            ..enforced
        };
        let status = evaluated_status(Some(1), &evaluation, &[], Some(&held));
        let conditions: Vec<(&str, &str)> = status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("Ready", "False"),
                ("Reconciling", "True"),
                ("Stalled", "False")
            ]
        );
        assert_eq!(status.conditions[0].reason, "BrakeHolding");
        assert!(
            status.conditions[0]
                .message
                .contains("1 held back by the brake until 2027-01-15T08:01:00Z"),
            "{}",
            status.conditions[0].message
        );
    }

    #[test]
    fn the_status_lists_a_bounded_number_of_matches_and_names_catch_all_rules() {
        let policy = compiled(vec![rule("everyone", Approve)]);
        let requests: Vec<RequestDetail> = (0..50)
            .map(|i| request(&format!("r-{i:02}"), "u", "READER", "AUTHOR", 1))
            .collect();
        let evaluation = evaluate(&policy, &requests, |_| false, at(NOW));
        let status = evaluated_status(Some(2), &evaluation, &["everyone".to_string()], None);
        assert_eq!(status.matched, Some(50));
        assert_eq!(status.created_last_hour, None, "a dry run creates nothing");
        assert_eq!(status.would_decide.len(), LISTED_MATCHES);
        let ready = &status.conditions[0];
        assert!(
            ready.message.contains("everyone have no condition"),
            "{}",
            ready.message
        );
    }
}
