#!/usr/bin/env bash
# Side-by-side TSDB benchmark: the same scrape workload into a promtier leaf and into a real
# Prometheus, one after the other (2-core host), then for each:
#   - bytes per sample on disk of the fullest level-1 block (block dir size / samples in it),
#   - resident memory per active head series (VmRSS / head series),
#   - CPU seconds per million samples ingested (after a warm-up),
#   - WAL replay: WAL size and time from restart to ready (process SIGKILLed first).
# Knobs: K targets x S series (default 10 x 5000 = 50k series: the Python fleet keeps up with that
# at 1 s on a 2-core host), INTERVAL (1s), BLOCK (8m: with a 1s interval a block holds 480 samples
# per series, as a 2h block does at 15s), DURATION per system (1320s: long enough for a full block
# after the first partial one), WARMUP (60s). PROMTIER_BIN (target/release/
# promtier), PROMETHEUS_BIN (/usr/bin/prometheus), TARGETS_PY (the shared bench fleet).
# Every process binds 127.0.0.1, runs under `timeout`, and is stopped by PID on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
K=${K:-10} S=${S:-5000} INTERVAL=${INTERVAL:-1s} BLOCK=${BLOCK:-8m}
DURATION=${DURATION:-1320} WARMUP=${WARMUP:-60}
PROMTIER_BIN=${PROMTIER_BIN:-$ROOT/target/release/promtier}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-/usr/bin/prometheus}
TARGETS_PY=${TARGETS_PY:-$ROOT/../shared/bench/targets.py}
[ -f "$TARGETS_PY" ] || TARGETS_PY=/work/shared/bench/targets.py
FLEET_PORT=${FLEET_PORT:-21000} PORT=${PORT:-19300}
WORK=${WORK:-$(mktemp -d /tmp/bench-tsdb.XXXXXX)}; mkdir -p "$WORK"
SYSTEMS=${SYSTEMS:-"promtier prometheus"}
echo "work dir: $WORK; $K targets x $S series, interval $INTERVAL, block $BLOCK, ${DURATION}s per system"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

targets=""
for i in $(seq 0 $((K - 1))); do targets="$targets${targets:+, }'127.0.0.1:$((FLEET_PORT + i))'"; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { # url name: the sum over the metric's series (any labels)
  curl -sf --max-time 10 "$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2; f = 1} END {if (f) print s}'
}
wait_ready() { # url timeout_s ; prints seconds waited
  local t0 t1; t0=$(date +%s.%N)
  for _ in $(seq 1 $(($2 * 10))); do
    if curl -sf -o /dev/null --max-time 1 "$1/-/ready"; then t1=$(date +%s.%N); echo "$t1 - $t0" | bc; return 0; fi
    sleep 0.1
  done
  echo "not ready: $1" >&2; return 1
}

start_system() { # system datadir log; sets SYS_PID (not in a subshell: PIDS must see the wrapper)
  local sys=$1 data=$2 log=$3
  if [ "$sys" = promtier ]; then
    cat > "$WORK/topology.yaml" <<EOF
cluster: bench
defaults: {scrape_interval: $INTERVAL, scrape_timeout: 900ms, data_dir: $data, retention: 1d}
jobs:
  - job_name: bench
    static_configs: [{targets: [$targets]}]
leaves:
  - {group: bench, jobs: [bench], listen: '127.0.0.1:$PORT'}
EOF
    timeout $((DURATION + 600)) "$PROMTIER_BIN" leaf --topology "$WORK/topology.yaml" --node bench-0-a \
      --tsdb.block-duration "$BLOCK" --tsdb.max-block-duration "$BLOCK" > "$log" 2>&1 &
  else
    cat > "$WORK/prometheus.yml" <<EOF
global: {scrape_interval: $INTERVAL, scrape_timeout: 900ms}
scrape_configs:
  - job_name: bench
    static_configs: [{targets: [$targets]}]
EOF
    timeout $((DURATION + 600)) "$PROMETHEUS_BIN" --config.file="$WORK/prometheus.yml" \
      --storage.tsdb.path="$data" --web.listen-address=127.0.0.1:$PORT --storage.tsdb.retention.time=1d \
      --storage.tsdb.min-block-duration="$BLOCK" --storage.tsdb.max-block-duration="$BLOCK" > "$log" 2>&1 &
  fi
  local wrapper=$!
  PIDS+=($wrapper)
  # The system itself is the child of `timeout`.
  for _ in $(seq 1 50); do pgrep -P "$wrapper" > /dev/null && break; sleep 0.1; done
  SYS_PID=$(pgrep -P "$wrapper" | head -1)
}

block_report() { # datadir -> "bytes samples series index_bytes"
  python3 - "$1" <<'PY'
import json, os, sys
best = None
for d in os.listdir(sys.argv[1]):
    p = os.path.join(sys.argv[1], d)
    m = os.path.join(p, "meta.json")
    if not os.path.isfile(m): continue
    meta = json.load(open(m))
    if meta["compaction"]["level"] != 1: continue
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(p) for f in fs)
    idx = os.path.getsize(os.path.join(p, "index"))
    s = meta["stats"]
    if best is None or s["numSamples"] > best[1]:
        best = (size, s["numSamples"], s["numSeries"], idx)
