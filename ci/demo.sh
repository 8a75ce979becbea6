#!/usr/bin/env bash
# The README's main job; it exits non-zero if any invariant broke.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== live reload demo"
cargo run --release -p reload-core --example live_reload
echo "== stateful reload demo"
cargo run --release -p reload-core --example stateful_reload
