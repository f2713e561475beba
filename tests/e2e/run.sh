#!/usr/bin/env bash
# Runs the end-to-end scenarios against the cluster KUBECONFIG points at (kind, k3d, …):
# installs the CRD and RBAC from deploy/, then runs the #[ignore]d real-cluster tests, whose
# controller runs in the test process against the cluster with the QuickSight simulator on
# loopback. The operator image and in-cluster Deployment are not part of deploy/ yet.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${KUBECONFIG:-}" ] && [ ! -f "$HOME/.kube/config" ]; then
  echo "KUBECONFIG is not set and ~/.kube/config does not exist: point KUBECONFIG at a cluster" >&2
  exit 2
fi
kubectl cluster-info >/dev/null
kubectl apply -k deploy/
kubectl wait --for=condition=Established crd/selfupgradedecisions.quicksight.selfupgrade.io --timeout=60s
cargo test --locked --test real_cluster -- --ignored --nocapture
