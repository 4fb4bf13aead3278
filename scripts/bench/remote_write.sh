#!/usr/bin/env bash
# Side-by-side remote-write benchmark, one run on one host (docs/remote-storage.md, "Measuring").
#
# Senders: demo exporters are scraped by a promtier leaf group (1 shard x 2 replicas) that a
# promtier global pulls (failover dedup, fast link), and directly by a real Prometheus 2.42 — so
# the same series reach both senders, each once. Both remote-write to the same real
# VictoriaMetrics (external label bench_sender="promtier" / "prometheus"), with the same
# queue_config. Measured per sender:
#   - steady state (STEADY s with VictoriaMetrics up): samples sent/s, CPU, CPU s per million
#     samples sent, bytes per sample, send lag (now minus the newest acknowledged sample);
#   - VictoriaMetrics stopped for OUTAGE s: the CPU of each sender while nothing can be sent
#     (its ingest-only baseline);
#   - VictoriaMetrics started again: the drain of the backlog until the sender's newest sent
#     sample is within 2 intervals of now (the catch-up time): samples sent/s, CPU seconds,
#     samples per CPU second (whole process, and net of the ingest baseline), bytes per sample.
# Receivers (RECV_SENDER=prometheus, the default, or promtier; none skips it): that sender also
# writes to a promtier leaf's /api/v1/write and to a Prometheus with
# --web.enable-remote-write-receiver, both down from the start; the other sender and the store
# are stopped, then each receiver in turn is started and the sender drains its backlog into it:
# samples accepted per CPU second of the receiver.
#   scripts/bench/remote_write.sh                         # 100k series, 5 s intervals, 300 s down
#   OUTAGE=600 scripts/bench/remote_write.sh              # the "catch-up after 10 minutes" figure
#   SERIES=5000 TARGETS=4 WARMUP=10 STEADY=30 OUTAGE=60 scripts/bench/remote_write.sh
# Needs: cargo, prometheus and victoria-metrics (Debian packages), python3, ss. Everything binds
# 127.0.0.1; every process started here is stopped on exit; data lives in a temp dir. Honours
# CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
SERIES=${SERIES:-100000}        # in total, spread over TARGETS demo exporters
TARGETS=${TARGETS:-8}
INTERVAL=${INTERVAL:-5}         # scrape, federation (seconds)
WARMUP=${WARMUP:-30}            # after both senders are current, before the steady window
STEADY=${STEADY:-60}
OUTAGE=${OUTAGE:-300}
RECV_SENDER=${RECV_SENDER:-prometheus}
# queue_config given to both senders (promtier's defaults; Prometheus's own are 2500/200/500)
CAPACITY=${CAPACITY:-10000}
MAX_SHARDS=${MAX_SHARDS:-50}
MAX_SAMPLES_PER_SEND=${MAX_SAMPLES_PER_SEND:-2000}
BATCH_SEND_DEADLINE=${BATCH_SEND_DEADLINE:-5s}
BASE=${BASE:-24500}
# KEEP_WORK=1 keeps the temp dir (logs, data) after the run.
case $RECV_SENDER in prometheus|promtier|none) ;; *) echo "RECV_SENDER: prometheus, promtier or none" >&2; exit 2 ;; esac
WORK=$(mktemp -d /tmp/promtier-bench-rw.XXXXXX)
PIDS=()
cleanup() {
  # Processes started here and not already stopped by the measuring script, and those it started
  # and has not stopped yet (it keeps both lists in $WORK).
  local p live=()
  for p in "${PIDS[@]}"; do grep -qx "$p" "$WORK/stopped" 2>/dev/null || live+=("$p"); done
  PIDS=("${live[@]}")
  if [ -f "$WORK/pids" ]; then
    while read -r p; do PIDS+=("$p"); done < "$WORK/pids"
  fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 20); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "logs and data kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cargo build --release --quiet
