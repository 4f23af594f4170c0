# shellcheck shell=bash
# The kind lane's cluster: a control plane, one node per cloud region of the local topology
# and three community edge nodes; the pod network; each region's health endpoint served
# from inside that region; the operator installed by `helm install`; signed registrations of
# the edge nodes under a strict trust policy; and the outside DNS chain (ExternalDNS →
# etcd → CoreDNS) that clients of a lost provider are sent elsewhere by.

# region name : provider : region label (the same three regions as the KWOK lane)
KIND_REGIONS="aws-us-east-1:aws:us-east-1
aws-us-west-2:aws:us-west-2
gcp-europe-west1:gcp:europe-west1"
KIND_EDGE_NODES="edge-1 edge-2 edge-3"
# Where each edge node says it is (signed into its registration), and what it asks per hour.
KIND_EDGE_LOCATIONS=("50.11,8.68,DE" "48.86,2.35,FR" "52.37,4.90,NL")
POD_SUBNET=10.244.0.0/16
HEALTH_PORT=${EDGESHIFT_KIND_HEALTH_PORT:-18080}
E2E_NS=edgeshift-e2e
DNS_ZONE=edgeshift.test
DNS_PORT=${EDGESHIFT_KIND_DNS_PORT:-1053}
DNS_ETCD_PORT=${EDGESHIFT_KIND_DNS_ETCD_PORT:-23790}
# ExternalDNS's DNSEndpoint source polls; this is how often (it counts in the DNS figures).
EXTERNAL_DNS_INTERVAL=${EDGESHIFT_EXTERNAL_DNS_INTERVAL:-2s}

kind_config() {
  local line name provider label i=0 edge
  cat <<EOF
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
networking:
  # No kindnetd (its module is not served here): e2e/kind/lib/topology.sh wires a ptp +
  # host-local pod network with routes between the nodes instead.
  disableDefaultCNI: true
  kubeProxyMode: nftables
  podSubnet: $POD_SUBNET
nodes:
- role: control-plane
  labels: {e2e.edgeshift.io/name: control-plane}
EOF
  if [ -z "${EDGESHIFT_KIND_IMAGE:-}" ]; then
    cat <<EOF
  kubeadmConfigPatches:
  - |
    kind: ClusterConfiguration
    etcd:
      local:
        imageTag: "$ETCD_IMAGE_TAG"
EOF
  fi
  while IFS=: read -r name provider label; do
    echo "- {role: worker, labels: {e2e.edgeshift.io/name: $name-1, topology.kubernetes.io/region: $label, edgeshift.io/provider: $provider}}"
  done <<<"$KIND_REGIONS"
  # Community nodes join with the edge taint already set (--register-with-taints), as
  # docs/joining.md asks node operators to: nothing lands there before edgeshift verified it.
  for edge in $KIND_EDGE_NODES; do
    cat <<EOF
- role: worker
  labels: {e2e.edgeshift.io/name: $edge}
  kubeadmConfigPatches:
  - |
    kind: JoinConfiguration
    nodeRegistration:
      taints: [{key: edgeshift.io/edge, value: "true", effect: NoSchedule}]
EOF
    i=$((i + 1))
  done
}

node_of() { # <topology name>: the kind node (= container) name
  kk get nodes -l "e2e.edgeshift.io/name=$1" -o jsonpath='{.items[0].metadata.name}'
}
node_ip() { # <kind node name>
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$1" | awk '{print $1}'
}
region_node() { node_of "$1-1"; }
region_endpoint() { echo "http://$(node_ip "$(region_node "$1")"):$HEALTH_PORT/healthz"; }

