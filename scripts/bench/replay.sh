#!/usr/bin/env bash
# Side-by-side WAL replay: a promtier leaf and a real Prometheus scrape the same demo targets
# (same series, same interval) for DURATION seconds, are both killed with SIGKILL (nothing but the
# WAL on disk: no block was cut in that time), then restarted one after the other; each restart is
# timed until /-/ready answers 200, with the CPU seconds the process used until then and its
# peak RSS. Also reports the WAL size on disk of each.
#   scripts/bench/replay.sh                          # 100k series (10 targets x 10k), 1 s, 120 s
#   SERIES=20000 TARGETS=4 DURATION=30 scripts/bench/replay.sh
# Needs: cargo, prometheus (Debian package), python3. Everything binds 127.0.0.1; every process
# started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGETS=${TARGETS:-10}
SERIES=${SERIES:-100000}
DURATION=${DURATION:-120}
INTERVAL=${INTERVAL:-1s}
BASE=${BASE:-23500}
LEAF=${LEAF:-23490}
PROM=${PROM:-23491}
WORK=$(mktemp -d /tmp/promtier-bench-replay.XXXXXX)
. scripts/bench/lib.sh
bench_start
start_demos "$TARGETS" "$SERIES" "$BASE"
cat > "$WORK/t.yaml" <<YAML
cluster: bench
defaults: {scrape_interval: $INTERVAL, data_dir: $WORK/data}
jobs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
leaves:
  - {group: bench, jobs: [demo], listen: '127.0.0.1:$LEAF'}
YAML
cat > "$WORK/prometheus.yml" <<YAML
global: {scrape_interval: $INTERVAL, external_labels: {cluster: bench, shard: bench-0, replica: a}}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
YAML
start_leaf() {
  "$BIN" leaf --topology "$WORK/t.yaml" --node bench-0-a >> "$WORK/leaf.log" 2>&1 &
  echo $!
}
start_prom() {
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom" \
    --web.listen-address="127.0.0.1:$PROM" >> "$WORK/prometheus.log" 2>&1 &
  echo $!
}
leaf_pid=$(start_leaf); PIDS+=("$leaf_pid")
prom_pid=$(start_prom); PIDS+=("$prom_pid")
echo "scraping $SERIES series every $INTERVAL for ${DURATION}s with both"
sleep "$DURATION"
kill -KILL "$leaf_pid" "$prom_pid"
# Stop the targets too: the restarted servers then only replay (no scrape competes for the CPU).
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${PIDS[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.2; done; done
PIDS=()
echo "WAL on disk: promtier $(du -sh "$WORK/data/bench-0-a/wal" | cut -f1), prometheus $(du -sh "$WORK/prom/wal" | cut -f1)"

measure() { # name start-function port
  local pid
  pid=$($2); PIDS+=("$pid")
  python3 - "$1" "$pid" "$3" <<'PY'
import sys, time, urllib.request, os
name, pid, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
tck = os.sysconf("SC_CLK_TCK")
t0 = time.perf_counter()
peak = 0
def cpu():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck
while True:
    try:
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmHWM:"):
                peak = int(l.split()[1]) // 1024
    except FileNotFoundError:
        sys.exit(f"{name} exited while replaying")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
            if r.status == 200:
                break
    except Exception:
        pass
    if time.perf_counter() - t0 > 900:
        sys.exit(f"{name} not ready after 900 s")
    time.sleep(0.05)
print(f"{name:<11} ready after {time.perf_counter() - t0:7.2f} s, {cpu():7.2f} CPU s, peak RSS {peak} MiB")
PY
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
}
measure promtier start_leaf "$LEAF"
measure prometheus start_prom "$PROM"
