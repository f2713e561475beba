//! The in-memory object store: objects by (type, namespace, name), one global resourceVersion
//! that increases on every write, and a bounded history of changes that watches replay from.

use super::persist::{PersistError, StateDir};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    /// Index of the type in the registry.
    pub type_id: usize,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One write, as watches see it.
#[derive(Clone, Debug)]
pub struct Change {
    pub revision: u64,
    pub key: ObjectKey,
    pub kind: ChangeKind,
    pub object: Arc<Value>,
}

/// One change [`Store::commit`] applies: the object to store, or `None` to remove it.
type Write = (ObjectKey, Option<Value>, ChangeKind);

pub struct Store {
    objects: BTreeMap<ObjectKey, Value>,
    revision: u64,
    history: VecDeque<Change>,
    history_limit: usize,
    /// Changes up to and including this revision are no longer in `history`.
    compacted_through: u64,
    live: broadcast::Sender<Change>,
    /// With `--state-dir`: where every write goes before it is answered.
    persist: Option<StateDir>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let (live, _) = broadcast::channel(history_limit.max(1024));
        Self {
            objects: BTreeMap::new(),
            revision: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_through: 1,
            live,
            persist: None,
        }
    }

    /// Takes over the objects and revision of an earlier run. No history comes along: a watch
    /// from before the restart gets 410 Gone, as from a restarted watch cache.
    pub fn restore(&mut self, revision: u64, objects: BTreeMap<ObjectKey, Value>) {
        self.objects = objects;
        self.revision = revision;
        self.compacted_through = revision;
        self.history.clear();
    }

    /// From now on, writes every change to `dir` before it is answered or watched; writes
    /// once now.
    pub fn persist_to(&mut self, dir: StateDir) -> Result<(), PersistError> {
        self.persist = Some(dir);
        self.save(self.revision)
    }

    /// The resource name of each type id, for what is written to the state directory.
    pub fn name_types(&mut self, resources: Vec<String>) {
        if let Some(dir) = &mut self.persist {
            dir.name_types(resources);
        }
    }

    fn save(&self, revision: u64) -> Result<(), PersistError> {
        match &self.persist {
            Some(dir) => dir.save_objects(revision, self.objects.iter()),
            None => Ok(()),
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn compacted_through(&self) -> u64 {
        self.compacted_through
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of a type, in one namespace or (None) all, ordered by namespace and name.
    pub fn list(
        &self,
        type_id: usize,
        namespace: Option<&str>,
    ) -> impl Iterator<Item = (&ObjectKey, &Value)> {
        self.objects.iter().filter(move |(k, _)| {
            k.type_id == type_id && namespace.is_none_or(|ns| k.namespace == ns)
        })
    }

    /// Stores `object` under a new revision and returns it with that `resourceVersion`.
    pub fn put(
        &mut self,
        key: ObjectKey,
        object: Value,
        kind: ChangeKind,
    ) -> Result<Value, PersistError> {
        let mut written = self.commit(vec![(key, Some(object), kind)])?;
        Ok(written.pop().unwrap_or_default())
    }

    /// Stores `object` and `view` — the same object as another API serves it (see
    /// `event_views`) — under one new revision; returns `object` with it.
    pub fn put_with_view(
        &mut self,
        key: ObjectKey,
        object: Value,
        (view_key, view): (ObjectKey, Value),
        kind: ChangeKind,
    ) -> Result<Value, PersistError> {
        let writes = vec![(view_key, Some(view), kind), (key, Some(object), kind)];
        let mut written = self.commit(writes)?;
        Ok(written.pop().unwrap_or_default())
    }

    /// Removes an object, and its view under `view_key` if any; watches see them with a new
    /// revision. `Ok(None)`: there was no such object.
    pub fn remove(
        &mut self,
        key: &ObjectKey,
        view_key: Option<&ObjectKey>,
    ) -> Result<Option<Value>, PersistError> {
        if !self.objects.contains_key(key) {
            return Ok(None);
        }
        let mut removals: Vec<Write> = view_key
            .filter(|view_key| self.objects.contains_key(*view_key))
            .map(|view_key| (view_key.clone(), None, ChangeKind::Deleted))
            .into_iter()
            .collect();
        removals.push((key.clone(), None, ChangeKind::Deleted));
        Ok(self.commit(removals)?.pop())
    }

    /// Applies `writes` (a value to store, or `None` to remove) under one new revision, on disk
    /// first (with `--state-dir`) and only then to watches, as kube-apiserver sends a watch
    /// event only for what etcd has committed: a watcher never sees a change that a crash
    /// could take back. A write the disk refuses changes nothing and is seen by no one.
    /// Returns each object as stored (or removed) with its new resourceVersion.
    fn commit(&mut self, writes: Vec<Write>) -> Result<Vec<Value>, PersistError> {
        let revision = self.revision + 1;
        let mut before = Vec::with_capacity(writes.len());
        let mut changes = Vec::with_capacity(writes.len());
        for (key, object, kind) in writes {
            let previous = match object {
                Some(mut object) => {
                    object["metadata"]["resourceVersion"] = Value::String(revision.to_string());
                    changes.push((key.clone(), kind, object.clone()));
                    self.objects.insert(key.clone(), object)
                }
                None => {
                    let removed = self.objects.remove(&key);
                    if let Some(mut gone) = removed.clone() {
                        gone["metadata"]["resourceVersion"] = Value::String(revision.to_string());
                        changes.push((key.clone(), kind, gone));
                    }
                    removed
                }
            };
            before.push((key, previous));
        }
        if let Err(error) = self.save(revision) {
            for (key, previous) in before.into_iter().rev() {
                match previous {
                    Some(object) => self.objects.insert(key, object),
                    None => self.objects.remove(&key),
                };
            }
            return Err(error);
        }
        self.revision = revision;
        Ok(changes
            .into_iter()
            .map(|(key, kind, object)| {
                self.record(key, kind, object.clone());
                object
            })
            .collect())
    }

    fn record(&mut self, key: ObjectKey, kind: ChangeKind, object: Value) {
        let change = Change {
            revision: self.revision,
            key,
            kind,
            object: Arc::new(object),
        };
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_through = dropped.revision;
            }
        }
        // No receiver is fine: nobody is watching.
        let _ = self.live.send(change);
    }

    /// Forgets all history; a watch from any earlier revision then gets 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_through = self.revision;
    }

    /// Changes after `revision`, and a receiver for the ones to come; `None` when the history
    /// no longer reaches back that far.
    pub fn changes_since(
        &self,
        revision: u64,
    ) -> Option<(Vec<Change>, broadcast::Receiver<Change>)> {
        if revision < self.compacted_through {
            return None;
        }
        let replay = self
            .history
            .iter()
            .filter(|c| c.revision > revision)
            .cloned()
            .collect();
        Some((replay, self.live.subscribe()))
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            type_id: 0,
            namespace: "default".into(),
            name: name.into(),
        }
    }

    #[test]
    fn every_write_gets_a_higher_revision() {
        let mut store = Store::new(10);
        let a = store
            .put(key("a"), json!({"metadata": {}}), ChangeKind::Added)
            .expect("stored");
        let b = store
            .put(key("a"), json!({"metadata": {}}), ChangeKind::Modified)
            .expect("stored");
        let rv = |v: &Value| {
            v["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
        };
        assert!(rv(&b) > rv(&a));
        let removed = store
            .remove(&key("a"), None)
            .expect("stored")
            .expect("present");
        assert!(rv(&removed) > rv(&b));
        assert_eq!(store.revision(), rv(&removed).expect("rv"));
    }

    #[test]
    fn an_object_and_its_view_change_together_under_one_revision() {
        let mut store = Store::new(10);
        let view_key = ObjectKey {
            type_id: 1,
            ..key("a")
        };
        let written = store
            .put_with_view(
                key("a"),
                json!({"metadata": {}, "note": "n"}),
                (view_key.clone(), json!({"metadata": {}, "message": "n"})),
                ChangeKind::Added,
            )
            .expect("stored");
        let view = store.get(&view_key).expect("view stored").clone();
        assert_eq!(view["message"], "n");
        assert_eq!(
            view["metadata"]["resourceVersion"],
            written["metadata"]["resourceVersion"]
        );
        store
            .remove(&key("a"), Some(&view_key))
            .expect("stored")
            .expect("present");
        assert!(store.get(&view_key).is_none());
        let (replay, _) = store.changes_since(1).expect("retained");
        let kinds: Vec<(usize, ChangeKind)> =
            replay.iter().map(|c| (c.key.type_id, c.kind)).collect();
        assert_eq!(
            kinds,
            [
                (1, ChangeKind::Added),
                (0, ChangeKind::Added),
                (1, ChangeKind::Deleted),
                (0, ChangeKind::Deleted)
            ]
        );
    }

    #[test]
    fn history_replays_and_expires() {
        let mut store = Store::new(2);
        for name in ["a", "b", "c"] {
            store
                .put(key(name), json!({"metadata": {}}), ChangeKind::Added)
                .expect("stored");
        }
        // Revisions 2, 3, 4 were written; only 3 and 4 are retained.
        assert!(store.changes_since(1).is_none());
        let (replay, _) = store.changes_since(2).expect("retained");
        assert_eq!(
            replay.iter().map(|c| c.revision).collect::<Vec<_>>(),
            [3, 4]
        );
        store.compact();
        assert!(store.changes_since(3).is_none());
        assert!(store.changes_since(4).is_some());
    }

    #[test]
    fn a_write_the_state_directory_refuses_changes_nothing_and_is_watched_by_no_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let mut store = Store::new(10);
        store
            .persist_to(StateDir::new(&state).expect("state dir"))
            .expect("first snapshot");
        store
            .put(key("a"), json!({"metadata": {}, "v": 1}), ChangeKind::Added)
            .expect("stored");
        let mut watch = store.subscribe();
        // The disk goes away: no snapshot can be written there any more.
        std::fs::remove_dir_all(&state).expect("removed");
        std::fs::write(&state, "not a directory").expect("file in its place");
        let revision = store.revision();

        let refused = store.put(
            key("a"),
            json!({"metadata": {}, "v": 2}),
            ChangeKind::Modified,
        );
        assert!(refused.is_err(), "the write is refused");
        assert!(store.remove(&key("a"), None).is_err(), "so is a removal");
        assert_eq!(
            store.get(&key("a")).expect("kept")["v"],
            1,
            "nothing changed"
        );
        assert_eq!(store.revision(), revision, "no revision was used up");
        assert!(
            matches!(watch.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
            "no watcher saw a change the disk does not hold"
        );
    }
}
