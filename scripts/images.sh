#!/usr/bin/env bash
# Builds, with no container registry, the images that docker-compose.offline.yml and the
# tests' testcontainers path use, all from Debian's packages and a heat-pipeline binary
# built on this host:
#
#   heat-pipeline/debian:bookworm   Debian bookworm minbase (debootstrap), slimmed, imported
#   heat-pipeline/rabbitmq:3.10     Debian's rabbitmq-server, management plugin enabled
#   heat-pipeline/etcd:3.4          Debian's etcd-server + etcd-client (commands as in quay's image)
#   heat-pipeline:local             the Dockerfile's runtime-prebuilt target with the host binary
#
# It is what an air-gapped site runs: it needs only a Debian mirror (DEBIAN_MIRROR, e.g. a
# local one) and a Docker engine. Idempotent: base, RabbitMQ and etcd images that exist are
# kept (unless --rebuild); the heat-pipeline image is rebuilt every time from the layer
# cache, so a new binary is picked up and an unchanged one costs under a second.
#
# Usage: scripts/images.sh [--rebuild] [--binary PATH] [--no-strip] [IMAGE...]
#   IMAGE: base, rabbitmq, etcd, app (default: all four)
#   --binary PATH   use this heat-pipeline binary (also HEAT_PIPELINE_BIN=PATH), e.g. CI's
#                   target/debug/heat-pipeline; default: cargo build --release --locked
#   --rebuild       rebuild everything, without the layer cache
#   --no-strip      keep the binary's debug symbols (default: strip them when `strip` exists)
# Image names: BASE_IMAGE, RABBITMQ_LOCAL_IMAGE, ETCD_LOCAL_IMAGE, HEAT_PIPELINE_LOCAL_IMAGE.
# Progress goes to stderr.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

BASE_IMAGE="${BASE_IMAGE:-heat-pipeline/debian:bookworm}"
RABBITMQ_LOCAL_IMAGE="${RABBITMQ_LOCAL_IMAGE:-heat-pipeline/rabbitmq:3.10}"
ETCD_LOCAL_IMAGE="${ETCD_LOCAL_IMAGE:-heat-pipeline/etcd:3.4}"
HEAT_PIPELINE_LOCAL_IMAGE="${HEAT_PIPELINE_LOCAL_IMAGE:-heat-pipeline:local}"
SUITE=bookworm
# The legacy builder needs no frontend image from a registry (BuildKit's Dockerfile
# frontend and a docker-container builder would).
export DOCKER_BUILDKIT=0

REBUILD=0
STRIP=1
BINARY="${HEAT_PIPELINE_BIN:-}"
WANT=()
while (($#)); do
  case "$1" in
    --rebuild) REBUILD=1 ;;
    --no-strip) STRIP=0 ;;
    --binary) BINARY="${2:?--binary needs a path}"; shift ;;
    --binary=*) BINARY="${1#--binary=}" ;;
    base | rabbitmq | etcd | app) WANT+=("$1") ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "images.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
