//! A Kubernetes operator that turns QuickSight self-upgrade approvals into GitOps.
//!
//! The path of one decision: [`controller`] watches `SelfUpgradeDecision`s and calls
//! [`reconcile::reconcile`], which observes the request through [`quicksight`], asks the pure
//! [`decide::decide`] what to do, makes at most one `UpdateSelfUpgrade` call, and writes the
//! status built by [`status`]. The stand-ins for tests and the playground live in the
//! `selfupgrade-testbed` crate, which depends on this one and never the other way.

pub mod account_status;
pub mod api;
pub mod approval_modes;
pub mod approval_watch;
pub mod bindings;
pub mod cli;
pub mod conflicts;
pub mod context;
pub mod controller;
pub mod decide;
pub mod events;
#[cfg(test)]
mod fixtures;
pub mod health;
pub mod inbox;
pub mod inbox_command;
pub mod leader;
pub mod lenient;
pub mod metrics;
pub mod mirror;
pub mod names;
pub mod notify;
pub mod pause;
pub mod policy;
pub mod policy_apply;
pub mod policy_plan;
pub mod policy_watch;
pub mod quicksight;
pub mod reconcile;
pub mod regions;
pub mod retry;
pub mod status;
pub mod tenancy;
pub mod validate;
