#!/usr/bin/env bash
# The libraries package together, as a registry would take them: each with
# its version, license files and docs.rs metadata, and each builds from its
# own package (cargo verifies them against one another, not the workspace).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo package (lifecycle, reload-abi, reload-core, reload-sqlite, reload-tower)"
cargo package -p lifecycle -p reload-abi -p reload-core -p reload-sqlite -p reload-tower --allow-dirty
for c in lifecycle reload-abi reload-core reload-sqlite reload-tower; do
  files=$(tar -tzf "target/package/$c-0.1.0.crate")
  for f in LICENSE-MIT LICENSE-APACHE Cargo.toml; do
    grep -qx "$c-0.1.0/$f" <<<"$files" || { echo "$c: $f missing from the package"; exit 1; }
  done
done
echo "packaged: lifecycle, reload-abi, reload-core, reload-sqlite, reload-tower (with licenses)"
# Their build is not needed again; give the disk back.
rm -rf target/package
