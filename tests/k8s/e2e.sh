#!/usr/bin/env bash
# The Kubernetes backend's journey against a real cluster: whatever KUBECONFIG points at
# (k3s, kind, a cloud cluster). CI cannot run it — no API server can be installed on the
# development and CI machines — so CI runs the same journey on crates/kube-fake instead.
#
#   KUBECONFIG=~/.kube/config \
#   ORRERY_K8S_IMAGE=registry.example:5000/orrery-singleuser:TAG \
#   ORRERY_K8S_HUB_ADDRESS=10.0.0.5 \
#   tests/k8s/e2e.sh
#
# ORRERY_K8S_IMAGE   an image the cluster can pull that runs jupyterhub-singleuser (the test
#                    image: `bash tests/images/build.sh`, then push it, or on one k3s node
#                    `docker save IMG | sudo k3s ctr images import -`)
# ORRERY_K8S_HUB_ADDRESS  the address pods reach this machine at (run this on a node: its IP)
# ORRERY_K8S_NAMESPACE    default: a new namespace orrery-e2e-<pid>, deleted afterwards
#
# What it checks (tests/it/kubernetes.rs, real_cluster_journey): a server pod starts and the
# hub reaches it; the isolation NetworkPolicy exists; a kernel pod runs `print(6*7)`; an idle
# kernel's pod is reclaimed and re-created behind the same id; a daemon restart takes back the
# server and the kernel with its state; stopping removes the pods and keeps the home PVC.
set -euo pipefail
cd "$(dirname "$0")/../.."

die() { echo "tests/k8s/e2e.sh: $*" >&2; exit 2; }
[ -n "${KUBECONFIG:-}" ] || die "set KUBECONFIG to the cluster's kubeconfig"
[ -n "${ORRERY_K8S_IMAGE:-}" ] || die "set ORRERY_K8S_IMAGE to an image the cluster can pull"
[ -n "${ORRERY_K8S_HUB_ADDRESS:-}" ] || die "set ORRERY_K8S_HUB_ADDRESS to the address pods reach this machine at"
command -v kubectl >/dev/null || die "kubectl is needed (apt-get install kubernetes-client)"
kubectl version >/dev/null || die "the cluster in $KUBECONFIG does not answer"

created=""
if [ -z "${ORRERY_K8S_NAMESPACE:-}" ]; then
    ORRERY_K8S_NAMESPACE="orrery-e2e-$$"
    kubectl create namespace "$ORRERY_K8S_NAMESPACE"
    created=$ORRERY_K8S_NAMESPACE
fi
export ORRERY_K8S_NAMESPACE
cleanup() {
    if [ -n "$created" ]; then
        kubectl delete namespace "$created" --wait=false || true
    fi
}
trap cleanup EXIT

echo "running the journey in namespace $ORRERY_K8S_NAMESPACE" >&2
cargo test --locked --test it kubernetes::real_cluster_journey -- --ignored --nocapture
