#!/usr/bin/env bash
# The fleet demo: a real etcd, four HTTP host processes under load, five
# rollouts (good in stages; refused by one node; reverted by a health
# gate; a node killed and restarted; etcd stopped and restarted). Exits
# non-zero if an invariant broke. Installs etcd and protoc if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/fleet-deps.sh
# The dev profile: the same build as the fleet's tests (the demo's load is
# a request per millisecond per connection; speed is not what it shows).
cd reload-fleet && cargo run -q --example fleet-demo
