#!/usr/bin/env bash
# Runs the fault tests (tests/integration/faults.rs) against real services and prints what
# each fault left behind: messages sent, resources they cover, final /state records correct
# (at the resource's highest version) or lost, messages dead-lettered, /state records
# written more often than there were versions (duplicated), and job_state records left
# behind.
# The same tests run in scripts/test.sh (and so in CI); this script adds the table.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

eval "export $(bash scripts/setup.sh)"
REPORT="$(mktemp)"
trap 'rm -f "$REPORT"' EXIT

status=0
CHAOS_REPORT="$REPORT" cargo test --release --test integration faults:: -- --test-threads=1 >&2 || status=$?

python3 - "$REPORT" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
head = ("fault", "messages sent", "resources", "correct", "lost", "dead-lettered", "duplicated", "job_state left")
keys = ("fault", "sent", "resources", "correct", "lost", "dead_lettered", "duplicated", "leftover_job_state")
width = max([len(head[0])] + [len(r["fault"]) for r in rows])
print(f"| {head[0]:<{width}} | " + " | ".join(f"{h:>13}" for h in head[1:]) + " |")
print(f"|{'-' * (width + 2)}|" + "|".join("-" * 15 for _ in head[1:]) + "|")
for r in rows:
    print(f"| {r['fault']:<{width}} | " + " | ".join(f"{r[k]:>13}" for k in keys[1:]) + " |")
if not rows:
    print("no fault test reported (did they run?)")
PY
exit "$status"
