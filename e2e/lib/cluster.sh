# shellcheck shell=bash
# Starts and stops the local cluster: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, one KWOK controller per failure domain, and one health endpoint per region.
#
# One KWOK process per region (and per edge node) is why this is a launcher of its own and
# not kwokctl: killing that process is a real region loss — node leases stop renewing, the
# node lifecycle controller marks the nodes NotReady, taints them and evicts their pods.

APISERVER_PORT=${EDGESHIFT_APISERVER_PORT:-16443}
ETCD_PORT=${EDGESHIFT_ETCD_PORT:-16379}
ETCD_PEER_PORT=${EDGESHIFT_ETCD_PEER_PORT:-16380}
HEALTH_PORT=${EDGESHIFT_HEALTH_PORT:-18080}
# Node lifecycle: leases renew every lease/4 s; a node is NotReady once its lease is older
# than the grace period.
NODE_LEASE_SECONDS=${EDGESHIFT_NODE_LEASE_SECONDS:-8}
NODE_GRACE_PERIOD=${EDGESHIFT_NODE_GRACE_PERIOD:-10s}
KCM_QPS=${EDGESHIFT_KCM_QPS:-200}
SCHEDULER_QPS=${EDGESHIFT_SCHEDULER_QPS:-200}
# Workers of the controller-manager's Deployment, ReplicaSet and endpoints controllers.
KCM_SYNCS=${EDGESHIFT_KCM_SYNCS:-10}
# Simulated container start: KWOK's pod stages (created/running, init containers, ready) each
# wait a random time between DELAY and JITTER ms, so a pod is Ready 1-3 s after it is bound.
# (KWOK's own "general" profile waits 1-5 s per stage, 2-10 s a pod; 0 and 0: Ready at once.)
POD_STAGE_DELAY_MS=${EDGESHIFT_POD_STAGE_DELAY_MS:-500}
POD_STAGE_JITTER_MS=${EDGESHIFT_POD_STAGE_JITTER_MS:-1500}
# Opt-in settings for benchmarks (e2e/bench/); the defaults leave the test cluster as it is.
# Pod IPs per node: KWOK takes them from the node's podCIDR, a /24 (~250 pods) by default.
NODE_CIDR_MASK_SIZE=${EDGESHIFT_NODE_CIDR_MASK_SIZE:-24}
# Extra community edge nodes edge-bench-1..N, all kept alive by one KWOK process.
EXTRA_EDGE_NODES=${EDGESHIFT_EXTRA_EDGE_NODES:-0}
# An audit policy file for the API server (log: logs/audit.log); none by default.
AUDIT_POLICY=${EDGESHIFT_AUDIT_POLICY:-}
# /debug/pprof on the API server (admin credentials), for profiling a benchmark.
APISERVER_PROFILING=${EDGESHIFT_APISERVER_PROFILING:-false}
# KWOK pod lifecycle: `general` simulates container start-up (1-6 s per stage), `fast` makes
# a bound pod Ready at once; and how many pod stages each KWOK process plays at once.
KWOK_POD_STAGES=${EDGESHIFT_KWOK_POD_STAGES:-general}
KWOK_PARALLELISM=${EDGESHIFT_KWOK_PARALLELISM:-4}

PKI=$STATE_DIR/pki
LOGS=$STATE_DIR/logs
PIDS=$STATE_DIR/pids
ADMIN_TOKEN_FILE=$PKI/admin.token

# The fixed topology: region name, provider, region label, health endpoint address.
REGIONS="aws-us-east-1:aws:us-east-1:127.0.0.11
aws-us-west-2:aws:us-west-2:127.0.0.12
gcp-europe-west1:gcp:europe-west1:127.0.0.13"
EDGE_NODES="edge-1 edge-2 edge-3 edge-4 edge-5 edge-6"

region_field() { # <region> <field index 2..4>
  local line
  line=$(printf '%s\n' "$REGIONS" | grep "^$1:") || die "unknown region '$1' (known: $(region_names | tr '\n' ' '))"
  echo "$line" | cut -d: -f"$2"
}
region_names() { printf '%s\n' "$REGIONS" | cut -d: -f1; }

k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# --- processes -------------------------------------------------------------------------

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

running() { # <name>: true when the process recorded for <name> is alive and is ours
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q "$STATE_DIR" "/proc/$pid/cmdline" 2>/dev/null
}

