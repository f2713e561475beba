//! The record of what was notified, kept in a ConfigMap in the operator's namespace, so that a
//! restarted operator, or the replica that takes the Lease over, does not notify again what the
//! last leader did. A ConfigMap because it is there in every cluster, read and written with the
//! resourceVersion preconditions Kubernetes gives every object (a deposed leader's late write
//! fails instead of undoing the new leader's), visible with `kubectl get configmap`, and granted
//! by name in RBAC; a status field of the bindings would not cover accounts without one, and the
//! annotations of mirrored requests exist only with the mirror.

use super::ledger::{DATA_KEY, Ledger};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use tracing::warn;

/// Writes that lose to another writer in a row before one gives up until the next flush.
const CONFLICT_ATTEMPTS: usize = 3;

/// The ConfigMap, and the version of it last read or written.
pub struct Record {
    api: Api<ConfigMap>,
    name: String,
    version: Option<String>,
}

impl Record {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            version: None,
        }
    }

    /// Reads the record; none yet is an empty one, and an unreadable one is started afresh
    /// (logged: what it held may be notified again).
    pub async fn load(&mut self) -> Result<Ledger, kube::Error> {
        let Some(stored) = self.api.get_opt(&self.name).await? else {
            self.version = None;
            return Ok(Ledger::default());
        };
        self.version = stored.metadata.resource_version.clone();
        let data = stored.data.unwrap_or_default();
        let Some(text) = data.get(DATA_KEY) else {
            return Ok(Ledger::default());
        };
        Ok(Ledger::from_data(text).unwrap_or_else(|error| {
            warn!(record = %self.name, %error, "starting the notification record afresh");
            Ledger::default()
        }))
    }

    /// Stores `ledger`, on the version last seen; when another writer stored one since, its
    /// record is merged into `ledger` first.
    pub async fn save(&mut self, ledger: &mut Ledger) -> Result<(), kube::Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write(ledger).await {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(status))
                    if status.code == 409 && attempt < CONFLICT_ATTEMPTS =>
                {
                    let stored = self.load().await?;
                    ledger.merge(stored);
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn write(&mut self, ledger: &Ledger) -> Result<(), kube::Error> {
        let (text, left_out) = ledger.to_data();
        if left_out > 0 {
            warn!(
                left_out,
                "the notification record is full: its oldest entries are dropped"
            );
        }
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: self.version.clone(),
                labels: Some(BTreeMap::from([(
                    crate::mirror::MANAGED_BY.0.to_string(),
                    crate::mirror::MANAGED_BY.1.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), text)])),
            ..ConfigMap::default()
        };
        let params = PostParams {
            field_manager: Some(crate::context::FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let stored = match self.version {
            None => self.api.create(&params, &object).await?,
            Some(_) => self.api.replace(&self.name, &params, &object).await?,
        };
        self.version = stored.metadata.resource_version;
        Ok(())
    }
}
