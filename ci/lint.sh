#!/usr/bin/env bash
# Formatting, clippy with warnings as errors, rustdoc with warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo clippy -p reload-core --all-features (the tracing feature)"
cargo clippy -p reload-core --all-targets --all-features -- -D warnings
echo "== cargo clippy -p reload-core --no-default-features (a Slot-only build)"
cargo clippy -p reload-core --lib --no-default-features -- -D warnings
echo "== cargo clippy -p reload-core --no-default-features --features metrics"
cargo clippy -p reload-core --lib --no-default-features --features metrics -- -D warnings
echo "== cargo clippy -p reload-sqlite, each plugin kind (none, wasm and components)"
cargo clippy -p reload-sqlite --all-targets --no-default-features -- -D warnings
cargo clippy -p reload-sqlite --all-targets --features component -- -D warnings
echo "== cargo clippy -p reload-tower --lib (without its axum feature)"
cargo clippy -p reload-tower --lib -- -D warnings
echo "== cargo doc -D warnings"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps
RUSTDOCFLAGS=-Dwarnings cargo doc -p reload-core --no-deps --no-default-features
echo "== cargo clippy on the loom tests (--cfg loom)"
RUSTFLAGS="--cfg loom --cfg crossbeam_loom" CARGO_TARGET_DIR=target/loom \
  cargo clippy -p reload-core -p lifecycle --tests --profile loom -- -D warnings
