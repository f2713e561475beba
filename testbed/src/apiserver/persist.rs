//! `--state-dir`: the API server's objects, resourceVersion, certificate and admin token on disk,
//! so that a process killed and started again on the same port serves the same cluster to the
//! same clients, as a kube-apiserver restarted over its etcd does.
//!
//! Every write is on disk before it is answered or sent to a watch (the whole snapshot, written
//! to a temporary file and renamed over the last), as etcd commits a write before the API server
//! acknowledges it or its watch cache sees it: a test that kills this server never loses a write
//! a client was told of, which no real cluster does either; a write the disk refuses is refused. A restarted server keeps no watch history, as a restarted watch cache keeps none: a
//! watch from an older resourceVersion gets `410 Gone`, and clients list again.

use super::store::ObjectKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a restarted server needs to be the same server to its clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub certificate_pem: String,
    pub key_pem: String,
    pub token: String,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    revision: u64,
    objects: Vec<StoredObject>,
}

/// One object, its type named by resource (`selfupgradedecisions.quicksight.selfupgrade.io`),
/// not by the registry's index, which may differ between versions.
#[derive(Serialize, Deserialize)]
pub struct StoredObject {
    pub resource: String,
    pub namespace: String,
    pub name: String,
    pub object: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a state file of this API server: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} holds a {resource} object, a resource this server does not serve")]
    UnknownResource { path: String, resource: String },
}

/// An earlier run's revision and objects.
pub type Restored = (u64, Vec<StoredObject>);

/// The state directory, with the registry's type names to map keys to.
pub struct StateDir {
    dir: PathBuf,
    /// Resource name of each registry type, by index.
    resources: Vec<String>,
}

impl StateDir {
    pub fn new(dir: &Path) -> Result<Self, PersistError> {
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            resources: Vec::new(),
        })
    }

    /// The resource name of each type id, for the snapshots written from now on (the types
    /// served change as CRDs are created).
    pub fn name_types(&mut self, resources: Vec<String>) {
        self.resources = resources;
    }

    fn objects_path(&self) -> PathBuf {
        self.dir.join("objects.json")
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.json")
    }

    /// The identity of an earlier run, if there was one.
    pub fn identity(&self) -> Result<Option<Identity>, PersistError> {
        read_json(&self.identity_path())
    }

    pub fn save_identity(&self, identity: &Identity) -> Result<(), PersistError> {
        write_json(&self.identity_path(), identity)
    }

    /// The objects and revision of an earlier run, if there was one.
    pub fn objects(&self) -> Result<Option<Restored>, PersistError> {
        Ok(read_json::<Snapshot>(&self.objects_path())?.map(|s| (s.revision, s.objects)))
    }

    /// `objects` keyed by the type id of their resource in `resources` (by index).
    pub fn keyed(
        &self,
        objects: Vec<StoredObject>,
        resources: &[String],
    ) -> Result<BTreeMap<ObjectKey, Value>, PersistError> {
        let mut keyed = BTreeMap::new();
        for stored in objects {
            let type_id = resources
                .iter()
                .position(|r| *r == stored.resource)
                .ok_or_else(|| PersistError::UnknownResource {
                    path: self.objects_path().display().to_string(),
                    resource: stored.resource.clone(),
                })?;
            let key = ObjectKey {
                type_id,
                namespace: stored.namespace,
                name: stored.name,
            };
            keyed.insert(key, stored.object);
        }
        Ok(keyed)
    }

    /// Writes every object and the revision, replacing the last snapshot whole.
    pub fn save_objects<'a>(
        &self,
        revision: u64,
        objects: impl Iterator<Item = (&'a ObjectKey, &'a Value)>,
    ) -> Result<(), PersistError> {
        let objects = objects
            .map(|(key, object)| StoredObject {
                resource: self.resources.get(key.type_id).cloned().unwrap_or_default(),
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                object: object.clone(),
            })
            .collect();
        write_json(&self.objects_path(), &Snapshot { revision, objects })
    }
}

fn io_error(path: &Path, source: std::io::Error) -> PersistError {
    PersistError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, PersistError> {
    match std::fs::read(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error(path, source)),
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| PersistError::Corrupt {
                    path: path.display().to_string(),
                    source,
                })
        }
    }
}

/// Writes to a temporary file and renames it over `path`, so a kill mid-write leaves the last
/// complete snapshot.
fn write_json(path: &Path, value: &impl Serialize) -> Result<(), PersistError> {
    let temporary = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).map_err(|source| PersistError::Corrupt {
        path: path.display().to_string(),
        source,
    })?;
    std::fs::write(&temporary, bytes).map_err(|source| io_error(&temporary, source))?;
    std::fs::rename(&temporary, path).map_err(|source| io_error(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_and_identity_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let resources = vec![
            "namespaces".to_string(),
            "leases.coordination.k8s.io".into(),
        ];
        let mut state = StateDir::new(dir.path()).expect("dir");
        state.name_types(resources.clone());
        assert!(state.objects().expect("readable").is_none(), "a first run");
        let key = ObjectKey {
            type_id: 1,
            namespace: "default".into(),
            name: "l".into(),
        };
        let object = json!({"metadata": {"name": "l", "resourceVersion": "7"}});
        let mut objects = BTreeMap::new();
        objects.insert(key.clone(), object.clone());
        state.save_objects(7, objects.iter()).expect("saved");
        let identity = Identity {
            certificate_pem: "cert".into(),
            key_pem: "key".into(),
            token: "t".into(),
        };
        state.save_identity(&identity).expect("saved");

        let again = StateDir::new(dir.path()).expect("dir");
        let (revision, restored) = again.objects().expect("readable").expect("present");
        assert_eq!(revision, 7);
        let keyed = again.keyed(restored, &resources).expect("known");
        assert_eq!(keyed.get(&key), Some(&object));
        assert_eq!(again.identity().expect("readable"), Some(identity));

        let (_, restored) = again.objects().expect("readable").expect("present");
        assert!(matches!(
            again.keyed(restored, &["namespaces".into()]),
            Err(PersistError::UnknownResource { .. })
        ));
    }
}
