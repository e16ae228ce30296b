#!/usr/bin/env bash
# Where a proxy spends its CPU on keep-alive negotiates: CPU µs per request, syscalls per
# request (strace -c) and a cpu-clock profile (perf), for signalr-edge, nginx or HAProxy under
# the same load, side by side. Loopback only, bounded: wrk runs for $SECONDS_RUN seconds.
#
#   benches/profile/negotiate.sh [edge|nginx|haproxy ...]   (default: edge nginx)
#
# Needs wrk, nginx (also the upstream here), perf and strace (apt: wrk nginx linux-perf strace),
# and a release build of the edge (`cargo build --release`). Writes target/profile/negotiate-*.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=$root/target/profile
mkdir -p "$out"
SECONDS_RUN=${SECONDS_RUN:-8}
CONNS=${CONNS:-50}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

source "$root/benches/profile/lib.sh"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for kind in "${@:-edge nginx}"; do
  for k in $kind; do
    port=$(free_port)
    pid=$(start_proxy "$k" "$port")
    pids+=("$pid")
    wait_port "$port"
    url="http://127.0.0.1:$port"
    taskset -c 1 wrk -t1 -c"$CONNS" -d1s -s "$work/negotiate.lua" "$url" >/dev/null  # warm-up
    t0=$(cpu_ticks "$pid")
    taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECONDS_RUN}s" -s "$work/negotiate.lua" "$url" >"$work/wrk.txt"
    t1=$(cpu_ticks "$pid")
    reqs=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    hz=$(getconf CLK_TCK)
    cpu_us=$(python3 -c "print(f'{($t1-$t0)/$hz*1e6/$reqs:.1f}')")
    # Syscalls per request: strace attached for a bounded run of its own.
    timeout -s INT 4 strace -c -f -p "$pid" -o "$out/negotiate-$k.strace" 2>/dev/null &
    st=$!
    sleep 0.5
    taskset -c 1 wrk -t1 -c"$CONNS" -d2s -s "$work/negotiate.lua" "$url" >"$work/wrk-strace.txt"
    wait $st || true
    sreqs=$(awk '/requests in/ {print $1}' "$work/wrk-strace.txt")
    # strace -c's last line: "100.00 seconds usecs/call CALLS [errors] total".
    calls=$(awk '$NF == "total" {print $4}' "$out/negotiate-$k.strace")
    # cpu-clock profile (hardware counters are not available on these machines).
    perf record -q -e cpu-clock -F 4999 -g -p "$pid" -o "$out/negotiate-$k.perf" -- sleep 3 >/dev/null 2>&1 &
    pr=$!
    taskset -c 1 wrk -t1 -c"$CONNS" -d3s -s "$work/negotiate.lua" "$url" >/dev/null
    wait $pr || true
    perf report -i "$out/negotiate-$k.perf" --no-children --sort dso,symbol --stdio 2>/dev/null \
      | grep -v '^#' | grep -E '^ +[0-9]' | head -40 >"$out/negotiate-$k.top.txt" || true
    kernel=$(perf report -i "$out/negotiate-$k.perf" --no-children --sort dso --stdio 2>/dev/null \
      | awk '/\[kernel/ {gsub("%","",$1); s+=$1} END {printf "%.0f", s}')
    printf '%-8s %8s req/s  %6s µs CPU/req  %5s syscalls/req  %3s%% kernel\n' "$k" \
      "$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$work/wrk.txt")" "$cpu_us" \
      "$(python3 -c "print(f'{$calls/max($sreqs,1):.2f}')")" "$kernel" | tee -a "$out/negotiate-summary.txt"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
echo "profiles: $out/negotiate-<kind>.{top.txt,strace,perf}"
