//! The cluster admins' account bindings as the reconciler sees them: reflector stores of
//! `QuickSightAccount`s and of namespaces (for their labels), and a trigger that re-reconciles
//! the decisions when a binding's spec or a namespace's labels change.
//!
//! The watches run for the whole process, standby replicas included, so that a new leader
//! starts with warm caches. Judgement lives in [`crate::tenancy`]; this module only feeds it.

use crate::api::{QuickSightAccount, SelfUpgradeDecisionSpec};
use crate::lenient::{Lenient, into_guarded};
use crate::tenancy::{self, Grant, NamespaceView, OperatorRules, Unreadable};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::warn;

/// The bindings and namespace labels, kept current by watches.
pub struct Bindings {
    accounts: Store<DeserializeGuard<QuickSightAccount>>,
    namespaces: Store<Namespace>,
    rules: OperatorRules,
    changed: watch::Sender<u64>,
    /// Resolves once both stores are ready. Shared because kube-runtime's
    /// `Store::wait_until_ready` wakes only one of several concurrent waiters (it polls one
    /// oneshot receiver, which keeps only the last waker): the readiness probe and the
    /// controller both wait.
    ready: Shared<BoxFuture<'static, ()>>,
    watches: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Bindings {
    fn drop(&mut self) {
        self.watches.iter().for_each(|task| task.abort());
    }
}

impl Bindings {
    /// Starts watching `QuickSightAccount`s and namespaces through `client`.
    pub fn watch(client: kube::Client, rules: OperatorRules) -> Self {
        let (changed, _) = watch::channel(0);
        let (accounts, accounts_task) = spawn_reflector(
            // Lenient: an unreadable binding is kept (and reported), its bad field named.
            Api::<Lenient<QuickSightAccount>>::all(client.clone()),
            into_guarded,
            // Status writes do not change the generation: only spec edits, pausing and
            // resuming (and deletions) re-reconcile decisions.
            |binding| {
                let paused = crate::pause::is_paused(binding.annotations());
                (binding.meta().generation, paused)
            },
            changed.clone(),
        );
        let (namespaces, namespaces_task) = spawn_reflector(
            Api::<Namespace>::all(client),
            std::convert::identity,
            |namespace| namespace.labels().clone(),
            changed.clone(),
        );
        Self {
            ready: both_ready(&accounts, &namespaces),
            accounts,
            namespaces,
            rules,
            changed,
            watches: vec![accounts_task, namespaces_task],
        }
    }

    /// Fixed bindings and namespaces, without watches (tests, and decisions judged offline).
    pub fn fixed(
        rules: OperatorRules,
        accounts: Vec<QuickSightAccount>,
        namespaces: Vec<Namespace>,
    ) -> Self {
        let accounts = fixed_store(accounts.into_iter().map(|a| DeserializeGuard(Ok(a))));
        let namespaces = fixed_store(namespaces);
        Self {
            ready: both_ready(&accounts, &namespaces),
            accounts,
            namespaces,
            rules,
            changed: watch::channel(0).0,
            watches: Vec::new(),
        }
    }

    /// Resolves once both stores hold a complete listing: judging a decision before would
    /// refuse it for want of a binding that merely has not been read yet.
    pub async fn wait_until_ready(&self) {
        self.ready.clone().await
    }

    /// One item each time a binding's spec or a namespace's labels change (bursts coalesce).
    pub fn changes(&self) -> impl Stream<Item = ()> + Send + 'static {
        changes_of(self.changed.subscribe())
    }

    /// Every binding, readable (`Ok`) or not (`Err`: it does not deserialize).
    pub fn accounts(&self) -> Vec<Arc<DeserializeGuard<QuickSightAccount>>> {
        self.accounts.state()
    }

    fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    /// Whether the binding `name` is annotated paused (every decision it admits waits).
    pub fn is_paused(&self, name: &str) -> bool {
        self.accounts
            .get(&ObjectRef::new(name))
            .is_some_and(|binding| crate::pause::is_paused(binding.annotations()))
    }