((${#WANT[@]})) || WANT=(base rabbitmq etcd app)
wanted() { [[ " ${WANT[*]} " == *" $1 "* ]]; }

log() { echo "images.sh: $*" >&2; }
T0=$SECONDS
step() { log "[$((SECONDS - T0))s] $*"; }

command -v docker >/dev/null 2>&1 || { log "no docker CLI (apt-get install docker.io)"; exit 1; }
docker info >/dev/null 2>&1 || { log "the Docker engine does not answer (is dockerd running?)"; exit 1; }

have_image() { docker image inspect "$1" >/dev/null 2>&1; }
NO_CACHE=()
((REBUILD)) && NO_CACHE=(--no-cache)

WORK="$(mktemp -d "${TMPDIR:-/tmp}/heat-pipeline-images.XXXXXX")"
ROOTFS=""
cleanup() {
  if [[ -n "$ROOTFS" && -d "$ROOTFS" ]]; then
    # debootstrap mounts proc and sys inside the tree; never delete through a mount.
    awk -v r="$ROOTFS" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if awk -v r="$ROOTFS" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
      log "still mounted under $ROOTFS; not deleting it"
    else
      rm -rf "$ROOTFS"
    fi
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# The Debian mirror: DEBIAN_MIRROR, else the first one this host's apt uses.
host_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -v -- '-security' | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' |
    awk '{ print $1; exit }')
  echo "${uri:-http://deb.debian.org/debian}"
}
DEBIAN_MIRROR="${DEBIAN_MIRROR:-$(host_mirror)}"
# Security updates; set DEBIAN_SECURITY_MIRROR= (empty) where no security mirror answers.
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR-${DEBIAN_MIRROR%/debian}/debian-security}"

# --- base: debootstrap minbase, slimmed like the official -slim images -----------------------
build_base() {
  if have_image "$BASE_IMAGE" && ((!REBUILD)); then
    step "$BASE_IMAGE exists (--rebuild to build it again)"
    return
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get install -y --no-install-recommends debootstrap >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends debootstrap >&2; }
  fi
  ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/heat-pipeline-rootfs.XXXXXX")"
  step "debootstrap --variant=minbase $SUITE from $DEBIAN_MIRROR (about a minute)"
  debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -20 "$WORK/debootstrap.log" >&2
    log "debootstrap failed"
    exit 1
  }
  step "slimming the root file system"
  # What the official slim images leave out, now and in every later install.
  cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
