#!/usr/bin/env bash
# make bench: a dedicated benchmark cluster on its own ports and state dir (a running test
# cluster is left alone), the driver (e2e/bench/main.rs), one table; the cluster is torn
# down on exit. With BENCH_KUBECONFIG set, runs against that cluster instead and starts none
# (see e2e/bench/README.md).
set -euo pipefail
REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_DIR"

if [ -z "${BENCH_KUBECONFIG:-}" ]; then
  export EDGESHIFT_E2E_DIR=${BENCH_STATE_DIR:-$REPO_DIR/target/e2e-bench}
  export EDGESHIFT_APISERVER_PORT=${BENCH_APISERVER_PORT:-26443}
  export EDGESHIFT_ETCD_PORT=${BENCH_ETCD_PORT:-26379}
  export EDGESHIFT_ETCD_PEER_PORT=${BENCH_ETCD_PEER_PORT:-26380}
  export EDGESHIFT_HEALTH_PORT=${BENCH_HEALTH_PORT:-28080}
  # Native Kubernetes as shipped: kubelet leases of 40 s, node-monitor-grace-period 50 s.
  export EDGESHIFT_NODE_LEASE_SECONDS=40
  export EDGESHIFT_NODE_GRACE_PERIOD=50s
  # The rest of the cluster's part of a mass failover: controller-manager and scheduler API
  # rate limits (QPS; burst is twice that), many pod IPs per node, many edge nodes.
  export EDGESHIFT_KCM_QPS=${BENCH_KCM_QPS:-1000}
  export EDGESHIFT_SCHEDULER_QPS=${BENCH_SCHEDULER_QPS:-1000}
  # ... and workers of its Deployment, ReplicaSet and endpoint controllers (default 10).
  export EDGESHIFT_KCM_SYNCS=${BENCH_KCM_SYNCS:-10}
  # /debug/pprof on the API server (admin credentials) when profiling a run.
  export EDGESHIFT_APISERVER_PROFILING=${BENCH_APISERVER_PROFILING:-false}
  export EDGESHIFT_NODE_CIDR_MASK_SIZE=20
  export EDGESHIFT_EXTRA_EDGE_NODES=${BENCH_EDGE_NODES:-20}
  export EDGESHIFT_AUDIT_POLICY=$REPO_DIR/e2e/bench/audit-policy.yaml
  # Pods Ready as soon as they are bound (no simulated container start-up), so the figures
  # are the control plane's and the operator's time; KWOK plays more pod stages at once.
  export EDGESHIFT_KWOK_POD_STAGES=fast
  export EDGESHIFT_KWOK_PARALLELISM=${BENCH_KWOK_PARALLELISM:-32}
  export BENCH_KUBECONFIG=$EDGESHIFT_E2E_DIR/kubeconfig
  export BENCH_OPERATOR_KUBECONFIG=$EDGESHIFT_E2E_DIR/edgeshift.kubeconfig
  export BENCH_LOGS=$EDGESHIFT_E2E_DIR/logs
  # Built first, so the cluster does not sit idle while cargo compiles.
  cargo bench --features e2e --bench cluster --no-run
  e2e/cluster.sh build
  trap 'e2e/cluster.sh down' EXIT
  e2e/cluster.sh down
  rm -rf "$EDGESHIFT_E2E_DIR"
  e2e/cluster.sh up
fi
cargo bench --features e2e --bench cluster
