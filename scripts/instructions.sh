#!/usr/bin/env bash
# The pipeline's own cost per message, as a count of instructions: repeatable from run to
# run, unlike a time, and free of the broker and etcd. For each stage, examples/stage_cost.rs
# runs the stage's pure step (decode, then decide, which encodes the record and the
# hand-off) over a workload's messages; callgrind counts the instructions of a run of 1
# iteration and of 1+K, and the difference / K / messages is the cost of one message, since
# start-up and preparation cancel out.
#
#   scripts/instructions.sh            # K = 20
#   scripts/instructions.sh 50         # K = 50
#
# Workloads: the seed create on an empty store, and one resource's five lifecycle results
# (create in progress, create, modify, modify, delete) with outputs of 1, 8 and 64 KiB.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

K="${1:-20}"
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2; exit 1; }
cargo build --release --quiet --example stage_cost
binary=target/release/examples/stage_cost
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

# Instructions (callgrind's Ir) of one run; prints "INSTRUCTIONS MESSAGES BYTES".
instructions() {
  local file="$out/callgrind.$1.$2.$3" line _word messages bytes
  # The example prints "messages M bytes B"; valgrind's own report goes to stderr.
  line=$(valgrind --tool=callgrind --callgrind-out-file="$file" "$binary" "$1" "$2" "$3" 2>/dev/null)
  read -r _word messages _word bytes <<<"$line"
  echo "$(sed -n 's/^totals: //p' "$file") $messages $bytes"
}

echo "instructions per message of decode + decide (+ the encodes decide does), callgrind Ir,"
echo "(Ir(N=1+$K) - Ir(N=1)) / $K / messages; valgrind $(valgrind --version | sed 's/valgrind-//')"
printf '%-14s %9s %10s %10s %10s %10s %11s\n' workload messages "in bytes" capture normalize wrap total
for workload in seed lifecycle-1k lifecycle-8k lifecycle-64k; do
  row=() total=0
  for stage in capture normalize wrap; do
    read -r one _ _ < <(instructions "$stage" "$workload" 1)
    read -r many messages bytes < <(instructions "$stage" "$workload" $((1 + K)))
    per=$(((many - one) / K / messages))
    if [[ $stage == capture ]]; then
      count=$messages size=$((bytes / messages))
    fi
    row+=("$per")
    total=$((total + per))
  done
  printf '%-14s %9s %10s %10s %10s %10s %11s\n' "$workload" "$count" "$size" "${row[@]}" "$total"
done
echo "(in bytes: the average Heat result capture decodes; each stage sees every message)"
