//! Leader election (`--leader-elect`): of several replicas, only the one holding a
//! `coordination.k8s.io/v1` Lease runs the controller; the others wait on standby and take over
//! once the leader's lease expires.
//!
//! The Lease is kept by `kube-lease-manager`, which keeps reporting "leader" while its renewals
//! fail (it only retries them). So this replica acts only while it also sees its own renewal on
//! the Lease, and stops half a grace period before that renewal would expire — the renew
//! deadline of client-go's leader election: a leader cut off from the API server stops before a
//! standby may take over.
//!
//! Leadership is an optimisation, not the safety net: even two replicas acting at once cannot
//! call QuickSight twice for one decision, because every call is preceded by a write-ahead intent
//! that is conditional on the object's resourceVersion (see `reconcile::act`).

use crate::context::Context;
use crate::controller::{self, WatchScope};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;
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

    /// How long before its renewal would expire a leader stops acting when it has not seen
    /// itself renew: half the grace, so that an on-time renewal (due a whole grace before
    /// expiry) has the other half to be seen.
    fn renew_margin(&self) -> Duration {
        Duration::from_secs(self.grace_seconds) / 2
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
    let (holds_lease, manager_task) = manager.watch().await;
    let (acting_sender, mut leading) = watch::channel(false);
    let leases = Api::<Lease>::namespaced(ctx.client.clone(), &lease.namespace);
    let confirmer = tokio::spawn(act_while_renewed(
        holds_lease.clone(),
        leases,
        lease.clone(),
        acting_sender,
    ));
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
    // Closing the manager's channel (every receiver, the confirmer's too) makes it release the
    // lease.
    confirmer.abort();
    let _ = confirmer.await;
    drop(holds_lease);
    manager_task.await?.map_err(lease_error)?;
    info!(identity = %lease.identity, "released the lease");
    Ok(())
}

/// Publishes whether this replica may act as the leader: the lease manager says it holds the
/// Lease, and the Lease, watched, shows a renewal by this replica that has not run out
/// (see [`time_left_to_act`]). Ends when the lease manager does.
async fn act_while_renewed(
    mut holds_lease: watch::Receiver<bool>,
    leases: Api<Lease>,
    settings: LeaseSettings,
    acting: watch::Sender<bool>,
) {
    // One watch of one object: renewals arrive as events, so confirming costs no requests.
    let selector = format!("metadata.name={}", settings.name);
    let mut renewals = watcher(leases, watcher::Config::default().fields(&selector))
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut renewed_until: Option<Instant> = None;
    loop {
        let holds = *holds_lease.borrow_and_update();
        let may_act = holds && renewed_until.is_some_and(|until| until > Instant::now());
        let was_acting = acting.send_replace(may_act);
        if was_acting && !may_act && holds {
            warn!(
                identity = %settings.identity,
                "no renewal of the lease seen in time; stopping until one is"
            );
        }
        let run_out = async {
            match renewed_until {
                Some(until) if may_act => tokio::time::sleep_until(until).await,
                _ => futures::future::pending().await,
            }
        };
        tokio::select! {
            changed = holds_lease.changed() => if changed.is_err() { return },
            lease = renewals.next() => match lease {
                Some(Ok(lease)) => {
                    renewed_until = time_left_to_act(
                        &lease,
                        &settings.identity,
                        settings.duration_seconds,
                        settings.renew_margin(),
                        SystemTime::now(),
                    )
                    .map(|left| Instant::now() + left);
                }
                // The watcher retries with backoff; meanwhile no renewal is seen.
                Some(Err(error)) => warn!(%error, "watching the lease"),
                None => return,
            },
            () = run_out => {}
        }
    }
}

/// How much longer `identity` may act on `lease`: until its last renewal (or acquisition)
/// expires, less `margin`. `None` when the Lease names another holder or no time is left.
/// The renewal time is stamped by the holder's clock, which for our own renewals is this one.
pub fn time_left_to_act(
    lease: &Lease,
    identity: &str,
    default_duration_seconds: u64,
    margin: Duration,
    now: SystemTime,
) -> Option<Duration> {
    let spec = lease.spec.as_ref()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?;
    let duration = spec
        .lease_duration_seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .unwrap_or(default_duration_seconds);
    let expires = SystemTime::from(renewed.0) + Duration::from_secs(duration);
    let left = expires.checked_sub(margin)?.duration_since(now).ok()?;
    (!left.is_zero()).then_some(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use k8s_openapi::jiff::Timestamp;

    fn held_by(holder: &str, renewed_at_seconds: i64, duration_seconds: Option<i32>) -> Lease {
        let at = MicroTime(Timestamp::from_second(renewed_at_seconds).expect("timestamp"));
        Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                renew_time: Some(at),
                lease_duration_seconds: duration_seconds,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_leader_acts_until_its_renewal_would_expire_less_the_margin() {
        let margin = Duration::from_millis(2500);
        let cases = [
            // (holder, renewed at, lease duration on the Lease, now, time left)
            (
                "pod-a",
                1000,
                Some(15),
                1000,
                Some(Duration::from_millis(12500)),
            ),
            (
                "pod-a",
                1000,
                Some(15),
                1010,
                Some(Duration::from_millis(2500)),
            ),
            ("pod-a", 1000, Some(15), 1013, None),
            ("pod-a", 1000, Some(15), 1020, None),
            // The Lease's own duration is what a standby judges by; ours is the fallback.
            (
                "pod-a",
                1000,
                Some(30),
                1020,
                Some(Duration::from_millis(7500)),
            ),
            ("pod-a", 1000, None, 1010, Some(Duration::from_millis(2500))),
            // Another holder: never.
            ("pod-b", 1000, Some(15), 1000, None),
        ];
        for (holder, renewed, duration, now, expected) in cases {
            let lease = held_by(holder, renewed, duration);
            assert_eq!(
                time_left_to_act(&lease, "pod-a", 15, margin, at(now)),
                expected,
                "{holder} renewed at {renewed} for {duration:?}, now {now}"
            );
        }
    }

    #[test]
    fn a_lease_without_a_holder_or_a_time_gives_no_time_to_act() {
        let margin = Duration::from_secs(1);
        assert_eq!(
            time_left_to_act(&Lease::default(), "pod-a", 15, margin, at(0)),
            None
        );
        let mut unstamped = held_by("pod-a", 1000, Some(15));
        if let Some(spec) = unstamped.spec.as_mut() {
            spec.renew_time = None;
        }
        assert_eq!(
            time_left_to_act(&unstamped, "pod-a", 15, margin, at(1000)),
            None
        );
    }

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
