//! A local stand-in for QuickSight's self-upgrade API, for tests and the playground.
//!
//! It speaks the real wire protocol (rest-json, SigV4-signed requests, `x-amzn-ErrorType`
//! errors), so `aws-sdk-quicksight`, boto3 and the AWS CLI use it unmodified through an endpoint
//! override. The operator's production path never imports this module.

mod admin;
mod error;
mod faults;
pub mod fuzzing;
mod iam;
mod seed;
mod sigv4;
mod sts;
mod wire;
mod world;

pub use error::SimError;
pub use faults::{FaultSettings, ForcedError, LostAnswer, UpdateFault};
pub use iam::{IamSettings, RoleTrust};
pub use seed::{SeedFile, SeedNamespace, generate_requests};
pub use world::{EpochUnit, SimNamespace, SimRequest, SimStatus, World};

use faults::Faults;
use iam::{AssumeRoleInput, Caller, Iam, IssuedCredentials};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::oneshot;

/// Calls and their outcomes, for tests that assert exactly how many calls were made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// operation → outcome (`ok` or the exception name) → count.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// SigV4 access key id → number of calls signed with it.
    pub access_keys: BTreeMap<String, u64>,
    /// Principal ARN (an assumed-role session, or the owner of a long-term key the IAM settings
    /// name) → AWS account acted on → QuickSight calls.
    pub principals: BTreeMap<String, BTreeMap<String, u64>>,
    /// Updates that took effect and lost their answer (counted `ok` in `calls`), by way.
    pub lost_answers: BTreeMap<String, u64>,
}

