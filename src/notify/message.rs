//! The documents a webhook receives: pure functions from what happened to a [`Notification`].
//! Each body carries the facts as fields (for a receiver that routes on them) and a `text`
//! field, which is what Slack and Microsoft Teams incoming webhooks show as the message.

use super::ledger::Subject;
use crate::api::{Action, ApprovalMode, SelfUpgradeDecision};
use crate::inbox;
use crate::quicksight::{RequestDetail, RequestStatus, Scope};
use kube::ResourceExt;
use serde_json::{Value, json};

/// One notification: what it is about (notified once) and the JSON document to POST.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    pub subject: Subject,
    pub body: Value,
}

impl Notification {
    /// The `kind` field of the body (the metric label).
    pub fn kind(&self) -> &'static str {
        match self.subject {
            Subject::NewRequest { .. } => "NewRequest",
            Subject::RetriesExhausted { .. } => "RetriesExhausted",
            Subject::ApprovalModeDrift { .. } => "ApprovalModeDrift",
        }
    }
}

/// Text a requester wrote, made safe for a chat message: control and reordering characters
/// escaped (as the inbox shows them), and the three characters Slack's message formatting
/// requires escaped (`&`, `<`, `>`: "Escaping text" in Slack's formatting reference), so that
/// a note cannot forge a link or a mention.
fn chat_safe(text: &str) -> String {
    inbox::printable(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn scope_name(account: &str, quicksight_namespace: &str) -> String {
    format!("account {account}, QuickSight namespace {quicksight_namespace}")
}

/// A PENDING request: the facts, and the decision that approves it, ready to commit (as
/// `selfupgrade-operator requests decide` writes it; change `action` to deny).
pub fn new_request(scope: &Scope, request: &RequestDetail) -> Notification {
    let id = &request.upgrade_request_id;
    let user = request.user_name.as_deref();
    let name = inbox::decision_name(Action::Approve, user, id);
    let decision = inbox::decision_for(
        &name,
        request,
        &scope.account_id,
        &scope.namespace,
        Action::Approve,
        None,
    );
    let manifest = serde_yaml::to_string(&decision).unwrap_or_default();
    let (from, to) = (
        request.original_role.as_deref().unwrap_or("?"),
        request.requested_role.as_deref().unwrap_or("?"),
    );
    let mut text = format!(
        "New QuickSight self-upgrade request from {} ({}): {} → {}. Request {}.",
        chat_safe(user.unwrap_or("an unnamed user")),
        scope_name(&scope.account_id, &scope.namespace),
        chat_safe(from),
        chat_safe(to),
        chat_safe(id),
    );
    if let Some(note) = &request.request_note {
        text.push_str(&format!(" Note: \"{}\".", chat_safe(note)));
    }
    text.push_str(" Commit the attached SelfUpgradeDecision to approve it (or set action: DENY).");
    Notification {
        subject: Subject::NewRequest {
            account: scope.account_id.clone(),
            quicksight_namespace: scope.namespace.clone(),
            request_id: id.clone(),
        },
        body: json!({
            "kind": "NewRequest",
            "text": text,
            "account": scope.account_id,
            "quicksightNamespace": scope.namespace,
            "region": scope.region,
            "requestId": id,
            "user": user,
            "roles": { "from": request.original_role, "to": request.requested_role },
            "note": request.request_note,
            "requestedAt": request.creation_time.map(|t| t.to_string()),
            "manifest": manifest,
        }),
    }
}

/// What a decision's last attempt left.
pub struct Exhausted<'a> {
    pub attempts: i64,
    pub request_status: RequestStatus,
    pub reason: Option<&'a str>,
}

/// A decision whose action failed on every attempt its retry policy allows.
pub fn retries_exhausted(decision: &SelfUpgradeDecision, exhausted: &Exhausted) -> Notification {
    let spec = &decision.spec;
    let (namespace, name) = (
        decision.namespace().unwrap_or_default(),
        decision.name_any(),
    );
    let mut text = format!(
        "SelfUpgradeDecision {namespace}/{name} gave up: {} of request {} ({}) failed {} times; the request is {}.",
        spec.action,
        chat_safe(&spec.upgrade_request_id),
        scope_name(&spec.aws_account_id, &spec.quicksight_namespace),
        exhausted.attempts,
        exhausted.request_status,
    );
    if let Some(reason) = exhausted.reason {
        text.push_str(&format!(" QuickSight says: \"{}\".", chat_safe(reason)));
    }
    text.push_str(" Edit the decision (spec.retry) to try again.");
    Notification {
        subject: Subject::RetriesExhausted {
            uid: decision.uid().unwrap_or_default(),
            generation: decision.metadata.generation.unwrap_or(0),
        },
        body: json!({
            "kind": "RetriesExhausted",
            "text": text,
            "namespace": namespace,
            "name": name,
            "account": spec.aws_account_id,
            "quicksightNamespace": spec.quicksight_namespace,
            "requestId": spec.upgrade_request_id,
            "action": spec.action,
            "attempts": exhausted.attempts,
            "requestStatus": exhausted.request_status.to_string(),
            "reason": exhausted.reason,
        }),
    }
}

/// A QuickSight namespace whose approval mode is not the one its binding declares.
pub struct Drift<'a> {
    pub binding: &'a str,
    pub account: &'a str,
    pub quicksight_namespace: &'a str,
    pub observed: ApprovalMode,
    pub declared: ApprovalMode,
}

