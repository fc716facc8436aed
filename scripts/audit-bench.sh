#!/usr/bin/env bash
# One job: measure `heat-pipeline audit` on a large keyspace. Starts a PRIVATE etcd (free
# ports, a temporary data dir, removed at the end, also on failure), loads N resources into
# it (default 1,000,000; the ignored test `audit::load_resources_for_the_audit_benchmark`),
# then runs `audit --format json` (release build) under /usr/bin/time and prints the wall
# time, peak RSS and what it found. Never touches the shared etcd on 2379.
# Usage: scripts/audit-bench.sh [--resources N] [--page-size N]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESOURCES=1000000
PAGE_SIZE=5000
while (($#)); do
  case "$1" in
    --resources) RESOURCES="$2"; shift 2 ;;
    --page-size) PAGE_SIZE="$2"; shift 2 ;;
    *) echo "usage: $0 [--resources N] [--page-size N]" >&2; exit 2 ;;
  esac
done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT_PORT="$(free_port)"
PEER_PORT="$(free_port)"
[[ "$CLIENT_PORT" != 2379 ]] || { echo "refusing port 2379" >&2; exit 1; }
WORK="$(mktemp -d /tmp/heat-pipeline-audit-bench.XXXXXX)"
ENDPOINT="http://127.0.0.1:$CLIENT_PORT"
# The private etcd, through scripts/etcd.sh (pid and log beside its data in $WORK).
etcd_sh() {
  ETCD_NAME=audit-bench ETCD_DATA_DIR="$WORK/etcd" ETCD_CLIENT_PORT="$CLIENT_PORT" \
    ETCD_PEER_PORT="$PEER_PORT" ETCD_QUOTA_BACKEND_BYTES=8589934592 \
    bash "$REPO/scripts/etcd.sh" "$@"
}
trap 'etcd_sh stop || true; rm -rf "$WORK"' EXIT
etcd_sh start
ETCD_PID="$(cat "$WORK/etcd.pid")"
echo "private etcd on $ENDPOINT (pid $ETCD_PID, data in $WORK)"

cd "$REPO"
cargo build --release --bin heat-pipeline 2>&1 | tail -1
# A copy: a shared CARGO_TARGET_DIR may get another checkout's build meanwhile.
cp "${CARGO_TARGET_DIR:-$REPO/target}/release/heat-pipeline" "$WORK/heat-pipeline"
PREFIX=/audit-bench
echo "loading $RESOURCES resources..."
AUDIT_BENCH_ETCD="$ENDPOINT" AUDIT_BENCH_RESOURCES="$RESOURCES" AUDIT_BENCH_PREFIX="$PREFIX" \
  cargo test --test integration -- --ignored --exact \
  audit::load_resources_for_the_audit_benchmark --nocapture >"$WORK/load.log" 2>&1 || true
grep -E "^loaded" "$WORK/load.log" || { echo "the loader did not run:" >&2; tail -20 "$WORK/load.log" >&2; exit 1; }
KEYS="$(ETCDCTL_API=3 etcdctl --endpoints "$ENDPOINT" --command-timeout=120s get "$PREFIX/" --prefix --limit 1 -w json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))' || echo "?")"
DB="$(du -sh "$WORK/etcd" | cut -f1)"
echo "keys: $KEYS; etcd data dir: $DB"

BIN="$WORK/heat-pipeline"
for run in 1 2; do
  set +e
  ETCD_ENDPOINTS="$ENDPOINT" ETCD_KEY_PREFIX="$PREFIX" /usr/bin/time -v \
    "$BIN" audit --format json --older-than 10m --page-size "$PAGE_SIZE" --no-dead-letters \
    >"$WORK/findings.jsonl" 2>"$WORK/audit.err"
  code=$?
  set -e
  wall="$(grep 'Elapsed (wall clock)' "$WORK/audit.err" | awk '{print $NF}')"
  rss="$(grep 'Maximum resident set size' "$WORK/audit.err" | awk '{print $NF}')"
  cpu_user="$(grep 'User time' "$WORK/audit.err" | awk '{print $NF}')"
  cpu_sys="$(grep 'System time' "$WORK/audit.err" | awk '{print $NF}')"
  echo "run $run: exit $code, wall $wall, user ${cpu_user}s, sys ${cpu_sys}s, peak RSS $((rss / 1024)) MiB"
  grep '^scanned' "$WORK/audit.err" || head -5 "$WORK/audit.err"
done
echo "findings by problem:"
python3 -c '
import collections, json, sys
c = collections.Counter(json.loads(l)["problem"] for l in open(sys.argv[1]))
for k, v in sorted(c.items()): print(f"  {k}: {v}")' "$WORK/findings.jsonl"
echo "etcd peak RSS: $(grep VmHWM "/proc/$ETCD_PID/status" | awk '{print $2/1024 " MiB"}')"
