#!/usr/bin/env bash
# One job: count the instructions a whole `run all` process executes per message, under
# callgrind: the runner, lapin, the gRPC client, tokio and the allocator included, which
# scripts/instructions.sh (the pure steps alone, with glibc's allocator) leaves out. A
# count, not a time: it does not drift with the machine's speed, so two builds compare in
# any hour. The kernel's work (syscalls, TCP) is not counted.
#
# The pipeline runs under valgrind through the benchmark's --binary, draining 1,000 and then
# 4,000 creates (scripts/bench.sh --floor --rounds 1); the difference over 3,000 messages is
# the count per message, free of start-up and shut-down. Prints both totals and the figure
# per message, and keeps the 4,000-message profile for callgrind_annotate. Needs valgrind.
#
#   scripts/instructions-run-all.sh                      # target/release/heat-pipeline
#   scripts/instructions-run-all.sh path/to/heat-pipeline  # another build (the previous one)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "instructions-run-all.sh: needs valgrind" >&2 && exit 1; }
binary="$(realpath "${1:-target/release/heat-pipeline}")"
[[ -x "$binary" ]] || { echo "instructions-run-all.sh: no binary at $binary (cargo build --release)" >&2 && exit 1; }
out="target/bench/callgrind"
mkdir -p "$out"
rm -f "$out"/run-all.*.out "$out"/wrapper.sh
cat >"$out/wrapper.sh" <<EOF
#!/usr/bin/env bash
exec valgrind --tool=callgrind --callgrind-out-file="$(realpath "$out")/run-all.\$\$.out" "$binary" "\$@"
EOF
chmod +x "$out/wrapper.sh"

total() { # the instructions of the one profile written by the run that just ended
  local file
  file="$(ls "$out"/run-all.*.out)"
  sed -n 's/^summary: \([0-9]*\).*/\1/p' "$file"
  mv "$file" "$out/run-all.$1.callgrind"
}

for messages in 1000 4000; do
  scripts/bench.sh --floor --rounds 1 --messages "$messages" --binary "$out/wrapper.sh" \
    >"$out/bench.$messages.log" 2>&1 || { tail -n 20 "$out/bench.$messages.log" >&2 && exit 1; }
  declare "ir_$messages=$(total "$messages")"
done
echo "run all under callgrind ($binary):"
echo "  1,000 creates: $ir_1000 instructions; 4,000 creates: $ir_4000"
echo "  per message: $(( (ir_4000 - ir_1000) / 3000 )) instructions"
echo "  profile: $out/run-all.4000.callgrind (callgrind_annotate --inclusive=yes)"
