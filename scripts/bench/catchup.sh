#!/usr/bin/env bash
# Catch-up benchmark, one run: promtier leaves (1 shard x 2 replicas) scrape a fleet of demo
# exporters; a promtier global (failover dedup, fast link) pulls them until it holds every series,
# is SIGKILLed, stays down for OUTAGE seconds while the leaves keep scraping, then is started again.
# Reported: seconds until it is current again (its elected source's stored cursor within
# 2 intervals of the clock), samples stored and samples/s during the catch-up, CPU seconds, the
# global's peak RSS during the catch-up (VmHWM of the restarted process) and its RSS before the
# outage, pulls, and each leaf's RSS and peak RSS before and after the catch-up.
#   scripts/bench/catchup.sh                         # 100k series per leaf, 5 s intervals, 30 min down
#   SERIES=20000 OUTAGE=120 scripts/bench/catchup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SERIES=${SERIES:-100000}        # per leaf
TARGETS=${TARGETS:-8}
INTERVAL=${INTERVAL:-5}
OUTAGE=${OUTAGE:-1800}
BASE=${BASE:-24300}
WORK=$(mktemp -d /tmp/promtier-bench-catchup.XXXXXX)
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
per_target=$((SERIES / TARGETS))
list=""
for i in $(seq 0 $((TARGETS - 1))); do list="$list${list:+, }'127.0.0.1:$((BASE + i))'"; done
LEAF=$((BASE + 20)); GLOBAL=$((BASE + 30))
cat > "$WORK/t.yaml" <<YAML
cluster: bench
defaults: {scrape_interval: ${INTERVAL}s, scrape_timeout: $((INTERVAL - 1))s, data_dir: $WORK/data}
demo: {targets: $TARGETS, listen: '127.0.0.1:$BASE', series: $per_target}
jobs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
leaves:
  - {group: bench, jobs: [demo], replicas: 2, listen: '127.0.0.1:$LEAF'}
globals:
  - name: global
    from: [bench]
    listen: '127.0.0.1:$GLOBAL'
    federate: {interval: ${INTERVAL}s, timeout: $((INTERVAL - 1))s}
    dedup: {mode: failover, failover_timeout: 30s}
YAML
"$BIN" check "$WORK/t.yaml" >/dev/null
"$BIN" up "$WORK/t.yaml" > "$WORK/up.log" 2>&1 &
PIDS+=($!)
python3 - "$WORK" "$BIN" "$GLOBAL" "$SERIES" "$INTERVAL" "$OUTAGE" "$LEAF" <<'PY'
import os, re, signal, subprocess, sys, time, urllib.request
work, binary, gport, series, interval, outage, lport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
CLK = os.sysconf("SC_CLK_TCK"); PAGE = os.sysconf("SC_PAGE_SIZE")
def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()
def metric(name, labels=""):
    tot, found = 0.0, False
    for l in get(f"http://127.0.0.1:{gport}/metrics").splitlines():
        if l.startswith("#"):
            continue
        s = l.rsplit(" ", 1)[0]
        if (s == name or s.startswith(name + "{")) and labels in l:
            tot += float(l.rsplit(" ", 1)[1]); found = True
    return tot if found else None
def pid_listening(port):
    out = os.popen(f"ss -ltnpH 'sport = :{port}'").read()
    m = re.search(r"pid=(\d+)", out)
    return int(m.group(1)) if m else None
def cpu(pid):
    st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / CLK
def status(pid, key):
    for l in open(f"/proc/{pid}/status"):
        if l.startswith(key + ":"):
            return int(l.split()[1]) * 1024
def wait(what, cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception:
            pass
        time.sleep(1)
    sys.exit(f"timed out waiting for {what}")
wait("the global to hold every series", lambda: (metric("promtier_tsdb_head_series") or 0) >= series * 0.95, 600)
time.sleep(3 * interval)
pid = pid_listening(gport)
rss_before = status(pid, "VmRSS")
print(f"global holds {metric('promtier_tsdb_head_series'):.0f} series, RSS {rss_before / 2**20:.0f} MiB; killing it for {outage} s", flush=True)
os.kill(pid, signal.SIGKILL)
time.sleep(outage)
leaves = [pid_listening(lport), pid_listening(lport + 1)]
leaf_before = [(status(p, "VmRSS"), status(p, "VmHWM")) for p in leaves]
log = open(f"{work}/global.log", "w")
p = subprocess.Popen([binary, "global", "--topology", f"{work}/t.yaml", "--node", "global-a"], stdout=log, stderr=log)
t0 = time.time()
def behind():
    # Only the elected source has a cursor gauge that moves; take the largest set as the worst.
    vals = [float(l.rsplit(" ", 1)[1]) for l in get(f"http://127.0.0.1:{gport}/metrics").splitlines()
            if l.startswith("promtier_federation_behind_seconds{")]
    stored = metric("promtier_federation_samples_total") or 0
    return vals, stored
def current_strict():
    vals, stored = behind()
    elected = [v for v in vals if v > 0]
    return stored > series * outage / interval * 0.5 and elected and min(elected) <= 2 * interval + 1
wait("the restarted global to be current", current_strict, 3 * outage + 600)
t1 = time.time()
stored = metric("promtier_federation_samples_total")
cpu_s = cpu(p.pid)
peak = status(p.pid, "VmHWM")
pages = metric("promtier_federation_pulls_total")
print(f"catch-up: {t1 - t0:.1f} s to be current after a {outage} s outage of {series} series at {interval} s;"
      f" {stored:.0f} samples stored ({stored / (t1 - t0):.0f}/s), {cpu_s:.1f} CPU s ({cpu_s / (stored / 1e6):.2f} s per M),"
      f" peak RSS {peak / 2**20:.0f} MiB (before the outage {rss_before / 2**20:.0f} MiB), {pages:.0f} pulls (pages and probes)")
for i, lp in enumerate(leaves):
    rss0, hwm0 = leaf_before[i]
    print(f"leaf {'ab'[i]}: RSS {rss0 / 2**20:.0f} MiB before the catch-up, {status(lp, 'VmRSS') / 2**20:.0f} MiB after;"
          f" peak since start {hwm0 / 2**20:.0f} MiB before, {status(lp, 'VmHWM') / 2**20:.0f} MiB after")
p.send_signal(signal.SIGTERM)
p.wait(timeout=30)
for l in open(f"{work}/global.log"):
    if "caught up" in l or "catching up" in l:
        print("  " + l.rstrip()[:220])
PY
