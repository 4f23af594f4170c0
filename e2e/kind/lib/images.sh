# shellcheck shell=bash
# Every image the kind lane uses, built offline and cached: the node image (a Debian bookworm
# rootfs from debootstrap, kind's base files from the kind Go module, the kubelet/kubeadm/
# kube-proxy we build, and the control-plane images kubeadm needs already in its containerd),
# the operator image (`make image`) and the workload image. Nothing is ever pulled.
# Expects common.sh (CACHE_DIR, K8S_VERSION, bin_dir), KIND_VERSION, KIND_STATE, say/die.

KIND_CACHE=$CACHE_DIR/kind
# The tag carries a hash of what the image is made from, so a changed recipe builds anew.
NODE_IMAGE_TAG=edgeshift.local/kind-node:$K8S_VERSION-$(cat "$REPO_DIR/e2e/kind/lib/images.sh" "$REPO_DIR/e2e/kind/runc-wrapper" \
  "$REPO_DIR/e2e/kind/images/pause.c" "$REPO_DIR/e2e/versions.env" | sha256sum | cut -c1-10)
# kubeadm v1.34's image names (kubeadm config images list); etcd and CoreDNS are ours.
K8S_REGISTRY=registry.k8s.io
ETCD_IMAGE_TAG=${ETCD_VERSION#v}-0
PAUSE_TAGS="3.10 3.10.1"

# The node's packages: kind's base image list, with containerd, runc and the CNI plugins
# from Debian instead of kind's own builds.
NODE_PACKAGES=systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins
# kube-proxy's image needs only nft (nftables mode) and conntrack.
PROXY_PACKAGES=nftables,conntrack,iptables,iproute2

debian_mirror() { # the first Debian mirror this machine's apt uses
  [ -n "${EDGESHIFT_DEBIAN_MIRROR:-}" ] && { echo "$EDGESHIFT_DEBIAN_MIRROR"; return; }
  local m
  m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -n1)
  [ -n "$m" ] || die "no Debian mirror in /etc/apt sources; set EDGESHIFT_DEBIAN_MIRROR"
  echo "$m"
}

