# shellcheck shell=bash
# Builds the test cluster's binaries from Go modules into a versioned cache outside the repo.
# Sourced by e2e/cluster.sh; expects versions.env and common.sh to be loaded.

# Each tool gets its own wrapper module so the dependency graphs never collide.
build_dir() { echo "$CACHE_DIR/src/$1"; }

# go_in <dir> <log> <args...>: run the go command in a wrapper module, logging to <log>.
go_in() {
  local dir=$1 log=$2
  shift 2
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go "$@") >>"$log" 2>&1
}

# staging_replaces <go.mod of a module> <published version>: for each `X => ./local/path`
# replace in that go.mod, print `X=X@<version>` so the wrapper can pin the published release.
staging_replaces() {
  local gomod=$1 version=$2
  awk -v v="$version" '
    /^replace \(/ { inblock = 1; next }
    inblock && /^\)/ { inblock = 0; next }
    /FORBIDDEN_DEPENDENCY/ { next }  # etcd guards against importing itself: not a staging module
    inblock && /=> *\.\.?\// { print $1 "=" $1 "@" v }
    /^replace [^(]/ && /=> *\.\.?\// { print $2 "=" $2 "@" v }
  ' "$gomod"
}

module_gomod() { # <module@version> -> path of its go.mod in the module cache
  (cd "$1" && go mod download -json "$2") | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p'
}

module_dir() { # <dir> <module@version>: download it, print where it was unpacked
  local json
  json=$(cd "$1" && go mod download -json "$2" 2>&1) || die "downloading Go module $2 failed: $json"
  echo "$json" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'
}

new_wrapper() { # <dir> <module name>
  rm -rf "$1"
  mkdir -p "$1"
  (cd "$1" && go mod init "$2" >/dev/null 2>&1)
}

build_step() { # <name> <version> <function>: time one build, never rebuild what is cached
  local name=$1 version=$2 fn=$3 log
  if have_bins "$name" "$version"; then
    say "cached: $name $version ($(bin_dir "$name" "$version"))"
    return 0
  fi
  log="$CACHE_DIR/logs/build-$name-$version.log"
  mkdir -p "$CACHE_DIR/logs"
  : >"$log"
  say "building $name $version from Go modules (log: $log) ..."
  local start=$SECONDS
  if ! "$fn" "$version" "$log"; then
    rm -rf "$(bin_dir "$name" "$version").partial"
    die "building $name $version failed; last lines of $log:
$(tail -n 25 "$log")"
  fi
  say "built $name $version in $((SECONDS - start))s"
}

# Binaries land in <bin_dir>.partial and are renamed into place only when all built.
finish_bins() { # <name> <version>
  local dir
  dir=$(bin_dir "$1" "$2")
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
}

# kubernetes_build <version> <log> <tool> <cmd...>: build k8s.io/kubernetes/cmd/<cmd> binaries
# into the cache as <tool>, from a wrapper module that pins every staging module to its
# published release (the module itself replaces them with local paths).
kubernetes_build() {
  local version=$1 log=$2 tool=$3 dir gomod replaces=() r c
  shift 3
  dir=$(build_dir "$tool-$version")
  new_wrapper "$dir" "edgeshift.local/build-$tool"
  gomod=$(module_gomod "$dir" "k8s.io/kubernetes@$version")
  [ -n "$gomod" ] || { echo "cannot download k8s.io/kubernetes@$version" >>"$log"; return 1; }
  local staging=v0.${version#v1.}
  while IFS= read -r r; do replaces+=("-replace=$r"); done < <(staging_replaces "$gomod" "$staging")
  echo "replacing ${#replaces[@]} staging modules with $staging" >>"$log"
  (cd "$dir" && go mod edit -require="k8s.io/kubernetes@$version" "${replaces[@]}") >>"$log" 2>&1 || return 1
  local pkgs=()
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "${pkgs[@]}"; do printf '\t_ "%s"\n' "$c"; done
    printf ')\n'
  } >"$dir/tools.go"
  go_in "$dir" "$log" mod tidy -e || return 1
  local minor=${version#v1.}
  minor=${minor%%.*}
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  local out
  out="$(bin_dir "$tool" "$version").partial"
  mkdir -p "$out"
  go_in "$dir" "$log" build -trimpath -ldflags "-s -w$ld" -o "$out/" "${pkgs[@]}" || return 1
  finish_bins "$tool" "$version"
}

build_kubernetes() { # the control plane and kubectl, for the KWOK lane
  kubernetes_build "$1" "$2" kubernetes kube-apiserver kube-controller-manager kube-scheduler kubectl
}

build_kubernetes_node() { # a node's binaries, for the kind lane's node image
  kubernetes_build "$1" "$2" kubernetes-node kubelet kubeadm kube-proxy
}

build_etcd() {
  local version=$1 log=$2 dir gomod replaces=() r
  dir=$(build_dir "etcd-$version")
  new_wrapper "$dir" edgeshift.local/build-etcd
  gomod=$(module_gomod "$dir" "go.etcd.io/etcd/server/v3@$version")
  [ -n "$gomod" ] || { echo "cannot download go.etcd.io/etcd/server/v3@$version" >>"$log"; return 1; }
  while IFS= read -r r; do replaces+=("-replace=$r"); done < <(staging_replaces "$gomod" "$version")
  (cd "$dir" && go mod edit -require="go.etcd.io/etcd/server/v3@$version" "${replaces[@]}") >>"$log" 2>&1 || return 1
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$dir/tools.go"
  go_in "$dir" "$log" mod tidy -e || return 1
  local out
  out="$(bin_dir etcd "$version").partial"
  mkdir -p "$out"
  go_in "$dir" "$log" build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3 || return 1
  finish_bins etcd "$version"
}

build_kwok() {
  local version=$1 log=$2 out
  out="$(bin_dir kwok "$version").partial"
  mkdir -p "$out"
  # kwok's version is a constant in its source, so it needs no -X.
  (CGO_ENABLED=0 GOBIN="$out" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$version") >>"$log" 2>&1 || return 1
  finish_bins kwok "$version"
}

build_helm() {
  local version=$1 log=$2 out
  out="$(bin_dir helm "$version").partial"
  mkdir -p "$out"
  (CGO_ENABLED=0 GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
    "helm.sh/helm/v3/cmd/helm@$version") >>"$log" 2>&1 || return 1
  finish_bins helm "$version"
}

# The CRDs the traffic integrations need (Gateway API standard channel, ExternalDNS
# DNSEndpoint) are YAML files inside their Go modules: fetch them through the module proxy.
fetch_traffic_crds() {
  local out="$CACHE_DIR/crds" gw dns tmp
  if [ -s "$out/gateway-api-$GATEWAY_API_VERSION.yaml" ] && [ -s "$out/external-dns-$EXTERNAL_DNS_VERSION.yaml" ]; then
    say "cached: Gateway API $GATEWAY_API_VERSION and DNSEndpoint CRDs"
    return 0
  fi
  mkdir -p "$out"
  tmp=$(mktemp -d)
  (cd "$tmp" && go mod init tmp >/dev/null 2>&1)
  gw=$(module_dir "$tmp" "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
  dns=$(module_dir "$tmp" "sigs.k8s.io/external-dns@$EXTERNAL_DNS_VERSION")
  rm -rf "$tmp"
  [ -d "$gw/config/crd/standard" ] || die "Gateway API $GATEWAY_API_VERSION module has no config/crd/standard"
  local f
  for f in "$gw"/config/crd/standard/*.yaml; do
    cat "$f"
    echo "---"
  done >"$out/gateway-api-$GATEWAY_API_VERSION.yaml"
  f=$dns/config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml
  [ -s "$f" ] || die "external-dns $EXTERNAL_DNS_VERSION module has no DNSEndpoint CRD at $f"
  cat "$f" >"$out/external-dns-$EXTERNAL_DNS_VERSION.yaml"
  say "fetched Gateway API $GATEWAY_API_VERSION and DNSEndpoint CRDs from their Go modules"
}

cmd_build() {
  command -v go >/dev/null || die "Go is not installed: install Go >= 1.24 (https://go.dev/doc/install) and retry"
  local start=$SECONDS
  build_step etcd "$ETCD_VERSION" build_etcd
  build_step kwok "$KWOK_VERSION" build_kwok
  build_step helm "$HELM_VERSION" build_helm
  build_step kubernetes "$K8S_VERSION" build_kubernetes
  fetch_traffic_crds
  say "all binaries ready in $((SECONDS - start))s under $CACHE_DIR/bin"
}