# The pod network, with no CNI daemon: on every node a ptp + host-local conflist for that
# node's podCIDR (portmap for hostPorts), a route to every other node's pod CIDR through its
# node IP, and masquerading for traffic that leaves the pod network. Set after the cluster
# is created and again whenever a node is started or reconnected (every step is idempotent).
pod_network() {
  local nodes n cidr ip other ocidr oip
  nodes=$(kk get nodes -o jsonpath='{range .items[*]}{.metadata.name}={.spec.podCIDR}{"\n"}{end}')
  while IFS== read -r n cidr; do
    [ -n "$cidr" ] || die "node $n has no podCIDR"
    docker exec -i "$n" sh -c 'cat >/etc/cni/net.d/10-edgeshift.conflist' <<EOF
{
  "cniVersion": "0.4.0",
  "name": "edgeshift",
  "plugins": [
    {"type": "ptp", "ipMasq": false, "mtu": 1500,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$cidr"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
    while IFS== read -r other ocidr; do
      [ "$other" = "$n" ] && continue
      oip=$(node_ip "$other")
      docker exec "$n" ip route replace "$ocidr" via "$oip"
    done <<<"$nodes"
    docker exec "$n" sh -c "iptables -t nat -C POSTROUTING -s $cidr ! -d $POD_SUBNET -j MASQUERADE 2>/dev/null ||
      iptables -t nat -A POSTROUTING -s $cidr ! -d $POD_SUBNET -j MASQUERADE"
  done <<<"$nodes"
}

load_images() {
  local img
  for img in "$OPERATOR_IMAGE" "$WORKLOAD_IMAGE"; do
    image_exists "$img" || die "image $img is missing: run e2e/kind/kind.sh build (or make image)"
  done
  "$KIND_BIN" load docker-image --name "$KIND_CLUSTER" "$OPERATOR_IMAGE" "$WORKLOAD_IMAGE" >"$KIND_STATE/load.log" 2>&1 ||
    die "kind load docker-image failed; see $KIND_STATE/load.log"
}

health_endpoints() { # a server per region, on that region's node, answering on its node IP
  local name provider label
  kk create namespace "$E2E_NS" --dry-run=client -o yaml | kk apply -f - >/dev/null
  while IFS=: read -r name provider label; do
    kk apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: health-$name, namespace: $E2E_NS}
spec:
  replicas: 1
  selector: {matchLabels: {app: health-$name}}
  template:
    metadata: {labels: {app: health-$name}}
    spec:
      nodeSelector: {e2e.edgeshift.io/name: $name-1}
      terminationGracePeriodSeconds: 1
      containers:
      - name: health
        image: $WORKLOAD_IMAGE
        imagePullPolicy: Never
        args: [serve, "8080"]
        env: [{name: TARGET, value: "health-$name"}]
        ports: [{containerPort: 8080, hostPort: $HEALTH_PORT}]
EOF
  done <<<"$KIND_REGIONS"
}

cloud_regions() { # the CloudRegions, probing the health endpoints above (chart-default timing)
  local name provider label
  while IFS=: read -r name provider label; do
    kk apply --server-side -f - >/dev/null <<EOF
apiVersion: edgeshift.io/v1alpha1
kind: CloudRegion
metadata: {name: $name}
spec:
  provider: $provider
  region: $label
  probes:
  - name: lb
    http: {url: "$(region_endpoint "$name")"}
EOF
  done <<<"$KIND_REGIONS"
}

edge_registrations() { # signed by one community operator, allowed by the chart's strict policy
  local key=$KIND_STATE/node-key i=0 edge node
  [ -f "$key/edgeshift-node.key" ] || "$RELEASE_BIN" node keygen --out "$key" >/dev/null
  for edge in $KIND_EDGE_NODES; do
    node=$(node_of "$edge")
    "$RELEASE_BIN" node register --key "$key/edgeshift-node.key" --node "$node" --name "$edge" \
      --operator kind-community --location "${KIND_EDGE_LOCATIONS[$i]}" \
      --capacity cpu=2,memory=4Gi,pods=20 --price "0.0$((i + 1))"
    echo "---"
    i=$((i + 1))
  done >"$KIND_STATE/edgenodes.yaml"
  kk apply --server-side -f "$KIND_STATE/edgenodes.yaml" >/dev/null
}

install_operator() {
  local pub
  pub=$(cat "$KIND_STATE/node-key/edgeshift-node.pub")
  "$HELM_BIN" upgrade --install edgeshift "$REPO_DIR/charts/edgeshift" --kubeconfig "$KIND_KUBECONFIG" \
    --namespace edgeshift-system --create-namespace --skip-crds \
    -f "$REPO_DIR/e2e/kind/operator-values.yaml" \
    --set-json "trustPolicy.allowedOperators={\"kind-community\":[\"$pub\"]}" \
    --wait --timeout 180s >"$KIND_STATE/helm.log" 2>&1 || {
    kk -n edgeshift-system get pods -o wide >&2 || true
    die "helm install failed; see $KIND_STATE/helm.log"
  }
}

# --- the outside DNS chain: ExternalDNS (DNSEndpoint source, coredns provider) writes into
# an etcd that CoreDNS serves the zone from; clients outside the cluster resolve through it.
host_proc() { # <name> <command...>
  local name=$1
  shift
  host_proc_stop "$name"
  setsid "$@" </dev/null >>"$KIND_STATE/$name.log" 2>&1 &
  echo $! >"$KIND_STATE/$name.pid"
}
host_proc_stop() {
  local pid
  pid=$(cat "$KIND_STATE/$1.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -f "$KIND_STATE/$1.pid"
}

dns_chain_up() {
  rm -rf "$KIND_STATE/dns-etcd"
  host_proc dns-etcd "$ETCD_BIN" --name dns --data-dir "$KIND_STATE/dns-etcd" \
    --listen-client-urls "http://127.0.0.1:$DNS_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$DNS_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((DNS_ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((DNS_ETCD_PORT + 1))" \
    --initial-cluster "dns=http://127.0.0.1:$((DNS_ETCD_PORT + 1))"
  cat >"$KIND_STATE/Corefile" <<EOF
$DNS_ZONE:$DNS_PORT {
  bind 127.0.0.1
  etcd $DNS_ZONE {
    path /skydns
    endpoint http://127.0.0.1:$DNS_ETCD_PORT
  }
  errors
}
EOF
  host_proc coredns "$(bin_dir coredns "$COREDNS_VERSION")/coredns" -conf "$KIND_STATE/Corefile"
  ETCD_URLS=http://127.0.0.1:$DNS_ETCD_PORT host_proc external-dns \
    "$(bin_dir external-dns "$EXTERNAL_DNS_VERSION")/external-dns" --kubeconfig "$KIND_KUBECONFIG" \
    --source crd --crd-source-apiversion externaldns.k8s.io/v1alpha1 --crd-source-kind DNSEndpoint \
    --provider coredns --domain-filter "$DNS_ZONE" --policy sync --registry noop \
    --interval "$EXTERNAL_DNS_INTERVAL" --log-level info
  echo "127.0.0.1:$DNS_PORT" >"$KIND_STATE/dns-server"
  echo "$EXTERNAL_DNS_INTERVAL" >"$KIND_STATE/external-dns-interval"
}

dns_chain_down() {
  local p
  for p in external-dns coredns dns-etcd; do host_proc_stop "$p"; done
}

# The Docker network kind puts its nodes on ("kind"), made here with an IPv4 subnet of our
# choosing: Docker reconnects a container with its old address (`docker network connect
# --ip`, the network-cut scenario) only on a network whose subnet the user configured, and
# the network kind makes itself leaves the IPv4 subnet to Docker. Made anew when no
# container uses it, so an older network kind made is replaced; its subnet is one no Docker
# network and no host interface uses.
kind_network() {
  local used subnet n
  if docker network inspect kind >/dev/null 2>&1; then
    [ -z "$(docker network inspect kind -f '{{range .Containers}}{{.Name}} {{end}}')" ] ||
      die "the Docker network 'kind' is in use by $(docker network inspect kind -f '{{range .Containers}}{{.Name}} {{end}}'): delete those kind clusters first"
    docker network rm kind >/dev/null
  fi
  used=$(docker network inspect $(docker network ls -q) -f '{{range .IPAM.Config}}{{.Subnet}} {{end}}' 2>/dev/null)
  for n in $(seq 18 31); do
    subnet=172.$n.0.0/16
    case " $used " in *" $subnet "*) continue ;; esac
    # Nor one the host already routes (a VPN, or a bridge a stopped Docker left behind):
    # two interfaces on one subnet and the host no longer reaches the nodes.
    ip -4 -o addr show | awk '{print $4}' | grep -q "^172\.$n\." && continue
    docker network create --driver bridge --subnet "$subnet" --gateway "172.$n.0.1" \
      --ipv6 --subnet fc00:f853:ccd:e793::/64 \
      -o com.docker.network.bridge.enable_ip_masquerade=true -o com.docker.network.driver.mtu=1500 \
      kind >/dev/null || die "docker network create kind ($subnet) failed"
    return 0
  done
  die "no free 172.18-31.0.0/16 subnet for the Docker network 'kind' (in use: $used)"
}

# kind create waits for the control plane from inside its container; this host reaches it
# through a published port and the network's bridge. Say why when it cannot.
api_reachable() {
  local i cp ip
  for i in $(seq 1 30); do
    kk get --raw /readyz >/dev/null 2>&1 && return 0
    sleep 1
  done
  cp=$("$KIND_BIN" get nodes --name "$KIND_CLUSTER" 2>/dev/null | grep control-plane | head -n 1)
  ip=$(node_ip "$cp")
  die "this host cannot reach the API server of '$KIND_CLUSTER' ($(kk config view -o jsonpath='{.clusters[0].cluster.server}'), node $cp at $ip):
$(kk get --raw /readyz 2>&1 | tail -n 1)
route to $ip: $(ip route get "$ip" 2>&1)
host interfaces: $(ip -4 -o addr show | awk '{print $2, $4}' | tr '\n' ' ')"
}

cmd_up() {
  local start=$SECONDS
  docker_up
  [ -x "$KIND_BIN" ] || die "kind is not built: run e2e/kind/kind.sh build"
  if ! "$KIND_BIN" get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    kind_network
    kind_config >"$KIND_STATE/kind-config.yaml"
    say "creating kind cluster '$KIND_CLUSTER' from $NODE_IMAGE (log: $KIND_STATE/create.log) ..."
    "$KIND_BIN" create cluster --name "$KIND_CLUSTER" --image "$NODE_IMAGE" --config "$KIND_STATE/kind-config.yaml" \
      --kubeconfig "$KIND_KUBECONFIG" >"$KIND_STATE/create.log" 2>&1 ||
      die "kind create cluster failed; last lines of $KIND_STATE/create.log:
$(tail -n 20 "$KIND_STATE/create.log")"
  fi
  "$KIND_BIN" get kubeconfig --name "$KIND_CLUSTER" >"$KIND_KUBECONFIG"
  api_reachable
  pod_network
  kk wait --for=condition=Ready nodes --all --timeout=180s >/dev/null ||
    die "nodes did not become Ready; kubectl get nodes: $(kk get nodes 2>&1)"
  load_images
  kk apply --server-side -f "$REPO_DIR/crds/" >/dev/null
  kk apply --server-side -f "$CACHE_DIR/crds/gateway-api-$GATEWAY_API_VERSION.yaml" >/dev/null
  kk apply --server-side -f "$CACHE_DIR/crds/external-dns-$EXTERNAL_DNS_VERSION.yaml" >/dev/null
  health_endpoints
  kk -n "$E2E_NS" wait --for=condition=Available deployment --all --timeout=120s >/dev/null ||
    die "health endpoints did not start: $(kk -n "$E2E_NS" get pods -o wide 2>&1)"
  cloud_regions
  edge_registrations
  install_operator
  dns_chain_up
  say "kind cluster up in $((SECONDS - start))s (export E2E_KUBECONFIG=$KIND_KUBECONFIG E2E_FAULTS=$HERE/kind.sh)"
}

cmd_down() {
  dns_chain_down
  if [ -x "$KIND_BIN" ] && docker info >/dev/null 2>&1; then
    local c
    # A paused node cannot be deleted: unpause first.
    for c in $(docker ps -q --filter "label=io.x-k8s.kind.cluster=$KIND_CLUSTER" --filter status=paused); do
      docker unpause "$c" >/dev/null || true
    done
    "$KIND_BIN" delete cluster --name "$KIND_CLUSTER" >/dev/null 2>&1 || true
    # The network kind_network made, unless another kind cluster still uses it: a bridge
    # left on the host after dockerd stops would shadow the next network on its subnet.
    docker network rm kind >/dev/null 2>&1 || true
  fi
  docker_down
}

cmd_status() {
  kk get nodes -L e2e.edgeshift.io/name -o wide
  kk get cloudregions,edgenodes
  kk -n edgeshift-system get pods -o wide
}

# --- faults ------------------------------------------------------------------------------
containers_of_region() { kk get nodes -l "topology.kubernetes.io/region=$(region_label "$1")" -o jsonpath='{.items[*].metadata.name}'; }
region_label() { printf '%s\n' "$KIND_REGIONS" | awk -F: -v r="$1" '$1 == r {print $3}'; }
take_down() {
  local c ip
  for c in "$@"; do
    case $MODE in
      pause) docker pause "$c" >/dev/null ;;
      stop) docker stop -t 0 "$c" >/dev/null ;;
      disconnect)
        # Reconnect with the same address: routes to the node's pod CIDR point at it.
        ip=$(node_ip "$c")
        [ -n "$ip" ] || die "$c is not on the Docker network 'kind' (already cut off?)"
        echo "$ip" >"$KIND_STATE/ip-$c"
        docker network disconnect kind "$c"
        ;;
      *) die "MODE must be pause, stop or disconnect" ;;
    esac
  done
}
bring_up() {
  local c changed=
  for c in "$@"; do
    case $MODE in
      pause) if [ "$(docker inspect -f '{{.State.Paused}}' "$c")" = true ]; then docker unpause "$c" >/dev/null; fi ;;
      stop)
        if [ "$(docker inspect -f '{{.State.Running}}' "$c")" != true ]; then
          docker start "$c" >/dev/null
          changed=1
        fi
        ;;
      disconnect)
        if [ -s "$KIND_STATE/ip-$c" ]; then
          docker network connect --ip "$(cat "$KIND_STATE/ip-$c")" kind "$c" ||
            die "could not reconnect $c to the Docker network 'kind' with its address $(cat "$KIND_STATE/ip-$c")"
          rm -f "$KIND_STATE/ip-$c"
          changed=1
        fi
        ;;
    esac
  done
  # A restarted node lost its routes and masquerading (they live in its network namespace);
  # a reconnected one lost the routes through its old interface: set the pod network again.
  if [ -n "$changed" ]; then pod_network; fi
}
region_down() { [ -n "$(region_label "$1")" ] || die "unknown region '$1'"; take_down $(containers_of_region "$1"); }
region_up() { [ -n "$(region_label "$1")" ] || die "unknown region '$1'"; bring_up $(containers_of_region "$1"); }
edge_node_down() { take_down "$(node_of "$1")"; }
edge_node_up() { bring_up "$(node_of "$1")"; }
