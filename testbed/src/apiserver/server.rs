//! The HTTP side: a bearer token, path routing onto resource types, discovery, and startup with
//! a kubeconfig that kubectl and kube-rs read.

use super::discovery;
use super::errors::ApiError;
use super::faults::{ApiFaults, FaultState};
use super::in_flight::InFlightLimit;
use super::objects;
use super::persist::{Identity, StateDir};
use super::rbac::{Attributes, Permission, Rbac, service_account_user};
use super::registry::{Registry, crds_in_dir};
use super::store::{ChangeKind, ObjectKey, Store};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// How the API server is started.
#[derive(Clone, Debug)]
pub struct ApiServerConfig {
    /// 0: any free port on 127.0.0.1.
    pub port: u16,
    /// The CustomResourceDefinitions installed at start (as if created then).
    pub crds: InitialCrds,
    /// Changes retained for watches from an older resourceVersion.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Namespaces that exist at start (`default` exists, as in any cluster).
    pub namespaces: Vec<String>,
    /// RBAC for service-account identities; `None`: only the admin token, allowed everything.
    pub rbac: Option<RbacSettings>,
    /// Where the objects, certificate and admin token are kept across restarts of the process
    /// (see `persist`); `None`: in memory only.
    pub state_dir: Option<PathBuf>,
    /// kube-apiserver's `--max-requests-inflight` (0: no limit).
    pub max_requests_in_flight: usize,
    /// kube-apiserver's `--max-mutating-requests-inflight` (0: no limit).
    pub max_mutating_requests_in_flight: usize,
}

/// Which CustomResourceDefinitions exist when the server starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitialCrds {
    /// None: they are served once a client creates them (`kubectl apply`).
    None,
    /// The operator's, generated from its Rust types (what `crds/` holds), so that a binary run
    /// anywhere serves them without a checkout.
    Operator,
    /// The YAML files of a directory.
    Directory(PathBuf),
}

impl InitialCrds {
    /// From the `--empty` and `--crd-dir` flags (which clap keeps apart).
    pub fn from_flags(empty: bool, crd_dir: Option<PathBuf>) -> Self {
        match (empty, crd_dir) {
            (true, _) => Self::None,
            (false, Some(dir)) => Self::Directory(dir),
            (false, None) => Self::Operator,
        }
    }

    fn definitions(&self) -> Result<Vec<Value>, StartError> {
        match self {
            Self::None => Ok(Vec::new()),
            Self::Operator => selfupgrade_operator::cli::crds()
                .into_iter()
                .map(|(name, crd)| {
                    serde_json::to_value(crd)
                        .map_err(|e| StartError::Schema(format!("{name}: {e}")))
                })
                .collect(),
            Self::Directory(dir) => Ok(crds_in_dir(dir)?),
        }
    }
}

