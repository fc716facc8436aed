#!/usr/bin/env bash
# One job: count the instructions a whole `run all` process executes per message, under
# callgrind: the runner, lapin, the gRPC client, tokio and the allocator included, which
# scripts/instructions.sh (the pure steps alone, with glibc's allocator) leaves out. A
# count, not a time: it does not drift with the machine's speed, so two builds compare in
# any hour. The kernel's work (syscalls, TCP) is not counted.
#
# The pipeline runs under valgrind through the benchmark's --binary, and the I/O floor
# through its --floor-wrapper, each draining 1,000 and then 4,000 creates (scripts/bench.sh
# --floor --rounds 1); the difference over 3,000 messages is the count per message, free of
# start-up and shut-down. Prints both processes' totals, their figures per message and the
# ratio of the two (issue 19's own-CPU target, without the machine's drift), and keeps the
# 4,000-message profiles for callgrind_annotate. Needs valgrind.
#
#   scripts/instructions-run-all.sh                      # target/release/heat-pipeline
#   scripts/instructions-run-all.sh path/to/heat-pipeline  # another build (the previous one)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "instructions-run-all.sh: needs valgrind" >&2 && exit 1; }
binary="$(realpath "${1:-target/release/heat-pipeline}")"
out="target/bench/callgrind"
mkdir -p "$out"
rm -f "$out"/*.out "$out"/*wrapper.sh
# One wrapper per process, each naming its profiles after itself.
wrap() { # $1: the profile's name; the rest: what it runs
  local name="$1"
  shift
  {
    echo '#!/usr/bin/env bash'
    printf 'exec valgrind --tool=callgrind --callgrind-out-file=%q.$$.out' "$(realpath "$out")/$name"
    (($#)) && printf ' %q' "$@"
    echo ' "$@"'
  } >"$out/$name-wrapper.sh"
  chmod +x "$out/$name-wrapper.sh"
}
wrap run-all "$binary"
wrap floor

total() { # the instructions of the one profile $1 written by the run that just ended
  local file
  file="$(ls "$out/$1".*.out)"
  sed -n 's/^summary: \([0-9]*\).*/\1/p' "$file"
  mv "$file" "$out/$1.$2.callgrind"
}

for messages in 1000 4000; do
  scripts/bench.sh --floor --rounds 1 --messages "$messages" \
    --binary "$out/run-all-wrapper.sh" --floor-wrapper "$out/floor-wrapper.sh" \
    >"$out/bench.$messages.log" 2>&1 || { tail -n 20 "$out/bench.$messages.log" >&2 && exit 1; }
  declare "ir_$messages=$(total run-all "$messages")" "floor_$messages=$(total floor "$messages")"
done
per_message=$(((ir_4000 - ir_1000) / 3000))
floor_per_message=$(((floor_4000 - floor_1000) / 3000))
echo "run all under callgrind ($binary):"
echo "  1,000 creates: $ir_1000 instructions; 4,000 creates: $ir_4000"
echo "  per message: $per_message instructions"
echo "the I/O floor under callgrind, in the same rounds:"
echo "  1,000 creates: $floor_1000 instructions; 4,000 creates: $floor_4000"
echo "  per message: $floor_per_message instructions"
echo "run all / floor: $(awk -v a="$per_message" -v b="$floor_per_message" 'BEGIN { printf "%.2f", a / b }')"
echo "  profiles: $out/run-all.4000.callgrind, $out/floor.4000.callgrind (callgrind_annotate --inclusive=yes)"
