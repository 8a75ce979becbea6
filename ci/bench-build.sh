#!/usr/bin/env bash
# The benchmarks must build; they run by hand (`cargo bench -p reload-core`),
# never in CI: these machines are shared, and speed claims live in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo bench --no-run"
cargo bench --workspace --no-run