EOF
  find "$ROOTFS/usr/share/doc" -mindepth 1 -not -type d -not -name copyright -delete
  find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$ROOTFS"/usr/share/{info,linda,lintian/overrides,locale,man,groff}/*
  # apt as in the official images: no caches, no translations, no recommends.
  cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::Install-Recommends "false";' >"$ROOTFS/etc/apt/apt.conf.d/docker-no-recommends"
  # Package scripts must not try to start services in a build.
  printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
  chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"
  {
    echo "deb $DEBIAN_MIRROR $SUITE main"
    echo "deb $DEBIAN_MIRROR $SUITE-updates main"
    [[ -z "$DEBIAN_SECURITY_MIRROR" ]] || echo "deb $DEBIAN_SECURITY_MIRROR $SUITE-security main"
  } >"$ROOTFS/etc/apt/sources.list"
  chroot "$ROOTFS" apt-get clean
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/log/*.log \
    "$ROOTFS"/var/log/apt/* "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/*
  : >"$ROOTFS/etc/hostname"
  step "docker import -> $BASE_IMAGE"
  tar --numeric-owner -C "$ROOTFS" -c . |
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' \
      --message "debootstrap --variant=minbase $SUITE, slimmed (scripts/images.sh)" \
      - "$BASE_IMAGE" >/dev/null
}

# docker build of a Dockerfile given on stdin, with an empty context of its own, unless the
# image exists (and no --rebuild).
build_from_stdin() {
  local name=$1 dir
  if have_image "$name" && ((!REBUILD)); then
    step "$name exists"
    return
  fi
  step "building $name from Debian's packages"
  dir="$(mktemp -d "$WORK/ctx.XXXXXX")"
  cat >"$dir/Dockerfile"
  docker build "${NO_CACHE[@]}" --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$name" "$dir" >"$WORK/build.log" 2>&1 || {
    tail -30 "$WORK/build.log" >&2
    log "building $name failed"
    exit 1
  }
}

# --- RabbitMQ -----------------------------------------------------------------------------
build_rabbitmq() {
  # - guest may log in from other containers (the official image does the same);
  # - the server runs without Debian's /usr/sbin wrapper, with RABBITMQ_LOGS=- so that it
  #   logs to stdout ("Server startup complete" is what testcontainers waits for);
  # - only 5672 is EXPOSEd: testcontainers publishes every exposed port. Compose publishes
  #   15672 (management) itself.
  build_from_stdin "$RABBITMQ_LOCAL_IMAGE" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && printf 'loopback_users.guest = false\nlisteners.tcp.default = 5672\n' > /etc/rabbitmq/rabbitmq.conf \
 && rabbitmq-plugins enable --offline rabbitmq_management \
 && chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq
ENV HOME=/var/lib/rabbitmq RABBITMQ_LOGS=- RABBITMQ_SASL_LOGS=-
WORKDIR /var/lib/rabbitmq
USER rabbitmq
EXPOSE 5672
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
EOF
}

# --- etcd ---------------------------------------------------------------------------------
build_etcd() {
  # /usr/local/bin/etcd and etcdctl as in quay.io/coreos/etcd, so the same commands work
  # (compose file, testcontainers). No entrypoint, like quay's image. etcd logs to stderr.
  build_from_stdin "$ETCD_LOCAL_IMAGE" <<'EOF'
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends etcd-server etcd-client \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /usr/bin/etcd /usr/local/bin/etcd \
 && ln -sf /usr/bin/etcdctl /usr/local/bin/etcdctl \
 && mkdir -p /var/lib/etcd
WORKDIR /var/lib/etcd
ENV ETCDCTL_API=3
EXPOSE 2379 2380
CMD ["/usr/local/bin/etcd"]
EOF
}

# --- heat-pipeline ------------------------------------------------------------------------
build_app() {
  if [[ -z "$BINARY" ]]; then
    step "cargo build --release --locked --bin heat-pipeline"
    cargo build --release --locked --bin heat-pipeline >&2
    BINARY="${CARGO_TARGET_DIR:-$REPO/target}/release/heat-pipeline"
  fi
  [[ -x "$BINARY" ]] || { log "no executable binary at $BINARY"; exit 1; }
  # A build context of its own with nothing but the binary (the repository's target/ is
  # gigabytes). Stripped, the image is a fifth of the size; strip is deterministic, so
  # an unchanged binary still hits the layer cache.
  local ctx="$WORK/app"
  mkdir -p "$ctx"
  if ((STRIP)) && command -v strip >/dev/null 2>&1; then
    strip --strip-debug -o "$ctx/heat-pipeline" "$BINARY"
  else
    cp "$BINARY" "$ctx/heat-pipeline"
  fi
  step "building $HEAT_PIPELINE_LOCAL_IMAGE (Dockerfile --target runtime-prebuilt, binary $BINARY)"
  local old
  old=$(docker image inspect -f '{{.Id}}' "$HEAT_PIPELINE_LOCAL_IMAGE" 2>/dev/null || true)
  docker build "${NO_CACHE[@]}" --target runtime-prebuilt --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f "$REPO/Dockerfile" -t "$HEAT_PIPELINE_LOCAL_IMAGE" "$ctx" >"$WORK/build.log" 2>&1 || {
    tail -30 "$WORK/build.log" >&2
    log "building $HEAT_PIPELINE_LOCAL_IMAGE failed"
    exit 1
  }
  docker run --rm "$HEAT_PIPELINE_LOCAL_IMAGE" --version >/dev/null 2>&1 ||
    docker run --rm "$HEAT_PIPELINE_LOCAL_IMAGE" --help >/dev/null ||
    { log "$HEAT_PIPELINE_LOCAL_IMAGE does not run its binary"; exit 1; }
  # The image of the previous binary, now untagged (kept if a container still uses it).
  if [[ -n "$old" && "$old" != "$(docker image inspect -f '{{.Id}}' "$HEAT_PIPELINE_LOCAL_IMAGE")" ]]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
}

if wanted base || wanted rabbitmq || wanted etcd || wanted app; then
  if ! have_image "$BASE_IMAGE" || { wanted base && ((REBUILD)); }; then
    build_base
  elif wanted base; then
    step "$BASE_IMAGE exists (--rebuild to build it again)"
  fi
fi
wanted rabbitmq && build_rabbitmq
wanted etcd && build_etcd
wanted app && build_app
step "done"
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' |
  grep -E "^(${BASE_IMAGE%%:*}|${RABBITMQ_LOCAL_IMAGE%%:*}|${ETCD_LOCAL_IMAGE%%:*}|${HEAT_PIPELINE_LOCAL_IMAGE%%:*}):" >&2 || true
