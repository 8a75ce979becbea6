#!/usr/bin/env bash
# The fast part of the mutation suite (ci/mutants.py), which CI runs: a few
# mistakes in the drain's orderings and the wait list, each of which loom
# must reject. The whole suite (every file that takes part in a reload, with
# the stage that kills each mutant) is `python3 ci/mutants.py`; see
# docs/verification.md, "Mutation testing".
set -euo pipefail
cd "$(dirname "$0")/.."
# Reuse ci/loom.sh's build (same flags), so only reload-core is rebuilt.
export MUTANTS_LOOM_TARGET="${MUTANTS_LOOM_TARGET:-${CARGO_TARGET_DIR:-target}/loom}"
exec python3 ci/mutants.py --quick --no-baseline "$@"
