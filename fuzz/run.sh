#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for N seconds each (default 600), one after the other on
# one core (-jobs=1 -workers=1), then prints a summary: executions, executions per second, new
# coverage units, and crashes. Exits 1 when a target crashed (the input is in
# fuzz/artifacts/<target>/; replay it with `cargo +nightly fuzz run <target> <file>` from fuzz/).
#
#   fuzz/run.sh [seconds] [target...]        (FUZZ_TARGET_DIR: where to build; fuzz/target)
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). The committed
# seeds in fuzz/corpus/<target>/ are read only; what a run learns goes to
# fuzz/target/corpus/<target>/ and is kept for the next run.
set -euo pipefail
cd "$(dirname "$0")"
# The fuzz builds (sanitizer flags, their own workspace) keep their own target directory,
# whatever the edge's builds use: fuzz/target, or FUZZ_TARGET_DIR (a cache that outlives a
# fresh clone, as ci.sh uses).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"

seconds=${1:-600}
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

mkdir -p target/logs
build_start=$(date +%s)
cargo +nightly fuzz build >target/logs/build.log 2>&1 || {
  tail -n 40 target/logs/build.log >&2
  exit 1
}
build_s=$(( $(date +%s) - build_start ))

summary=()
failed=0
for t in "${targets[@]}"; do
  mkdir -p "target/corpus/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  start=$(date +%s)
  # libFuzzer writes a job's output to fuzz-<job>.log in the working directory.
  rm -f fuzz-0.log
  rc=0
  cargo +nightly fuzz run "$t" "target/corpus/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -jobs=1 -workers=1 -timeout=10 -print_final_stats=1 \
    ${FUZZ_SEED:+-seed="$FUZZ_SEED"} \
    >/dev/null 2>&1 || rc=$?
  wall=$(( $(date +%s) - start ))
  log="target/logs/$t.log"
  if [ -f fuzz-0.log ]; then mv fuzz-0.log "$log"; else : >"$log"; fi
  stat_of() { grep -o "stat::$1: *[0-9]*" "$log" | tail -1 | grep -o '[0-9]*$' || echo "-"; }
  execs=$(stat_of number_of_executed_units)
  rate=$(stat_of average_exec_per_sec)
  units=$(stat_of new_units_added)
  rss=$(stat_of peak_rss_mb)
  corpus=$(find "target/corpus/$t" -type f | wc -l)
  crashes=$(( $(find "artifacts/$t" -type f | wc -l) - before ))
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ] || grep -q "ERROR: libFuzzer" "$log"; then
    failed=$((failed + 1))
    echo "== $t: FAILED (exit $rc, $crashes new artifact(s)); last lines of $log:" >&2
    tail -n 30 "$log" >&2
  fi
  summary+=("$(printf '%-10s %6ss %12s %10s %8s %8s %7s %8s' \
    "$t" "$wall" "$execs" "$rate" "$units" "$corpus" "$rss" "$crashes")")
done

echo "fuzz/run.sh: ${#targets[@]} target(s), ${seconds}s each, after a ${build_s}s build"
printf '%-10s %7s %12s %10s %8s %8s %7s %8s\n' \
  target wall execs execs/s new_units corpus rss_mb crashes
printf '%s\n' "${summary[@]}"
echo "fuzz: $(( ${#targets[@]} - failed )) passed, $failed failed"
[ "$failed" = 0 ]
