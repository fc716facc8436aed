#!/usr/bin/env bash
# One job: count the pipeline's own instructions per message under callgrind, through the
# gungraun harness (benches/instructions.rs: each stage's pure step, decode + decide, on the
# seed and on a message with 64 KiB of outputs; repeatable from run to run, unlike a time).
# Needs valgrind; installs the harness's runner (gungraun-runner, of the version Cargo.lock
# holds) with cargo install when it is missing or another version.
#
#   scripts/instructions.sh             # every benchmark
#   scripts/instructions.sh wrap        # those whose name holds "wrap" (args go to gungraun)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2 && exit 1; }
version="$(sed -n '/^name = "gungraun"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)"
if [[ "$(gungraun-runner --version 2>/dev/null)" != "gungraun-runner $version" ]]; then
  cargo install --locked gungraun-runner --version "$version" >&2
fi
cargo bench --bench instructions -- "$@"
