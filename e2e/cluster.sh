#!/usr/bin/env bash
# The local test cluster: a real control plane built from Go modules, KWOK nodes per region.
#
#   e2e/cluster.sh build                      build the pinned binaries into the cache
#   e2e/cluster.sh up                         start the cluster (kubeconfig: target/e2e/kubeconfig)
#   e2e/cluster.sh region-down|region-up R    take region R away / bring it back
#   e2e/cluster.sh edge-node-down|edge-node-up N
#   e2e/cluster.sh status                     components, endpoints, nodes
#   e2e/cluster.sh down                       stop everything
#   e2e/cluster.sh endpoint R                 the URL of region R's health endpoint
#   e2e/cluster.sh kubectl|helm ARGS...       the built kubectl/helm against the cluster
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$REPO_DIR/e2e/lib/build.sh"
. "$REPO_DIR/e2e/lib/cluster.sh"

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  build) cmd_build ;;
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  region-down) cmd_region_down "$@" ;;
  region-up) cmd_region_up "$@" ;;
  edge-node-down) cmd_edge_node_down "$@" ;;
  edge-node-up) cmd_edge_node_up "$@" ;;
  endpoint) echo "http://$(region_field "${1:?usage: endpoint <region>}" 4):$HEALTH_PORT/healthz" ;;
  kubectl) exec "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@" ;;
  helm) exec "$HELM_BIN" --kubeconfig "$KUBECONFIG_FILE" "$@" ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
