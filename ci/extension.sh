#!/usr/bin/env bash
# reload-sqlite as a SQLite loadable extension, driven by clients no one
# here wrote: Debian's sqlite3 shell and Debian's Python sqlite3 module
# (built with extension loading), querying a hot function while its
# library is replaced ten times (sqlite-ext/tests/clients.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v sqlite3 >/dev/null || ! /usr/bin/python3 -c 'import sqlite3; sqlite3.connect(":memory:").enable_load_extension' 2>/dev/null; then
  echo "== installing sqlite3 and python3 (Debian)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q sqlite3 python3 >/dev/null
fi
echo "== sqlite3 $(sqlite3 --version | cut -d' ' -f1), python $(/usr/bin/python3 -c 'import sqlite3, sys; print(sys.version.split()[0], "with SQLite", sqlite3.sqlite_version)')"
echo "== the plugin \`ver\` at two versions"
built=target/ver-plugins/built
mkdir -p "$built"
for v in 1.0.0 1.1.0; do
  RELOAD_PLUGIN_VERSION=$v cargo build --release -q -p sql-ver --target-dir target/ver-plugins
  cp target/ver-plugins/release/libsql_ver.so "$built/ver-$v.so"
done
echo "== the extension (its own workspace: sqlite-ext/)"
(cd sqlite-ext && cargo fmt -- --check && CARGO_TARGET_DIR=../target/sqlite-ext cargo clippy --release -q --all-targets -- -D warnings && CARGO_TARGET_DIR=../target/sqlite-ext cargo build --release -q)
/usr/bin/python3 sqlite-ext/tests/clients.py "$PWD/target/sqlite-ext/release/libreload_sqlite_ext.so" "$PWD/$built"
