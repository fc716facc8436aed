#!/usr/bin/env bash
# Runs the fault tests and prints what each fault left behind: messages sent, resources they
# cover, final /state records correct (at the resource's highest version) or lost, messages
# dead-lettered, /state records written more often than there were versions (duplicated),
# job_state records left behind, and (for the cluster tests) the seconds from the fault to a
# drained pipeline.
#
#   scripts/chaos.sh             # tests/integration/faults.rs: one broker, one etcd
#   scripts/chaos.sh --cluster   # tests/integration/cluster.rs: 3 RabbitMQ nodes, 3 etcd
#                                # members (scripts/cluster.sh), one node lost mid-stream
#
# The same tests run in scripts/test.sh (and so in CI); this script adds the table.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

filter=faults::
if [[ "${1:-}" == --cluster ]]; then
  filter=cluster::
fi

eval "export $(bash scripts/setup.sh)"
REPORT_DIR="$(mktemp -d)"
trap 'rm -rf "$REPORT_DIR"' EXIT
# The tests append a JSON line per fault here (and the drain times beside it, report.recovery).
REPORT="$REPORT_DIR/report.jsonl"
touch "$REPORT"

status=0
CHAOS_REPORT="$REPORT" cargo test --release --test integration "$filter" -- --test-threads=1 >&2 ||
  status=$?

python3 - "$REPORT" <<'PY'
import json, os, sys
path = sys.argv[1]
rows = [json.loads(line) for line in open(path) if line.strip()]
recovery = {}
stem = os.path.splitext(path)[0] + ".recovery"
if os.path.exists(stem):
    for line in open(stem):
        fault, seconds = line.rstrip("\n").split("\t")
        recovery[fault] = seconds
head = ("fault", "messages sent", "resources", "correct", "lost", "dead-lettered", "duplicated", "job_state left")
keys = ("fault", "sent", "resources", "correct", "lost", "dead_lettered", "duplicated", "leftover_job_state")
if recovery:
    head += ("s to drain",)
width = max([len(head[0])] + [len(r["fault"]) for r in rows])
print(f"| {head[0]:<{width}} | " + " | ".join(f"{h:>13}" for h in head[1:]) + " |")
print(f"|{'-' * (width + 2)}|" + "|".join("-" * 15 for _ in head[1:]) + "|")
for r in rows:
    cells = [str(r[k]) for k in keys[1:]]
    if recovery:
        cells.append(recovery.get(r["fault"], "-"))
    print(f"| {r['fault']:<{width}} | " + " | ".join(f"{c:>13}" for c in cells) + " |")
if not rows:
    print("no fault test reported (did they run?)")
PY
exit "$status"
