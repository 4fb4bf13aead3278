#!/usr/bin/env bash
# Runs the chaos scenarios (tests/chaos): promtier clusters in a lab of network namespaces with
# partitions and stopped processes. Needs root and iproute2 (`ip`, `tc`); the scenarios run one
# at a time, each about a minute. Extra arguments go to the test harness, e.g. a scenario name.
# Usage: scripts/chaos.sh [FILTER...]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --test chaos -- --test-threads=1 "$@"
