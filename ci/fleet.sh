#!/usr/bin/env bash
# reload-fleet, its own workspace (etcd-client needs protoc): format,
# lints, docs, the tests against a real etcd (required here: a missing etcd
# fails rather than skips), then the fleet demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/fleet-deps.sh
cd reload-fleet
cargo fmt -- --check
# One clippy run, with `dylib`: the feature only adds code, so this sees
# every line the featureless build has.
cargo clippy -q --all-targets --features dylib -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc -q --no-deps
# With `dylib`: the native-library test builds the workspace's adder plugins.
FLEET_REQUIRE_ETCD=1 cargo test -q --features dylib
# Packaged as a registry would take it (files and licenses); building the
# package waits for reload-core on the registry, so it is listed here, not
# verified.
files=$(cargo package --list --allow-dirty)
for f in LICENSE-MIT LICENSE-APACHE README.md Cargo.toml; do
  grep -qx "$f" <<<"$files" || { echo "reload-fleet: $f missing from the package"; exit 1; }
done
cd .. && bash ci/fleet-demo.sh
