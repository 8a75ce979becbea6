#!/usr/bin/env bash
# What the C component guests need (guests/, built from source by the
# tests): clang and lld for wasm32, wasi-libc, and clang's wasm32 runtime.
# All from Debian, installed when missing (as root). Without them the C
# guests' tests skip with the reason; CI sets GUESTS_REQUIRE_CLANG=1.
set -euo pipefail
have() {
  command -v clang-14 >/dev/null && command -v wasm-ld-14 >/dev/null &&
    [ -f /usr/lib/wasm32-wasi/libc.a ] &&
    ls /usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1
}
if ! have; then
  if [ "$(id -u)" != 0 ]; then
    echo "the C guests need: apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 (as root)" >&2
    exit 2
  fi
  echo "== installing clang-14, lld-14, wasi-libc, libclang-rt-14-dev-wasm32 (Debian)"
  start=$(date +%s)
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 >/dev/null
  echo "   installed in $(( $(date +%s) - start )) s"
fi
echo "== $(clang-14 --version | head -1), wasi-libc $(dpkg-query -W -f='${Version}' wasi-libc)"
