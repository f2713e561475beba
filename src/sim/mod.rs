//! Local stand-ins for what cannot run on a developer's machine or in CI: QuickSight and a
//! Kubernetes API server. Used by tests and the playground; the operator's production path never
//! imports this module.

pub mod apiserver;
pub mod quicksight;