/// The authorization mode: service accounts that get tokens, and the RBAC objects that say
/// what they may do. The admin token stays unrestricted (as `system:masters`).
#[derive(Clone, Debug, Default)]
pub struct RbacSettings {
    /// YAML documents; the Roles, ClusterRoles and bindings among them are enforced.
    pub manifests: String,
    /// (namespace, name) of each service account to issue a token for.
    pub service_accounts: Vec<(String, String)>,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        Self {
            port: 0,
            crds: InitialCrds::Operator,
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(60),
            namespaces: vec!["default".to_string()],
            rbac: None,
            state_dir: None,
            max_requests_in_flight: super::DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            max_mutating_requests_in_flight: super::DEFAULT_MAX_MUTATING_REQUESTS_IN_FLIGHT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
    #[error("CRD {0}")]
    Schema(String),
    #[error("RBAC manifests: {0}")]
    Rbac(String),
    #[error("binding the API server's port: {0}")]
    Bind(#[source] std::io::Error),
    #[error("creating the API server's TLS certificate: {0}")]
    Certificate(String),
    #[error("the API server's --state-dir: {0}")]
    State(#[from] super::persist::PersistError),
    #[error("writing the kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Shared by every request.
pub struct ApiState {
    /// What is served; replaced (under the store's lock) when a CRD changes.
    registry: RwLock<Arc<Registry>>,
    store: Mutex<Store>,
    pub token: String,
    pub address: String,
    pub bookmark_interval: Duration,
    pub faults: FaultState,
    /// Enforced for service-account tokens: built from the RBAC objects stored (those of
    /// [`RbacSettings::manifests`] and any written since), rebuilt when one changes.
    rbac: RwLock<Rbac>,
    /// Service-account token → user name.
    service_account_tokens: HashMap<String, String>,
    /// Every permission a service account used: (user, permission).
    audit: Mutex<BTreeSet<(String, Permission)>>,
    /// Resource requests served, by user and verb (`GET /_apiserver/requests`).
    request_counts: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
    in_flight: InFlightLimit,
}

/// How [`ApiState::request_counts`] names the admin token's user.
pub const ADMIN_USER: &str = "admin";

impl ApiState {
    /// Who `token` authenticates: `Some(None)` the admin (allowed everything), `Some(Some(user))`
    /// a service account (under RBAC), `None` nobody. Every token is compared in constant time,
    /// and all of them are, so that neither the answer's timing nor which one matched tells a
    /// guesser how close a guess came.
    fn user_of(&self, token: &str) -> Option<Option<String>> {
        use subtle::ConstantTimeEq;
        let same = |known: &str| bool::from(known.as_bytes().ct_eq(token.as_bytes()));
        let mut found = same(&self.token).then_some(None);
        for (known, user) in &self.service_account_tokens {
            if same(known) && found.is_none() {
                found = Some(Some(user.clone()));
            }
        }
        found
    }

    fn count_request(&self, user: &str, verb: &str) {
        *self
            .request_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(user.to_string())
            .or_default()
            .entry(verb.to_string())
            .or_default() += 1;
    }

    /// Resource requests served so far, by user and verb (discovery not included).
    pub fn request_counts(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.request_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The permissions `user` used so far (their namespace is where they were used).
    pub fn used_permissions(&self, user: &str) -> BTreeSet<Permission> {
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// The permissions `user` holds.
    pub fn granted_permissions(&self, user: &str) -> BTreeSet<Permission> {
        self.rbac
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .permissions_of(user)
    }

    /// Allows or refuses a service account's request, and audits what it used.
    fn authorize(&self, user: &str, request: Attributes) -> Result<(), ApiError> {
        let allowed = self
            .rbac
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .allows(user, &request);
        if !allowed {
            return Err(ApiError::rbac_forbidden(
                user,
                &request.verb,
                &request.group,
                &request.resource,
                request.namespace.as_deref(),
            ));
        }
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((
                user.to_string(),
                Permission {
                    verb: request.verb,
                    group: request.group,
                    resource: request.resource,
                    namespace: request.namespace,
                },
            ));
        Ok(())
    }

    /// Rebuilds the RBAC in force from the RBAC objects in `store` (after one of them changed).
    pub fn refresh_rbac(&self, store: &Store) {
        let rbac = rbac_in(store, &self.registry());
        *self.rbac.write().unwrap_or_else(|p| p.into_inner()) = rbac;
    }

    /// The types served now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Serves exactly the CRDs in `store` (after one of them changed). Called with the store
    /// locked, so a write never sees a type its CRD no longer defines.
    pub fn refresh_crds(&self, store: &mut Store) {
        match serving_stored_crds(&self.registry(), store) {
            Ok(next) => {
                store.name_types(resource_names(&next));
                *self.registry.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
            }
            // Admission compiled every schema already: reaching this is a defect here.
            Err(message) => tracing::error!(%message, "a stored CRD cannot be served"),
        }
    }

    pub fn lock_store(&self) -> MutexGuard<'_, Store> {
        // The store holds plain data; a panic elsewhere does not make it unusable.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a resource URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub type_id: usize,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The certificate, key and admin token: an earlier run's from the state directory, else new
/// (and kept there).
fn identity(state_dir: Option<&StateDir>) -> Result<Identity, StartError> {
    if let Some(kept) = state_dir.map(StateDir::identity).transpose()?.flatten() {
        return Ok(kept);
    }
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| StartError::Certificate(e.to_string()))?;
    let identity = Identity {
        certificate_pem: certified.cert.pem(),
        key_pem: certified.signing_key.serialize_pem(),
        token: random_token(),
    };
    if let Some(dir) = state_dir {
        dir.save_identity(&identity)?;
    }
    Ok(identity)
}

/// The objects an earlier run left in the state directory, else the namespaces that exist at
/// start; then the CRDs of `--crd-dir` and the RBAC objects given, each unless one of its name
/// is stored; written through to the state directory from here on. Returns the registry that
/// serves the CRDs stored.
fn initial_store(
    config: &ApiServerConfig,
    mut state_dir: Option<StateDir>,
    crds: Vec<Value>,
    rbac_objects: Vec<Value>,
) -> Result<(Store, Registry), StartError> {
    let mut store = Store::new(config.history_limit);
    let mut registry = Registry::with_builtins();
    match state_dir
        .as_ref()
        .map(StateDir::objects)
        .transpose()?
        .flatten()
    {
        Some((revision, objects)) => {
            let crd_resource = registry
                .crd_type_id()
                .map(|id| registry.types[id].resource_name());
            registry = registry
                .serving(
                    objects
                        .iter()
                        .filter(|o| Some(&o.resource) == crd_resource.as_ref())
                        .map(|o| &o.object),
                )
                .map_err(StartError::Schema)?;
            if let Some(dir) = &state_dir {
                store.restore(revision, dir.keyed(objects, &resource_names(&registry))?);
            }
        }
        None => {
            for namespace in &config.namespaces {
                let key = ObjectKey {
                    type_id: registry.namespace_type_id(),
                    namespace: String::new(),
                    name: namespace.clone(),
                };
                store.put(key, objects::new_namespace(namespace), ChangeKind::Added)?;
            }
        }
    }
    for mut crd in crds {
        super::crds::set_defaults(&mut crd);
        refuse_invalid_crd(&crd)?;
        super::crds::set_status(&mut crd, None);
        add_unless_present(&mut store, &registry, crd)?;
    }
    let registry = serving_stored_crds(&registry, &store).map_err(StartError::Schema)?;
    for object in rbac_objects {
        add_unless_present(&mut store, &registry, object)?;
    }
    if let Some(mut dir) = state_dir.take() {
        dir.name_types(resource_names(&registry));
        store.persist_to(dir)?;
    }
    Ok((store, registry))
}

/// A CRD given at start is held to what a create through the API is held to: kube-apiserver
/// would have refused it, so the server does not start with it.
fn refuse_invalid_crd(crd: &Value) -> Result<(), StartError> {
    let causes = super::crds::causes(crd, None);
    if causes.is_empty() {
        return Ok(());
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or("(unnamed)");
    let what: Vec<String> = causes
        .iter()
        .map(|cause| format!("{}: {}", cause.field, cause.message))
        .collect();
    Err(StartError::Schema(format!(
        "{name} is invalid: {}",
        what.join("; ")
    )))
}

/// Stores an object given at start (a CRD or an RBAC object), as if created then, unless a
/// stored one has its name.
fn add_unless_present(
    store: &mut Store,
    registry: &Registry,
    mut object: Value,
) -> Result<(), StartError> {
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.rsplit_once('/'))
        .map_or("", |(group, _)| group);
    let kind = object["kind"].as_str().unwrap_or_default();
    let Some(type_id) = registry.type_id_of_kind(group, kind) else {
        return Ok(());
    };
    let key = ObjectKey {
        type_id,
        namespace: if registry.types[type_id].namespaced {
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string()
        } else {
            String::new()
        },
        name: object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    if store.get(&key).is_none() {
        objects::stamp_new(&mut object);
        store.put(key, object, ChangeKind::Added)?;
    }
    Ok(())
}

/// `registry` serving exactly the CRDs stored in `store`.
fn serving_stored_crds(registry: &Registry, store: &Store) -> Result<Registry, String> {
    let Some(crd_type) = registry.crd_type_id() else {
        return Ok(registry.clone());
    };
    registry.serving(store.list(crd_type, None).map(|(_, crd)| crd))
}

/// The resource name of each type, by id (how the state directory names types).
fn resource_names(registry: &Registry) -> Vec<String> {
    registry.types.iter().map(|t| t.resource_name()).collect()
}

/// The RBAC the stored Roles, ClusterRoles and bindings grant.
fn rbac_in(store: &Store, registry: &Registry) -> Rbac {
    Rbac::from_objects(
        registry
            .rbac_type_ids()
            .flat_map(|id| store.list(id, None).map(|(_, object)| object)),
    )
}

/// A running API server (HTTPS with a self-signed certificate: kubectl sends bearer tokens
/// only over TLS).
pub struct RunningApiServer {
    pub addr: SocketAddr,
    pub token: String,
    pub state: Arc<ApiState>,
    /// PEM of the server's self-signed certificate, the kubeconfig's certificate authority.
    pub certificate_pem: String,
    tls: axum_server::tls_rustls::RustlsConfig,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningApiServer {
    pub async fn start(config: ApiServerConfig) -> Result<Self, StartError> {
        let crds = config.crds.definitions()?;
        let listener =
            std::net::TcpListener::bind(("127.0.0.1", config.port)).map_err(StartError::Bind)?;
        listener.set_nonblocking(true).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let state_dir = config.state_dir.as_deref().map(StateDir::new).transpose()?;
        let identity = identity(state_dir.as_ref())?;
        let certificate_pem = identity.certificate_pem.clone();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            identity.certificate_pem.into_bytes(),
            identity.key_pem.into_bytes(),
        )
        .await
        .map_err(|e| StartError::Certificate(e.to_string()))?;
        let token = identity.token;
        let rbac_settings = config.rbac.clone().unwrap_or_default();
        let rbac_objects = Rbac::objects_in(&rbac_settings.manifests).map_err(StartError::Rbac)?;
        let service_account_tokens = rbac_settings
            .service_accounts
            .iter()
            .map(|(namespace, name)| (random_token(), service_account_user(namespace, name)))
            .collect();
        let (store, registry) = initial_store(&config, state_dir, crds, rbac_objects)?;
        let rbac = RwLock::new(rbac_in(&store, &registry));
        let state = Arc::new(ApiState {
            registry: RwLock::new(Arc::new(registry)),
            store: Mutex::new(store),
            token: token.clone(),
            address: addr.to_string(),
            bookmark_interval: config.bookmark_interval,
            faults: FaultState::default(),
            rbac,
            service_account_tokens,
            audit: Mutex::new(BTreeSet::new()),
            request_counts: Mutex::new(BTreeMap::new()),
            in_flight: InFlightLimit::new(
                config.max_requests_in_flight,
                config.max_mutating_requests_in_flight,
            ),
        });
        let (handle, task) = serve(listener, tls.clone(), state.clone())?;
        Ok(Self {
            addr,
            token,
            state,
            certificate_pem,
            tls,
            handle,
            task,
        })
    }

    /// Stops serving (every connection and watch ends) and serves again on the same address
    /// with the same objects, certificate and token: an API server restart with its state kept.
    pub async fn restart(&mut self, down_for: Duration) -> Result<(), StartError> {
        self.handle.shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.task).await;
        self.task.abort();
        tokio::time::sleep(down_for).await;
        let listener = std::net::TcpListener::bind(self.addr).map_err(StartError::Bind)?;
        listener.set_nonblocking(true).map_err(StartError::Bind)?;
        let (handle, task) = serve(listener, self.tls.clone(), self.state.clone())?;
        self.handle = handle;
        self.task = task;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A kubeconfig for this server, with `default` as the namespace.
    pub fn kubeconfig_yaml(&self) -> String {
        self.kubeconfig_with_token("playground-admin", &self.token)
    }

    /// A kubeconfig that authenticates as service account `namespace/name` (one of
    /// [`RbacSettings::service_accounts`]).
    pub fn service_account_kubeconfig_yaml(&self, namespace: &str, name: &str) -> Option<String> {
        let user = service_account_user(namespace, name);
        self.state
            .service_account_tokens
            .iter()
            .find(|(_, u)| **u == user)
            .map(|(token, _)| self.kubeconfig_with_token(name, token))
    }

    fn kubeconfig_with_token(&self, user: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: selfupgrade-playground\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
             users:\n- name: {user}\n  user:\n    token: {token}\n\
             contexts:\n- name: selfupgrade-playground\n  context:\n    cluster: selfupgrade-playground\n    user: {user}\n    namespace: default\n\
             current-context: selfupgrade-playground\n",
            url = self.url(),
            ca = base64::engine::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &self.certificate_pem
            ),
        )
    }

    /// Writes the admin kubeconfig, readable and writable by its owner only (it holds the
    /// admin's token), as kubeadm writes `admin.conf`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), StartError> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let failed = |source| StartError::Kubeconfig {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(failed)?;
        // A file that existed keeps its mode through open: set it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
        file.write_all(self.kubeconfig_yaml().as_bytes())
            .map_err(failed)
    }

    /// A kube-rs client for this server.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_of(&self.kubeconfig_yaml()).await
    }

    /// A client that acts as the service account `namespace/name` (one of
    /// [`RbacSettings::service_accounts`]).
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<kube::Client> {
        let yaml = self
            .service_account_kubeconfig_yaml(namespace, name)
            .ok_or_else(|| anyhow::anyhow!("no token was issued for {namespace}/{name}"))?;
        client_of(&yaml).await
    }

    pub async fn stop(mut self) {
        // Open watches keep connections alive; give them a moment, then close them.
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut self.task).await;
        self.task.abort();
    }
}

async fn client_of(kubeconfig_yaml: &str) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig_yaml)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

type Serving = (axum_server::Handle<SocketAddr>, tokio::task::JoinHandle<()>);

/// The largest request body served (kube-apiserver's default).
const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

fn serve(
    listener: std::net::TcpListener,
    tls: axum_server::tls_rustls::RustlsConfig,
    state: Arc<ApiState>,
) -> Result<Serving, StartError> {
    let app = Router::new().fallback(handle).with_state(state);
    let server_handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(listener, tls)
        .map_err(StartError::Bind)?
        .handle(server_handle.clone());
    let task = tokio::spawn(async move {
        if let Err(error) = server.serve(app.into_make_service()).await {
            tracing::error!(%error, "API server failed");
        }
    });
    Ok((server_handle, task))
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn handle(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // kube-apiserver reads at most `--max-request-body-bytes` (3 MiB by default,
    // `MaxRequestBodyBytes` in k8s.io/apiserver's options) of a request body. (A body that
    // fails to arrive for another reason means the connection is gone: no one reads the 413.)
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BODY_BYTES).await else {
        return ApiError::too_large(MAX_REQUEST_BODY_BYTES).into_response();
    };
    let body = match as_json(&headers, body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let path = uri.path().to_string();
    if matches!(path.as_str(), "/healthz" | "/readyz" | "/livez") {
        return (StatusCode::OK, "ok").into_response();
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // `None`: the admin, allowed everything; `Some(user)`: a service account under RBAC.
    let service_account = match bearer.map(|token| state.user_of(token)) {
        Some(Some(user)) => user,
        _ => return ApiError::unauthorized().into_response(),
    };
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    // Held until the answer is built (a watch's stream is long-running and not counted).
    let _in_flight = match (&service_account, objects::is_watch(&query)) {
        (Some(_), false) => match state.in_flight.admit(&method) {
            Some(admitted) => Some(admitted),
            None => return super::in_flight::too_many_requests(),
        },
        _ => None,
    };
    let latency = state.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(command) = path.strip_prefix("/_apiserver/") {
        if service_account.is_some() {
            return ApiError::no_route().into_response();
        }
        return fault_command(&state, &method, command, &body);
    }
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match route(
        &state,
        service_account.as_deref(),
        &method,
        &path,
        &query,
        &headers,
        body,
        accept.as_deref(),
    )
    .await
    {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The body as JSON: a protobuf one (kubectl's typed commands) decoded, any other as sent.
fn as_json(headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let protobuf = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(super::protobuf::is_protobuf);
    if !protobuf {
        return Ok(body);
    }
    let object = super::protobuf::decode(&body)?;
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The `/_apiserver/` commands (see [`super::faults`]).
fn fault_command(state: &ApiState, method: &Method, command: &str, body: &Bytes) -> Response {
    match (method.as_str(), command) {
        ("GET", "faults") => axum::Json(state.faults.settings()).into_response(),
        ("PUT", "faults") => match serde_json::from_slice::<ApiFaults>(body) {
            Ok(faults) => {
                state.faults.set(faults);
                axum::Json(state.faults.settings()).into_response()
            }
            Err(error) => ApiError::bad_request(format!("invalid faults: {error}")).into_response(),
        },
        ("POST", "drop-watches") => {
            state.faults.drop_watches();
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "compact") => {
            state.lock_store().compact();
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "requests") => axum::Json(state.request_counts()).into_response(),
        _ => ApiError::no_route().into_response(),
    }
}

fn json_response(value: Value) -> Response {
    axum::Json(value).into_response()
}

#[allow(clippy::too_many_arguments)]
async fn route(
    state: &Arc<ApiState>,
    service_account: Option<&str>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    accept: Option<&str>,
) -> Result<Response, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let registry = &*state.registry();
    let aggregated = |core: bool| {
        let mut response = json_response(discovery::aggregated(registry, core));
        if let Ok(value) = discovery::AGGREGATED_CONTENT_TYPE.parse() {
            response.headers_mut().insert("content-type", value);
        }
        response
    };
    match segments.as_slice() {
        ["version"] => return Ok(json_response(discovery::version())),
        ["api"] if discovery::wants_aggregated(accept) => return Ok(aggregated(true)),
        ["api"] => return Ok(json_response(discovery::core_versions(&state.address))),
        ["apis"] if discovery::wants_aggregated(accept) => return Ok(aggregated(false)),
        ["apis"] => return Ok(json_response(discovery::group_list(registry))),
        ["api", version] => {
            return discovery::resource_list(registry, "", version)
                .map(json_response)
                .ok_or_else(ApiError::no_route);
        }
        ["apis", group] => {
            let list = discovery::group_list(registry);
            return list["groups"]
                .as_array()
                .and_then(|groups| groups.iter().find(|g| g["name"] == *group))
                .map(|g| {
                    let mut g = g.clone();
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    json_response(g)
                })
                .ok_or_else(ApiError::no_route);
        }
        ["apis", group, version] => {
            return discovery::resource_list(registry, group, version)
                .map(json_response)
                .ok_or_else(ApiError::no_route);
        }
        ["openapi", "v3"] => return Ok(json_response(discovery::openapi_root(registry))),
        ["openapi", "v3", "api", version] => {
            return discovery::openapi_group_version(registry, "", version)
                .map(json_response)
                .ok_or_else(ApiError::no_route);
        }
        ["openapi", "v3", "apis", group, version] => {
            return discovery::openapi_group_version(registry, group, version)
                .map(json_response)
                .ok_or_else(ApiError::no_route);
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segments.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (group, version, rest),
        _ => return Err(ApiError::no_route()),
    };
    let target = resolve(registry, group, version, rest).ok_or_else(ApiError::no_route)?;
    // Discovery above is open to every authenticated user, as `system:discovery` grants.
    let request = attributes(registry, method, &target, query);
    state.count_request(service_account.unwrap_or(ADMIN_USER), &request.verb);
    let resource = request.resource.clone();
    if let Some(user) = service_account {
        state.authorize(user, request)?;
    }
    // Authorized first, as a real API server does before its storage is reached.
    if state.faults.unavailable(&resource) {
        return Err(ApiError::timeout(
            "Timeout: request did not complete within the allotted timeout",
        ));
    }
    objects::dispatch(state, method, target, query, headers, body, accept).await
}

/// The RBAC attributes of a resource request: the verb from the method (GET is get, list or
/// watch; DELETE of a collection is deletecollection), the resource with its subresource.
fn attributes(
    registry: &Registry,
    method: &Method,
    target: &Target,
    query: &HashMap<String, String>,
) -> Attributes {
    let verb = match (method.as_str(), &target.name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if objects::is_watch(query) => "watch",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        (other, _) => other,
    };
    let type_ = &registry.types[target.type_id];
    let resource = match &target.subresource {
        Some(sub) => format!("{}/{sub}", type_.plural),
        None => type_.plural.clone(),
    };
    // A list or watch whose field selector requires one name is a request for that name, so
    // that `resourceNames` can grant it: k8s.io/apiserver's ListResource propagates
    // `metadata.name` into the request info.
    let selected = || {
        let selector = query.get("fieldSelector")?;
        let parsed = super::selectors::FieldSelector::parse(selector).ok()?;
        parsed.exact_name().map(str::to_string)
    };
    let name = match verb {
        "list" | "watch" => selected(),
        _ => target.name.clone(),
    };
    Attributes {
        verb: verb.to_ascii_lowercase(),
        group: type_.group.clone(),
        resource,
        namespace: target.namespace.clone(),
        name,
    }
}

/// Maps the part of a resource URL after the group-version onto a [`Target`].
fn resolve(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let type_id = |plural: &str| registry.type_id(group, version, plural);
    let namespaced_path =
        rest.len() >= 3 && rest[0] == "namespaces" && !matches!(rest[2], "status" | "finalize");
    if namespaced_path {
        let id = type_id(rest[2])?;
        if !registry.types[id].namespaced || rest.len() > 5 {
            return None;
        }
        return Some(Target {
            type_id: id,
            namespace: Some(rest[1].to_string()),
            name: rest.get(3).map(|s| s.to_string()),
            subresource: rest.get(4).map(|s| s.to_string()),
        });
    }
    let id = type_id(rest[0])?;
    if rest.len() > 3 || (registry.types[id].namespaced && rest.len() > 1) {
        return None;
    }
    Some(Target {
        type_id: id,
        namespace: None,
        name: rest.get(1).map(|s| s.to_string()),
        subresource: rest.get(2).map(|s| s.to_string()),
    })
}
