#!/usr/bin/env bash
# Fuzzes every target in fuzz/ (or those named after SECONDS) for SECONDS each (default 60), one
# after the other in a single process each, and fails if any target crashes, hangs or breaks one
# of its checks. Installs the nightly toolchain and cargo-fuzz first when they are missing.
#
# The committed seeds (fuzz/corpus/<target>) are read, never written: what a run discovers goes
# to fuzz/work/<target> (ignored by git) and is reused by the next run. A crashing input lands in
# fuzz/artifacts/<target>/; reproduce it with `cargo +nightly fuzz run <target> <file>`.
#
# The fuzz crate builds into $FUZZ_TARGET_DIR, else $CARGO_TARGET_DIR/fuzz, else fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
all=(exposition_text exposition_openmetrics topology promql fast_link fast_link_roundtrip wal block chunk remote_write)
targets=("${@:-${all[@]}}")

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
target_dir=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:+$CARGO_TARGET_DIR/fuzz}}
target_dir=${target_dir:-fuzz/target}

start=$(date +%s)
cargo +nightly fuzz build --target-dir "$target_dir"
echo "built the fuzz targets in $(( $(date +%s) - start )) s"

failed=()
mkdir -p fuzz/work
summary=$(printf '%-24s %8s %12s %10s %8s  %s' target seconds execs execs/s corpus result)
for t in "${targets[@]}"; do
  work=fuzz/work/$t
  log=fuzz/work/$t.log
  mkdir -p "$work" "fuzz/artifacts/$t"
  args=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="fuzz/artifacts/$t/")
  [ -f "fuzz/dict/$t.dict" ] && args+=(-dict="fuzz/dict/$t.dict")
  echo "fuzzing $t for $secs s"
  t0=$(date +%s)
  if cargo +nightly fuzz run --target-dir "$target_dir" "$t" "$work" "fuzz/corpus/$t" -- "${args[@]}" >"$log" 2>&1; then
    result=clean
  else
    result=FAILED
    failed+=("$t")
    tail -40 "$log"
  fi
  # libFuzzer's own count ("Done N runs in S second(s)"), without the build before it.
  elapsed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
  elapsed=${elapsed:-$(( $(date +%s) - t0 ))}
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  line=$(printf '%-24s %8s %12s %10s %8s  %s' "$t" "$elapsed" "${execs:-?}" "${rate:-?}" "$corpus" "$result")
  echo "$line"
  summary+=$'\n'"$line"
done
echo
echo "$summary"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/work/*.log)"
  exit 1
fi
