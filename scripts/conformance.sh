#!/usr/bin/env bash
# Runs the conformance suites over the shared third-party test material, read in place.
# Usage: scripts/conformance.sh PEER_DIR [SUITE...]   e.g. scripts/conformance.sh ../shared/peer
set -euo pipefail
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 PEER_DIR [SUITE...]  (PEER_DIR holds exposition/, federate/, promql-tests/ ...)" >&2
  exit 2
fi
peer=$(cd "$1" && pwd)
shift
cd "$(dirname "$0")/.."
PROMTIER_PEER_DIR="$peer" exec cargo test --test conformance -- "$@"
