#!/usr/bin/env bash
# Side-by-side /federate benchmark: a promtier leaf and a real Prometheus scrape the same demo
# targets (same series), then the same /federate request is timed against both in one run.
#   scripts/bench/federate.sh            # 100k series (10 targets x 10k), 15 reps
#   SERIES=20000 TARGETS=4 REPS=5 scripts/bench/federate.sh
# Needs: cargo, prometheus (Debian package), python3. Everything binds 127.0.0.1; every process
# started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGETS=${TARGETS:-10}
SERIES=${SERIES:-100000}
REPS=${REPS:-15}
BASE=${BASE:-23400}
LEAF=${LEAF:-23390}
PROM=${PROM:-23391}
WORK=$(mktemp -d /tmp/promtier-bench-federate.XXXXXX)
. scripts/bench/lib.sh
bench_start
start_demos "$TARGETS" "$SERIES" "$BASE"
cat > "$WORK/t.yaml" <<YAML
cluster: bench
defaults: {scrape_interval: 15s, scrape_timeout: 10s, data_dir: $WORK/data}
jobs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
leaves:
  - {group: bench, jobs: [demo], listen: '127.0.0.1:$LEAF'}
YAML
"$BIN" leaf --topology "$WORK/t.yaml" --node bench-0-a > "$WORK/leaf.log" 2>&1 &
PIDS+=($!)
cat > "$WORK/prometheus.yml" <<YAML
global: {scrape_interval: 15s, scrape_timeout: 10s, external_labels: {cluster: bench, shard: bench-0, replica: a}}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom" \
  --web.listen-address="127.0.0.1:$PROM" > "$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

python3 - "$LEAF" "$PROM" "$SERIES" "$REPS" <<'PY'
import gzip, statistics, sys, time, urllib.request
leaf, prom, series, reps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
q = "/federate?match[]=%7B__name__%3D~%22.%2B%22%7D"
def fetch(port, gz):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{q}", headers={"Accept-Encoding": "gzip"} if gz else {})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read()
    return time.perf_counter() - t, body
def lines(body, gz):
    if gz:
        body = gzip.decompress(body)
    return sum(1 for l in body.split(b"\n") if l and not l.startswith(b"#"))
# Wait until both hold (nearly) all series, the same number: a demo exporter's series count is
# only about what it is asked for.
deadline = time.time() + 180
n = [0, 0]
while True:
    try:
        n = [lines(fetch(p, False)[1], False) for p in (leaf, prom)]
        if min(n) >= 0.95 * series and n[0] == n[1]:
            break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit(f"timed out waiting for both to hold about {series} series (have {n})")
    time.sleep(2)
time.sleep(16)
print(f"series served: promtier {n[0]}, prometheus {n[1]}")
print(f"{'system':<12} {'gzip':<5} {'median s':>9} {'min s':>8} {'bytes':>10}")
res = {}
for gz in (False, True):
    for name, port in (("promtier", leaf), ("prometheus", prom)):
        fetch(port, gz)  # warm up
        ts, size = [], 0
        for _ in range(reps):
            t, body = fetch(port, gz)
            ts.append(t); size = len(body)
        res[(name, gz)] = statistics.median(ts)
        print(f"{name:<12} {str(gz):<5} {statistics.median(ts):>9.4f} {min(ts):>8.4f} {size:>10}")
for gz in (False, True):
    print(f"ratio prometheus/promtier (gzip={gz}): {res[('prometheus', gz)] / res[('promtier', gz)]:.1f}x")
PY