start_proc() { # <name> <command...>: start in its own session, log to logs/<name>.log
  local name=$1
  shift
  if running "$name"; then return 0; fi
  mkdir -p "$LOGS" "$PIDS"
  setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$PIDS/$name.pid"
}

stop_proc() { # <name>
  local pid i
  pid=$(pid_of "$1")
  if [ -n "$pid" ] && running "$1"; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$1.pid"
}

kill_proc() { # <name>: SIGKILL, as abrupt as losing a region
  local pid
  pid=$(pid_of "$1")
  if [ -n "$pid" ] && running "$1"; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDS/$1.pid"
}

port_free() { # <host> <port>: nothing listens there
  ! (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

require_port() { # <name> <host> <port>
  port_free "$2" "$3" || die "port $2:$3 (for $1) is already in use by another process; free it or set EDGESHIFT_*_PORT (see e2e/lib/cluster.sh)"
}

wait_for() { # <what> <seconds> <command...>
  local what=$1 secs=$2 i
  shift 2
  for i in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

# --- certificates and kubeconfig ---------------------------------------------------------

make_pki() {
  [ -s "$PKI/apiserver.crt" ] && return 0
  command -v openssl >/dev/null || die "openssl is required to create the cluster certificates"
  mkdir -p "$PKI"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=edgeshift-e2e-ca" 2>/dev/null
    cat >apiserver.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    openssl rand -hex 24 >admin.token
    # Static tokens: the admin (tests, tools) and the components, each its own user.
    {
      echo "$(cat admin.token),admin,admin,system:masters"
      echo "$(cat admin.token)-kcm,system:kube-controller-manager,kcm"
      echo "$(cat admin.token)-sched,system:kube-scheduler,sched"
      echo "$(cat admin.token)-kwok,kwok,kwok,system:masters"
      echo "$(cat admin.token)-edgeshift,edgeshift,edgeshift,system:masters"
    } >tokens.csv
  ) || die "creating certificates in $PKI failed"
}

write_kubeconfig() { # <file> <token>
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: edgeshift-e2e
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: admin
  user:
    token: $2
contexts:
- name: edgeshift-e2e
  context: {cluster: edgeshift-e2e, user: admin, namespace: default}
current-context: edgeshift-e2e
EOF
}

# --- components -------------------------------------------------------------------------

start_etcd() {
  running etcd && return 0
  require_port etcd 127.0.0.1 "$ETCD_PORT"
  require_port etcd-peer 127.0.0.1 "$ETCD_PEER_PORT"
  start_proc etcd "$ETCD_BIN" --name e2e --data-dir "$STATE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 8589934592 --log-level warn
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health" ||
    die "etcd did not become healthy in 30s; see $LOGS/etcd.log"
}

start_apiserver() {
  running kube-apiserver && return 0
  local audit_args=()
  if [ -n "$AUDIT_POLICY" ]; then
    audit_args=(--audit-policy-file "$AUDIT_POLICY" --audit-log-path "$LOGS/audit.log"
      --audit-log-format json --audit-log-mode blocking --audit-log-maxsize 0)
  fi
  require_port kube-apiserver 127.0.0.1 "$APISERVER_PORT"
  start_proc kube-apiserver "$KUBE_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 --authorization-mode RBAC \
    --endpoint-reconciler-type none --allow-privileged=true --profiling="$APISERVER_PROFILING" \
    --max-requests-inflight 1600 --max-mutating-requests-inflight 800 \
    --cert-dir "$STATE_DIR/apiserver-certs" "${audit_args[@]}"
  wait_for kube-apiserver 90 curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" ||
    die "kube-apiserver did not become ready in 90s; see $LOGS/kube-apiserver.log"
}

start_controller_manager() {
  running kube-controller-manager && return 0
  write_kubeconfig "$STATE_DIR/kcm.kubeconfig" "$(cat "$ADMIN_TOKEN_FILE")-kcm"
  start_proc kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig "$STATE_DIR/kcm.kubeconfig" --authentication-kubeconfig "$STATE_DIR/kcm.kubeconfig" \
    --authorization-kubeconfig "$STATE_DIR/kcm.kubeconfig" --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --allocate-node-cidrs=true --cluster-cidr 10.128.0.0/12 --node-cidr-mask-size "$NODE_CIDR_MASK_SIZE" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --node-monitor-period 1s --node-monitor-grace-period "$NODE_GRACE_PERIOD" \
    --kube-api-qps "$KCM_QPS" --kube-api-burst "$((KCM_QPS * 2))" \
    --concurrent-deployment-syncs "$KCM_SYNCS" --concurrent-replicaset-syncs "$KCM_SYNCS" \
    --concurrent-service-endpoint-syncs "$KCM_SYNCS" --concurrent-gc-syncs 40
}

start_scheduler() {
  running kube-scheduler && return 0
  write_kubeconfig "$STATE_DIR/scheduler.kubeconfig" "$(cat "$ADMIN_TOKEN_FILE")-sched"
  cat >"$STATE_DIR/scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $STATE_DIR/scheduler.kubeconfig
  qps: $SCHEDULER_QPS
  burst: $((SCHEDULER_QPS * 2))
leaderElection:
  leaderElect: false
EOF
  start_proc kube-scheduler "$KUBE_BIN/kube-scheduler" --config "$STATE_DIR/scheduler.yaml" \
    --authentication-kubeconfig "$STATE_DIR/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE_DIR/scheduler.kubeconfig" --secure-port 0
}

write_stages() {
  local kwok_src
  kwok_src=$(cd "$REPO_DIR" && go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
  [ -d "$kwok_src" ] || (cd "$(mktemp -d)" && go mod init tmp >/dev/null 2>&1 && go mod download "sigs.k8s.io/kwok@$KWOK_VERSION") ||
    die "cannot find KWOK's stage definitions (sigs.k8s.io/kwok@$KWOK_VERSION) in the Go module cache"
  local f pod_stages
  case $KWOK_POD_STAGES in
    general) pod_stages="pod/general/pod-create.yaml pod/general/pod-init-container-running.yaml
      pod/general/pod-init-container-completed.yaml pod/general/pod-ready.yaml
      pod/general/pod-complete.yaml pod/general/pod-delete.yaml" ;;
    fast) pod_stages="pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml" ;;
    *) die "EDGESHIFT_KWOK_POD_STAGES must be general or fast, not '$KWOK_POD_STAGES'" ;;
  esac
  {
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml $pod_stages; do
      case $f in
        pod/general/pod-complete.yaml | pod/general/pod-delete.yaml) cat "$kwok_src/$f" ;;
        pod/general/*) sed -e "s/^    durationMilliseconds: 1000\$/    durationMilliseconds: $POD_STAGE_DELAY_MS/" \
          -e "s/^    jitterDurationMilliseconds: 5000\$/    jitterDurationMilliseconds: $POD_STAGE_JITTER_MS/" "$kwok_src/$f" ;;
        # KWOK's node-initialize (run again when a restarted KWOK finds its node NotReady) writes
        # an empty `addresses:` when the node has an InternalIP but no Hostname address, which
        # ours never get: restarted nodes lost their address. Only add a missing InternalIP.
        node/fast/node-initialize.yaml) sed -e 's/^      {{ if or (not $hasInternalIP) (not $hasHostname) }}$/      {{ if not $hasInternalIP }}/' \
          -e 's/^      {{ if not $hasHostname }}$/      {{ if false }}/' "$kwok_src/$f" ;;
        *) cat "$kwok_src/$f" ;;
      esac
      echo "---"
    done
    # A kubelet that comes back re-reports its running pods Ready; KWOK has no stage for that,
    # so pods the node lifecycle controller marked NotReady during a loss would stay NotReady.
    cat <<EOF
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready-again
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'False'
  delay:
    durationMilliseconds: $POD_STAGE_DELAY_MS
    jitterDurationMilliseconds: $POD_STAGE_JITTER_MS
  next:
    statusTemplate: |
      {{ \$now := Now }}
      conditions:
      - lastProbeTime: null
        lastTransitionTime: {{ \$now | Quote }}
        message: ''
        reason: ''
        status: "True"
        type: Ready
      - lastProbeTime: null
        lastTransitionTime: {{ \$now | Quote }}
        message: ''
        reason: ''
        status: "True"
        type: ContainersReady
---
EOF
    if [ "$KWOK_PARALLELISM" != 4 ]; then
      printf '%s\n' 'apiVersion: config.kwok.x-k8s.io/v1alpha1' 'kind: KwokConfiguration' 'options:' \
        "  podPlayStageParallelism: $KWOK_PARALLELISM" "  nodePlayStageParallelism: $KWOK_PARALLELISM" \
        '  nodeLeaseParallelism: 4' '  podsOnNodeSyncParallelism: 1' '  cidr: 10.0.0.0/24' \
        '  enablePodsOnNodeSyncListPager: true'  # a configuration file gets no defaults
      echo "---"
    fi
  } >"$STATE_DIR/kwok-stages.yaml"
}

kwok_group_label=kwok.edgeshift.io/group

# Region nodes get the InternalIP 10.255.<n>.1 (n: the group's position); an edge node edge-N
# gets 192.0.2.N (TEST-NET-1), the address DNS records point at when traffic moves to it.
# (Pod IPs come from each node's podCIDR, allocated by the controller-manager.)
group_index() { all_groups | grep -nx -- "$1" | cut -d: -f1; }
group_node_ip() { # <group>
  case $1 in
    edge-[0-9]*) echo "192.0.2.${1#edge-}" ;;
    *) echo "10.255.$(group_index "$1").1" ;;
  esac
}

start_kwok() { # <group>: the KWOK controller that keeps this group's nodes (and pods) alive
  local group=$1
  running "kwok-$group" && return 0
  start_proc "kwok-$group" "$KWOK_BIN" --kubeconfig "$STATE_DIR/kwok.kubeconfig" \
    --config "$STATE_DIR/kwok-stages.yaml" \
    --manage-nodes-with-label-selector "$kwok_group_label=$group" \
    --node-lease-duration-seconds "$NODE_LEASE_SECONDS" \
    --node-ip "$(group_node_ip "$group")"
}

start_health_endpoint() { # <region>
  local region=$1 addr
  addr=$(region_field "$region" 4)
  running "health-$region" && return 0
  require_port "health endpoint of $region" "$addr" "$HEALTH_PORT"
  start_proc "health-$region" python3 "$REPO_DIR/e2e/health_endpoint.py" "$addr" "$HEALTH_PORT" "$region" "$STATE_DIR"
  wait_for "health endpoint $region" 10 curl -sf "http://$addr:$HEALTH_PORT/healthz" ||
    die "health endpoint of $region did not answer on http://$addr:$HEALTH_PORT/healthz; see $LOGS/health-$region.log"
}

node_manifest() { # <name> <group> [label=value ...]
  local name=$1 group=$2
  shift 2
  cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: $name
    e2e.edgeshift.io/name: $name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    $kwok_group_label: $group
EOF
  local l
  for l in "$@"; do echo "    ${l%%=*}: ${l#*=}"; done
}

create_topology() {
  local region provider label n
  {
    for region in $(region_names); do
      provider=$(region_field "$region" 2)
      label=$(region_field "$region" 3)
      for n in 1 2; do
        node_manifest "$region-$n" "$region" "topology.kubernetes.io/region=$label" "edgeshift.io/provider=$provider"
      done
    done
    for n in $EDGE_NODES; do node_manifest "$n" "$n"; done
    for n in $(extra_edge_nodes); do node_manifest "$n" edge-bench; done
  } >"$STATE_DIR/nodes.yaml"
  k apply -f "$STATE_DIR/nodes.yaml" >/dev/null || die "creating the nodes failed"
}

install_traffic_crds() {
  local f
  for f in "$CACHE_DIR/crds/gateway-api-$GATEWAY_API_VERSION.yaml" "$CACHE_DIR/crds/external-dns-$EXTERNAL_DNS_VERSION.yaml"; do
    [ -s "$f" ] || die "missing $f: run e2e/cluster.sh build"
    k apply --server-side --force-conflicts -f "$f" >/dev/null || die "installing CRDs from $f failed"
  done
}

extra_edge_nodes() { [ "$EXTRA_EDGE_NODES" -gt 0 ] && seq -f 'edge-bench-%g' 1 "$EXTRA_EDGE_NODES" || true; }

all_groups() {
  region_names
  printf '%s\n' $EDGE_NODES
  [ "$EXTRA_EDGE_NODES" -gt 0 ] && echo edge-bench || true
}

cmd_up() {
  local start=$SECONDS g
  have_bins kubernetes "$K8S_VERSION" && have_bins etcd "$ETCD_VERSION" && have_bins kwok "$KWOK_VERSION" ||
    die "the cluster binaries are not built: run e2e/cluster.sh build (or make cluster-up)"
  command -v curl >/dev/null || die "curl is required"
  command -v python3 >/dev/null || die "python3 is required for the region health endpoints"
  if ! running etcd && ! running kube-apiserver; then
    rm -rf "$STATE_DIR/etcd" "$PIDS"  # a fresh cluster when nothing runs
  fi
  mkdir -p "$STATE_DIR" "$LOGS" "$PIDS"
  make_pki
  write_kubeconfig "$KUBECONFIG_FILE" "$(cat "$ADMIN_TOKEN_FILE")"
  write_kubeconfig "$STATE_DIR/kwok.kubeconfig" "$(cat "$ADMIN_TOKEN_FILE")-kwok"
  write_kubeconfig "$STATE_DIR/edgeshift.kubeconfig" "$(cat "$ADMIN_TOKEN_FILE")-edgeshift"
  say "starting etcd $ETCD_VERSION and kube-apiserver $K8S_VERSION on https://127.0.0.1:$APISERVER_PORT"
  start_etcd
  start_apiserver
  start_controller_manager
  start_scheduler
  write_stages
  for g in $(all_groups); do start_kwok "$g"; done
  for g in $(region_names); do start_health_endpoint "$g"; done
  create_topology
  install_traffic_crds
  wait_for "all nodes Ready" 90 nodes_all_ready || die "nodes did not all become Ready in 90s; see $LOGS/kwok-*.log and $LOGS/kube-controller-manager.log"
  wait_for "default service account" 60 k get serviceaccount default -n default ||
    die "the default ServiceAccount was not created in 60s; see $LOGS/kube-controller-manager.log"
  say "cluster up in $((SECONDS - start))s; kubeconfig: $KUBECONFIG_FILE"
  say "try: $KUBECTL --kubeconfig $KUBECONFIG_FILE get nodes -L topology.kubernetes.io/region"
}

nodes_all_ready() {
  local want
  want=$(( $(region_names | wc -l) * 2 + $(echo "$EDGE_NODES" | wc -w) + EXTRA_EDGE_NODES ))
  [ "$(k get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')" -ge "$want" ]
}

require_up() {
  running kube-apiserver || die "the cluster is not running: start it with e2e/cluster.sh up (or make cluster-up)"
}

cmd_region_down() { # <region>
  local region=${1:-}
  [ -n "$region" ] || die "usage: e2e/cluster.sh region-down <region>"
  region_field "$region" 2 >/dev/null
  require_up
  kill_proc "health-$region"
  kill_proc "kwok-$region"
  say "region $region is down: its nodes stopped heart-beating, http://$(region_field "$region" 4):$HEALTH_PORT/healthz stopped answering"
}

cmd_region_up() { # <region>
  local region=${1:-}
  [ -n "$region" ] || die "usage: e2e/cluster.sh region-up <region>"
  region_field "$region" 2 >/dev/null
  require_up
  start_kwok "$region"
  start_health_endpoint "$region"
  say "region $region is up: its nodes heart-beat again and its health endpoint answers"
}

edge_check() { # <node>
  [ -n "${1:-}" ] || die "usage: e2e/cluster.sh edge-node-down|edge-node-up <node>"
  printf '%s\n' $EDGE_NODES | grep -qx "$1" || die "unknown edge node '$1' (known: $EDGE_NODES)"
}

cmd_edge_node_down() { edge_check "${1:-}"; require_up; kill_proc "kwok-$1"; say "edge node $1 stopped heart-beating"; }
cmd_edge_node_up() { edge_check "${1:-}"; require_up; start_kwok "$1"; say "edge node $1 heart-beats again"; }

cmd_status() {
  local name state
  echo "components:"
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler $(all_groups | sed 's/^/kwok-/') $(region_names | sed 's/^/health-/'); do
    if running "$name"; then state="running (pid $(pid_of "$name"))"; else state="stopped"; fi
    printf '  %-28s %s\n' "$name" "$state"
  done
  echo "region health endpoints:"
  for name in $(region_names); do
    printf '  %-20s http://%s:%s/healthz\n' "$name" "$(region_field "$name" 4)" "$HEALTH_PORT"
  done
  if running kube-apiserver; then
    echo "nodes:"
    k get nodes -L topology.kubernetes.io/region,edgeshift.io/provider | sed 's/^/  /'
    echo "kubeconfig: $KUBECONFIG_FILE"
  fi
}

cmd_down() {
  local f name
  if [ -d "$PIDS" ]; then
    for f in "$PIDS"/*.pid; do
      [ -e "$f" ] || continue
      name=$(basename "$f" .pid)
      stop_proc "$name"
    done
  fi
  # Anything still running with our state dir on its command line is ours too.
  pkill -9 -f -- "$STATE_DIR/" 2>/dev/null || true
  rm -rf "$STATE_DIR/etcd" "$PIDS"
  say "cluster down; no component left running"
}
