#!/usr/bin/env bash
# Bring up what heat-pipeline and its tests need: RabbitMQ and etcd (and the
# protobuf compiler that etcd-client's build needs). Idempotent: safe to run
# again, it only installs or starts what is missing.
#
# Two paths; it says on stderr which one it took:
# - native (the default, and what CI uses): Debian's packages, started on this host;
#   services that already answer on their ports are used as they are.
# - compose, only when asked with SETUP_COMPOSE=1: `docker compose up --wait rabbitmq
#   etcd` (compose v2). Host ports AMQP_HOST_PORT (5672), ETCD_HOST_PORT (2379) and
#   RABBITMQ_MGMT_HOST_PORT (15672) must be free: it never binds a port that is taken.
#   SETUP_COMPOSE_OFFLINE=1 adds docker-compose.offline.yml (images of scripts/images.sh).
# Progress goes to stderr; the last line on stdout is the env the tests use, so
# `export $(scripts/setup.sh)` works.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

ETCD_CLIENT_PORT="${ETCD_CLIENT_PORT:-2379}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-2380}"
export ETCD_CLIENT_PORT ETCD_PEER_PORT
RABBIT_PORT=5672
RABBIT_TIMEOUT="${RABBIT_START_TIMEOUT:-60}"

log() { echo "setup.sh: $*" >&2; }

print_env() {
  echo "AMQP_URL=amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2f ETCD_ENDPOINTS=http://127.0.0.1:$ETCD_CLIENT_PORT"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- Compose path (SETUP_COMPOSE=1 only) -----------------------------------------
if [[ "${SETUP_COMPOSE:-0}" == 1 ]]; then
  log "path: compose (SETUP_COMPOSE=1)"
  if ! { command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; }; then
    log "SETUP_COMPOSE=1 but no Docker engine answers"
    exit 1
  fi
  docker compose version >/dev/null 2>&1 ||
    { log "SETUP_COMPOSE=1 needs compose v2 (\`docker compose\`; scripts/compose-test.sh installs it)"; exit 1; }
  export AMQP_HOST_PORT="${AMQP_HOST_PORT:-5672}"
  export ETCD_HOST_PORT="${ETCD_HOST_PORT:-$ETCD_CLIENT_PORT}"
  export RABBITMQ_MGMT_HOST_PORT="${RABBITMQ_MGMT_HOST_PORT:-15672}"
  files=(-f docker-compose.yml)
  if [[ "${SETUP_COMPOSE_OFFLINE:-0}" == 1 ]]; then
    files+=(-f docker-compose.offline.yml)
    log "offline images (docker-compose.offline.yml; build them with scripts/images.sh)"
  fi
  # Ports of a stack this project already runs are fine; anything else on them is not.
  running=$(docker compose "${files[@]}" ps -q rabbitmq etcd 2>/dev/null | wc -l)
  if ((running < 2)); then
    for port in "$AMQP_HOST_PORT" "$ETCD_HOST_PORT" "$RABBITMQ_MGMT_HOST_PORT"; do
      if port_in_use "$port"; then
        log "127.0.0.1:$port is taken (a native RabbitMQ or etcd?): not starting compose on it."
        log "pick free ports (AMQP_HOST_PORT, ETCD_HOST_PORT, RABBITMQ_MGMT_HOST_PORT), or use the native path (no SETUP_COMPOSE)"
        exit 1
      fi
    done
  fi
  # The services run in containers, but cargo builds etcd-client on this host.
  if ! command -v protoc >/dev/null 2>&1 || [[ ! -e /usr/include/google/protobuf/descriptor.proto ]]; then
    log "note: building the tests here needs protoc and its .proto files:" \
      "apt-get install protobuf-compiler libprotobuf-dev"
  fi
  docker compose "${files[@]}" up -d --wait rabbitmq etcd >&2
  RABBIT_PORT=$AMQP_HOST_PORT
  ETCD_CLIENT_PORT=$ETCD_HOST_PORT
  print_env
  exit 0
fi

log "path: native (Debian packages on this host; SETUP_COMPOSE=1 for docker compose)"

# --- Native path: packages ---------------------------------------------------
SUDO=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { log "not root and no sudo; cannot install packages"; exit 1; }
  SUDO=(sudo)
fi

# etcd-client provides etcdctl; curl is for etcd's health check. libprotobuf-dev holds
# the well-known .proto files (google/protobuf/descriptor.proto) that etcd-client's
# build imports: protobuf-compiler only recommends it, and we install without recommends.
missing=()
for pkg in protobuf-compiler libprotobuf-dev etcd-server etcd-client rabbitmq-server curl; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  "${SUDO[@]}" apt-get update >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
else
  log "Debian packages already installed"
fi

# The pipeline itself is built with cargo; setup only checks for it.
if ! command -v cargo >/dev/null 2>&1; then
  log "no Rust toolchain found: install it with"
  log "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --component rustfmt,clippy"
fi

# --- Native path: RabbitMQ ---------------------------------------------------
amqp_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$RABBIT_PORT") 2>/dev/null
}

rabbit_ready() {
  amqp_port_open || return 1
  # rabbitmq-diagnostics needs the node's cookie, hence root/sudo.
  "${SUDO[@]}" rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1 ||
    "${SUDO[@]}" rabbitmq-diagnostics -q ping >/dev/null 2>&1
}

if amqp_port_open; then
  log "RabbitMQ already answers on 127.0.0.1:$RABBIT_PORT"
else
  log "starting RabbitMQ"
  if [[ -d /run/systemd/system ]]; then
    "${SUDO[@]}" systemctl start rabbitmq-server >&2
  else
    "${SUDO[@]}" rabbitmq-server -detached >&2
  fi
  deadline=$((SECONDS + RABBIT_TIMEOUT))
  until rabbit_ready; do
    if ((SECONDS >= deadline)); then
      log "RabbitMQ not ready after ${RABBIT_TIMEOUT}s; see /var/log/rabbitmq/"
      exit 1
    fi
    sleep 1
  done
  log "RabbitMQ ready"
fi

# --- Native path: etcd -------------------------------------------------------
bash "$REPO/scripts/etcd.sh" start

print_env
