# Shared by the side-by-side benchmarks that run a promtier leaf beside Prometheus over the same
# demo targets (federate.sh, replay.sh); sourced, not run. Needs WORK set (a fresh directory).
# bench_start: stops every PID in PIDS and removes WORK on exit, builds the release binary (BIN).
# start_demos TARGETS SERIES BASE: TARGETS demo exporters of SERIES/TARGETS series each on ports
# BASE…; their addresses in `list`, as a YAML flow list body ('127.0.0.1:P', …).
PIDS=()
bench_cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
bench_start() {
  trap bench_cleanup EXIT
  cargo build --release --quiet
  BIN=target/release/promtier
}
start_demos() {
  local targets=$1 series=$2 base=$3 per port i
  per=$((series / targets))
  list=""
  for i in $(seq 0 $((targets - 1))); do
    port=$((base + i))
    "$BIN" demo --listen "127.0.0.1:$port" --series "$per" --seed "$i" > "$WORK/demo-$i.log" 2>&1 &
    PIDS+=($!)
    list="$list${list:+, }'127.0.0.1:$port'"
  done
}
