//! The test bed of the `selfupgrade-operator`: stand-ins for what cannot run on a developer's
//! machine or in CI — a Kubernetes API server ([`apiserver`]) and QuickSight, STS and IAM
//! ([`quicksight`]) — and what is built from them: the [`playground`] and the [`bench`]mark.
//!
//! It depends on the operator crate and never the other way, so the compiler keeps the operator's
//! production binary free of the stand-ins and of the crates only they use.

pub mod allocator;
pub mod apiserver;
pub mod bench;
pub mod cli;
pub mod playground;
pub mod quicksight;
