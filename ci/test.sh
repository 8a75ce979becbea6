#!/usr/bin/env bash
# The README's test command, exactly.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo test --workspace"
cargo test --workspace
