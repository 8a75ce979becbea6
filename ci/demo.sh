#!/usr/bin/env bash
# The README's main job (the SQL host), the HTTP host, the WebAssembly and dylib demos and the two
# in-process demos; each exits non-zero if any invariant broke.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== SQL host (the main job)"
cargo run --release -p sql-host
echo "== HTTP host (reload-tower under load)"
cargo run --release -p http-host
echo "== WebAssembly demo"
cargo run --release -p wasm-demo
# The components demo (`cargo run --release -p wasm-demo --example
# components`) is not run here: its dev-dependencies change the release
# build's features, so it rebuilt wasmtime and cranelift (about 5 of the
# 57 minutes of the run that had it). `cargo test --workspace` builds it,
# and tests/component.rs checks what it shows.
echo "== dylib demo"
cargo run --release -p dylib-demo
echo "== live reload demo"
cargo run --release -p reload-core --example live_reload
echo "== stateful reload demo"
cargo run --release -p reload-core --example stateful_reload
