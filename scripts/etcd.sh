#!/usr/bin/env bash
# One job: run one etcd member in the background, tracked by a pid file.
# Usage: scripts/etcd.sh start|stop|restart|status
#
# By default it is the native dev etcd that scripts/setup.sh starts: 127.0.0.1:2379, data
# in .data/etcd (the same every time, so tests and chaos scripts can stop and start it and
# find their data again), its pid and log beside it (.data/etcd.pid, .data/etcd.log).
# Other members (scripts/cluster.sh, scripts/audit-bench.sh) set ETCD_CLIENT_PORT,
# ETCD_PEER_PORT and etcd's own variables, which etcd reads in place of flags: ETCD_NAME,
# ETCD_DATA_DIR (the pid and log go to ETCD_DATA_DIR.pid and .log), ETCD_INITIAL_CLUSTER,
# ETCD_QUOTA_BACKEND_BYTES, ... `start` waits until the member answers /health (a member of
# a new cluster does once a quorum runs); an etcd that answers on the port already but was
# not started here is used as it is, and `stop` leaves it alone.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ETCD_NAME="${ETCD_NAME:-heat-pipeline-dev}"
export ETCD_DATA_DIR="${ETCD_DATA_DIR:-$REPO/.data/etcd}"
CLIENT_URL="http://127.0.0.1:${ETCD_CLIENT_PORT:-2379}"
PEER_URL="http://127.0.0.1:${ETCD_PEER_PORT:-2380}"
export ETCD_LISTEN_CLIENT_URLS="$CLIENT_URL" ETCD_ADVERTISE_CLIENT_URLS="$CLIENT_URL"
export ETCD_LISTEN_PEER_URLS="$PEER_URL" ETCD_INITIAL_ADVERTISE_PEER_URLS="$PEER_URL"
export ETCD_INITIAL_CLUSTER="${ETCD_INITIAL_CLUSTER:-$ETCD_NAME=$PEER_URL}"
# Without compaction etcd keeps every revision: tests and benchmarks write hundreds of
# thousands, and a bloated store made the pipeline 3x slower (docs/SCALING.md).
export ETCD_AUTO_COMPACTION_MODE="${ETCD_AUTO_COMPACTION_MODE:-periodic}"
export ETCD_AUTO_COMPACTION_RETENTION="${ETCD_AUTO_COMPACTION_RETENTION:-10m}"
# etcd 3.4 refuses to run on anything but amd64 unless told it is fine.
case "$(uname -m)" in aarch64 | arm64) export ETCD_UNSUPPORTED_ARCH=arm64 ;; esac
PID_FILE="$ETCD_DATA_DIR.pid"
LOG_FILE="$ETCD_DATA_DIR.log"
BIN="${ETCD_BIN:-$(command -v etcd || echo /usr/bin/etcd)}"
START_TIMEOUT="${ETCD_START_TIMEOUT:-60}"
# This script's own settings are not etcd's (which would warn about them).
unset ETCD_BIN ETCD_START_TIMEOUT ETCD_CLIENT_PORT ETCD_PEER_PORT

log() { echo "etcd.sh ($ETCD_NAME): $*" >&2; }
healthy() { curl -fsS --max-time 2 "$CLIENT_URL/health" 2>/dev/null | grep -q '"health":"true"'; }
# The pid in the pid file, if that process is still an etcd leading its own session (as
# `start` makes it), so that a stale file whose pid was reused does not count.
managed_pid() {
  local pid stat state sid
  pid="$(cat "$PID_FILE" 2>/dev/null)" && stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  [[ "$stat" == "$pid (etcd) "* ]] || return 1
  read -r state _ _ sid _ <<<"${stat##*) }"
  [[ "$state" != Z && "$sid" == "$pid" ]] && echo "$pid"
}

start() {
  local pid deadline=$((SECONDS + START_TIMEOUT))
  if ! pid="$(managed_pid)"; then
    if healthy; then
      log "an etcd not started by this script answers on $CLIENT_URL: using it"
      return 0
    fi
    # etcd refuses a data dir that is group or world accessible.
    mkdir -p "$ETCD_DATA_DIR" && chmod 700 "$ETCD_DATA_DIR"
    log "starting on $CLIENT_URL (data $ETCD_DATA_DIR, log $LOG_FILE)"
    # Its own session, so it outlives this script; the inner bash writes its pid, then
    # becomes etcd.
    # shellcheck disable=SC2016 # $$ and $@ are the inner bash's
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" "$BIN" \
      >>"$LOG_FILE" 2>&1 </dev/null 9>&- &
    until pid="$(managed_pid)"; do
      ((SECONDS < deadline)) || { log "did not start; see $LOG_FILE"; return 1; }
      sleep 0.1
    done
  fi
  until healthy; do
    if ! managed_pid >/dev/null; then
      log "exited during start-up; last log lines:"
      tail -n 20 "$LOG_FILE" >&2
      return 1
    fi
    ((SECONDS < deadline)) || { log "not healthy after ${START_TIMEOUT}s; see $LOG_FILE"; return 1; }
    sleep 0.3
  done
  log "healthy (pid $pid)"
}

stop() {
  local pid
  if ! pid="$(managed_pid)"; then
    log "not running here"
    return 0
  fi
  log "stopping (pid $pid)"
  kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    managed_pid >/dev/null || { rm -f "$PID_FILE"; return 0; }
    sleep 0.1
  done
  log "did not stop in 15 s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

status() {
  local pid health=healthy
  healthy || health="NOT healthy"
  if pid="$(managed_pid)"; then
    echo "running (pid $pid), $health on $CLIENT_URL"
  elif [[ "$health" == healthy ]]; then
    echo "not started here, but an etcd is healthy on $CLIENT_URL"
  else
    echo stopped
    return 3 # LSB "not running"
  fi
}

case "${1:-}" in
  start | stop | status) "$1" ;;
  restart) stop && start ;;
  *) echo "usage: $0 start|stop|restart|status" >&2 && exit 2 ;;
esac
