#!/usr/bin/env bash
# One job: the benchmark (benches/pipeline), a release build of the pipeline against the
# local RabbitMQ and etcd. Prints drain throughput, end-to-end latency p50/p99 under a
# steady offered load, CPU and etcd transactions per message, peak RSS per process, the raw
# etcd put rate and the ratio between them. Asserts nothing.
#
#   scripts/bench.sh                              # 20,000 messages, one `run all` process
#   scripts/bench.sh --workload lifecycle         # the same, then on the same processes
#                                                 # 20,000 results of resources created,
#                                                 # modified twice and deleted (5 % failing,
#                                                 # outputs 1-64 KiB), side by side
#   scripts/bench.sh --messages 200000            # RSS at 10x the messages
#   scripts/bench.sh --processes 2                # two processes per stage
#   scripts/bench.sh --rate 500 --seconds 20      # the latency phase
#   scripts/bench.sh --floor [--rounds 3] [--counts]  # the I/O floor and the pipeline in
#                                                 # alternating rounds (benches/pipeline/floor.rs),
#                                                 # plotted in target/bench/floor.svg;
#                                                 # --counts: AMQP and etcd work per message of each;
#                                                 # --python: each round also times the sequential
#                                                 # Python worker (benches/python/)
#   scripts/bench.sh --soak [--soak-messages 1000000] [--soak-minutes 40]  # a million
#                                                 # creates with a bounded backlog: RSS and
#                                                 # drain rate per tenth, target/bench/soak.svg
#   scripts/bench.sh --cluster [ARGS]             # the same ARGS on one node, then on the
#                                                 # local clusters (scripts/cluster.sh:
#                                                 # 3 RabbitMQ nodes, 3 etcd members)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

cluster=0
if [[ "${1:-}" == --cluster ]]; then
  cluster=1
  shift
fi

eval "export $(bash scripts/setup.sh)"
if [[ " $* " == *" --python "* ]]; then
  # The Python worker's one dependency, in a venv of its own (PyPI).
  venv="${BENCH_PYTHON_VENV:-$HOME/.cache/heat-pipeline/bench-python}"
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  "$venv/bin/python" -c 'import pika' 2>/dev/null || "$venv/bin/pip" install --quiet 'pika==1.4.4'
  export PYTHON="$venv/bin/python"
fi
cargo build --release --quiet
bench() { cargo bench --quiet --bench pipeline -- "$@"; }

if ((!cluster)); then
  bench "$@"
  exit
fi

out="$(mktemp -d)"
trap 'bash scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$out"' EXIT
echo "== one RabbitMQ node, one etcd (a fresh private one)"
bench "$@" | tee "$out/single"
echo
echo "== clusters: 3 RabbitMQ nodes (quorum queues on all three), 3 etcd members"
bash scripts/cluster.sh down >/dev/null  # a fresh cluster: no history from earlier runs
eval "export $(bash scripts/cluster.sh up | tail -n 1)"
bench --shared-etcd --broker-pids "$(bash scripts/cluster.sh pids rabbit)" \
  --etcd-pids "$(bash scripts/cluster.sh pids etcd)" "$@" |
  tee "$out/cluster"
bash scripts/cluster.sh down >/dev/null

echo
echo "== side by side"
for run in single cluster; do
  drain=$(grep -o '= [0-9]* msg/s' "$out/$run" | head -1)
  cpu=$(grep -o 'pipeline [0-9]* us, RabbitMQ [0-9a-z]* [a-z]*, etcd [0-9a-z]* [a-z]*' "$out/$run" | head -1)
  latency=$(grep -o 'p50 [0-9.]* ms, p99 [0-9.]* ms' "$out/$run" | head -1)
  printf '%-8s drain %-12s latency %-28s CPU per message: %s\n' "$run" "${drain#= }" "$latency" "$cpu"
done
