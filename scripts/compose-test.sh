#!/usr/bin/env bash
# End-to-end test of the container path, with no registry:
#   compose-test.sh            docker-compose.yml + docker-compose.offline.yml, stages 2/2/3;
#   compose-test.sh --cluster  docker-compose.cluster.yml (3 RabbitMQ nodes, 3 etcd
#                              members), stages 2/2/2.
# 1. a Docker engine (docker.io from apt, dockerd via setsid) and compose v2;
# 2. the images (scripts/images.sh: Debian base, RabbitMQ, etcd, the heat-pipeline binary);
# 3. the stack up, on host ports that are not the native ones;
# 4. `cargo test --test integration compose::` against it (tests/integration/compose.rs):
#    the seed's records byte for byte, then faults while results flow, with their table
#    (single node: broker killed, etcd restarted, a wrap container killed; cluster: a broker
#    node, the etcd leader and a stage container cut off, a stage that hears nothing, 5 %
#    and 20 % packet loss on every stage);
# 5. single node only: the integration tests against the compose services (not the fault
#    and cluster tests: they start services of their own), then, with the stack down, the
#    tests' testcontainers path with the local images.
# Everything it starts is torn down on exit, also on failure or Ctrl-C, with any iptables
# rule a fault test left; dockerd is left running. Prints each step's seconds. Exit status:
# 0 when all passed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CLUSTER=0
[[ ${1:-} == --cluster ]] && CLUSTER=1

# --- knobs ------------------------------------------------------------------------------
TEST_NAME="${INTEGRATION_TEST:-integration}"
# Where cargo test runs: this checkout, or e.g. a clean worktree of the last commit while
# this one is being edited (CARGO_TARGET_DIR may point at this checkout's target/).
CARGO_TEST_DIR="${CARGO_TEST_DIR:-$REPO}"
TESTCONTAINERS_FILTER="${TESTCONTAINERS_FILTER:-pipeline::}"
# The heat-pipeline binary for the image; default: the debug build, which the tests build
# anyway (CI passes the same).
HEAT_PIPELINE_BIN="${HEAT_PIPELINE_BIN:-}"
export RABBITMQ_IMAGE="${RABBITMQ_IMAGE:-heat-pipeline/rabbitmq:3.10}"
export ETCD_IMAGE="${ETCD_IMAGE:-heat-pipeline/etcd:3.4}"
export HEAT_PIPELINE_IMAGE="${HEAT_PIPELINE_IMAGE:-heat-pipeline:local}"
# The tag of every iptables rule the fault tests add (tests/integration/compose/faults.rs).
RULE_TAG=heat-pipeline-compose-test
if ((CLUSTER)); then
  PROJECT="${COMPOSE_TEST_PROJECT:-heat-pipeline-cluster-test}"
  FILES=(-f docker-compose.cluster.yml)
  SCALE="capture=2 normalize=2 wrap=2"
  PORTS=(5691 15691 2491)
else
  PROJECT="${COMPOSE_TEST_PROJECT:-heat-pipeline-test}"
  FILES=(-f docker-compose.yml -f docker-compose.offline.yml)
  SCALE="capture=2 normalize=2 wrap=3"
  PORTS=(5690 15690 2490)
fi
# Host ports: never the native 5672/15672/2379.
export AMQP_HOST_PORT="${AMQP_HOST_PORT:-${PORTS[0]}}"
export RABBITMQ_MGMT_HOST_PORT="${RABBITMQ_MGMT_HOST_PORT:-${PORTS[1]}}"
export ETCD_HOST_PORT="${ETCD_HOST_PORT:-${PORTS[2]}}"
LOGDIR="${COMPOSE_TEST_LOGDIR:-$REPO/.data/compose-test}"
mkdir -p "$LOGDIR"
# The compose services as this host reaches them.
HOST_SERVICES=(AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_HOST_PORT/%2f"
  ETCD_ENDPOINTS="http://127.0.0.1:$ETCD_HOST_PORT")

