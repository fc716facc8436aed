#!/usr/bin/env bash
# The benchmark: a release build of the pipeline against the local RabbitMQ and etcd.
# Prints drain throughput, end-to-end latency p50/p99 under a steady offered load, peak
# RSS per process, the raw etcd put rate and the ratio between them. Asserts nothing.
#
#   scripts/bench.sh                              # 20,000 messages, one `run all` process
#   scripts/bench.sh --messages 200000            # RSS at 10x the messages
#   scripts/bench.sh --processes 2                # two processes per stage
#   scripts/bench.sh --rate 500 --seconds 20      # the latency phase
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

eval "export $(bash scripts/setup.sh)"
cargo build --release --quiet
cargo bench --quiet --bench pipeline -- "$@"