    /// Whether a decision in `namespace` on `spec`'s request, naming `region`, may act: how each
    /// claimant of a request is judged, as it is written.
    pub fn admits(
        &self,
        namespace: &str,
        spec: &SelfUpgradeDecisionSpec,
        region: Option<&str>,
    ) -> bool {
        let claimant = SelfUpgradeDecisionSpec {
            region: region.map(str::to_string),
            ..spec.clone()
        };
        self.authorize(namespace, &claimant).is_ok()
    }

    /// Admits or refuses a decision in `namespace` (see [`tenancy::authorize`]).
    pub fn authorize(
        &self,
        namespace: &str,
        spec: &SelfUpgradeDecisionSpec,
    ) -> Result<Grant, tenancy::Refusal> {
        let accounts = self.accounts();
        let readable: Vec<&QuickSightAccount> =
            accounts.iter().filter_map(|a| a.0.as_ref().ok()).collect();
        let unreadable: Vec<Unreadable> = accounts
            .iter()
            .filter_map(|a| a.0.as_ref().err())
            .map(|invalid| Unreadable {
                name: invalid.metadata.name.clone().unwrap_or_default(),
                error: invalid.error.clone(),
            })
            .collect();
        let known = self.namespace(namespace);
        let view = NamespaceView {
            name: namespace,
            labels: known.as_ref().map(|ns| ns.labels()),
        };
        let verdict = tenancy::authorize(view, spec, &readable, &self.rules);
        tenancy::considering_unreadable(verdict, &unreadable)
    }
}

/// One item each time the value behind `receiver` changes (bursts coalesce), until its sender
/// is gone.
pub fn changes_of<T: Send + Sync + 'static>(
    receiver: watch::Receiver<T>,
) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
}

fn both_ready(
    accounts: &Store<DeserializeGuard<QuickSightAccount>>,
    namespaces: &Store<Namespace>,
) -> Shared<BoxFuture<'static, ()>> {
    let (accounts, namespaces) = (accounts.clone(), namespaces.clone());
    async move {
        // `Err` only when a store's writer is gone; the watches never drop theirs.
        let _ = accounts.wait_until_ready().await;
        let _ = namespaces.wait_until_ready().await;
    }
    .boxed()
    .shared()
}

/// Starts a reflector for `api` on its own task, storing what `convert` makes of each watched
/// object; bumps `changed` whenever an object's `fingerprint` changes or the object is deleted.
fn spawn_reflector<W, K, F>(
    api: Api<W>,
    convert: fn(watcher::Event<W>) -> watcher::Event<K>,
    fingerprint: impl Fn(&K) -> F + Send + 'static,
    changed: watch::Sender<u64>,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    W: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    W: Send + 'static,
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    F: PartialEq + Send + 'static,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default())
        .default_backoff()
        .map_ok(convert)
        // managedFields are never read.
        .map_ok(|event| event.modify(|o| o.managed_fields_mut().clear()))
        .reflect(writer);
    let task = tokio::spawn(async move {
        let mut seen: HashMap<ObjectRef<K>, F> = HashMap::new();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            let bump = match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    let print = fingerprint(&object);
                    seen.insert(ObjectRef::from_obj(&object), print)
                        .is_none_or(|before| before != fingerprint(&object))
                }
                Ok(watcher::Event::Delete(object)) => {
                    seen.remove(&ObjectRef::from_obj(&object));
                    true
                }
                Ok(watcher::Event::Init) => false,
                Ok(watcher::Event::InitDone) => true,
                Err(error) => {
                    warn!(%error, kind = %K::kind(&()), "watch failed; retrying with backoff");
                    false
                }
            };
            if bump {
                changed.send_modify(|count| *count = count.wrapping_add(1));
            }
        }
    });
    (store, task)
}

fn fixed_store<K>(objects: impl IntoIterator<Item = K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}
