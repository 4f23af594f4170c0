# shellcheck shell=bash
# The Docker engine for the kind lane: Debian's docker.io, started here when none is
# running, with the runc wrapper as its default runtime only where this machine lacks
# CAP_SYS_RESOURCE. `docker_down` stops only an engine that docker_up started.
# Expects KIND_STATE (this checkout's state dir) and say/die.

DOCKER_WRAPPER=$REPO_DIR/e2e/kind/runc-wrapper

# True when the bounding set lacks CAP_SYS_RESOURCE (bit 24): runc cannot then grant it.
missing_sys_resource() {
  local bnd
  bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  [ -n "$bnd" ] && (((0x$bnd >> 24) & 1)) && return 1
  return 0
}

docker_install() { # Debian's engine and the tools the lane's scripts use
  local missing=() p
  command -v dockerd >/dev/null || missing+=(docker.io)
  for p in jq debootstrap iptables; do command -v "$p" >/dev/null || missing+=("$p"); done
  [ -x /usr/sbin/runc ] || [ -x /usr/bin/runc ] || missing+=(runc)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
  say "installing ${missing[*]} from Debian's packages ..."
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$KIND_STATE/apt.log" 2>&1 ||
    die "apt-get install ${missing[*]} failed; see $KIND_STATE/apt.log"
}

docker_up() {
  mkdir -p "$KIND_STATE"
  docker_install
  if docker info >/dev/null 2>&1; then
    if missing_sys_resource && ! docker info --format '{{.DefaultRuntime}}' 2>/dev/null | grep -q edgeshift; then
      say "warning: the running Docker engine's default runtime is not the CAP_SYS_RESOURCE wrapper; privileged containers may fail (see e2e/kind/README.md)"
    fi
    return 0
  fi
  local args=(--host unix:///var/run/docker.sock --pidfile "$KIND_STATE/dockerd.pid")
  if missing_sys_resource; then
    say "this machine lacks CAP_SYS_RESOURCE: dockerd runs containers through e2e/kind/runc-wrapper"
    args+=(--add-runtime "edgeshift-runc=$DOCKER_WRAPPER" --default-runtime edgeshift-runc)
  fi
  say "starting dockerd (log: $KIND_STATE/dockerd.log) ..."
  setsid dockerd "${args[@]}" </dev/null >>"$KIND_STATE/dockerd.log" 2>&1 &
  echo "started-by-edgeshift" >"$KIND_STATE/dockerd.ours"
  local i
  for i in $(seq 1 150); do
    docker info >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "dockerd did not come up in 30 s; last lines of $KIND_STATE/dockerd.log:
$(tail -n 20 "$KIND_STATE/dockerd.log")"
}

docker_down() { # stop the engine only if docker_up started it
  [ -f "$KIND_STATE/dockerd.ours" ] || return 0
  local pid i
  pid=$(cat "$KIND_STATE/dockerd.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # dockerd's own containerd (and shims of containers it could not stop) go with it.
  pkill -f "containerd --config /var/run/docker/containerd/containerd.toml" 2>/dev/null || true
  rm -f "$KIND_STATE/dockerd.ours"
}
