#!/usr/bin/env bash
# Fuzz smoke: each cargo-fuzz target for FUZZ_SECONDS (default 60; CI sets
# 20), seeded with the committed regressions. Runs wherever CI runs:
#
# - installs cargo-fuzz itself when it is missing (once per CARGO_HOME);
# - with a nightly toolchain, fuzzes under AddressSanitizer;
# - without one, fuzzes on stable with `--sanitizer none` (coverage-guided
#   all the same; what is lost is ASan's detection of memory errors, which
#   in this crate only its few `unsafe` blocks could cause, and which Miri
#   and the debug canaries also watch).
#
# The `wasm` target builds wasmtime under instrumentation (minutes), so it
# runs only with FUZZ_WASM=1. Every target's regressions are replayed on
# stable by `cargo test` (harness/tests/replay.rs, dylib-demo, wasm-demo).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  start=$(date +%s)
  cargo install --locked --quiet cargo-fuzz
  echo "   cargo-fuzz installed in $(( $(date +%s) - start )) s"
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
  build=()
  echo "== fuzzing on nightly, under AddressSanitizer"
else
  fuzz=(cargo fuzz)
  build=(--sanitizer none)
  echo "== fuzzing on stable (no nightly toolchain): --sanitizer none"
fi
features=()
[ "${FUZZ_WASM:-0}" = 1 ] && features=(--features component)

targets=()
for target in $("${fuzz[@]}" list); do
  if [ "$target" = wasm ] && [ ${#features[@]} -eq 0 ]; then
    echo "== fuzz wasm skipped (FUZZ_WASM=1 builds wasmtime for it)"
    continue
  fi
  targets+=("$target")
done
# One build of every target first: cargo shares the dependencies.
start=$(date +%s)
"${fuzz[@]}" build "${build[@]}" "${features[@]}" >/dev/null 2>&1 ||
  "${fuzz[@]}" build "${build[@]}" "${features[@]}"
echo "   built in $(( $(date +%s) - start )) s"
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "regressions/$target" ] && seeds+=("regressions/$target")
  log="$(mktemp)"
  set +e
  "${fuzz[@]}" run "${build[@]}" "${features[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E "^(#[0-9]+ +DONE|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb|new_units_added))|INFO: (Loaded|seed)" "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 80 "$log"
    echo "== fuzz $target FAILED (artifact under fuzz/artifacts/$target/)"
    exit "$rc"
  fi
done
