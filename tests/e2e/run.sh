#!/usr/bin/env bash
# Runs the end-to-end scenarios against the cluster KUBECONFIG points at (kind, k3d, …):
# installs the CRD and RBAC from deploy/, then runs the #[ignore]d real-cluster tests, whose
# controller runs in the test process against the cluster with the QuickSight simulator on
# loopback (the in-cluster Deployment in deploy/ is scaled to zero below, so that the two do not compete).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${KUBECONFIG:-}" ] && [ ! -f "$HOME/.kube/config" ]; then
  echo "KUBECONFIG is not set and ~/.kube/config does not exist: point KUBECONFIG at a cluster" >&2
  exit 2
fi
kubectl cluster-info >/dev/null
kubectl apply -k deploy/
# The image may not exist in this cluster; the test runs its own controller in-process.
kubectl -n selfupgrade-operator scale deployment/selfupgrade-operator --replicas=0
kubectl wait --for=condition=Established crd/selfupgradedecisions.quicksight.selfupgrade.io crd/quicksightaccounts.quicksight.selfupgrade.io --timeout=60s
cargo test --workspace --locked --test real_cluster -- --ignored --nocapture
