#!/usr/bin/env bash
# What the fleet crate needs beyond Rust: etcd (its tests and demo start
# one on loopback) and protoc (etcd-client compiles etcd's protobuf
# definitions). Both from Debian, installed when missing (as root).
set -euo pipefail
if ! command -v etcd >/dev/null || ! command -v protoc >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "the fleet needs etcd and protoc: apt-get install etcd-server protobuf-compiler (as root)" >&2
    exit 2
  fi
  echo "== installing etcd-server and protobuf-compiler (Debian)"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server protobuf-compiler >/dev/null
  # The package starts a system etcd on the default ports; ours choose
  # free ports, but nothing here needs it running.
  systemctl stop etcd 2>/dev/null || pkill -x etcd 2>/dev/null || true
fi
echo "== $(etcd --version | head -1), $(protoc --version)"