rootfs() { # <name> <packages>: a cached debootstrap rootfs; prints its path
  local dir=$KIND_CACHE/rootfs-$1-$(echo "$2" | sha256sum | cut -c1-12)
  if [ ! -f "$dir/.complete" ]; then
    say "debootstrap: Debian bookworm rootfs '$1' (log: $KIND_CACHE/debootstrap-$1.log) ..."
    rm -rf "$dir"
    mkdir -p "$KIND_CACHE"
    debootstrap --variant=minbase --include="$2" bookworm "$dir" "$(debian_mirror)" \
      >"$KIND_CACHE/debootstrap-$1.log" 2>&1 || die "debootstrap failed; see $KIND_CACHE/debootstrap-$1.log"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    touch "$dir/.complete"
  fi
  echo "$dir"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

import_dir() { # <dir> <tag> [--change ...]: a directory as a one-layer image
  local dir=$1 tag=$2
  shift 2
  tar --numeric-owner -C "$dir" -c . | docker import "$@" - "$tag" >/dev/null
}

static_image() { # <tag> <entrypoint json> <binary...>: a scratch image holding static binaries
  local tag=$1 entry=$2 dir b
  shift 2
  image_exists "$tag" && return 0
  dir=$(mktemp -d)
  mkdir -p "$dir/usr/local/bin" "$dir/tmp" "$dir/etc"
  for b in "$@"; do install -m 0755 "$b" "$dir/usr/local/bin/"; done
  echo 'nobody:x:65534:65534:nobody:/:/sbin/nologin' >"$dir/etc/passwd"
  import_dir "$dir" "$tag" --change 'ENV PATH=/usr/local/bin' --change "ENTRYPOINT $entry"
  rm -rf "$dir"
}

build_component_images() { # the images kubeadm and the kubelet run, into docker
  local kube node v
  kube=$(bin_dir kubernetes "$K8S_VERSION")
  node=$(bin_dir kubernetes-node "$K8S_VERSION")
  for v in kube-apiserver kube-controller-manager kube-scheduler; do
    static_image "$K8S_REGISTRY/$v:$K8S_VERSION" "[\"/usr/local/bin/$v\"]" "$kube/$v"
  done
  static_image "$K8S_REGISTRY/etcd:$ETCD_IMAGE_TAG" '["/usr/local/bin/etcd"]' "$ETCD_BIN"
  static_image "$K8S_REGISTRY/coredns/coredns:$COREDNS_VERSION" '["/usr/local/bin/coredns"]' "$(bin_dir coredns "$COREDNS_VERSION")/coredns"
  if ! image_exists "$K8S_REGISTRY/pause:3.10"; then
    local pause
    pause=$(bin_dir pause 1)/pause
    static_image "$K8S_REGISTRY/pause:3.10" '["/usr/local/bin/pause"]' "$pause"
  fi
  for v in $PAUSE_TAGS; do docker tag "$K8S_REGISTRY/pause:3.10" "$K8S_REGISTRY/pause:$v"; done
  local proxy="$K8S_REGISTRY/kube-proxy:$K8S_VERSION"
  if ! image_exists "$proxy"; then
    local dir
    dir=$(rootfs proxy "$PROXY_PACKAGES")
    install -m 0755 "$node/kube-proxy" "$dir/usr/local/bin/kube-proxy"
    import_dir "$dir" "$proxy" --change 'ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' --change 'ENTRYPOINT ["/usr/local/bin/kube-proxy"]'
    rm -f "$dir/usr/local/bin/kube-proxy"
  fi
}

component_image_tags() {
  local v
  for v in kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do echo "$K8S_REGISTRY/$v:$K8S_VERSION"; done
  echo "$K8S_REGISTRY/etcd:$ETCD_IMAGE_TAG"
  echo "$K8S_REGISTRY/coredns/coredns:$COREDNS_VERSION"
  for v in $PAUSE_TAGS; do echo "$K8S_REGISTRY/pause:$v"; done
}

# The node rootfs: kind's base image steps (images/base/Dockerfile of the kind module),
# done on a debootstrap tree instead of in a Dockerfile that would pull debian:bookworm-slim.
prepare_node_rootfs() { # <dir>
  local dir=$1 kindmod files node tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && go mod init tmp >/dev/null 2>&1)
  kindmod=$(module_dir "$tmp" "sigs.k8s.io/kind@$KIND_VERSION")
  rm -rf "$tmp"
  files=$kindmod/images/base/files
  [ -d "$files" ] || die "the kind module $KIND_VERSION has no images/base/files"
  node=$(bin_dir kubernetes-node "$K8S_VERSION")
  install -m 0755 "$files"/usr/local/bin/* "$dir/usr/local/bin/"
  mkdir -p "$dir/kind/bin" "$dir/etc/containerd" "$dir/etc/default" "$dir/etc/sysctl.d" \
    "$dir/etc/systemd/system/kubelet.service.d" "$dir/etc/kubernetes/manifests" "$dir/opt/cni/bin" "$dir/etc/cni/net.d"
  install -m 0755 "$files"/kind/bin/* "$dir/kind/bin/"
  install -m 0644 "$files"/etc/crictl.yaml "$dir/etc/"
  install -m 0644 "$files"/etc/default/* "$dir/etc/default/"
  install -m 0644 "$files"/etc/sysctl.d/* "$dir/etc/sysctl.d/"
  install -m 0644 "$files"/etc/systemd/system/{containerd.service,kubelet.service,kubelet.slice,undo-mount-hacks.service} "$dir/etc/systemd/system/"
  install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$dir/etc/systemd/system/kubelet.service.d/"
  # containerd: kind's config, with the OOM-score restriction this VM needs (its bounding
  # set lacks CAP_SYS_RESOURCE), and the cap-dropping runc wrapper where that is so.
  sed 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' "$files/etc/containerd/config.toml" >"$dir/etc/containerd/config.toml"
  if missing_sys_resource; then
    install -m 0755 "$DOCKER_WRAPPER" "$dir/usr/local/sbin/runc-wrapper"
    sed -i 's|^\(\s*\)SystemdCgroup = true|\1SystemdCgroup = true\n\1BinaryName = "/usr/local/sbin/runc-wrapper"|' "$dir/etc/containerd/config.toml"
  fi
  ln -sf /usr/bin/containerd "$dir/usr/local/bin/containerd"
  ln -sf /usr/bin/containerd-shim-runc-v2 "$dir/usr/local/bin/containerd-shim-runc-v2"
  ln -sf /usr/bin/ctr "$dir/usr/local/bin/ctr"
  local p
  for p in "$dir"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$p")" "$dir/opt/cni/bin/"; done
  install -m 0755 "$node/kubelet" "$node/kubeadm" "$dir/usr/bin/"
  install -m 0755 "$KUBECTL" "$dir/usr/bin/kubectl"
  install -m 0755 "$(bin_dir crictl "$CRICTL_VERSION")/crictl" "$dir/usr/local/bin/crictl"
  echo "$K8S_VERSION" >"$dir/kind/version"
  ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
    jq 'del(.process.rlimits)' >"$dir/etc/containerd/cri-base.json"
  # kind's clean-ups: no units but ours, journald without kmsg, systemd as /sbin/init.
  find "$dir/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$dir"/lib/systemd/system/multi-user.target.wants/* "$dir"/etc/systemd/system/*.wants/* \
    "$dir"/lib/systemd/system/local-fs.target.wants/* "$dir"/lib/systemd/system/sockets.target.wants/*udev* \
    "$dir"/lib/systemd/system/sockets.target.wants/*initctl* "$dir"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$dir/etc/systemd/journald.conf"
  ln -sf /lib/systemd/systemd "$dir/sbin/init"
  mkdir -p "$dir/etc/systemd/system/multi-user.target.wants"
  for p in kubelet containerd undo-mount-hacks; do
    ln -sf "/etc/systemd/system/$p.service" "$dir/etc/systemd/system/multi-user.target.wants/$p.service"
  done
  ln -sf /dev/null "$dir/etc/systemd/system/systemd-binfmt.service"
}

NODE_CHANGES=(--change 'ENV container=docker'
  --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []')

build_node_image() {
  if [ -n "${EDGESHIFT_KIND_IMAGE:-}" ]; then
    say "node image: $EDGESHIFT_KIND_IMAGE (EDGESHIFT_KIND_IMAGE)"
    return 0
  fi
  image_exists "$NODE_IMAGE_TAG" && { say "cached: node image $NODE_IMAGE_TAG"; return 0; }
  local start=$SECONDS base stage tars t
  build_component_images
  base=$(rootfs node "$NODE_PACKAGES")
  stage=$KIND_CACHE/node-stage
  rm -rf "$stage"
  cp -a "$base" "$stage"
  prepare_node_rootfs "$stage"
  import_dir "$stage" "$NODE_IMAGE_TAG-base" "${NODE_CHANGES[@]}"
  rm -rf "$stage"
  # Preload: containerd in a build container imports every image, then the container is
  # committed (as kind's own node-image build does, minus the pulls).
  tars=$KIND_CACHE/preload
  rm -rf "$tars"
  mkdir -p "$tars"
  for t in $(component_image_tags); do docker save "$t" -o "$tars/$(echo "$t" | tr '/:' '__').tar"; done
  docker rm -f edgeshift-node-build >/dev/null 2>&1 || true
  docker run -d --name edgeshift-node-build --privileged --entrypoint /bin/bash -v "$tars:/preload:ro" \
    "$NODE_IMAGE_TAG-base" -c 'sleep infinity' >/dev/null
  docker exec edgeshift-node-build bash -c '
    set -e
    (containerd >/tmp/containerd.log 2>&1 &)
    for i in $(seq 1 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
    for t in /preload/*.tar; do ctr -n k8s.io images import --all-platforms --no-unpack "$t" >/dev/null; done
    ctr -n k8s.io images ls -q
    pkill containerd; sleep 1; rm -rf /tmp/* ' >"$KIND_CACHE/preload.log" 2>&1 ||
    die "preloading images into the node image failed; see $KIND_CACHE/preload.log"
  docker commit "${NODE_CHANGES[@]}" edgeshift-node-build "$NODE_IMAGE_TAG-preloaded" >/dev/null
  docker rm -f edgeshift-node-build >/dev/null
  # systemd stops on SIGRTMIN+3 (SIGTERM re-executes it); import and commit cannot set
  # STOPSIGNAL, a one-line build on the local image can (no base image is pulled).
  printf 'FROM %s\nSTOPSIGNAL SIGRTMIN+3\n' "$NODE_IMAGE_TAG-preloaded" |
    DOCKER_BUILDKIT=0 docker build -q -t "$NODE_IMAGE_TAG" - >/dev/null || die "docker build of the node image failed"
  docker rmi "$NODE_IMAGE_TAG-preloaded" >/dev/null 2>&1 || true
  docker rmi "$NODE_IMAGE_TAG-base" >/dev/null 2>&1 || true
  rm -rf "$tars"
  say "built node image $NODE_IMAGE_TAG in $((SECONDS - start))s"
}

# The operator image `make image` builds: what the Dockerfile describes (the release binary,
# glibc and libgcc, CA certificates, user nonroot 65532, no shell, no package manager),
# assembled from the release binary and the Debian packages of a debootstrap tree.
OPERATOR_IMAGE=${EDGESHIFT_OPERATOR_IMAGE:-ghcr.io/edgeshift/edgeshift:0.1.0}

build_operator_image() { # <release binary>
  local bin=$1 base dir lib
  [ -x "$bin" ] || die "no release binary at $bin (cargo build --release --bin edgeshift)"
  base=$(rootfs node "$NODE_PACKAGES")
  dir=$(mktemp -d)
  mkdir -p "$dir/etc/ssl/certs" "$dir/tmp" "$dir/lib64" "$dir/usr/lib/x86_64-linux-gnu"
  chmod 1777 "$dir/tmp"
  install -m 0755 "$bin" "$dir/edgeshift"
  # Every shared library the binary loads, from the Debian tree (same bookworm glibc).
  for lib in $(ldd "$bin" | awk '/=>/ {print $3} /ld-linux/ {print $1}'); do
    mkdir -p "$dir$(dirname "$lib")"
    cp -L "$base$lib" "$dir$lib" 2>/dev/null || cp -L "$base/usr$lib" "$dir$lib" ||
      die "library $lib of the operator binary is not in the Debian tree"
  done
  cp -L "$base/usr/lib/x86_64-linux-gnu/libnss_files.so.2" "$dir/usr/lib/x86_64-linux-gnu/" 2>/dev/null || true
  cp -L "$base/etc/ssl/certs/ca-certificates.crt" "$dir/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  printf 'hosts: files dns\n' >"$dir/etc/nsswitch.conf"
  import_dir "$dir" "$OPERATOR_IMAGE" --change 'USER 65532:65532' --change 'EXPOSE 8080' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENTRYPOINT ["/edgeshift"]' --change 'CMD ["run"]'
  rm -rf "$dir"
  say "built operator image $OPERATOR_IMAGE ($(docker image inspect -f '{{.Size}}' "$OPERATOR_IMAGE" | awk '{printf "%.1f MB", $1/1e6}'))"
}

# The workload image: our static HTTP server and load client (e2e/workload), nothing else.
WORKLOAD_IMAGE=edgeshift.local/workload:dev

build_workload_image() {
  local target=$CACHE_DIR/workload-target bin
  say "building the workload (e2e/workload) ..."
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release \
    --manifest-path "$REPO_DIR/e2e/workload/Cargo.toml" --target-dir "$target" ||
    die "building e2e/workload failed"
  bin=$target/release/edgeshift-workload
  docker rmi "$WORKLOAD_IMAGE" >/dev/null 2>&1 || true
  local dir
  dir=$(mktemp -d)
  install -m 0755 "$bin" "$dir/workload"
  import_dir "$dir" "$WORKLOAD_IMAGE" --change 'USER 65532:65532' --change 'ENTRYPOINT ["/workload"]' --change 'CMD ["serve"]'
  rm -rf "$dir"
}
