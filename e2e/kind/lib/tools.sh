# shellcheck shell=bash
# The kind lane's tools, built from Go modules (and one C file) into the same versioned
# cache as the KWOK lane's binaries; build_step never rebuilds what is cached.
# Expects common.sh, build.sh and versions.env to be loaded.

go_install_step() { # <out dir> <log> <ldflags> <package@version>
  local out=$1 log=$2 ld=$3 pkg=$4
  mkdir -p "$out"
  (CGO_ENABLED=0 GOBIN="$out" go install -trimpath -ldflags "-s -w $ld" "$pkg") >>"$log" 2>&1
}

build_kind() {
  go_install_step "$(bin_dir kind "$1").partial" "$2" "" "sigs.k8s.io/kind@$1" || return 1
  finish_bins kind "$1"
}

build_crictl() {
  go_install_step "$(bin_dir crictl "$1").partial" "$2" "-X sigs.k8s.io/cri-tools/pkg/version.Version=$1" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$1" || return 1
  finish_bins crictl "$1"
}

build_coredns() {
  go_install_step "$(bin_dir coredns "$1").partial" "$2" "" "github.com/coredns/coredns@$1" || return 1
  finish_bins coredns "$1"
}

build_external_dns() {
  go_install_step "$(bin_dir external-dns "$1").partial" "$2" \
    "-X sigs.k8s.io/external-dns/pkg/apis/externaldns.Version=$1" "sigs.k8s.io/external-dns@$1" || return 1
  finish_bins external-dns "$1"
}

build_pause() { # the pod sandbox process: a static C program of ours
  local out
  out="$(bin_dir pause "$1").partial"
  mkdir -p "$out"
  gcc -static -O2 -o "$out/pause" "$REPO_DIR/e2e/kind/images/pause.c" >>"$2" 2>&1 || return 1
  finish_bins pause "$1"
}

kind_tools_build() {
  build_step kubernetes-node "$K8S_VERSION" build_kubernetes_node
  build_step kind "$KIND_VERSION" build_kind
  build_step crictl "$CRICTL_VERSION" build_crictl
  build_step coredns "$COREDNS_VERSION" build_coredns
  build_step external-dns "$EXTERNAL_DNS_VERSION" build_external_dns
  build_step pause 1 build_pause
}
