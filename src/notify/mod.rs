//! Notifications (`run --notify-url`): a POST of a small JSON document to a webhook for each
//! new PENDING request of the listed accounts, for each decision whose retries ran out, and for
//! each approval-mode drift, while this replica leads.
//!
//! At least once, never a storm: the sources offer what they see every time they see it (the
//! scan every `--notify-interval`, a reconcile, an approval-mode reading); an offer whose subject
//! was notified, or waits in the queue, is ignored; the queue is bounded (a full queue drops the
//! offer, counted, and the next offer brings it back); one POST at a time, one per second at
//! most, each retried with capped backoff until the webhook takes it. A delivered subject is
//! recorded in a ConfigMap ([`record`]) so that neither a restart nor a new leader notifies it
//! again; an operator killed between a delivery and the next write of the record notifies that
//! one again.

mod ledger;
mod message;
mod record;
mod webhook;

pub use ledger::{Ledger, Subject};
pub use message::{
    Drift, Exhausted, Notification, approval_mode_drift, new_request, retries_exhausted,
};
pub use webhook::{DeliveryError, UrlError, WebhookUrl};

use crate::api::SelfUpgradeDecision;
use crate::context::Context;
use crate::metrics::Metrics;
use crate::quicksight::RequestStatus;
use crate::retry::{backoff_delay, full_jitter};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Notifications waiting at most; an offer past it is dropped (and offered again later).
const QUEUE_CAPACITY: usize = 256;
/// Slack lets an incoming webhook post one message per second ("Rate limits" in Slack's API
/// documentation); Teams' connectors allow fewer per minute than that pace sends in bursts.
const SEND_INTERVAL: Duration = Duration::from_secs(1);
/// The first retry of a failed POST, doubling per failure ...
const RETRY_BASE: Duration = Duration::from_secs(1);
/// ... up to this.
const RETRY_CAP: Duration = Duration::from_secs(300);
/// How often changes to the record (pruned entries) are written when nothing is being sent.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// Where to send, where to record, and what to list.
#[derive(Clone, Debug)]
pub struct NotifySettings {
    pub url: WebhookUrl,
    /// The ConfigMap that records what was notified: namespace, name.
    pub record: (String, String),
    /// How often the accounts are listed for new requests.
    pub interval: Duration,
    /// Accounts to list with the operator's own credentials besides the bound ones.
    pub accounts: Vec<String>,
}

/// The queue and what was notified; shared by the sources (which offer) and the leader's
/// delivery task.
pub struct Notifier {
    settings: NotifySettings,
    webhook: webhook::Webhook,
    metrics: Arc<Metrics>,
    sender: mpsc::Sender<Notification>,
    receiver: tokio::sync::Mutex<mpsc::Receiver<Notification>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ledger: Ledger,
    /// Subjects in the queue (an offer of one is ignored).
    queued: HashSet<Subject>,
    /// The ledger changed since it was last written.
    dirty: bool,
}

