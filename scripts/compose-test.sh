#!/usr/bin/env bash
# End-to-end test of the container path, with no registry:
#   1. a Docker engine (docker.io from apt, dockerd via setsid) and compose v2;
#   2. the images (scripts/images.sh: Debian base, RabbitMQ, etcd, heat-pipeline);
#   3. the whole stack with docker-compose.offline.yml, scaled (capture=2 normalize=2
#      wrap=3), on host ports that are not the native ones;
#   4. the seed example published, its three records checked byte for byte;
#   5. the Rust integration tests against the compose services (the fault tests are
#      skipped: they start a private broker and etcd of their own, not the compose ones);
#   6. faults injected through compose while a stream of messages flows: broker killed and
#      started, etcd restarted, one stage container killed; then lost and dead-lettered
#      counted;
#   7. the tests' testcontainers path with the local images.
# Everything it starts is torn down on exit, also on failure or Ctrl-C. dockerd is left
# running. Prints a fault table and the time of each step. Exit status: 0 when all passed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

# --- knobs ------------------------------------------------------------------------------
# The integration test binary (`cargo test --test NAME`).
TEST_NAME="${INTEGRATION_TEST:-integration}"
# The fault and cluster tests start brokers, etcds and clusters of their own: not the compose
# services, and they already ran in the native suite.
INTEGRATION_ARGS=(-- --skip faults:: --skip cluster::)
# Where cargo test runs: this checkout, or e.g. a clean worktree of the last commit while
# this one is being edited (CARGO_TARGET_DIR may point at this checkout's target/).
CARGO_TEST_DIR="${CARGO_TEST_DIR:-$REPO}"
TESTCONTAINERS_FILTER="${TESTCONTAINERS_FILTER:-pipeline::}"
# Host ports for the compose services: never the native 5672/15672/2379.
export AMQP_HOST_PORT="${AMQP_HOST_PORT:-5690}"
export RABBITMQ_MGMT_HOST_PORT="${RABBITMQ_MGMT_HOST_PORT:-15690}"
export ETCD_HOST_PORT="${ETCD_HOST_PORT:-2490}"
PROJECT="${COMPOSE_TEST_PROJECT:-heat-pipeline-test}"
SCALE=(--scale capture=2 --scale normalize=2 --scale wrap=3)
# Messages per fault: FAULT_RESOURCES resources x FAULT_VERSIONS versions.
FAULT_RESOURCES="${FAULT_RESOURCES:-200}"
FAULT_VERSIONS="${FAULT_VERSIONS:-3}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-180}"
# The heat-pipeline binary for the image and for publish/show/status on this host.
# Default: the debug build, which the tests build anyway (CI passes the same).
HEAT_PIPELINE_BIN="${HEAT_PIPELINE_BIN:-}"
# Local images (scripts/images.sh names).
export RABBITMQ_IMAGE="${RABBITMQ_IMAGE:-heat-pipeline/rabbitmq:3.10}"
export ETCD_IMAGE="${ETCD_IMAGE:-heat-pipeline/etcd:3.4}"
export HEAT_PIPELINE_IMAGE="${HEAT_PIPELINE_IMAGE:-heat-pipeline:local}"
LOGDIR="${COMPOSE_TEST_LOGDIR:-$REPO/.data/compose-test}"
mkdir -p "$LOGDIR"

AMQP_URL_HOST="amqp://guest:guest@127.0.0.1:$AMQP_HOST_PORT/%2f"
ETCD_ENDPOINT_HOST="http://127.0.0.1:$ETCD_HOST_PORT"