impl Counters {
    /// Calls of `operation` that ended with `outcome` (`ok` or an exception name).
    pub fn count(&self, operation: &str, outcome: &str) -> u64 {
        self.calls
            .get(operation)
            .and_then(|outcomes| outcomes.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    /// All calls of `operation`, whatever their outcome.
    pub fn total(&self, operation: &str) -> u64 {
        self.calls
            .get(operation)
            .map(|o| o.values().sum())
            .unwrap_or(0)
    }
}

struct SimState {
    world: World,
    faults: Faults,
    iam: Iam,
    counters: Counters,
    next_request_id: u64,
    /// Requests whose updates wait before acting, by (account, namespace, id).
    holds: HashMap<(String, String, String), Hold>,
    /// The latest calls, oldest first, at most [`CALL_LOG_LIMIT`].
    call_log: VecDeque<LoggedCall>,
    /// The regions a SigV4 credential scope may name: those this endpoint answers for.
    regions: Vec<String>,
}

/// The region the simulator answers for unless told otherwise.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Calls kept in [`SimHandle::call_log`]; older ones are dropped.
const CALL_LOG_LIMIT: usize = 100_000;

/// One API call as the simulator received it, for tests that check when calls came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedCall {
    pub operation: String,
    pub account: String,
    /// `ok` or the exception name.
    pub outcome: String,
    /// When the call was served (after any latency the faults add).
    pub at: std::time::Instant,
}

/// Updates of one request held before they act, until released.
struct Hold {
    released: tokio::sync::watch::Sender<bool>,
    /// Calls that arrived while the hold was in place.
    held_calls: u32,
}

fn request_key(account: &str, namespace: &str, id: &str) -> (String, String, String) {
    (account.to_string(), namespace.to_string(), id.to_string())
}

/// A handle on a running simulator's state: the in-process twin of the HTTP admin interface.
#[derive(Clone)]
pub struct SimHandle {
    state: Arc<Mutex<SimState>>,
}

impl SimHandle {
    pub fn new(world: World, faults: FaultSettings, seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(SimState {
                world,
                faults: Faults::new(faults, seed),
                iam: Iam::default(),
                counters: Counters::default(),
                next_request_id: 1,
                holds: HashMap::new(),
                call_log: VecDeque::new(),
                regions: vec![DEFAULT_REGION.to_string()],
            })),
        }
    }

    /// The state, with what QuickSight would have done by itself by now (auto-approvals)
    /// done: every call and every admin look sees it.
    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.world.auto_approve(epoch_millis());
        state
    }

    /// Switches a namespace's approval mode, as a console user does.
    pub fn set_approval_mode(
        &self,
        account: &str,
        namespace: &str,
        status: &str,
    ) -> Result<(), SimError> {
        self.lock()
            .world
            .set_self_upgrade_status(account, namespace, status, epoch_millis())
    }

    /// A namespace's approval mode, as the console shows it.
    pub fn approval_mode(&self, account: &str, namespace: &str) -> Result<String, SimError> {
        self.lock()
            .world
            .namespace(account, namespace)
            .map(|ns| ns.self_upgrade_status.clone())
    }

    /// How long after a request (or the switch to `AUTO_APPROVAL`) QuickSight approves it.
    pub fn set_auto_approval_delay(&self, delay: Duration) {
        self.lock().world.auto_approval_delay_ms =
            i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    }

    pub fn counters(&self) -> Counters {
        self.lock().counters.clone()
    }

    pub fn faults(&self) -> FaultSettings {
        self.lock().faults.settings.clone()
    }

    pub fn set_faults(&self, settings: FaultSettings) {
        self.lock().faults.replace(settings);
    }

    pub fn iam(&self) -> IamSettings {
        self.lock().iam.settings.clone()
    }

    pub fn set_iam(&self, settings: IamSettings) {
        self.lock().iam.configure(settings);
    }

    /// Issues a long-term access key pair: calls signed with it verify, as do calls signed with
    /// credentials STS handed out; a signature by any other key is refused, as AWS refuses it.
    pub fn add_access_key(&self, access_key_id: &str, secret: &str) {
        self.lock().iam.add_access_key(access_key_id, secret);
    }

    /// Deletes a long-term access key, as an IAM admin rotating it does.
    pub fn revoke_access_key(&self, access_key_id: &str) {
        self.lock().iam.revoke_access_key(access_key_id);
    }

    /// The regions SigV4 credential scopes may name (default `us-east-1`): one simulator
    /// stands for the regional endpoints of all of them.
    pub fn set_regions(&self, regions: Vec<String>) {
        self.lock().regions = regions;
    }

    /// Verifies the SigV4 signature of `raw` for `service`; the caller it names.
    fn verify(&self, raw: &wire::Raw, service: &str) -> Result<Caller, sigv4::Refusal> {
        let state = self.lock();
        let endpoint = sigv4::Endpoint {
            service,
            regions: &state.regions,
        };
        let access_key = sigv4::verify(
            &raw.incoming(),
            &endpoint,
            std::time::SystemTime::now(),
            |key| state.iam.secret_of(key),
        )?;
        Ok(Caller {
            access_key,
            session_token: raw.session_token(),
        })
    }

    /// STS `AssumeRole` (see [`iam::Iam::assume_role`]).
    fn assume_role(
        &self,
        caller: &Caller,
        input: &AssumeRoleInput<'_>,
        now: i64,
    ) -> Result<IssuedCredentials, SimError> {
        self.lock().iam.assume_role(caller, input, now)
    }

    fn next_request_id(&self) -> String {
        let mut state = self.lock();
        let id = format!("sim-{:012x}", state.next_request_id);
        state.next_request_id += 1;
        id
    }

    /// The latest calls (up to 100,000), oldest first.
    pub fn call_log(&self) -> Vec<LoggedCall> {
        self.lock().call_log.iter().cloned().collect()
    }

    /// Counts one call of `operation` by its outcome, and logs it.
    fn count<T>(&self, operation: &str, account: &str, result: &Result<T, SimError>) {
        let outcome = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.code.to_string(),
        };
        let mut state = self.lock();
        *state
            .counters
            .calls
            .entry(operation.to_string())
            .or_default()
            .entry(outcome.clone())
            .or_default() += 1;
        if state.call_log.len() == CALL_LOG_LIMIT {
            state.call_log.pop_front();
        }
        state.call_log.push_back(LoggedCall {
            operation: operation.to_string(),
            account: account.to_string(),
            outcome,
            at: std::time::Instant::now(),
        });
    }

    /// Forces `code` on the next call of `operation`.
    pub fn force_error(&self, operation: &str, code: &str) {
        self.lock().faults.settings.forced.push_back(ForcedError {
            operation: operation.to_string(),
            code: code.to_string(),
            message: None,
        });
    }

    /// Every request the simulator holds, by (account, namespace).
    pub fn requests(&self) -> BTreeMap<(String, String), Vec<SimRequest>> {
        self.lock()
            .world
            .namespaces
            .iter()
            .map(|(key, ns)| (key.clone(), ns.requests.clone()))
            .collect()
    }

    pub fn request(
        &self,
        account: &str,
        namespace: &str,
        id: &str,
    ) -> Result<SimRequest, SimError> {
        self.lock()
            .world
            .request_mut(account, namespace, id)
            .map(|r| r.clone())
    }

    /// Adds a request (as a user asking for an upgrade would); the namespace is created if new.
    pub fn add_request(
        &self,
        account: &str,
        namespace: &str,
        request: SimRequest,
    ) -> Result<(), SimError> {
        let mut state = self.lock();
        let ns = state.world.ensure_namespace(account, namespace);
        if ns.requests.iter().any(|r| r.id == request.id) {
            return Err(SimError::limit_exceeded(format!(
                "request {} already exists",
                request.id
            )));
        }
        ns.requests.push(request);
        Ok(())
    }

    /// Removes a request (QuickSight drops old ones; the mirror must follow).
    pub fn remove_request(&self, account: &str, namespace: &str, id: &str) -> Result<(), SimError> {
        let mut state = self.lock();
        state.world.request_mut(account, namespace, id)?;
        state
            .world
            .ensure_namespace(account, namespace)
            .requests
            .retain(|r| r.id != id);
        Ok(())
    }

    /// Decides a request outside the operator, as an admin in the console would.
    pub fn set_status(
        &self,
        account: &str,
        namespace: &str,
        id: &str,
        status: SimStatus,
    ) -> Result<(), SimError> {
        let mut state = self.lock();
        let now = epoch_millis();
        let request = state.world.request_mut(account, namespace, id)?;
        request.status = status;
        request.last_update_attempt_ms = Some(now);
        Ok(())
    }

    /// Adds the user to (or removes them from) the group VERIFY checks.
    pub fn set_group_membership(
        &self,
        account: &str,
        namespace: &str,
        id: &str,
        member: bool,
    ) -> Result<(), SimError> {
        self.lock()
            .world
            .request_mut(account, namespace, id)?
            .in_required_group = member;
        Ok(())
    }

    /// Makes the next `count` APPROVE actions on a request end UPDATE_FAILED.
    pub fn fail_next_updates(
        &self,
        account: &str,
        namespace: &str,
        id: &str,
        count: u32,
    ) -> Result<(), SimError> {
        self.lock()
            .world
            .request_mut(account, namespace, id)?
            .fail_next_updates = count;
        Ok(())
    }

    /// Scripts what the next `UpdateSelfUpgrade` calls of a request meet, one entry per call.
    pub fn set_update_faults(
        &self,
        account: &str,
        namespace: &str,
        id: &str,
        faults: Vec<UpdateFault>,
    ) -> Result<(), SimError> {
        self.lock()
            .world
            .request_mut(account, namespace, id)?
            .update_faults = faults.into();
        Ok(())
    }

    /// From now on, `UpdateSelfUpgrade` calls of this request wait before they act until
    /// [`SimHandle::release_updates`]: a test can change the request in between, as an admin in
    /// the console would while the operator's call is on its way.
    pub fn hold_updates(&self, account: &str, namespace: &str, id: &str) {
        let (released, _) = tokio::sync::watch::channel(false);
        let hold = Hold {
            released,
            held_calls: 0,
        };
        self.lock()
            .holds
            .insert(request_key(account, namespace, id), hold);
    }

    /// Calls of this request that arrived while its updates were held.
    pub fn held_calls(&self, account: &str, namespace: &str, id: &str) -> u32 {
        self.lock()
            .holds
            .get(&request_key(account, namespace, id))
            .map_or(0, |hold| hold.held_calls)
    }

    /// Lets the held calls of this request go on, and ends the hold.
    pub fn release_updates(&self, account: &str, namespace: &str, id: &str) {
        if let Some(hold) = self
            .lock()
            .holds
            .remove(&request_key(account, namespace, id))
        {
            hold.released.send_replace(true);
        }
    }

    /// Waits while updates of this request are held.
    async fn wait_while_held(&self, account: &str, namespace: &str, id: &str) {
        let mut released = {
            let mut state = self.lock();
            let Some(hold) = state.holds.get_mut(&request_key(account, namespace, id)) else {
                return;
            };
            hold.held_calls += 1;
            hold.released.subscribe()
        };
        // An error means the hold was dropped unreleased (the simulator stopped): go on.
        let _ = released.wait_for(|released| *released).await;
    }

    /// Whether this update, which took effect, loses its answer at random (and how).
    fn lost_answer(&self) -> Option<LostAnswer> {
        self.lock().faults.lost_answer()
    }

    fn count_lost_answer(&self, way: LostAnswer) {
        let name = format!("{way:?}");
        *self.lock().counters.lost_answers.entry(name).or_default() += 1;
    }

    fn slow_answer(&self) -> Duration {
        Duration::from_millis(self.lock().faults.settings.slow_answer_ms)
    }

    /// Runs one API call: the signature's verdict, IAM (when enforced), fault injection, the
    /// operation itself, and counting. Returns the QuickSight request id for the answer
    /// alongside the result.
    fn call<T>(
        &self,
        operation: &str,
        account: &str,
        signed_by: Result<Caller, SimError>,
        op: impl FnOnce(&mut World) -> Result<T, SimError>,
    ) -> (String, Result<T, SimError>) {
        let request_id = self.next_request_id();
        let result = signed_by.and_then(|caller| self.call_signed(operation, account, &caller, op));
        self.count(operation, account, &result);
        (request_id, result)
    }

    /// [`Self::call`] for a call whose signature verified.
    fn call_signed<T>(
        &self,
        operation: &str,
        account: &str,
        caller: &Caller,
        op: impl FnOnce(&mut World) -> Result<T, SimError>,
    ) -> Result<T, SimError> {
        let now = epoch_millis() / 1000;
        let mut state = self.lock();
        *state
            .counters
            .access_keys
            .entry(caller.access_key.clone())
            .or_default() += 1;
        if let Ok(Some(principal)) = state.iam.principal_of(caller, now) {
            *state
                .counters
                .principals
                .entry(principal)
                .or_default()
                .entry(account.to_string())
                .or_default() += 1;
        }
        // Unauthorized calls are refused before faults could make them look throttled.
        state.iam.authorize(caller, operation, account, now)?;
        if let Some(error) = state
            .faults
            .inject(operation, account, std::time::Instant::now())
        {
            return Err(error);
        }
        op(&mut state.world)
    }

    fn latency(&self) -> Duration {
        self.lock().faults.latency()
    }

    fn epoch_unit(&self) -> EpochUnit {
        self.lock().world.epoch_unit
    }
}

/// A simulator serving HTTP on loopback.
pub struct RunningSim {
    pub addr: SocketAddr,
    pub handle: SimHandle,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// Binds `127.0.0.1:port` (0: any free port) and serves until stopped.
    pub async fn start(port: u16, handle: SimHandle) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let app = wire::router(handle.clone())
            .merge(sts::router(handle.clone()))
            .merge(admin::router(handle.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(%error, "simulator server failed");
            }
        });
        Ok(Self {
            addr,
            handle,
            stop: Some(stop),
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for clients.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting calls and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Resolves when the server stops on its own (it only does on failure).
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

pub(crate) fn epoch_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
