//! Leader election (`--leader-elect`): of several replicas, only the one holding a
//! `coordination.k8s.io/v1` Lease runs the controller; the others wait on standby and take over
//! once the leader's lease expires.
//!
//! The Lease is kept by `kube-lease-manager`. Leadership is an optimisation, not the safety
//! net: a leader that lost its lease without noticing (a partition) can still not call QuickSight
//! twice for one decision, because every call is preceded by a write-ahead intent that is
//! conditional on the object's resourceVersion (see `reconcile::observe_and_act`).

use crate::controller::{self, WatchScope};
use crate::reconcile::Context;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use std::sync::Arc;
use tracing::{info, warn};

/// Which Lease to hold, as whom, and for how long.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// Unique among the replicas (the pod name in a Deployment).
    pub identity: String,
    /// A leader that does not renew for this long loses the lease.
    pub duration_seconds: u64,
    /// The leader renews this long before its lease would expire.
    pub grace_seconds: u64,
}

impl LeaseSettings {
    /// kube-lease-manager panics unless 0 < grace < duration; refuse such settings with a message.
    pub fn check(&self) -> Result<(), LeaderError> {
        if self.grace_seconds == 0 || self.grace_seconds >= self.duration_seconds {
            return Err(LeaderError::Durations {
                duration: self.duration_seconds,
                grace: self.grace_seconds,
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "--lease-grace ({grace}s) must be shorter than --lease-duration ({duration}s), and both above 0"
    )]
    Durations { duration: u64, grace: u64 },
    #[error("leader election through Lease {namespace}/{name}: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error("the lease manager task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A shutdown signal that several waiters can await.
pub type Shutdown = Shared<BoxFuture<'static, ()>>;

/// Runs the controller whenever this replica holds the lease, until `shutdown`; then releases
/// the lease so that a standby takes over at once rather than after the lease expires.
pub async fn run_when_leading(
    ctx: Arc<Context>,
    scope: WatchScope,
    concurrency: u16,
    lease: LeaseSettings,
    shutdown: Shutdown,
) -> Result<(), LeaderError> {
    lease.check()?;
    let lease_error = |source| LeaderError::Lease {
        namespace: lease.namespace.clone(),
        name: lease.name.clone(),
        source,
    };
    let manager = LeaseManagerBuilder::new(ctx.client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration_seconds)
        .with_grace(lease.grace_seconds)
        .build()
        .await
        .map_err(lease_error)?;
    let (mut leading, manager_task) = manager.watch().await;
    loop {
        info!(identity = %lease.identity, lease = %lease.name, "standing by for the lease");
        tokio::select! {
            _ = shutdown.clone() => break,
            became = leading.wait_for(|is_leader| *is_leader) => {
                // The manager task ended (it reports why below).
                if became.is_err() { break; }
            }
        }
        info!(identity = %lease.identity, "acquired the lease; starting the controller");
        let mut watch_loss = leading.clone();
        let lost = async move {
            let _ = watch_loss.wait_for(|is_leader| !*is_leader).await;
        }
        .boxed()
        .shared();
        let stop = futures::future::select(shutdown.clone(), lost).map(|_| ());
        controller::run(ctx.clone(), scope.clone(), concurrency, stop).await;
        if shutdown.peek().is_some() {
            break;
        }
        warn!(identity = %lease.identity, "lost the lease; controller stopped, back to standby");
    }
    // Closing the channel makes the manager release the lease.
    drop(leading);
    manager_task.await?.map_err(lease_error)?;
    info!(identity = %lease.identity, "released the lease");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(duration_seconds: u64, grace_seconds: u64) -> LeaseSettings {
        LeaseSettings {
            name: "selfupgrade-operator".into(),
            namespace: "ops".into(),
            identity: "pod-a".into(),
            duration_seconds,
            grace_seconds,
        }
    }

    #[test]
    fn the_grace_must_fit_inside_the_lease() {
        assert!(lease(15, 5).check().is_ok());
        for (duration, grace) in [(15, 0), (5, 5), (5, 15), (0, 0)] {
            let error = lease(duration, grace).check().expect_err("refused");
            assert!(error.to_string().contains("--lease-grace"), "{error}");
        }
    }
}