# --- output and timing --------------------------------------------------------------------
T0=$SECONDS
STEP_NAMES=()
STEP_TIMES=()
STEP_RESULTS=()
STEP_CLOCKS=()
CURRENT_STEP=""
CURRENT_START=0
FAILED=0
log() { echo "compose-test: [$(date +%T) +$((SECONDS - T0))s] $*" >&2; }
begin() {
  CURRENT_STEP=$1
  CURRENT_START=$SECONDS
  CURRENT_CLOCK=$(date +%T)
  log "== $1"
}
end() {
  local result=${1:-ok}
  STEP_NAMES+=("$CURRENT_STEP")
  STEP_TIMES+=("$((SECONDS - CURRENT_START))")
  STEP_RESULTS+=("$result")
  STEP_CLOCKS+=("$CURRENT_CLOCK")
  [[ $result == ok ]] || FAILED=1
  log "   $CURRENT_STEP: $result ($((SECONDS - CURRENT_START)) s)"
  CURRENT_STEP=""
}
print_steps() {
  echo
  printf '%-8s  %-52s %7s  %s\n' "started" "step" "seconds" "result"
  local i
  for i in "${!STEP_NAMES[@]}"; do
    printf '%-8s  %-52s %7s  %s\n' "${STEP_CLOCKS[$i]}" "${STEP_NAMES[$i]}" "${STEP_TIMES[$i]}" "${STEP_RESULTS[$i]}"
  done
  printf '%-8s  %-52s %7s\n' "" "total" "$((SECONDS - T0))"
}

compose() {
  docker compose -p "$PROJECT" -f "$REPO/docker-compose.yml" -f "$REPO/docker-compose.offline.yml" "$@"
}

