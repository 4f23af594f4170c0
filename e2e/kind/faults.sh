#!/usr/bin/env bash
# Fault injector for a kind cluster, with the same arguments as e2e/cluster.sh:
#   up | down | region-down R | region-up R | edge-node-down N | edge-node-up N | endpoint R
# Region loss = `docker stop` of the region's node containers (set MODE=disconnect for
# `docker network disconnect kind`) plus its health endpoint (a process on this host).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER=${KIND_CLUSTER:-edgeshift}
STATE=${EDGESHIFT_E2E_DIR:-$REPO/target/e2e-kind}
HEALTH_PORT=${EDGESHIFT_HEALTH_PORT:-18080}
MODE=${MODE:-stop}
KUBECONFIG_FILE=$STATE/kubeconfig
mkdir -p "$STATE"

die() { echo "[kind] error: $*" >&2; exit 1; }
addr() {
  case $1 in
    aws-us-east-1) echo 127.0.0.11 ;; aws-us-west-2) echo 127.0.0.12 ;; gcp-europe-west1) echo 127.0.0.13 ;;
    *) die "unknown region '$1'" ;;
  esac
}
label() { echo "${1#*-}"; }  # aws-us-east-1 -> us-east-1
containers() { # <label selector>: kind node names are their container names
  kubectl --kubeconfig "$KUBECONFIG_FILE" get nodes -l "$1" -o jsonpath='{.items[*].metadata.name}'
}
take_down() { local c; for c in "$@"; do
  if [ "$MODE" = disconnect ]; then docker network disconnect kind "$c"; else docker stop "$c" >/dev/null; fi; done; }
bring_up() { local c; for c in "$@"; do
  if [ "$MODE" = disconnect ]; then docker network connect kind "$c"; else docker start "$c" >/dev/null; fi; done; }
health_start() {
  [ -f "$STATE/health-$1.pid" ] && kill -0 "$(cat "$STATE/health-$1.pid")" 2>/dev/null && return 0
  setsid python3 "$REPO/e2e/health_endpoint.py" "$(addr "$1")" "$HEALTH_PORT" "$1" "$STATE" >/dev/null 2>&1 &
  echo $! >"$STATE/health-$1.pid"
}
health_stop() { [ -f "$STATE/health-$1.pid" ] && kill "$(cat "$STATE/health-$1.pid")" 2>/dev/null; rm -f "$STATE/health-$1.pid"; }

case ${1:-} in
  up)
    kind get clusters | grep -qx "$CLUSTER" || kind create cluster --config "$HERE/kind-config.yaml" --name "$CLUSTER"
    kind get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
    for r in aws-us-east-1 aws-us-west-2 gcp-europe-west1; do health_start "$r"; done
    echo "kubeconfig: $KUBECONFIG_FILE (export E2E_KUBECONFIG=$KUBECONFIG_FILE E2E_FAULTS=$HERE/faults.sh)" ;;
  down)
    for r in aws-us-east-1 aws-us-west-2 gcp-europe-west1; do health_stop "$r"; done
    kind delete cluster --name "$CLUSTER" ;;
  region-down) take_down $(containers "topology.kubernetes.io/region=$(label "${2:?region}")"); health_stop "$2" ;;
  region-up) bring_up $(containers "topology.kubernetes.io/region=$(label "${2:?region}")"); health_start "$2" ;;
  edge-node-down) take_down $(containers "e2e.edgeshift.io/name=${2:?node}") ;;
  edge-node-up) bring_up $(containers "e2e.edgeshift.io/name=${2:?node}") ;;
  endpoint) echo "http://$(addr "${2:?region}"):$HEALTH_PORT/healthz" ;;
  *) sed -n '2,5p' "$0" >&2; exit 2 ;;
esac
