#!/usr/bin/env bash
# The whole check, as CI runs it: services up, then fmt, clippy and tests.
# Extra args go to the main `cargo test` line, e.g.
#   scripts/test.sh -- --nocapture
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/setup.sh

# The integration tests use these when set (instead of testcontainers).
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export ETCD_ENDPOINTS="${ETCD_ENDPOINTS:-http://127.0.0.1:${ETCD_CLIENT_PORT:-2379}}"
echo "test.sh: AMQP_URL=$AMQP_URL ETCD_ENDPOINTS=$ETCD_ENDPOINTS" >&2

step() {
  echo "==> $*" >&2
  "$@"
}

step cargo fmt --check
step cargo clippy --all-targets -- -D warnings
step bash scripts/install-check-tools.sh
step bash scripts/check-deploy.sh
RUSTDOCFLAGS="-D warnings" step cargo doc --no-deps --quiet
# The benchmark only prints figures (scripts/bench.sh runs it): here it is only compiled.
# Doctests run before the main suite so that the suite's closing line is the full run's.
step cargo test --no-run --benches
step cargo test --doc
step cargo test --lib --bins --tests "$@"
