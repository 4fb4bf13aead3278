#!/usr/bin/env bash
# Runs the chaos scenarios (tests/chaos): promtier clusters with nodes killed, hung, restarted and
# cut off (on 127.0.0.1, and in a lab of network namespaces, which needs root and iproute2's `ip`
# and `tc`). Optimised build, one scenario at a time, each about a minute
# (PROMTIER_CHAOS_SOAK=1: long outages, about an hour in all).
# Usage: scripts/chaos.sh [FILTER...]   (extra arguments go to the test harness)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --release --test chaos -- --test-threads=1 "$@"
