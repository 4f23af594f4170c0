# shellcheck shell=bash
# Shared settings and small functions for e2e/cluster.sh.

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=../versions.env
. "$REPO_DIR/e2e/versions.env"
CACHE_DIR=${EDGESHIFT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgeshift}
STATE_DIR=${EDGESHIFT_E2E_DIR:-$REPO_DIR/target/e2e}
KUBECONFIG_FILE=$STATE_DIR/kubeconfig

say() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

bin_dir() { echo "$CACHE_DIR/bin/$1-$2"; }

# Every binary a tool must have built, by tool name.
tool_bins() {
  case $1 in
    kubernetes) echo "kube-apiserver kube-controller-manager kube-scheduler kubectl" ;;
    kubernetes-node) echo "kubelet kubeadm kube-proxy" ;;
    kind | crictl | coredns | external-dns | pause) echo "$1" ;;
    etcd) echo "etcd" ;;
    kwok) echo "kwok" ;;
    helm) echo "helm" ;;
  esac
}

have_bins() { # <tool> <version>
  local b
  for b in $(tool_bins "$1"); do
    [ -x "$(bin_dir "$1" "$2")/$b" ] || return 1
  done
}

KUBE_BIN=$(bin_dir kubernetes "$K8S_VERSION")
ETCD_BIN=$(bin_dir etcd "$ETCD_VERSION")/etcd
KWOK_BIN=$(bin_dir kwok "$KWOK_VERSION")/kwok
HELM_BIN=$(bin_dir helm "$HELM_VERSION")/helm
KUBECTL=$KUBE_BIN/kubectl
