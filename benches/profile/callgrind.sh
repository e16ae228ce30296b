#!/usr/bin/env bash
# Instructions per proxied keep-alive negotiate, counted by callgrind: repeatable to a few
# hundred instructions whatever else the machine does, unlike time. (Callgrind counts each byte
# of a large memcpy as an instruction and no kernel work: read it beside negotiate.sh's perf
# profile, not instead of it.)
#
#   benches/profile/callgrind.sh [edge|nginx]      (default: edge)
#
# Needs valgrind, wrk and nginx (the upstream), and a release build of the edge. Writes
# target/profile/callgrind-<kind>.out and callgrind-<kind>.top.txt (functions by self cost).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
out=$root/target/profile
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
source "$root/benches/profile/lib.sh"

kind=${1:-edge}
port=$(free_port)
# Instrumentation starts only after start-up and warm-up, and the counters are zeroed then.
WRAP="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.%p" \
  WAIT_STEPS=1200 start_proxy "$kind" "$port" >"$work/pid"
pid=$(cat "$work/pid")
pids+=("$pid")
WAIT_STEPS=1200 wait_port "$port"
callgrind_control -i on "$pid" >/dev/null
url="http://127.0.0.1:$port"
wrk -t1 -c10 -d2s -s "$work/negotiate.lua" "$url" >/dev/null
callgrind_control -z "$pid" >/dev/null
wrk -t1 -c10 -d6s -s "$work/negotiate.lua" "$url" >"$work/wrk.txt"
callgrind_control -d "$pid" >/dev/null
reqs=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
dump=$(ls -t "$work"/cg.* | head -n1)
cp "$dump" "$out/callgrind-$kind.out"
ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
callgrind_annotate --inclusive=no "$dump" 2>/dev/null | sed -n '1,60p' >"$out/callgrind-$kind.top.txt"
printf '%-8s %s requests, %s instructions per request\n' "$kind" "$reqs" \
  "$(python3 -c "print(f'{$ir/$reqs:,.0f}')")" | tee -a "$out/callgrind-summary.txt"