impl Notifier {
    pub fn new(settings: NotifySettings, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        Ok(Self {
            webhook: webhook::Webhook::new(settings.url.clone())?,
            settings,
            metrics,
            sender,
            receiver: tokio::sync::Mutex::new(receiver),
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `notification` unless its subject was notified or is queued already.
    pub fn offer(&self, notification: Notification) {
        let mut state = self.state();
        let subject = &notification.subject;
        if state.ledger.contains(subject) || state.queued.contains(subject) {
            return;
        }
        let subject = subject.clone();
        match self.sender.try_send(notification) {
            Ok(()) => {
                state.queued.insert(subject);
            }
            Err(_) => {
                self.metrics.notifications_dropped.inc();
            }
        }
        self.metrics
            .notification_queue_depth
            .set(state.queued.len() as i64);
    }

    /// Forgets that `subject` was notified: when it comes up again, it is notified again.
    pub fn forget(&self, subject: &Subject) {
        let mut state = self.state();
        if state.ledger.forget(subject) {
            state.dirty = true;
        }
    }

    fn prune(&self, keep: impl Fn(&Subject) -> bool) {
        let mut state = self.state();
        if state.ledger.retain(keep) > 0 {
            state.dirty = true;
        }
    }
}

/// Delivers, and lists the accounts for new requests, while this replica leads.
pub async fn run(ctx: Arc<Context>, store: Store<DeserializeGuard<SelfUpgradeDecision>>) {
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    let mut receiver = notifier.receiver.lock().await;
    // A task stopped when leadership was lost left its queue as it was: start over (the
    // sources offer again what is still due).
    while receiver.try_recv().is_ok() {}
    notifier.state().queued.clear();
    let (namespace, name) = &notifier.settings.record;
    let mut record = record::Record::new(ctx.client.clone(), namespace, name);
    let ledger = load(&mut record).await;
    info!(notified = ledger.len(), record = %name, "notifications: record read");
    notifier.state().ledger = ledger;
    futures::join!(
        deliver(notifier, &mut receiver, &mut record),
        scan(&ctx, notifier, &store)
    );
}

/// Reads the record, retrying until it can be read: sending without it would notify again
/// everything the last leader did.
async fn load(record: &mut record::Record) -> Ledger {
    let mut failures = 0;
    loop {
        match record.load().await {
            Ok(ledger) => return ledger,
            Err(error) => {
                failures += 1;
                let delay = backoff_delay(failures, RETRY_BASE, RETRY_CAP);
                warn!(%error, ?delay, "notifications: cannot read the record; nothing is sent until it can be");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn deliver(
    notifier: &Notifier,
    receiver: &mut mpsc::Receiver<Notification>,
    record: &mut record::Record,
) {
    let mut flush = tokio::time::interval(FLUSH_INTERVAL);
    loop {
        tokio::select! {
            next = receiver.recv() => {
                let Some(notification) = next else { return };
                send(notifier, notification).await;
                if receiver.is_empty() {
                    save(notifier, record).await;
                }
                tokio::time::sleep(SEND_INTERVAL).await;
            }
            _ = flush.tick() => save(notifier, record).await,
        }
    }
}

/// POSTs `notification` until the webhook takes it, then records its subject.
async fn send(notifier: &Notifier, notification: Notification) {
    let kind = notification.kind();
    if notifier.state().ledger.contains(&notification.subject) {
        notifier.state().queued.remove(&notification.subject);
        return;
    }
    let mut failures = 0;
    while let Err(error) = notifier.webhook.post(&notification.body).await {
        failures += 1;
        notifier.metrics.notification_failures.inc();
        let delay = full_jitter(
            backoff_delay(failures, RETRY_BASE, RETRY_CAP),
            rand::random::<f64>(),
        );
        warn!(kind, %error, ?delay, failures, "notification not delivered; retrying");
        tokio::time::sleep(delay).await;
    }
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let mut state = notifier.state();
    state.queued.remove(&notification.subject);
    state.ledger.record(notification.subject, now);
    state.dirty = true;
    notifier
        .metrics
        .notification_queue_depth
        .set(state.queued.len() as i64);
    notifier.metrics.notifications_sent(kind).inc();
}

/// Writes the record if it changed; a failed write is tried again at the next flush.
async fn save(notifier: &Notifier, record: &mut record::Record) {
    let mut ledger = {
        let mut state = notifier.state();
        if !state.dirty {
            return;
        }
        state.dirty = false;
        state.ledger.clone()
    };
    match record.save(&mut ledger).await {
        // What another writer had recorded is known now too.
        Ok(()) => notifier.state().ledger.merge(ledger),
        Err(error) => {
            warn!(%error, "notifications: cannot write the record; trying again");
            notifier.state().dirty = true;
        }
    }
}

/// Lists the accounts every `--notify-interval`: offers their PENDING requests, and prunes the
/// record of what no longer waits.
async fn scan(
    ctx: &Context,
    notifier: &Notifier,
    store: &Store<DeserializeGuard<SelfUpgradeDecision>>,
) {
    // Subjects of decisions are pruned against the store: not before it is filled.
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(notifier.settings.interval);
    loop {
        tick.tick().await;
        scan_once(ctx, notifier, store).await;
    }
}

async fn scan_once(
    ctx: &Context,
    notifier: &Notifier,
    store: &Store<DeserializeGuard<SelfUpgradeDecision>>,
) {
    // (account, QuickSight namespace) → the PENDING ids, of the scopes listed this time.
    let mut waiting: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut unlisted = BTreeSet::new();
    for scope in crate::mirror::scopes(ctx, &notifier.settings.accounts) {
        let key = (scope.account_id.clone(), scope.namespace.clone());
        match ctx.directory.list(&scope).await {
            Ok(requests) => {
                let ids = waiting.entry(key).or_default();
                for request in requests
                    .iter()
                    .filter(|r| r.request_status == RequestStatus::Pending)
                {
                    ids.insert(request.upgrade_request_id.clone());
                    notifier.offer(new_request(&scope, request));
                }
            }
            Err(error) => {
                warn!(%error, %scope, "notifications: listing failed; trying again next interval");
                unlisted.insert(key);
            }
        }
    }
    let decisions: HashSet<(String, i64)> = store
        .state()
        .iter()
        .filter_map(|object| {
            let meta = &object.0.as_ref().ok()?.metadata;
            Some((meta.uid.clone()?, meta.generation?))
        })
        .collect();
    notifier.prune(|subject| still_due(subject, &waiting, &unlisted, &decisions));
}

/// Whether the record keeps `subject`: a request while it waits (or its listing failed), a
/// decision's exhausted retries while that generation exists; a drift until the approval-mode
/// watch sees it end.
fn still_due(
    subject: &Subject,
    waiting: &BTreeMap<(String, String), BTreeSet<String>>,
    unlisted: &BTreeSet<(String, String)>,
    decisions: &HashSet<(String, i64)>,
) -> bool {
    match subject {
        Subject::NewRequest {
            account,
            quicksight_namespace,
            request_id,
        } => {
            let key = (account.clone(), quicksight_namespace.clone());
            match waiting.get(&key) {
                Some(ids) => ids.contains(request_id),
                None => unlisted.contains(&key),
            }
        }
        Subject::RetriesExhausted { uid, generation } => {
            decisions.contains(&(uid.clone(), *generation))
        }
        Subject::ApprovalModeDrift { .. } => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quicksight::{Credentials, RequestDetail, Scope};

    fn pending(index: usize) -> Notification {
        let scope = Scope {
            account_id: "111122223333".into(),
            region: "us-east-1".into(),
            namespace: "default".into(),
            credentials: Credentials::Operator,
        };
        new_request(
            &scope,
            &RequestDetail::new(format!("r-{index}"), RequestStatus::Pending),
        )
    }

    #[tokio::test]
    async fn an_offer_is_queued_once_and_past_the_bound_dropped_and_counted() {
        let settings = NotifySettings {
            url: WebhookUrl::parse("https://hooks.example.com/services/x").expect("a URL"),
            record: ("selfupgrade-operator".into(), "notified".into()),
            interval: Duration::from_secs(60),
            accounts: Vec::new(),
        };
        let metrics = Arc::new(Metrics::default());
        let notifier = Notifier::new(settings, metrics.clone()).expect("a client");
        notifier.state().ledger.record(pending(0).subject, 100);
        notifier.offer(pending(0));
        assert_eq!(
            metrics.notification_queue_depth.get(),
            0,
            "notified already"
        );
        for index in 1..=QUEUE_CAPACITY {
            notifier.offer(pending(index));
        }
        notifier.offer(pending(1));
        assert_eq!(
            metrics.notifications_dropped.get(),
            0,
            "a queued subject is not offered twice"
        );
        notifier.offer(pending(QUEUE_CAPACITY + 1));
        assert_eq!(metrics.notifications_dropped.get(), 1);
        assert_eq!(
            metrics.notification_queue_depth.get(),
            QUEUE_CAPACITY as i64
        );
    }

    fn request(account: &str, id: &str) -> Subject {
        Subject::NewRequest {
            account: account.into(),
            quicksight_namespace: "default".into(),
            request_id: id.into(),
        }
    }

    #[test]
    fn the_record_keeps_what_is_still_due_and_nothing_else() {
        let scope = |account: &str| (account.to_string(), "default".to_string());
        let waiting =
            BTreeMap::from([(scope("111122223333"), BTreeSet::from(["r-1".to_string()]))]);
        let unlisted = BTreeSet::from([scope("444455556666")]);
        let decisions = HashSet::from([("u-1".to_string(), 2)]);
        let exhausted = |uid: &str, generation| Subject::RetriesExhausted {
            uid: uid.into(),
            generation,
        };
        let drift = Subject::ApprovalModeDrift {
            account: "111122223333".into(),
            quicksight_namespace: "default".into(),
        };
        let table = [
            (request("111122223333", "r-1"), true, "still PENDING"),
            (request("111122223333", "r-2"), false, "decided or gone"),
            (
                request("444455556666", "r-9"),
                true,
                "its listing failed: proves nothing",
            ),
            (
                request("777788889999", "r-1"),
                false,
                "its account is no longer listed",
            ),
            (exhausted("u-1", 2), true, "that generation exists"),
            (exhausted("u-1", 1), false, "edited since"),
            (exhausted("u-2", 2), false, "deleted"),
            (drift, true, "ends when the approval-mode watch says so"),
        ];
        for (subject, kept, why) in table {
            assert_eq!(
                still_due(&subject, &waiting, &unlisted, &decisions),
                kept,
                "{why}: {subject:?}"
            );
        }
    }
}
