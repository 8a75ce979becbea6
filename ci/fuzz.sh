#!/usr/bin/env bash
# Fuzz smoke: each cargo-fuzz target for FUZZ_SECONDS (default 60), seeded
# with the committed regressions. Needs a nightly toolchain and cargo-fuzz;
# says so and skips otherwise. The regressions themselves are replayed on
# stable by `cargo test -p harness --test replay`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "== fuzz smoke skipped: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== fuzz smoke skipped: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi
for target in $(cargo +nightly fuzz list); do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "regressions/$target" ] && seeds+=("regressions/$target")
  log="$(mktemp)"
  set +e
  cargo +nightly fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
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