pub fn approval_mode_drift(drift: &Drift) -> Notification {
    let text = format!(
        "The self-upgrade approval mode of {} is {}; QuickSightAccount {} declares {}.",
        scope_name(drift.account, drift.quicksight_namespace),
        drift.observed,
        drift.binding,
        drift.declared,
    );
    Notification {
        subject: Subject::ApprovalModeDrift {
            account: drift.account.to_string(),
            quicksight_namespace: drift.quicksight_namespace.to_string(),
        },
        body: json!({
            "kind": "ApprovalModeDrift",
            "text": text,
            "binding": drift.binding,
            "account": drift.account,
            "quicksightNamespace": drift.quicksight_namespace,
            "observedMode": drift.observed.to_string(),
            "declaredMode": drift.declared.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quicksight::Credentials;

    fn scope() -> Scope {
        Scope {
            account_id: "111122223333".into(),
            region: "eu-west-1".into(),
            namespace: "default".into(),
            credentials: Credentials::Operator,
        }
    }

    fn pending() -> RequestDetail {
        RequestDetail {
            user_name: Some("alice".into()),
            original_role: Some("READER".into()),
            requested_role: Some("AUTHOR".into()),
            request_note: Some("needs <!channel> dashboards & more\u{1b}[2J".into()),
            ..RequestDetail::new("r-1", RequestStatus::Pending)
        }
    }

    #[test]
    fn a_new_request_carries_its_facts_and_a_decision_ready_to_commit() {
        let notification = new_request(&scope(), &pending());
        let body = &notification.body;
        assert_eq!(notification.kind(), "NewRequest");
        assert_eq!(body["kind"], "NewRequest");
        assert_eq!(body["account"], "111122223333");
        assert_eq!(body["region"], "eu-west-1");
        assert_eq!(body["requestId"], "r-1");
        assert_eq!(body["user"], "alice");
        assert_eq!(body["roles"], json!({"from": "READER", "to": "AUTHOR"}));
        let manifest: SelfUpgradeDecision =
            serde_yaml::from_str(body["manifest"].as_str().expect("manifest")).expect("a decision");
        assert_eq!(manifest.spec.upgrade_request_id, "r-1");
        assert_eq!(manifest.spec.action, Action::Approve);
        assert_eq!(manifest.spec.aws_account_id, "111122223333");
        assert_eq!(
            manifest.name_any(),
            inbox::decision_name(Action::Approve, Some("alice"), "r-1")
        );
    }

    #[test]
    fn what_a_requester_wrote_cannot_format_the_message() {
        let text = new_request(&scope(), &pending()).body["text"]
            .as_str()
            .expect("text")
            .to_string();
        assert!(text.contains("alice"), "{text}");
        assert!(text.contains("READER → AUTHOR"), "{text}");
        assert!(
            text.contains("&lt;!channel&gt; dashboards &amp; more"),
            "{text}"
        );
        assert!(
            !text.contains('\u{1b}') && text.contains("\\u{1b}"),
            "{text}"
        );
        // The note itself stays as written in its own field.
        assert_eq!(
            new_request(&scope(), &pending()).body["note"],
            "needs <!channel> dashboards & more\u{1b}[2J"
        );
    }

    #[test]
    fn retries_exhausted_names_the_decision_and_the_last_failure() {
        let mut decision = SelfUpgradeDecision::new(
            "verify-r1",
            crate::api::SelfUpgradeDecisionSpec {
                aws_account_id: "111122223333".into(),
                quicksight_namespace: "default".into(),
                upgrade_request_id: "r-1".into(),
                action: Action::Verify,
                region: None,
                retry: None,
            },
        );
        decision.metadata.namespace = Some("team-a".into());
        decision.metadata.uid = Some("u-1".into());
        decision.metadata.generation = Some(4);
        let exhausted = Exhausted {
            attempts: 3,
            request_status: RequestStatus::VerifyFailed,
            reason: Some("not in the group"),
        };
        let notification = retries_exhausted(&decision, &exhausted);
        assert_eq!(
            notification.subject,
            Subject::RetriesExhausted {
                uid: "u-1".into(),
                generation: 4
            }
        );
        let body = &notification.body;
        assert_eq!(body["attempts"], 3);
        assert_eq!(body["requestStatus"], "VERIFY_FAILED");
        assert_eq!(body["action"], "VERIFY");
        let text = body["text"].as_str().expect("text");
        assert!(text.contains("team-a/verify-r1 gave up"), "{text}");
        assert!(
            text.contains("failed 3 times") && text.contains("not in the group"),
            "{text}"
        );
    }

    #[test]
    fn a_drift_says_what_is_and_what_is_declared() {
        let notification = approval_mode_drift(&Drift {
            binding: "finance",
            account: "111122223333",
            quicksight_namespace: "default",
            observed: ApprovalMode::AutoApproval,
            declared: ApprovalMode::AdminApproval,
        });
        assert_eq!(notification.body["observedMode"], "AUTO_APPROVAL");
        let text = notification.body["text"].as_str().expect("text");
        assert!(
            text.contains("is AUTO_APPROVAL; QuickSightAccount finance declares ADMIN_APPROVAL"),
            "{text}"
        );
    }
}