print(*(best or (0, 0, 0, 0)))
PY
}

dir_bytes() { du -sb "$1" 2>/dev/null | cut -f1; }

RESULTS=()
for sys in $SYSTEMS; do
  echo "=== $sys"
  timeout $((DURATION + 900)) python3 "$TARGETS_PY" --base-port "$FLEET_PORT" -k "$K" -s "$S" \
    --duration $((DURATION + 600)) > "$WORK/fleet-$sys.log" 2>&1 &
  fleet=$!; PIDS+=($fleet)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$((FLEET_PORT + K - 1))/metrics" && break; sleep 0.2; done
  data="$WORK/data-$sys"; mkdir -p "$data"
  url="http://127.0.0.1:$PORT"
  start_system "$sys" "$data" "$WORK/$sys.log"; pid=$SYS_PID
  wait_ready "$url" 120 > /dev/null
  if [ "$sys" = promtier ]; then
    samples_metric=promtier_tsdb_head_samples_appended_total; series_metric=promtier_tsdb_head_series
    datadir="$data/bench-0-a"
  else
    samples_metric=prometheus_tsdb_head_samples_appended_total; series_metric=prometheus_tsdb_head_series
    datadir="$data"
  fi
  sleep "$WARMUP"
  c0=$(cpu_ticks "$pid"); s0=$(metric "$url" $samples_metric); t0=$(date +%s)
  sleep $((DURATION - WARMUP))
  c1=$(cpu_ticks "$pid"); s1=$(metric "$url" $samples_metric); t1=$(date +%s)
  rss=$(rss_kb "$pid"); series=$(metric "$url" $series_metric)
  read -r bbytes bsamples bseries bindex <<< "$(block_report "$datadir")"
  # Stop ingesting, then SIGKILL the system so the WAL is as a crash leaves it, and time a restart.
  kill -TERM "$fleet" 2>/dev/null || true
  sleep 2
  kill -KILL "$pid" 2>/dev/null || true
  sleep 1
  if [ "$sys" = prometheus ]; then walsz=$(( $(dir_bytes "$datadir/wal") + $(dir_bytes "$datadir/chunks_head") ));
  else walsz=$(dir_bytes "$datadir/wal"); fi
  start_system "$sys" "$data" "$WORK/$sys-restart.log"; pid=$SYS_PID
  replay=$(wait_ready "$url" 300)
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  python3 - "$sys" "$c0" "$c1" "$s0" "$s1" "$t0" "$t1" "$rss" "$series" "$bbytes" "$bsamples" "$bseries" "$bindex" "$walsz" "$replay" > "$WORK/result-$sys.json" <<'PY'
import json, os, sys
sys_, c0, c1, s0, s1, t0, t1, rss, series, bb, bs, bser, bidx, wal, replay = sys.argv[1:]
hz = os.sysconf("SC_CLK_TCK")
cpu = (int(c1) - int(c0)) / hz
samples = float(s1) - float(s0)
r = {
  "system": sys_,
  "samples_ingested": samples, "ingest_rate_per_s": samples / (int(t1) - int(t0)),
  "cpu_s_per_million_samples": cpu / samples * 1e6,
  "rss_bytes": int(rss) * 1024, "head_series": float(series),
  "rss_bytes_per_series": int(rss) * 1024 / float(series),
  "block_bytes": int(bb), "block_samples": int(bs), "block_series": int(bser), "block_index_bytes": int(bidx),
  "block_bytes_per_sample": int(bb) / max(1, int(bs)),
  "block_chunk_bytes_per_sample": (int(bb) - int(bidx)) / max(1, int(bs)),
  "wal_bytes_at_kill": int(wal), "restart_to_ready_s": float(replay),
}
print(json.dumps(r, indent=1))
PY
  cat "$WORK/result-$sys.json"
done
python3 - "$WORK" <<'PY'
import json, os, sys
w = sys.argv[1]
rs = {r["system"]: r for r in (json.load(open(os.path.join(w, f))) for f in os.listdir(w) if f.startswith("result-"))}
keys = ["block_bytes_per_sample", "block_chunk_bytes_per_sample", "rss_bytes_per_series", "cpu_s_per_million_samples",
        "wal_bytes_at_kill", "restart_to_ready_s", "ingest_rate_per_s", "head_series", "block_samples"]
if len(rs) == 2:
    a, b = rs["promtier"], rs["prometheus"]
    print("%-30s %14s %14s %8s" % ("metric", "promtier", "prometheus", "ratio"))
    for k in keys:
        print("%-30s %14.3f %14.3f %8.2f" % (k, a[k], b[k], a[k] / b[k] if b[k] else float("nan")))
PY
