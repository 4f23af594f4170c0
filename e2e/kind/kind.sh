#!/usr/bin/env bash
# The kind lane: real kubelets, containerd, kube-proxy and containers, built offline.
#
#   e2e/kind/kind.sh build     # Docker engine, kind, node/operator/workload images (cached)
#   e2e/kind/kind.sh up        # cluster, pod network, operator by `helm install`, DNS chain
#   e2e/kind/kind.sh down      # delete the cluster, stop what `up` started (dockerd included)
#   e2e/kind/kind.sh status
# Faults, with the arguments of e2e/cluster.sh (E2E_FAULTS):
#   region-down R | region-up R | edge-node-down N | edge-node-up N | endpoint R
#   MODE=pause (default) | stop | disconnect chooses how a region is lost.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
. "$HERE/../lib/common.sh"
# shellcheck source=../lib/build.sh
. "$HERE/../lib/build.sh"
# shellcheck source=lib/tools.sh
. "$HERE/lib/tools.sh"
KIND_STATE=${EDGESHIFT_KIND_DIR:-$REPO_DIR/target/e2e-kind}
# shellcheck source=lib/docker.sh
. "$HERE/lib/docker.sh"
# shellcheck source=lib/images.sh
. "$HERE/lib/images.sh"
# shellcheck source=lib/topology.sh
. "$HERE/lib/topology.sh"

say() { printf '[kind] %s\n' "$*" >&2; }
die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }

KIND_CLUSTER=${KIND_CLUSTER:-edgeshift}
KIND_BIN=$(bin_dir kind "$KIND_VERSION")/kind
KIND_KUBECONFIG=$KIND_STATE/kubeconfig
NODE_IMAGE=${EDGESHIFT_KIND_IMAGE:-$NODE_IMAGE_TAG}
MODE=${MODE:-pause}
RELEASE_BIN=${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/edgeshift
mkdir -p "$KIND_STATE"

kk() { "$KUBECTL" --kubeconfig "$KIND_KUBECONFIG" "$@"; }

cmd_build() {
  local start=$SECONDS
  docker_up
  cmd_build_tools
  build_node_image
  build_workload_image
  if [ "${EDGESHIFT_SKIP_OPERATOR_IMAGE:-}" != 1 ]; then
    say "building the release binary (cargo build --release) ..."
    cargo build --quiet --release --locked --bin edgeshift --manifest-path "$REPO_DIR/Cargo.toml"
    build_operator_image "$RELEASE_BIN"
  fi
  say "kind lane ready in $((SECONDS - start))s"
}

cmd_build_tools() {
  build_step etcd "$ETCD_VERSION" build_etcd
  build_step helm "$HELM_VERSION" build_helm
  build_step kubernetes "$K8S_VERSION" build_kubernetes
  fetch_traffic_crds
  kind_tools_build
}

case ${1:-} in
  build) cmd_build ;;
  build-tools) cmd_build_tools ;;
  image) docker_up && build_operator_image "${2:-$RELEASE_BIN}" ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  region-down) region_down "${2:?region}" ;;
  region-up) region_up "${2:?region}" ;;
  edge-node-down) edge_node_down "${2:?node}" ;;
  edge-node-up) edge_node_up "${2:?node}" ;;
  endpoint) region_endpoint "${2:?region}" ;;
  kubectl) shift && kk "$@" ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
