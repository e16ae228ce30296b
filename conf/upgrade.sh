#!/usr/bin/env bash
# Binary upgrade of a running signalr-edge daemon without dropping a connection:
#   1. check the file with the new binary (-t);
#   2. start the new binary with -u -d: it waits on server.upgrade_sock for the listening sockets;
#   3. send SIGQUIT to the old process: it hands the sockets over, accepts for 1 s more, then
#      drains (Connection: close on keep-alive, long-lived connections kept until they end or
#      server.grace_period_seconds) and exits as soon as it has no connections left;
#   4. wait until the pid file names the new process and the old one has exited.
# If the new process does not take the sockets, the old one logs it and keeps serving.
#
# Under systemd (Type=forking, PIDFile=) run this as root: it joins the service's cgroup first,
# so systemd adopts the new process through the pid file when the old main process exits.
#
# usage: upgrade.sh [-b BINARY] [-c CONFIG] [-p PIDFILE] [-a ADMIN_URL] [-T TOKEN_FILE] [-w SECONDS]
#   -b  the new binary (default: signalr-edge on PATH)
#   -c  the configuration file (default: /etc/signalr-edge/signalr-edge.yaml)
#   -p  server.pid_file of that configuration (default: /run/signalr-edge/signalr-edge.pid)
#   -a  the admin listener, to wait for the new process's /readyz (e.g. http://127.0.0.1:9901)
#   -T  the admin listener's token file (admin.token_file), when it has one
#   -w  how long to wait for the old process to drain (default: 330; make it more than
#       server.grace_period_seconds + 2)
set -euo pipefail

bin=signalr-edge
conf=/etc/signalr-edge/signalr-edge.yaml
pidfile=/run/signalr-edge/signalr-edge.pid
admin=
token_file=
wait_s=330
while getopts "b:c:p:a:T:w:h" opt; do
  case "$opt" in
    b) bin=$OPTARG ;;
    c) conf=$OPTARG ;;
    p) pidfile=$OPTARG ;;
    a) admin=$OPTARG ;;
    T) token_file=$OPTARG ;;
    w) wait_s=$OPTARG ;;
    *) sed -n '2,23p' "$0"; exit 2 ;;
  esac
done

say() { echo "upgrade: $*" >&2; }
alive() { kill -0 "$1" 2>/dev/null; }
# GET $admin$1, with the admin token when there is one: given to curl on stdin, so it never
# shows on a command line (ps).
admin_get() {
  if [ -n "$token_file" ]; then
    printf 'header = "Authorization: Bearer %s"\n' "$(tr -d ' \t\r\n' <"$token_file" | sed 's/[\\"]/\\&/g')" |
      curl -fsS --config - "$admin$1"
  else
    curl -fsS "$admin$1"
  fi
}

old=$(cat "$pidfile" 2>/dev/null || true)
[[ "$old" =~ ^[0-9]+$ ]] && alive "$old" || { say "no running process in $pidfile"; exit 1; }
"$bin" -t -c "$conf" >/dev/null || { say "$conf does not pass '$bin -t'; nothing changed"; exit 1; }

# Under systemd, start the new process inside the service's cgroup (cgroup v2).
cgroup=$(sed -n 's/^0:://p' "/proc/$old/cgroup" 2>/dev/null || true)
if [[ "$cgroup" == *.service && -w "/sys/fs/cgroup$cgroup/cgroup.procs" ]]; then
  echo $$ > "/sys/fs/cgroup$cgroup/cgroup.procs"
  say "joined $cgroup"
fi

# The new process watches the file (--watch) if the old one did.
watch=()
if tr '\0' '\n' <"/proc/$old/cmdline" 2>/dev/null | grep -qxE -- '--watch|-w'; then
  watch=(--watch)
fi
say "starting $bin -u -d ${watch[*]} -c $conf (old pid $old)"
"$bin" -u -d "${watch[@]}" -c "$conf" &
starter=$!
# The old process retries for a few seconds until the new one listens on upgrade_sock.
kill -QUIT "$old"
if ! wait "$starter"; then
  say "the new process did not start; the old one (pid $old) keeps serving"
  exit 1
fi

new=
for _ in $(seq 1 100); do
  new=$(cat "$pidfile" 2>/dev/null || true)
  [[ "$new" =~ ^[0-9]+$ && "$new" != "$old" ]] && alive "$new" && break
  new=
  sleep 0.1
done
[ -n "$new" ] || { say "no new pid in $pidfile"; exit 1; }
say "new process $new holds the listeners"

if [ -n "$admin" ]; then
  # Both processes answer on the admin socket for a moment: wait for the new one, ready.
  status=
  for _ in $(seq 1 100); do
    status=$(admin_get /status 2>/dev/null || true)
    [[ "$status" == *"\"pid\":$new,"* && "$status" == *'"ready":true'* ]] && break
    status=
    sleep 0.1
  done
  [ -n "$status" ] || { say "the new process is not ready on $admin"; exit 1; }
  say "new process ready: $status"
fi

start=$SECONDS
while alive "$old"; do
  if (( SECONDS - start > wait_s )); then
    say "old process $old still running after ${wait_s}s"
    exit 1
  fi
  sleep 0.2
done
say "old process $old drained and exited after $((SECONDS - start))s; done"
