#!/usr/bin/env bash
# loom: every interleaving (up to the preemption bound) of the real drain
# code under the C11 memory model, crossbeam-epoch included in its loom mode.
#
#   bash ci/loom.sh                      # all loom tests
#   bash ci/loom.sh loom_two_replaces    # one file
#
# Debugging a failure: rerun the one test with LOOM_LOG=1 (and
# LOOM_LOCATION=1) for the interleaving, or LOOM_CHECKPOINT_FILE=f.json to
# save the failing iteration and replay it.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom --cfg crossbeam_loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-100000}"
# A separate target dir: loom's cfg changes every crate's build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  for f in reload-core/tests/loom_*.rs lifecycle/tests/loom_*.rs; do tests+=("$(basename "$f" .rs)"); done
fi
# The crate a loom test belongs to: lifecycle's phase cell, or the core.
crate_of() { if [ -f "lifecycle/tests/$1.rs" ]; then echo lifecycle; else echo reload-core; fi; }
args=()
for t in "${tests[@]}"; do args+=(-p "$(crate_of "$t")" --test "$t"); done

echo "== loom (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS): ${tests[*]}"
cargo build --profile loom "${args[@]}" --quiet
for t in "${tests[@]}"; do
  start=$(date +%s)
  cargo test --profile loom -p "$(crate_of "$t")" --test "$t" --quiet -- --test-threads=1
  echo "   $t: $(( $(date +%s) - start )) s"
done