TARGET_DIR=${CARGO_TARGET_DIR:-target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$PWD/$TARGET_DIR ;; esac
BIN=$TARGET_DIR/release/promtier
per_target=$((SERIES / TARGETS))
LEAF=$((BASE + 20)); GLOBAL=$((BASE + 30)); PROM=$((BASE + 31)); VM=$((BASE + 32))
SINK_LEAF=$((BASE + 40)); SINK_PROM=$((BASE + 41)); NOTHING=$((BASE + 49))
list=""
for i in $(seq 0 $((TARGETS - 1))); do
  port=$((BASE + i))
  "$BIN" demo --listen "127.0.0.1:$port" --series "$per_target" --seed "$i" > "$WORK/demo-$i.log" 2>&1 &
  PIDS+=($!)
  list="$list${list:+, }'127.0.0.1:$port'"
done
queue="{capacity: $CAPACITY, min_shards: 1, max_shards: $MAX_SHARDS, max_samples_per_send: $MAX_SAMPLES_PER_SEND, batch_send_deadline: $BATCH_SEND_DEADLINE, min_backoff: 30ms, max_backoff: 5s}"
# The receivers' endpoints, on the sender that drives them.
sinks() {
  echo "${1}- {url: 'http://127.0.0.1:$SINK_LEAF/api/v1/write', name: sink-promtier, $2queue_config: $queue}"
  echo "${1}- {url: 'http://127.0.0.1:$SINK_PROM/api/v1/write', name: sink-prometheus, $2queue_config: $queue}"
}
{
  cat <<YAML
cluster: bench
defaults: {scrape_interval: ${INTERVAL}s, scrape_timeout: $((INTERVAL - 1))s, data_dir: $WORK/data}
jobs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
leaves:
  - {group: bench, jobs: [demo], replicas: 2, listen: '127.0.0.1:$LEAF'}
globals:
  - name: global
    from: [bench]
    listen: '127.0.0.1:$GLOBAL'
    external_labels: {bench_sender: promtier}
    federate: {interval: ${INTERVAL}s, timeout: $((INTERVAL - 1))s}
    dedup: {mode: failover, failover_timeout: 30s}
    remote_write:
      - {url: 'http://127.0.0.1:$VM/api/v1/write', name: vm, queue_config: $queue}
YAML
  if [ "$RECV_SENDER" = promtier ]; then sinks "      " ""; fi
} > "$WORK/t.yaml"
"$BIN" check "$WORK/t.yaml" >/dev/null
# Prometheus gets the labels the global's series carry (cluster, shard), so both send the same
# label sets apart from bench_sender; both send metadata every minute (their default). The flush
# deadline only bounds its shutdown (1 s per blocked queue instead of a minute).
{
  cat <<YAML
global:
  scrape_interval: ${INTERVAL}s
  scrape_timeout: $((INTERVAL - 1))s
  external_labels: {bench_sender: prometheus, cluster: bench, shard: bench-0}
scrape_configs:
  - job_name: demo
    static_configs: [{targets: [$list]}]
remote_write:
  - {url: 'http://127.0.0.1:$VM/api/v1/write', name: vm, queue_config: $queue}
YAML
  if [ "$RECV_SENDER" = prometheus ]; then sinks "  " ""; fi
} > "$WORK/prometheus.yml"
# The promtier receiver: a leaf of its own cluster (a leaf group needs a job: one that scrapes a
# port nothing listens on, once a minute).
cat > "$WORK/sink.yaml" <<YAML
cluster: sink
defaults: {scrape_interval: 60s, scrape_timeout: 10s, data_dir: $WORK/sink-data}
jobs:
  - job_name: nothing
    static_configs: [{targets: ['127.0.0.1:$NOTHING']}]
leaves:
  - {group: sink, jobs: [nothing], listen: '127.0.0.1:$SINK_LEAF'}
YAML
"$BIN" check "$WORK/sink.yaml" >/dev/null
echo "global: {scrape_interval: 60s}" > "$WORK/sink-prometheus.yml"

"$BIN" up "$WORK/t.yaml" > "$WORK/up.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom" \
  --web.listen-address="127.0.0.1:$PROM" --storage.remote.flush-deadline=1s --log.level=warn \
  > "$WORK/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS+=("$PROM_PID")

python3 - "$WORK" "$BIN" "$SERIES" "$TARGETS" "$INTERVAL" "$WARMUP" "$STEADY" "$OUTAGE" "$RECV_SENDER" \
  "$GLOBAL" "$PROM" "$VM" "$SINK_LEAF" "$SINK_PROM" "$UP_PID" "$PROM_PID" \
  "$CAPACITY" "$MAX_SHARDS" "$MAX_SAMPLES_PER_SEND" "$BATCH_SEND_DEADLINE" <<'PY'
import json, math, os, re, signal, statistics, subprocess, sys, time, urllib.parse, urllib.request
a = sys.argv[1:]
work, binary = a[0], a[1]
series, targets, interval, warmup, steady, outage = (int(x) for x in a[2:8])
recv_sender = a[8]
gport, pport, vmport, sink_leaf, sink_prom, up_pid, prom_pid = (int(x) for x in a[9:16])
queue = dict(capacity=int(a[16]), max_shards=int(a[17]), max_samples_per_send=int(a[18]), batch_send_deadline=a[19])
CLK = os.sysconf("SC_CLK_TCK")

def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()

def scrape(port):
    """/metrics as (name, labels, value) triples."""
    out = []
    for l in get(f"http://127.0.0.1:{port}/metrics").splitlines():
        if not l or l.startswith("#"):
            continue
        i = min(x for x in (l.find("{"), l.find(" "), len(l)) if x >= 0)
        name, labels, rest = l[:i], "", l[i + 1:]
        if l[i:i + 1] == "{":
            labels, rest = rest.rsplit("}", 1)
        try:
            out.append((name, labels, float(rest.split()[0])))
        except (ValueError, IndexError):
            pass
    return out

def total(m, name, labels=""):
    vals = [v for n, l, v in m if n == name and labels in l]
    return sum(vals) if vals else None

LIVE = set()  # processes started here and not reaped yet: the shell's cleanup stops them
def track():
    with open(f"{work}/pids.tmp", "w") as f:
        f.write("".join(f"{p}\n" for p in LIVE))
    os.replace(f"{work}/pids.tmp", f"{work}/pids")

def started(p):
    LIVE.add(p.pid); track()
    return p

def stop(pid, timeout=30):
    """TERMs a process (KILL after timeout); one the shell started is then left alone by it."""
    if pid not in LIVE:
        with open(f"{work}/stopped", "a") as f:
            f.write(f"{pid}\n")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not alive(pid):
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)

