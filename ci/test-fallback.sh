#!/usr/bin/env bash
# The call path's fallback fence pair: the process-wide choice is made once,
# at the first slot, so the symmetric pair (fence(SeqCst) on both sides,
# what runs where membarrier is missing) gets its own run of the core's
# tests, the harness (proptest against the reference model) and the stress
# test. `ci/test.sh` ran them with the asymmetric pair (this machine has
# membarrier; the call_path test checks which pair was chosen).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== RELOAD_CORE_FENCES=symmetric cargo test -p lifecycle -p reload-core -p harness"
RELOAD_CORE_FENCES=symmetric cargo test -p lifecycle -p reload-core -p harness
