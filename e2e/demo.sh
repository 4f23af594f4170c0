#!/usr/bin/env bash
# The region-loss drill you can watch: a local multi-region cluster, the operator, the
# example services, then all of AWS goes down and comes back. `make demo` runs this.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$REPO_DIR"

BIN=${CARGO_TARGET_DIR:-$REPO_DIR/target}/debug/edgeshift
DEMO_DIR=$STATE_DIR/demo
LOG=$STATE_DIR/logs/operator-demo.log
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }

step "1/7 Building the local cluster's binaries from Go modules (cached after the first run)"
e2e/cluster.sh build

step "2/7 Building edgeshift"
cargo build --bin edgeshift

step "3/7 Starting the cluster: 3 cloud regions (aws-us-east-1, aws-us-west-2, gcp-europe-west1), 6 edge nodes"
e2e/cluster.sh up

step "4/7 Installing the CRDs, a trust policy, six signed edge-node registrations, regions and services"
"$BIN" crd | k apply --server-side --force-conflicts -f - >/dev/null
mkdir -p "$DEMO_DIR"
if [ ! -f "$DEMO_DIR/edgeshift-node.key" ]; then
  "$BIN" node keygen --out "$DEMO_DIR" >/dev/null
fi
PUBKEY=$(cat "$DEMO_DIR/edgeshift-node.pub")
k create namespace edgeshift-system --dry-run=client -o yaml | k apply -f - >/dev/null
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: edgeshift-trust-policy
  namespace: edgeshift-system
data:
  mode: strict
  allowedOperators: |
    demo-operator: ["$PUBKEY"]
  revokedKeys: "[]"
EOF
# Six community nodes around Europe and the US east coast, each signed by the demo operator.
locations=("50.11,8.68,DE" "48.86,2.35,FR" "52.37,4.90,NL" "40.71,-74.01,US" "39.95,-75.17,US" "51.51,-0.13,GB")
for i in 1 2 3 4 5 6; do
  "$BIN" node register --key "$DEMO_DIR/edgeshift-node.key" --node "edge-$i" --operator demo-operator \
    --location "${locations[$((i - 1))]}" --capacity cpu=4,memory=8Gi,pods=20 --price "0.0$i"
  echo "---"
done >"$DEMO_DIR/edgenodes.yaml"
k apply --server-side --force-conflicts -f "$DEMO_DIR/edgenodes.yaml" >/dev/null
k apply --server-side --force-conflicts -f manifests/examples/cloudregions.yaml >/dev/null
k apply --server-side --force-conflicts -f manifests/examples/edgeservices.yaml >/dev/null
# The examples wait 300 s before moving back; the drill shortens that so you can watch it.
for es in shop api reports; do
  k -n demo patch edgeservice "$es" --type merge \
    -p '{"spec":{"fallback":{"failback":{"stabilizationSeconds":20,"stepSeconds":5}}}}' >/dev/null 2>&1 || true
done
note "kubectl get cloudregions,edgenodes; kubectl -n demo get edgeservices"

step "5/7 Starting the operator (log: ${LOG#"$REPO_DIR"/})"
mkdir -p "$(dirname "$LOG")" "$STATE_DIR/pids"
if ! { [ -f "$STATE_DIR/pids/operator-demo.pid" ] && kill -0 "$(cat "$STATE_DIR/pids/operator-demo.pid")" 2>/dev/null; }; then
  setsid "$BIN" run --kubeconfig "$KUBECONFIG_FILE" --trust-policy edgeshift-system/edgeshift-trust-policy \
    --canary "$(e2e/cluster.sh endpoint gcp-europe-west1)" </dev/null >>"$LOG" 2>&1 &
  echo $! >"$STATE_DIR/pids/operator-demo.pid"
fi

regions() {
  k get cloudregions -o jsonpath='{range .items[*]}{.metadata.name}={.status.phase} {end}'
}
services() {
  k -n demo get edgeservices \
    -o jsonpath='{range .items[*]}{.metadata.name}: {.status.phase} cloud {.status.cloud} edge {.status.edge} edge-traffic {.status.edgeTrafficPercent}%   {end}'
}
timeline() { # <seconds> <until-command>: print a line a second until the command succeeds
  local start=$SECONDS limit=$1
  shift
  while [ $((SECONDS - start)) -lt "$limit" ]; do
    printf '  t=%3ss  %s\n           %s\n' "$((SECONDS - start))" "$(regions)" "$(services)"
    if "$@"; then return 0; fi
    sleep 1
  done
  echo "  (still converging after ${limit}s; see $LOG)"
}
all_phase() { # <phase>: every demo EdgeService has this phase
  [ -z "$(k -n demo get edgeservices -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -vx "$1")" ]
}
regions_healthy() { [ -z "$(k get cloudregions -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -vx Healthy)" ]; }
shop_on_edge() { # all traffic on the edge and every planned edge replica Ready
  local st
  st=$(k -n demo get edgeservice shop -o jsonpath='{.status.edgeTrafficPercent} {.status.edge} {.status.lastFailover.edgeReadyMillis}')
  read -r traffic edge ready_ms <<<"$st"
  [ "$traffic" = 100 ] && [ "${edge%/*}" = "${edge#*/}" ] && [ -n "${ready_ms:-}" ]
}

note "waiting for the regions to be judged Healthy and the services to be Normal"
settled() { regions_healthy && all_phase Normal; }
timeline 90 settled

step "6/7 Drill: all of AWS goes down (aws-us-east-1 and aws-us-west-2 stop heart-beating and answering)"
drill_start=$(date +%s%N)
e2e/cluster.sh region-down aws-us-east-1
e2e/cluster.sh region-down aws-us-west-2
timeline 120 shop_on_edge
drill_ms=$((($(date +%s%N) - drill_start) / 1000000))
note "shop's failover, as recorded in its status:"
k -n demo get edgeservice shop -o jsonpath='{.status.lastFailover}' | sed 's/^/    /'
echo
rto=$(k -n demo get edgeservice shop -o jsonpath='{.status.lastFailover.trafficShiftMillis}')
ready=$(k -n demo get edgeservice shop -o jsonpath='{.status.lastFailover.edgeReadyMillis}')
note "edgeshift's part (region declared Down -> all edge pods Ready): ${ready:-?} ms"
note "traffic left the lost regions ${rto:-?} ms after they were declared Down"
note "RTO seen by this script (AWS taken away -> shop served from the edge): ${drill_ms} ms,"
note "of which detection is ~4-6 s (probe every 2 s, 3 failures in a row)"

step "7/7 Recovery: AWS comes back; edgeshift waits for 20 s of continuous health, then fails back in steps"
e2e/cluster.sh region-up aws-us-east-1
e2e/cluster.sh region-up aws-us-west-2
timeline 180 settled

step "Explore"
cat <<EOF
    export KUBECONFIG=$KUBECONFIG_FILE
    kubectl -n demo get edgeservices            # phases, replicas, edge traffic
    kubectl -n demo describe edgeservice shop   # the failover told through Events
    kubectl get cloudregions,edgenodes
    ${BIN#"$REPO_DIR"/} status                       # regions, edge nodes, services, traffic in one view
    ${BIN#"$REPO_DIR"/} plan -f manifests/examples/edgeservices.yaml   # what-if (first document)
    e2e/cluster.sh region-down gcp-europe-west1  # another drill: api fails over to the edge
    tail -f ${LOG#"$REPO_DIR"/}

    Tear down: make cluster-down   (stops the cluster and the operator)
EOF
