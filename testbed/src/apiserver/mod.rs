//! An in-memory Kubernetes API server, faithful enough that kubectl and kube-rs cannot tell it
//! from a small cluster for the resources it serves: discovery (legacy and aggregated), OpenAPI
//! v3, CRUD with resourceVersion conflicts, watches with bookmarks and `410 Gone`, the status
//! subresource, JSON merge / JSON / server-side apply patches, schema and CEL validation, and
//! server-side printing. A test and playground stand-in; never on the operator's path.

mod apply;
mod config_maps;
mod crds;
mod discovery;
mod errors;
mod event_views;
mod faults;
mod in_flight;
mod meta_validation;
mod objects;
mod persist;
mod protobuf;
pub mod rbac;
mod registry;
mod selectors;
mod server;
mod store;
mod table;
mod validation;
mod watch;

pub use errors::{ApiError, Cause};
pub use faults::{ApiFaults, FaultState};
pub use in_flight::{DEFAULT_MAX_MUTATING_REQUESTS_IN_FLIGHT, DEFAULT_MAX_REQUESTS_IN_FLIGHT};
pub use registry::{Registry, ResourceType};
pub use server::{
    ApiServerConfig, ApiState, InitialCrds, RbacSettings, RunningApiServer, StartError, Target,
};
