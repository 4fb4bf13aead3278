#!/usr/bin/env bash
# Side-by-side global-tier benchmark, one run: promtier leaves (2 shards x 2 replicas) scrape a
# fleet of demo exporters; three globals federate the same four leaves at the same time:
#   - a real Prometheus (honor_labels federation of every replica, as usually wired),
#   - a promtier global, failover dedup over the fast link,
#   - a promtier global, failover dedup over text /federate (the fast link turned off).
# Reported per global: CPU cores, CPU seconds per million samples pulled and per million unique
# samples kept, RSS, series held, pull duration, and freshness (leaf-to-global lag: the newest
# `up` sample on the leaves minus the newest on the global, sampled every ~2 s).
#   scripts/bench/global.sh                      # 4 leaves x 100k series, 5 s intervals, 180 s
#   SERIES=20000 DURATION=60 scripts/bench/global.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SERIES=${SERIES:-100000}        # per leaf (per shard)
TARGETS=${TARGETS:-8}
INTERVAL=${INTERVAL:-5}
DURATION=${DURATION:-180}
WARMUP=${WARMUP:-40}
BASE=${BASE:-24100}
WORK=$(mktemp -d /tmp/promtier-bench-global.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 2
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
cargo build --release --quiet
BIN=$PWD/target/release/promtier
per_target=$((SERIES * 2 / TARGETS))
list=""
for i in $(seq 0 $((TARGETS - 1))); do list="$list${list:+, }'127.0.0.1:$((BASE + i))'"; done
LEAF=$((BASE + 20)); PROMTIER_FAST=$((BASE + 30)); PROMTIER_TEXT=$((BASE + 31)); PROM=$((BASE + 32))
cat > "$WORK/t.yaml" <<YAML
cluster: bench
defaults: {scrape_interval: ${INTERVAL}s, scrape_timeout: $((INTERVAL - 1))s, data_dir: $WORK/data}
demo: {targets: $TARGETS, listen: '127.0.0.1:$BASE', series: $per_target}
jobs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
leaves:
  - {group: bench, jobs: [demo], shards: 2, replicas: 2, listen: '127.0.0.1:$LEAF'}
globals:
  - name: fast
    from: [bench]
    listen: '127.0.0.1:$PROMTIER_FAST'
    federate: {interval: ${INTERVAL}s, timeout: $((INTERVAL - 1))s}
    dedup: {mode: failover, failover_timeout: 30s}
  - name: text
    from: [bench]
    listen: '127.0.0.1:$PROMTIER_TEXT'
    federate: {interval: ${INTERVAL}s, timeout: $((INTERVAL - 1))s, fast_link: false}
    dedup: {mode: failover, failover_timeout: 30s}
YAML
"$BIN" check "$WORK/t.yaml" >/dev/null
"$BIN" up "$WORK/t.yaml" > "$WORK/up.log" 2>&1 &
PIDS+=($!)
{
  echo "global: {scrape_interval: ${INTERVAL}s, scrape_timeout: $((INTERVAL - 1))s}"
  echo "scrape_configs:"
  for i in 0 1 2 3; do
    echo "- job_name: federate-$i"
    echo "  honor_labels: true"
    echo "  metrics_path: /federate"
    echo "  params: {'match[]': ['{__name__=~\".+\"}']}"
    echo "  static_configs: [{targets: ['127.0.0.1:$((LEAF + i))']}]"
  done
} > "$WORK/prometheus.yml"
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom" \
  --web.listen-address="127.0.0.1:$PROM" --log.level=warn > "$WORK/prometheus.log" 2>&1 &
PIDS+=($!)

LEAF_PORTS="$LEAF,$((LEAF + 1)),$((LEAF + 2)),$((LEAF + 3))" python3 - "$WORK" "$PROM" "$PROMTIER_FAST" "$PROMTIER_TEXT" "$SERIES" "$DURATION" "$WARMUP" "$INTERVAL" <<'PY'
import json, os, re, statistics, sys, time, urllib.request
work, prom, fast, text = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
series, duration, warmup, interval = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
CLK = os.sysconf("SC_CLK_TCK"); PAGE = os.sysconf("SC_PAGE_SIZE")
def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()
def pid_listening(port):
    # the process whose command line or socket owns the port: ask /metrics for nothing; use ss
    out = os.popen(f"ss -ltnpH 'sport = :{port}'").read()
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None
def cpu_rss(pid):
    st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / CLK, int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE
def metric(port, name, labels=""):
    """Sum of the samples of exactly `name` (any labels containing `labels`)."""
    txt = get(f"http://127.0.0.1:{port}/metrics")
    tot = 0.0
    for l in txt.splitlines():
        if l.startswith("#"):
            continue
        series = l.rsplit(" ", 1)[0]
        if (series == name or series.startswith(name + "{")) and labels in l:
            tot += float(l.rsplit(" ", 1)[1])
    return tot
def newest_up(port):
    body = get(f"http://127.0.0.1:{port}/federate?match[]=up%7Bjob%3D%22demo%22%7D")
    ts = [int(l.rsplit(" ", 1)[1]) for l in body.splitlines() if l and not l.startswith("#")]
    return max(ts) if ts else None
LEAVES = [int(p) for p in os.environ.get("LEAF_PORTS", "").split(",") if p]
def sources(port):
    """The leaves a global stores from: the elected replica of each shard (failover dedup), or
    every leaf (Prometheus keeps both replicas)."""
    try:
        sets = json.loads(get(f"http://127.0.0.1:{port}/api/v1/dedup"))["data"]
    except Exception:
        return LEAVES
    out = []
    for st in sets:
        shard = int(st["shard"].rsplit("-", 1)[1])
        out.append(LEAVES[2 * shard + "ab".index(st["elected"])])
    return out
def newest_up_age(port):
    """Leaf-to-global lag: the newest `up` sample on the leaves the global stores from, minus the
    newest on the global."""
    leaf = max(newest_up(p) or 0 for p in sources(port))
    g = newest_up(port)
    return (leaf - g) / 1000 if g else None
def head_series(port):
    for n in ("promtier_tsdb_head_series", "prometheus_tsdb_head_series"):
        try:
            v = metric(port, n)
            if v: return v
        except Exception: pass
    return 0
deadline = time.time() + 240
while True:
    try:
        if all(head_series(p) >= series * 2 * (2 if p == prom else 1) * 0.95 for p in (prom, fast, text)):
            break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("timed out waiting for the globals to hold every series:" + str([head_series(p) for p in (prom, fast, text)]))
    time.sleep(3)
time.sleep(warmup)
systems = {"prometheus": prom, "promtier-fast": fast, "promtier-text": text}
pids = {k: pid_listening(p) for k, p in systems.items()}
def pulled(k):
    p = systems[k]
    if k == "prometheus":
        return metric(p, "prometheus_tsdb_head_samples_appended_total")
    return metric(p, "promtier_tsdb_head_samples_appended_total")
start = {k: (cpu_rss(pids[k])[0], pulled(k), time.time()) for k in systems}
ages = {k: [] for k in systems}
t_end = time.time() + duration
while time.time() < t_end:
    for k, p in systems.items():
        try:
            a = newest_up_age(p)
            if a is not None: ages[k].append(a)
        except Exception: pass
    time.sleep(1.7)
print(f"\n{'global':<15} {'cpu cores':>9} {'cpu s/M kept':>12} {'series':>8} {'rss MiB':>8} {'lag med s':>9} {'lag max s':>9}")
res = {}
for k in systems:
    cpu1, rss = cpu_rss(pids[k]); s1 = pulled(k); t1 = time.time()
    cpu0, s0, t0 = start[k]
    cores = (cpu1 - cpu0) / (t1 - t0)
    kept = s1 - s0
    res[k] = dict(cores=cores, cpu_per_m=(cpu1 - cpu0) / (kept / 1e6) if kept else float("nan"), rss=rss / 2**20,
                  series=head_series(systems[k]), age_med=statistics.median(ages[k]) if ages[k] else float("nan"),
                  age_max=max(ages[k]) if ages[k] else float("nan"), kept=kept)
    r = res[k]
    print(f"{k:<15} {r['cores']:>9.3f} {r['cpu_per_m']:>12.2f} {r['series']:>8.0f} {r['rss']:>8.0f} {r['age_med']:>9.2f} {r['age_max']:>9.2f}")
# Prometheus keeps every replica: per unique sample, its cost doubles.
uniq_prom = res["prometheus"]["cpu_per_m"] * 2
print(f"\nprometheus cpu s per million unique samples (two replicas of each): {uniq_prom:.2f}")
for k in ("promtier-fast", "promtier-text"):
    print(f"ratio prometheus/{k}: cpu cores {res['prometheus']['cores'] / res[k]['cores']:.1f}x, "
          f"cpu per unique sample {uniq_prom / res[k]['cpu_per_m']:.1f}x, rss {res['prometheus']['rss'] / res[k]['rss']:.1f}x")
for k in ("promtier-fast", "promtier-text"):
    sets = json.loads(get(f"http://127.0.0.1:{systems[k]}/api/v1/dedup"))["data"]
    print(f"{k}: elected " + ", ".join(f"{s['shard']}={s['elected']} ({s['failovers']} failovers)" for s in sets))
pd = {}
for k in ("promtier-fast", "promtier-text"):
    txt = get(f"http://127.0.0.1:{systems[k]}/metrics")
    s = [l for l in txt.splitlines() if l.startswith("promtier_federation_pull_duration_seconds_sum")]
    c = [l for l in txt.splitlines() if l.startswith("promtier_federation_pull_duration_seconds_count")]
    tot = sum(float(l.rsplit(" ", 1)[1]) for l in s); n = sum(float(l.rsplit(" ", 1)[1]) for l in c)
    pd[k] = tot / n if n else float("nan")
txt = get(f"http://127.0.0.1:{prom}/api/v1/query?query=avg(scrape_duration_seconds%7Bjob%3D~%22federate.*%22%7D)")
pdp = float(json.loads(txt)["data"]["result"][0]["value"][1])
print(f"pull duration per leaf (mean): prometheus {pdp:.3f}s, promtier-fast {pd['promtier-fast']:.3f}s (elected pulls and probes), promtier-text {pd['promtier-text']:.3f}s")
PY