def reap(p):
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()
    LIVE.discard(p.pid); track()

def pid_listening(port):
    m = re.search(r"pid=(\d+)", os.popen(f"ss -ltnpH 'sport = :{port}'").read())
    return int(m.group(1)) if m else None

def cpu(pid):
    st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(st[11]) + int(st[12])) / CLK

def host_cpu():
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)

ESSENTIAL = {}  # name -> pid of the processes a measurement needs; a wait ends if one exits
def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False

def wait(what, cond, timeout, every=1.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        for name, pid in ESSENTIAL.items():
            if not alive(pid):
                sys.exit(f"{name} exited while waiting for {what} (KEEP_WORK=1 keeps its log)")
        try:
            v = cond()
            if v:
                return v
        except Exception as e:
            last = e
        time.sleep(every)
    sys.exit(f"timed out waiting for {what} (last error: {last})")

def ready(port):
    try:
        get(f"http://127.0.0.1:{port}/-/ready", timeout=2)
        return True
    except Exception:
        return False

# VictoriaMetrics is started (and stopped, and started again) from here.
vm_log = open(f"{work}/vm.log", "a")
def start_vm():
    p = started(subprocess.Popen(["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vmport}",
                                  f"-storageDataPath={work}/vm", "-search.latencyOffset=1s"],
                                 stdout=vm_log, stderr=vm_log, stdin=subprocess.DEVNULL))
    return p
vm = start_vm()
ESSENTIAL.update({"promtier up": up_pid, "the Prometheus sender": prom_pid, "VictoriaMetrics": vm.pid})
wait("VictoriaMetrics", lambda: get(f"http://127.0.0.1:{vmport}/health", 2).strip() == "OK", 60, 0.2)

SENDERS = {"promtier": gport, "prometheus": pport}
Q = 'remote_name="vm"'

def sent(k, m, q):
    """Samples delivered by queue q of sender k: Prometheus 2.42 counts samples_total at every
    attempt and each failed attempt again in samples_retried_total; promtier counts samples_total
    once, when the receiver has answered."""
    s = total(m, "prometheus_remote_storage_samples_total", q) or 0
    if k == "prometheus":
        s -= total(m, "prometheus_remote_storage_samples_retried_total", q) or 0
    return s

def head_series(m):
    return total(m, "promtier_tsdb_head_series") or total(m, "prometheus_tsdb_head_series") or 0

def highest_sent(m, q):
    return total(m, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds", q) or 0

pids = {"prometheus": prom_pid}
def snap(k, q=Q):
    """Counters of sender k's queue q, its CPU and the time, at one instant."""
    m = scrape(SENDERS[k])
    return dict(t=time.time(), cpu=cpu(pids[k]), sent=sent(k, m, q),
                bytes=total(m, "prometheus_remote_storage_bytes_total", q) or 0,
                failed=total(m, "prometheus_remote_storage_samples_failed_total", q) or 0,
                dropped=total(m, "prometheus_remote_storage_samples_dropped_total", q) or 0,
                highest=highest_sent(m, q))

# 1. Both senders hold every series and are current.
def current():
    ok = True
    for k, port in SENDERS.items():
        m = scrape(port)
        ok &= head_series(m) >= series * 0.9 and time.time() - highest_sent(m, Q) <= 3 * interval
    return ok
wait("both senders to hold every series and be current", current, 600, 2)
pids["promtier"] = pid_listening(gport)
time.sleep(warmup)
held = {k: head_series(scrape(p)) for k, p in SENDERS.items()}

# 2. Steady state.
s0 = {k: snap(k) for k in SENDERS}
lags = {k: [] for k in SENDERS}
end = time.time() + steady
while time.time() < end:
    for k, port in SENDERS.items():
        lags[k].append(time.time() - highest_sent(scrape(port), Q))
    time.sleep(1)
s1 = {k: snap(k) for k in SENDERS}
vm_series = {}
for k in SENDERS:
    q = urllib.parse.quote(f'count({{bench_sender="{k}"}})')
    r = json.loads(get(f"http://127.0.0.1:{vmport}/api/v1/query?query={q}"))["data"]["result"]
    vm_series[k] = float(r[0]["value"][1]) if r else 0
# The label names a sender's series carry in the store (the same but for bench_sender's value).
names = {}
for k in SENDERS:
    q = urllib.parse.quote(f'up{{bench_sender="{k}"}}')
    r = json.loads(get(f"http://127.0.0.1:{vmport}/api/v1/series?match[]={q}"))["data"]
    names[k] = sorted(r[0]) if r else []
print(f"label names of up in VictoriaMetrics: promtier {','.join(names['promtier'])};"
      f" prometheus {','.join(names['prometheus'])}", flush=True)

# 3. The outage: the store is down, the senders only ingest (their baseline CPU).
print(f"senders hold {held['promtier']:.0f} (promtier global) and {held['prometheus']:.0f} (Prometheus) series;"
      f" VictoriaMetrics holds {vm_series['promtier']:.0f} and {vm_series['prometheus']:.0f};"
      f" stopping it for {outage} s", flush=True)
del ESSENTIAL["VictoriaMetrics"]
stop(vm.pid); reap(vm)
t_down = time.time()
skip = min(30, outage / 4)
time.sleep(skip)
b0 = {k: (time.time(), cpu(pids[k])) for k in SENDERS}
time.sleep(max(0.0, outage - skip))
b1 = {k: (time.time(), cpu(pids[k])) for k in SENDERS}
base_cores = {k: (b1[k][1] - b0[k][1]) / (b1[k][0] - b0[k][0]) for k in SENDERS}

# 4. The drain: the store is back; each sender until its newest sent sample is within 2 intervals.
d0 = {k: snap(k) for k in SENDERS}
h0 = host_cpu()
vm = start_vm()
ESSENTIAL["VictoriaMetrics"] = vm.pid
t_up = time.time()
d1 = {}
def drained():
    for k in SENDERS:
        if k not in d1:
            s = snap(k)
            if s["highest"] >= s["t"] - 2 * interval:
                d1[k] = s
    return len(d1) == len(SENDERS)
wait("both senders to catch up", drained, 3 * outage + 600, 1)
h1 = host_cpu()

def rate(x, y):
    return x / y if y else float("nan")
res = {"sender": {}, "receiver": {}}
for k in SENDERS:
    a0, a1, b_0, b_1 = s0[k], s1[k], d0[k], d1[k]
    st_sent, st_cpu, st_t = a1["sent"] - a0["sent"], a1["cpu"] - a0["cpu"], a1["t"] - a0["t"]
    dr_sent, dr_cpu, dr_t = b_1["sent"] - b_0["sent"], b_1["cpu"] - b_0["cpu"], b_1["t"] - t_up
    dr_net = dr_cpu - base_cores[k] * (b_1["t"] - b_0["t"])
    st_cores = st_cpu / st_t
    res["sender"][k] = dict(
        catchup_s=dr_t, drain_samples=dr_sent, drain_samples_per_s=rate(dr_sent, dr_t), drain_cpu_s=dr_cpu,
        drain_samples_per_cpu_s=rate(dr_sent, dr_cpu), drain_samples_per_net_cpu_s=rate(dr_sent, dr_net),
        drain_bytes_per_sample=rate(b_1["bytes"] - b_0["bytes"], dr_sent),
        steady_samples_per_s=st_sent / st_t, steady_lag_median_s=statistics.median(lags[k]),
        steady_lag_max_s=max(lags[k]), steady_bytes_per_sample=rate(a1["bytes"] - a0["bytes"], st_sent),
        steady_cores=st_cores, steady_cpu_s_per_m=rate(st_cpu, st_sent / 1e6),
        ingest_only_cores=base_cores[k],
        steady_net_cpu_s_per_m=rate(st_cores - base_cores[k], st_sent / st_t / 1e6),
        failed=b_1["failed"] - a0["failed"], dropped=b_1["dropped"] - a0["dropped"], series=held[k],
        vm_series=vm_series[k])
res["host_busy_cores_drain"] = (h1[0] - h0[0]) / (h1[1] - h0[1]) * os.cpu_count()

# 5. Receivers: one sender drains its backlog into each in turn, everything else stopped.
if recv_sender != "none":
    other = "prometheus" if recv_sender == "promtier" else "promtier"
    print(f"receivers: {recv_sender} drains into each; stopping {other} and VictoriaMetrics", flush=True)
    del ESSENTIAL["promtier up" if other == "promtier" else "the Prometheus sender"], ESSENTIAL["VictoriaMetrics"]
    stop(up_pid if other == "promtier" else prom_pid)
    stop(vm.pid); reap(vm)
    time.sleep(2 * interval)
    dport = SENDERS[recv_sender]
    def receiver(k, cmd, port, accepted):
        log = open(f"{work}/sink-{k}.log", "w")
        p = started(subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        ESSENTIAL[f"the {k} receiver"] = p.pid
        wait(f"the {k} receiver", lambda: ready(port), 120, 0.2)
        q = f'remote_name="sink-{k}"'
        def counters():
            m = scrape(port)
            return time.time(), cpu(p.pid), accepted(m)
        r0, s0_ = counters(), snap(recv_sender, q)
        def caught():
            s = snap(recv_sender, q)
            return s if s["highest"] >= s["t"] - 2 * interval else None
        s1_ = wait(f"{recv_sender} to drain into the {k} receiver", caught, 3600, 1)
        r1 = counters()
        del ESSENTIAL[f"the {k} receiver"]
        stop(p.pid); reap(p)
        n, c = r1[2] - r0[2], r1[1] - r0[1]
        res["receiver"][k] = dict(accepted=n, cpu_s=c, seconds=r1[0] - r0[0], samples_per_s=rate(n, r1[0] - r0[0]),
                                  samples_per_cpu_s=rate(n, c), refused=s1_["failed"] - s0_["failed"])
    receiver("promtier", [binary, "leaf", "--topology", f"{work}/sink.yaml", "--node", "sink-0-a"], sink_leaf,
             lambda m: total(m, "promtier_remote_write_received_samples_total") or 0)
    receiver("prometheus", ["prometheus", f"--config.file={work}/sink-prometheus.yml", f"--storage.tsdb.path={work}/sink-prom",
                            f"--web.listen-address=127.0.0.1:{sink_prom}", "--web.enable-remote-write-receiver",
                            "--log.level=warn"], sink_prom,
             lambda m: total(m, "prometheus_tsdb_head_samples_appended_total") or 0)

# 6. Report.
def fmt(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    a = abs(v)
    return f"{v:.0f}" if a >= 100 else f"{v:.2f}" if a >= 1 else f"{v:.3f}"
rows = [
    ("sender", None, None, None),
    (f"catch-up after {outage} s outage (s)", "catchup_s", "lower", "sender"),
    ("drain: samples sent/s", "drain_samples_per_s", "higher", "sender"),
    ("drain: CPU s", "drain_cpu_s", "lower", "sender"),
    ("drain: samples per CPU s (process)", "drain_samples_per_cpu_s", "higher", "sender"),
    ("drain: samples per CPU s (net of ingest)", "drain_samples_per_net_cpu_s", "higher", "sender"),
    ("drain: bytes per sample", "drain_bytes_per_sample", "lower", "sender"),
    ("steady: samples sent/s", "steady_samples_per_s", None, "sender"),
    ("steady: bytes per sample", "steady_bytes_per_sample", "lower", "sender"),
    ("steady: send lag median (s)", "steady_lag_median_s", "lower", "sender"),
    ("steady: CPU cores (process)", "steady_cores", "lower", "sender"),
    ("ingest only, store down: CPU cores", "ingest_only_cores", "lower", "sender"),
    ("steady: CPU s per M sent (process)", "steady_cpu_s_per_m", "lower", "sender"),
    ("steady: CPU s per M sent (net of ingest)", "steady_net_cpu_s_per_m", "lower", "sender"),
]
if res["receiver"]:
    rows += [
        (f"receiver (fed by {recv_sender})", None, None, None),
        ("samples accepted", "accepted", None, "receiver"),
        ("samples accepted/s", "samples_per_s", "higher", "receiver"),
        ("CPU s", "cpu_s", "lower", "receiver"),
        ("samples accepted per CPU s", "samples_per_cpu_s", "higher", "receiver"),
        ("samples refused", "refused", "lower", "receiver"),
    ]
print(f"\n{'':<42} {'promtier':>12} {'prometheus':>12} {'ratio':>7}  (promtier/prometheus)")
for label, key, better, part in rows:
    if key is None:
        print(label)
        continue
    p, q = res[part]["promtier"][key], res[part]["prometheus"][key]
    ratio = p / q if q else float("nan")
    print(f"  {label:<40} {fmt(p):>12} {fmt(q):>12} {fmt(ratio):>7}  {better + ' is better' if better else ''}")
print(f"host: {res['host_busy_cores_drain']:.2f} of {os.cpu_count()} cores busy during the drain;"
      f" refused/dropped during the run: promtier {res['sender']['promtier']['failed']:.0f}/{res['sender']['promtier']['dropped']:.0f},"
      f" prometheus {res['sender']['prometheus']['failed']:.0f}/{res['sender']['prometheus']['dropped']:.0f}")
res.update(bench="remote_write", series=series, targets=targets, interval=interval, warmup=warmup, steady=steady,
           outage=outage, recv_sender=recv_sender, queue_config=queue, cores=os.cpu_count())
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else round(v, 4)
    return v
print(json.dumps(clean(res), sort_keys=True))
PY
