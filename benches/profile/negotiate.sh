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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not up" >&2; exit 1; }

# The upstream: nginx answering negotiates for Host bench.service.signalr.net on 3 ports, core 1.
up=($(free_port) $(free_port) $(free_port))
mkdir -p "$work/up"
cat >"$work/up/nginx.conf" <<CONF
daemon off; master_process off; worker_processes 1; pid $work/up/nginx.pid;
error_log $work/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/up; proxy_temp_path $work/up; fastcgi_temp_path $work/up;
  uwsgi_temp_path $work/up; scgi_temp_path $work/up;
  server {
    listen 127.0.0.1:${up[0]}; listen 127.0.0.1:${up[1]}; listen 127.0.0.1:${up[2]};
    server_name bench.service.signalr.net;
    location /client/negotiate { default_type application/json;
      return 200 '{"negotiateVersion":1,"connectionId":"AAAAAAAAAAAAAAAAAAAAAA","connectionToken":"BBBBBBBBBBBBBBBBBBBBBB","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}'; }
  }
  server { listen 127.0.0.1:${up[0]} default_server; return 404; }
}
CONF
taskset -c 1 nginx -c "$work/up/nginx.conf" -p "$work/up" 2>/dev/null &
pids+=($!)
wait_port "${up[0]}"

# A token of the SDK's shape (the edge decodes it; nobody verifies it here).
token=$(python3 - <<'PY'
import base64, hmac, hashlib, json, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"aud": "https://other.service.signalr.net/client/?hub=chat", "exp": int(time.time()) + 3600, "nameid": "user-1"}).encode())
s = b(hmac.new(b"an-access-key-of-the-usual-length-0123456789abcdef", f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
PY
)
cat >"$work/negotiate.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/client/negotiate?hub=chat&negotiateVersion=1&asrs_request_id=" .. n,
    { ["Host"] = "edge.example", ["Authorization"] = "Bearer $token", ["Content-Length"] = "0" })
end
LUA

start_proxy() { # kind port -> pid
  local kind=$1 port=$2 conf
  mkdir -p "$work/$kind"
  case $kind in
    edge) conf="$work/$kind/edge.yaml"; src=benches/peers/signalr-edge.yaml ;;
    nginx) conf="$work/$kind/nginx.conf"; src=benches/peers/nginx.conf ;;
    haproxy) conf="$work/$kind/haproxy.cfg"; src=benches/peers/haproxy.cfg ;;
  esac
  sed -e "s#{{DIR}}#$work/$kind#g" -e "s#{{LISTEN}}#127.0.0.1:$port#g" \
      -e "s#{{UPSTREAM_1}}#127.0.0.1:${up[0]}#g" -e "s#{{UPSTREAM_2}}#127.0.0.1:${up[1]}#g" \
      -e "s#{{UPSTREAM_3}}#127.0.0.1:${up[2]}#g" "$src" >"$conf"
  case $kind in
    edge) RUST_LOG=warn taskset -c 0 "$root/target/release/signalr-edge" -c "$conf" >"$work/$kind/log" 2>&1 & ;;
    nginx) taskset -c 0 nginx -c "$conf" -p "$work/$kind" >"$work/$kind/log" 2>&1 & ;;
    haproxy) taskset -c 0 haproxy -f "$conf" >"$work/$kind/log" 2>&1 & ;;
  esac
  echo $!
}

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
    calls=$(awk '/^-+ / {n++} n==1 && /total/ {print $4}' "$out/negotiate-$k.strace" 2>/dev/null || echo 0)
    calls=${calls:-$(awk '/total/ {print $4}' "$out/negotiate-$k.strace")}
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