# --- steps and their seconds ----------------------------------------------------------------
T0=$SECONDS
STEPS=()
FAILED=0
CURRENT=""
log() { echo "compose-test: [$(date +%T) +$((SECONDS - T0))s] $*" >&2; }
begin() { CURRENT=$1 START=$SECONDS CLOCK=$(date +%T); log "== $1"; }
end() {
  local result=${1:-ok}
  STEPS+=("$(printf '%-8s  %-58s %7s  %s' "$CLOCK" "$CURRENT" "$((SECONDS - START))" "$result")")
  [[ $result == ok ]] || FAILED=$((FAILED + 1))
  log "   $CURRENT: $result ($((SECONDS - START)) s)"
  CURRENT=""
}
compose() { docker compose -p "$PROJECT" "${FILES[@]}" "$@"; }

# --- teardown, always -----------------------------------------------------------------------
TC_BEFORE=""
teardown() {
  local status=$? rule
  trap - EXIT INT TERM
  set +e # everything below is best effort
  [[ -z "$CURRENT" ]] || end "FAILED (exit $status)"
  log "== teardown"
  # A fault test killed before its drop guard ran: its rules, found by their tag.
  iptables -S DOCKER-USER 2>/dev/null | grep -- "$RULE_TAG" | sed 's/^-A/-D/' |
    while read -r rule; do eval "iptables $rule"; done
  if docker info >/dev/null 2>&1; then
    compose down -v --remove-orphans --timeout 20 >"$LOGDIR/down.log" 2>&1
    # Whatever compose left of this project (a run killed half-way, a failed down).
    local label="label=com.docker.compose.project=$PROJECT"
    docker ps -aq --filter "$label" | xargs -r docker rm -f -v >/dev/null 2>&1
    docker network ls -q --filter "$label" | xargs -r docker network rm >/dev/null 2>&1
    docker volume ls -q --filter "$label" | xargs -r docker volume rm >/dev/null 2>&1
    remove_test_containers
  fi
  echo
  printf '%-8s  %-58s %7s  %s\n' started step seconds result
  printf '%s\n' "${STEPS[@]}"
  printf '%-8s  %-58s %7s\n' "" total "$((SECONDS - T0))"
  ((status || !FAILED)) || status=1
  log "finished: $( ((status == 0)) && echo PASSED || echo "FAILED (exit $status)") in $((SECONDS - T0)) s; logs in $LOGDIR"
  echo "compose-test: $((${#STEPS[@]} - FAILED)) passed, $FAILED failed"
  exit "$status"
}
# testcontainers-rs has no reaper: remove the containers this run's tests started (only
# those: others may be testing too).
remove_test_containers() {
  local id
  for id in $(docker ps -aq --filter "label=org.testcontainers.managed-by=testcontainers"); do
    [[ " $TC_BEFORE " == *" $id "* ]] || docker rm -f -v "$id" >/dev/null 2>&1 || true
  done
}
trap teardown EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# `cargo test --test TEST_NAME` as a step: NAME LOG [VAR=VALUE | -u VAR]... -- ARGS...
cargo_step() {
  local name=$1 out="$LOGDIR/$2.log" env=() status=0
  shift 2
  while [[ $1 != -- ]]; do env+=("$1"); shift; done
  shift
  begin "$name"
  (cd "$CARGO_TEST_DIR" && env "${env[@]}" cargo test --locked --test "$TEST_NAME" "$@") >"$out" 2>&1 || status=$?
  grep -E '^test result:|^failures:$|^    [a-z_:]+$|panicked at|^\||^faults \(|seed: /state|^\* ' "$out" | head -60 || true
  if ((status)); then tail -20 "$out" >&2; end "FAILED (cargo exit $status)"; else end; fi
}

# --- 1. engine and compose ------------------------------------------------------------------
begin "docker engine"
if ! command -v dockerd >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
  log "installing docker.io (apt)"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io; } >"$LOGDIR/apt.log" 2>&1
fi
if ! docker info >/dev/null 2>&1; then
  # No systemd here: a session of its own, so that it outlives this script.
  log "starting dockerd (log: ${DOCKERD_LOG:=/tmp/dockerd.log})"
  setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see $DOCKERD_LOG"; exit 1; }
fi
log "engine $(docker version --format '{{.Server.Version}}')"
TC_BEFORE=$(docker ps -aq --filter "label=org.testcontainers.managed-by=testcontainers" | tr '\n' ' ')
end

