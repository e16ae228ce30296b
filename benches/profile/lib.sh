# Shared by the profile scripts: a lean upstream, a token, a wrk script and the proxies under
# test, configured like the load harness's peers (benches/peers/). Source it after setting
# `work` (a scratch dir) and `root` (the repository); it registers started processes in `pids`.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq ${WAIT_STEPS:-200}); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not up" >&2; exit 1; }

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
    edge) RUST_LOG=warn taskset -c 0 ${WRAP:-} "$root/target/release/signalr-edge" -c "$conf" >"$work/$kind/log" 2>&1 & ;;
    nginx) taskset -c 0 ${WRAP:-} nginx -c "$conf" -p "$work/$kind" >"$work/$kind/log" 2>&1 & ;;
    haproxy) taskset -c 0 haproxy -f "$conf" >"$work/$kind/log" 2>&1 & ;;
  esac
  echo $!
}

