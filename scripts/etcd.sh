#!/usr/bin/env bash
# Manage the native dev etcd that scripts/setup.sh starts.
# Usage: scripts/etcd.sh start|stop|restart|status
# It always uses the same data dir, so tests and chaos scripts can stop and
# start etcd for real and find their data again.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$REPO/.data"
DATA_DIR="$DATA/etcd"
LOG_FILE="$DATA/etcd.log"
PID_FILE="$DATA/etcd.pid"
NAME=heat-pipeline-dev
CLIENT_PORT="${ETCD_CLIENT_PORT:-2379}"
PEER_PORT="${ETCD_PEER_PORT:-2380}"
CLIENT_URL="http://127.0.0.1:$CLIENT_PORT"
PEER_URL="http://127.0.0.1:$PEER_PORT"
ETCD_BIN="${ETCD_BIN:-/usr/bin/etcd}"
START_TIMEOUT="${ETCD_START_TIMEOUT:-30}"
STOP_TIMEOUT="${ETCD_STOP_TIMEOUT:-15}"

log() { echo "etcd.sh: $*" >&2; }

# etcd 3.4 refuses to run on anything but amd64 unless told it is fine.
case "$(uname -m)" in
  aarch64 | arm64) export ETCD_UNSUPPORTED_ARCH=arm64 ;;
esac

healthy() {
  curl -fsS --max-time 2 "$CLIENT_URL/health" 2>/dev/null | grep -q '"health":"true"'
}

# The pid in the pid file is ours only if that process is still an etcd
# (guards against a stale file whose pid was reused).
managed_pid() {
  local pid
  [[ -f "$PID_FILE" ]] || return 1
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--data-dir $DATA_DIR" || return 1
  echo "$pid"
}

wait_healthy() {
  local pid="$1" deadline=$((SECONDS + START_TIMEOUT))
  until healthy; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "etcd (pid $pid) exited during startup; last log lines:"
      tail -n 30 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "etcd (pid $pid) not healthy after ${START_TIMEOUT}s; see $LOG_FILE"
      return 1
    fi
    sleep 0.5
  done
}

start() {
  local pid
  if pid="$(managed_pid)"; then
    wait_healthy "$pid"
    log "already running (pid $pid) on $CLIENT_URL"
    return 0
  fi
  if healthy; then
    # Someone else's etcd (e.g. the packaged systemd service) owns the port.
    log "an etcd not managed by this script already answers on $CLIENT_URL; using it"
    log "(stop/restart through this script will not affect it)"
    return 0
  fi
  if [[ ! -x "$ETCD_BIN" ]]; then
    ETCD_BIN="$(command -v etcd || true)"
    [[ -n "$ETCD_BIN" ]] || { log "etcd not found; run scripts/setup.sh"; return 1; }
  fi
  mkdir -p "$DATA"
  # etcd refuses to start on a data dir that is group/world accessible.
  mkdir -p "$DATA_DIR" && chmod 700 "$DATA_DIR"
  rm -f "$PID_FILE"
  log "starting etcd on $CLIENT_URL (data $DATA_DIR, log $LOG_FILE)"
  # setsid + nohup: own session, so it survives this script and its terminal.
  # The inner bash writes its own pid and then execs etcd, so the pid file
  # holds etcd's pid even if setsid had to fork.
  # Without compaction etcd keeps every revision: tests and benchmarks write hundreds
  # of thousands, and a bloated store made the pipeline 3x slower (docs/SCALING.md).
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$ETCD_BIN" \
    --name "$NAME" \
    --data-dir "$DATA_DIR" \
    --listen-client-urls "$CLIENT_URL" \
    --advertise-client-urls "$CLIENT_URL" \
    --listen-peer-urls "$PEER_URL" \
    --initial-advertise-peer-urls "$PEER_URL" \
    --initial-cluster "$NAME=$PEER_URL" \
    --auto-compaction-mode periodic --auto-compaction-retention 10m \
    >>"$LOG_FILE" 2>&1 </dev/null &
  # Wait briefly for the pid file the child writes.
  for _ in $(seq 1 50); do
    [[ -s "$PID_FILE" ]] && break
    sleep 0.1
  done
  pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || { log "etcd did not start; see $LOG_FILE"; return 1; }
  wait_healthy "$pid"
  log "etcd healthy (pid $pid)"
}

stop() {
  local pid deadline
  if ! pid="$(managed_pid)"; then
    rm -f "$PID_FILE"
    if healthy; then
      log "etcd on $CLIENT_URL was not started by this script; not stopping it"
    else
      log "not running"
    fi
    return 0
  fi
  log "stopping etcd (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "etcd did not stop in ${STOP_TIMEOUT}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
  log "stopped"
}

status() {
  local pid
  if pid="$(managed_pid)"; then
    if healthy; then
      echo "running (pid $pid), healthy on $CLIENT_URL"
    else
      echo "running (pid $pid), NOT healthy on $CLIENT_URL"
    fi
    return 0
  fi
  if healthy; then
    echo "not managed by this script, but an etcd is healthy on $CLIENT_URL"
    return 0
  fi
  echo "stopped"
  return 3 # LSB "not running"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop && start ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|restart|status" >&2
    exit 2
    ;;
esac