# --- teardown, always -----------------------------------------------------------------------
TC_BEFORE=""
teardown() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$CURRENT_STEP" ]]; then
    end "FAILED (exit $status)"
  fi
  log "== teardown"
  if docker info >/dev/null 2>&1; then
    if docker compose version >/dev/null 2>&1; then
      compose down -v --remove-orphans --timeout 20 >"$LOGDIR/down.log" 2>&1 || true
    fi
    # Whatever compose left of this project (a run killed half-way, a failed down).
    docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    docker network ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker network rm >/dev/null 2>&1 || true
    docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | xargs -r docker volume rm >/dev/null 2>&1 || true
    # testcontainers-rs has no reaper: remove the containers this run's tests started.
    remove_test_containers
  fi
  print_steps
  if ((status == 0 && FAILED)); then status=1; fi
  log "finished: $( ((status == 0)) && echo PASSED || echo "FAILED (exit $status)") in $((SECONDS - T0)) s; logs in $LOGDIR"
  local passed=0 failed=0 result
  for result in "${STEP_RESULTS[@]}"; do
    if [[ $result == ok ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "compose-test: $passed passed, $failed failed"
  exit "$status"
}
remove_test_containers() {
  local id ids
  ids=$(docker ps -aq --filter "label=org.testcontainers.managed-by=testcontainers")
  for id in $ids; do
    # Only those that were not there before this run (others may be testing too).
    [[ " $TC_BEFORE " == *" $id "* ]] || docker rm -f -v "$id" >/dev/null 2>&1 || true
  done
}
trap teardown EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# --- 1. engine and compose ------------------------------------------------------------------
begin "docker engine"
if ! docker info >/dev/null 2>&1 &&
  { ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; }; then
  log "installing docker.io (apt)"
  apt-get update >"$LOGDIR/apt.log" 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >>"$LOGDIR/apt.log" 2>&1
fi
if ! docker info >/dev/null 2>&1; then
  # No systemd here: start the daemon in a session of its own so it outlives this script.
  DOCKERD_LOG="${DOCKERD_LOG:-/tmp/dockerd.log}"
  log "starting dockerd (log: $DOCKERD_LOG)"
  setsid dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see $DOCKERD_LOG"; exit 1; }
fi
log "engine $(docker version --format '{{.Server.Version}}')"
end

TC_BEFORE=$(docker ps -aq --filter "label=org.testcontainers.managed-by=testcontainers" | tr '\n' ' ')

begin "images (scripts/images.sh)"
if [[ -z "$HEAT_PIPELINE_BIN" ]]; then
  log "cargo build --locked --bin heat-pipeline"
  cargo build --locked --bin heat-pipeline >"$LOGDIR/cargo-build.log" 2>&1 ||
    { tail -30 "$LOGDIR/cargo-build.log" >&2; exit 1; }
  HEAT_PIPELINE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/heat-pipeline"
fi
HEAT_PIPELINE_BIN="$(realpath "$HEAT_PIPELINE_BIN")"
bash "$REPO/scripts/images.sh" --binary "$HEAT_PIPELINE_BIN"
BIN="$HEAT_PIPELINE_BIN"
end

begin "compose v2"
if ! docker compose version >/dev/null 2>&1; then
  # Debian bookworm has only compose v1 (no `up --wait`); trixie's docker-compose package
  # holds compose v2 as a CLI plugin and runs on bookworm. Fetched with apt in a
  # container of the local base image, so the host's apt sources stay as they are.
  plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugins"
  dl="$(mktemp -d)"
  chmod 0777 "$dl" # apt downloads as _apt
  mirror=$(docker run --rm heat-pipeline/debian:bookworm awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
  log "fetching compose v2 (Debian trixie's docker-compose package) into $plugins"
  docker run --rm -v "$dl:/out" heat-pipeline/debian:bookworm sh -ec "
    echo 'deb $mirror trixie main' > /etc/apt/sources.list.d/trixie.list
    apt-get update -qq >/dev/null
    cd /out && apt-get download -qq docker-compose >/dev/null
    chown $(id -u):$(id -g) /out/*.deb" >"$LOGDIR/compose-plugin.log" 2>&1 ||
    { cat "$LOGDIR/compose-plugin.log" >&2; rm -rf "$dl"; exit 1; }
  dpkg-deb -x "$dl"/docker-compose_*.deb "$dl/x"
  install -m 0755 "$dl/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugins/docker-compose"
  rm -rf "$dl"
fi
log "$(docker compose version)"
end

# --- 2. the stack -----------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
begin "compose up --wait (capture=2 normalize=2 wrap=3)"
for port in "$AMQP_HOST_PORT" "$RABBITMQ_MGMT_HOST_PORT" "$ETCD_HOST_PORT"; do
  case "$port" in
    5672 | 15672 | 2379 | 2380 | 25672 | 4369)
      log "port $port is a native service's; pick another (AMQP_HOST_PORT, ETCD_HOST_PORT, RABBITMQ_MGMT_HOST_PORT)"
      exit 1 ;;
  esac
  if port_in_use "$port"; then
    log "127.0.0.1:$port is taken; set AMQP_HOST_PORT / ETCD_HOST_PORT / RABBITMQ_MGMT_HOST_PORT"
    exit 1
  fi
done
# A project of an earlier run killed before its teardown.
compose down -v --remove-orphans --timeout 10 >/dev/null 2>&1 || true
compose up -d --wait --no-build "${SCALE[@]}" >"$LOGDIR/up.log" 2>&1 ||
  { cat "$LOGDIR/up.log" >&2; compose ps -a >&2; compose logs --tail 30 >&2; exit 1; }
compose ps --format 'table {{.Name}}\t{{.Status}}\t{{.Ports}}' >&2
end

# The pipeline on this host, pointed at the compose services.
hp() { AMQP_URL="$AMQP_URL_HOST" ETCD_ENDPOINTS="$ETCD_ENDPOINT_HOST" RUST_LOG=off "$BIN" "$@"; }
etcdctl_c() { compose exec -T etcd /usr/local/bin/etcdctl "$@"; }

# --- 3. the seed example --------------------------------------------------------------------
begin "seed example: three records byte for byte"
hp publish examples/heat_result.port.json >&2
ID=$(jq -r .job.resource_id examples/heat_result.port.json)
RPATH=$(jq -r .job.resource_path examples/heat_result.port.json)
STATE_KEY=$(jq -r .key tests/fixtures/seed/state.port.json)
deadline=$((SECONDS + 60))
until [[ -n "$(etcdctl_c get --print-value-only "$STATE_KEY")" ]]; do
  ((SECONDS < deadline)) || { log "no $STATE_KEY after 60 s"; exit 1; }
  sleep 0.2
done
sleep 1 # wrap removes job_state right after writing /state
seed_ok=ok
echo "seed example ($RPATH/$ID), records in the compose etcd:"
for record in heat_stacks job_state state; do
  key=$(jq -r .key "tests/fixtures/seed/$record.port.json")
  got="$LOGDIR/$record.port.got"
  etcdctl_c get -w json "$key" | jq -r '.kvs[0].value // empty' | base64 -d >"$got"
  how="current value"
  if [[ ! -s "$got" ]]; then
    # job_state is removed when the job finishes: its last value from etcd's history, at
    # the revision `show` names (somewhere in that record's block, which ends at a blank line).
    rev=$(hp show "$RPATH/$ID" |
      sed -n "/^$record: /,/^\$/s/.*last written at revision \([0-9]*\).*/\1/p" | sed -n 1p)
    if [[ -n "$rev" ]]; then
      etcdctl_c get -w json --rev="$rev" "$key" | jq -r '.kvs[0].value // empty' | base64 -d >"$got"
      how="removed; value at revision $rev"
    fi
  fi
  if cmp -s "$got" "tests/fixtures/seed/$record.port.bytes"; then
    echo "  $key: identical to tests/fixtures/seed/$record.port.bytes ($(wc -c <"$got") bytes, $how)"
  else
    echo "  $key: DIFFERS from tests/fixtures/seed/$record.port.bytes ($how)"
    diff <(cat "$got"; echo) <(cat "tests/fixtures/seed/$record.port.bytes"; echo) | head -5 || true
    seed_ok="FAILED (records differ)"
  fi
done
end "$seed_ok"

# --- 4. integration tests against the compose services ------------------------------------------
summarize_tests() {
  echo "tests ($2):"
  grep -E '^test result:|^failures:$|^    [a-z_:]+$|panicked at' "$1" | head -40 | sed 's/^/  /' || true
}
begin "cargo test --test $TEST_NAME (compose services)"
status=0
(cd "$CARGO_TEST_DIR" && AMQP_URL="$AMQP_URL_HOST" ETCD_ENDPOINTS="$ETCD_ENDPOINT_HOST" \
  cargo test --locked --test "$TEST_NAME" "${INTEGRATION_ARGS[@]}") >"$LOGDIR/test-compose.log" 2>&1 || status=$?
summarize_tests "$LOGDIR/test-compose.log" "cargo test --test $TEST_NAME against the compose services"
if ((status)); then tail -20 "$LOGDIR/test-compose.log" >&2; end "FAILED (cargo exit $status)"; else end; fi

# --- 5. faults while a stream flows -------------------------------------------------------------
FAULT_ROWS=()
RUN_ID="$(date +%s)"

# JSON lines: FAULT_RESOURCES resources, versions 1..FAULT_VERSIONS, version by version.
generate() {
  python3 - "$1" "$FAULT_RESOURCES" "$FAULT_VERSIONS" <<'PY'
import json, sys
prefix, resources, versions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for version in range(1, versions + 1):
    for n in range(resources):
        rid = f"{prefix}-{n}"
        print(json.dumps({
            "job": {"action": "create", "resource_type": "port", "resource_path": "ports",
                    "resource_id": rid, "version": version, "tenant_id": "tenant-1"},
            "stack": {"stack_name": f"port_{rid}", "stack_status": "CREATE_COMPLETE",
                      "stack_status_reason": "",
                      "outputs": [{"output_key": "v", "output_value": version,
                                   "description": "version"}]}}))
PY
}

# "present correct lost" for the resources PREFIX-*, read from etcd in its container.
tally() {
  etcdctl_c get -w json --prefix "/state/v2.0/ports/$1-" 2>/dev/null |
    python3 -c '
import base64, json, sys
prefix, resources, highest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    kvs = json.load(sys.stdin).get("kvs", [])
except ValueError:
    print("0 0", resources); sys.exit()
present = correct = 0
for kv in kvs:
    present += 1
    state = json.loads(base64.b64decode(kv["value"]))
    outputs = state["state"]["heat_outputs"]
    if (state["version"] == highest and state["state"]["worker_state"] == "CREATE_COMPLETED"
            and f"\"output_value\": {highest}," in outputs):
        correct += 1
print(present, correct, resources - correct)
' "$1" "$FAULT_RESOURCES" "$FAULT_VERSIONS"
}

# Messages in the dead-letter queues and ready in the work queues, as `status` sees them.
queue_counts() {
  hp status --format json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
dead = sum(st.get("dead") or 0 for st in s["stages"])
ready = sum(st.get("ready") or 0 for st in s["stages"])
print(dead, ready)' 2>/dev/null || echo "? ?"
}

wait_healthy() { # service, timeout
  local deadline=$((SECONDS + $2)) id
  while ((SECONDS < deadline)); do
    id=$(compose ps -q "$1" | sed -n 1p)
    [[ -n "$id" && "$(docker inspect -f '{{.State.Health.Status}}' "$id" 2>/dev/null)" == healthy ]] && return 0
    sleep 0.5
  done
  return 1
}

# Publishes the stream in chunks (about 10/s), each retried until the broker confirms it
# (a chunk sent twice is harmless: writes are idempotent and version-guarded).
publish_stream() { # file, retries-file
  local chunk_dir retries=0
  chunk_dir="$(mktemp -d "$LOGDIR/chunks.XXXXXX")"
  split -l 30 -d -a 4 "$1" "$chunk_dir/c."
  local c tries
  for c in "$chunk_dir"/c.*; do
    tries=0
    until hp publish - <"$c" >/dev/null 2>>"$LOGDIR/publish-errors.log"; do
      tries=$((tries + 1))
      retries=$((retries + 1))
      echo "$retries" >"$2"
      ((tries < 600)) || { echo "chunk $c never confirmed" >&2; return 1; }
      sleep 0.5
    done
    sleep 0.1
  done
  rm -rf "$chunk_dir"
}

run_fault() { # name, inject-function
  local name=$1 inject=$2 prefix messages file pub_pid dead_before ready t_fault t_drain
  prefix="f${RUN_ID}-$name"
  messages=$((FAULT_RESOURCES * FAULT_VERSIONS))
  file="$LOGDIR/stream-$name.jsonl"
  generate "$prefix" >"$file"
  read -r dead_before _ < <(queue_counts)
  begin "fault: $name ($messages messages)"
  echo 0 >"$LOGDIR/retries-$name"
  publish_stream "$file" "$LOGDIR/retries-$name" &
  pub_pid=$!
  # Inject once the stream is flowing: some resources have a /state already.
  local present=0 deadline=$((SECONDS + 60))
  while ((present < FAULT_RESOURCES / 4 && SECONDS < deadline)); do
    read -r present _ _ < <(tally "$prefix")
    sleep 0.2
  done
  log "   stream flowing ($present resources with a /state); injecting: $name"
  t_fault=$SECONDS
  "$inject"
  local pub_status=0
  wait "$pub_pid" || pub_status=$?
  log "   stream published ($((SECONDS - t_fault)) s after the fault, status $pub_status); waiting for the drain"
  local correct=0 lost=$FAULT_RESOURCES dead="?"
  deadline=$((SECONDS + DRAIN_TIMEOUT))
  while ((SECONDS < deadline)); do
    read -r present correct lost < <(tally "$prefix")
    read -r dead ready < <(queue_counts)
    if ((correct == FAULT_RESOURCES)) && [[ "$ready" == 0 ]]; then break; fi
    sleep 0.5
  done
  t_drain=$((SECONDS - t_fault))
  local dead_delta="?"
  [[ "$dead" == "?" || "$dead_before" == "?" ]] || dead_delta=$((dead - dead_before))
  FAULT_ROWS+=("$name|$messages|$(cat "$LOGDIR/retries-$name")|$correct/$FAULT_RESOURCES|$lost|$dead_delta|$t_drain")
  if ((correct == FAULT_RESOURCES && lost == 0 && pub_status == 0)) && [[ "$dead_delta" == 0 ]]; then
    end
  else
    end "FAILED (correct $correct, lost $lost, dead-lettered $dead_delta)"
  fi
}

inject_kill_rabbitmq() {
  compose kill rabbitmq >/dev/null 2>&1
  sleep 2
  compose start rabbitmq >/dev/null 2>&1
  wait_healthy rabbitmq 90 || log "   rabbitmq not healthy 90 s after its start"
  log "   rabbitmq back (healthy)"
}
inject_restart_etcd() {
  compose restart --timeout 10 etcd >/dev/null 2>&1
  wait_healthy etcd 60 || log "   etcd not healthy 60 s after its restart"
  log "   etcd back (healthy)"
}
inject_kill_stage() {
  local victim
  # sed, not head: head would close the pipe early and, under pipefail, compose's write
  # error would end the script.
  victim=$(compose ps -q wrap | sed -n 1p)
  log "   killing $(docker inspect -f '{{.Name}}' "$victim" | tr -d /)"
  docker kill "$victim" >/dev/null
  sleep 3
  docker start "$victim" >/dev/null
}

run_fault kill-rabbitmq inject_kill_rabbitmq
run_fault restart-etcd inject_restart_etcd
run_fault kill-wrap-container inject_kill_stage

echo
echo "faults (stream of $((FAULT_RESOURCES * FAULT_VERSIONS)) messages each: $FAULT_RESOURCES resources x $FAULT_VERSIONS versions; stages capture=2 normalize=2 wrap=3)"
printf '| %-20s | %8s | %10s | %9s | %4s | %13s | %12s |\n' fault messages "re-sent**" correct lost dead-lettered "s to drain*"
printf '|%s|%s|%s|%s|%s|%s|%s|\n' "----------------------" "----------" "------------" "-----------" "------" "---------------" "--------------"
for row in "${FAULT_ROWS[@]}"; do
  IFS='|' read -r f m r c l d s <<<"$row"
  printf '| %-20s | %8s | %10s | %9s | %4s | %13s | %12s |\n' "$f" "$m" "$r" "$c" "$l" "$d" "$s"
done
echo "* from the fault to every resource's /state at its last version and no message ready (the stream keeps publishing meanwhile)"
echo "** chunks of 30 messages the publisher had to send again (broker unreachable or a chunk not confirmed)"

begin "compose down -v"
compose down -v --remove-orphans --timeout 20 >"$LOGDIR/down.log" 2>&1
end

# --- 6. testcontainers with the local images ------------------------------------------------------
begin "cargo test --test $TEST_NAME ${TESTCONTAINERS_FILTER:+$TESTCONTAINERS_FILTER }(testcontainers)"
status=0
(cd "$CARGO_TEST_DIR" && env -u AMQP_URL -u ETCD_ENDPOINTS \
  TEST_RABBITMQ_IMAGE="$RABBITMQ_IMAGE" TEST_ETCD_IMAGE="$ETCD_IMAGE" \
  cargo test --locked --test "$TEST_NAME" ${TESTCONTAINERS_FILTER:+"$TESTCONTAINERS_FILTER"}) \
  >"$LOGDIR/test-testcontainers.log" 2>&1 || status=$?
summarize_tests "$LOGDIR/test-testcontainers.log" "cargo test --test $TEST_NAME with testcontainers and the local images"
remove_test_containers
if ((status)); then tail -20 "$LOGDIR/test-testcontainers.log" >&2; end "FAILED (cargo exit $status)"; else end; fi