begin "images (scripts/images.sh)"
if [[ -z "$HEAT_PIPELINE_BIN" ]]; then
  log "cargo build --locked --bin heat-pipeline"
  cargo build --locked --bin heat-pipeline >"$LOGDIR/cargo-build.log" 2>&1 ||
    { tail -30 "$LOGDIR/cargo-build.log" >&2; exit 1; }
  HEAT_PIPELINE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/heat-pipeline"
fi
bash "$REPO/scripts/images.sh" --binary "$(realpath "$HEAT_PIPELINE_BIN")"
end

begin "compose v2"
if ! docker compose version >/dev/null 2>&1; then
  # Debian bookworm has only compose v1 (no `up --wait`); trixie's docker-compose package
  # holds compose v2 as a CLI plugin and runs on bookworm. Fetched with apt in a container
  # of the local base image, so the host's apt sources stay as they are.
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  dl="$(mktemp -d)"
  chmod 0777 "$dl" # apt downloads as _apt
  log "fetching compose v2 (Debian trixie's docker-compose package) into $plugins"
  docker run --rm -v "$dl:/out" heat-pipeline/debian:bookworm sh -ec "
    awk '/^deb /{print \$1, \$2, \"trixie main\"; exit}' /etc/apt/sources.list >/etc/apt/sources.list.d/trixie.list
    apt-get update -qq >/dev/null && cd /out && apt-get download -qq docker-compose >/dev/null
    chown $(id -u):$(id -g) /out/*.deb" >"$LOGDIR/compose-plugin.log" 2>&1 ||
    { cat "$LOGDIR/compose-plugin.log" >&2; exit 1; }
  dpkg-deb -x "$dl"/docker-compose_*.deb "$dl/x"
  install -D -m 0755 "$dl/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugins/docker-compose"
  rm -rf "$dl"
fi
log "$(docker compose version)"
end

# --- 2. the stack -----------------------------------------------------------------------------
begin "compose up --wait ($SCALE)"
compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true # an earlier run's
for port in "$AMQP_HOST_PORT" "$RABBITMQ_MGMT_HOST_PORT" "$ETCD_HOST_PORT"; do
  if [[ " 5672 15672 2379 2380 25672 4369 " == *" $port "* ]] || (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    log "127.0.0.1:$port is taken or a native service's; set AMQP_HOST_PORT / ETCD_HOST_PORT / RABBITMQ_MGMT_HOST_PORT"
    exit 1
  fi
done
# shellcheck disable=SC2046 # one --scale per word of SCALE
compose up -d --wait --no-build --pull never $(printf -- "--scale %s " $SCALE) >"$LOGDIR/up.log" 2>&1 ||
  { cat "$LOGDIR/up.log" >&2; compose ps -a >&2; compose logs --tail 30 >&2; exit 1; }
compose ps --format 'table {{.Name}}\t{{.Status}}\t{{.Ports}}' >&2
end

# --- 3. the seed and the faults, from tests/integration/compose.rs ------------------------------
cargo_step "seed and faults (cargo test compose::)" "compose-$PROJECT" \
  HEAT_PIPELINE_COMPOSE_PROJECT="$PROJECT" "${HOST_SERVICES[@]}" -- compose:: -- --nocapture --test-threads=1
((CLUSTER)) && exit 0

# --- 4. the integration tests against the compose services, then testcontainers ---------------
cargo_step "cargo test --test $TEST_NAME (compose services)" test-compose "${HOST_SERVICES[@]}" \
  -- -- --skip faults:: --skip cluster:: --skip compose::
begin "compose down -v"
compose down -v --remove-orphans --timeout 20 >"$LOGDIR/down.log" 2>&1
end
cargo_step "cargo test --test $TEST_NAME $TESTCONTAINERS_FILTER (testcontainers)" test-testcontainers \
  -u AMQP_URL -u ETCD_ENDPOINTS TEST_RABBITMQ_IMAGE="$RABBITMQ_IMAGE" TEST_ETCD_IMAGE="$ETCD_IMAGE" \
  -- "$TESTCONTAINERS_FILTER"
remove_test_containers
