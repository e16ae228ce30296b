#!/usr/bin/env bash
# The edge image, built and run offline (no base image can be pulled here), as CI does it:
#   1. a rootfs from a built signalr-edge binary and exactly what it links (ldd), /etc/passwd
#      and /etc/group with the non-root user (65532, as distroless's nonroot), /tmp, CA
#      certificates and the example config at /etc/signalr-edge/signalr-edge.yaml;
#   2. `podman build` of docker/Containerfile.offline (FROM scratch: the Dockerfile's runtime
#      stage, same user, ports, STOPSIGNAL, HEALTHCHECK, entrypoint);
#   3. the image's own binary run from the image's filesystem (`podman image mount` + chroot,
#      as the non-root user): `-t` on the example config, then the edge against the ASRS
#      emulator: `signalr-edge probe .../readyz` (the HEALTHCHECK) until ready, a negotiate
#      through it with a token from the emulated app server, SIGTERM and a clean exit.
# Needs root (mount, chroot), podman, curl, python3.
#
# usage: docker/build-offline.sh EDGE_BINARY EMULATOR_BINARY [TAG]
#   EDGE_BINARY      a built signalr-edge (release for shipping; CI passes the debug one that
#                    its test step built, to save a release build)
#   EMULATOR_BINARY  asrs-emulator, run on the host as the upstream
#   TAG              the image's name (default: localhost/signalr-edge:offline)
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { sed -n '2,19p' "$0"; exit 2; }
bin=$(readlink -f "$1")
emulator=$(readlink -f "$2")
tag=${3:-localhost/signalr-edge:offline}
[ -x "$bin" ] && [ -x "$emulator" ] || { echo "build-offline: $1 or $2 is not an executable" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "build-offline: run as root (podman image mount, chroot)" >&2; exit 2; }

say() { echo "build-offline: $*" >&2; }
work=$(mktemp -d /tmp/signalr-edge-image.XXXXXX)
pids=()
mnt=
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$mnt" ] && podman image unmount "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The rootfs.
root=$work/ctx/rootfs
install -D -m 0755 "$bin" "$root/usr/local/bin/signalr-edge"
# Every library the binary links, and the dynamic loader, at their own paths.
libs=$(ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\//{print $1}')
for lib in $libs; do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
say "linked: $(echo $libs | tr '\n' ' ')"
install -D -m 0644 conf/signalr-edge.yaml "$root/etc/signalr-edge/signalr-edge.yaml"
[ -f /etc/ssl/certs/ca-certificates.crt ] &&
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
install -d -m 1777 "$root/tmp"
install -d -o 65532 -g 65532 "$root/home/nonroot"
cp docker/Containerfile.offline "$work/ctx/Containerfile"

# 2. The image. (HEALTHCHECK is kept in the docker format only.)
podman build --quiet --format docker -t "$tag" -f "$work/ctx/Containerfile" "$work/ctx" >/dev/null
say "built $tag: $(podman image inspect "$tag" --format '{{.Size}}') bytes, user $(podman image inspect "$tag" --format '{{.Config.User}}'), healthcheck: $(podman image inspect "$tag" --format '{{.Config.Healthcheck.Test}}')"

# 3. Its binary, from its filesystem, as its user.
mnt=$(podman image mount "$tag")
in_image() { chroot --userspec=65532:65532 "$mnt" /usr/local/bin/signalr-edge "$@"; }
[ ! -e "$mnt/bin/sh" ] || { say "the image has a shell: it should hold the edge only"; exit 1; }
in_image -t -c /etc/signalr-edge/signalr-edge.yaml
in_image --version

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
edge_port=$(free_port)
admin_port=$(free_port)
run=$work/run
install -d -m 1777 "$run"
cat >"$run/emulator.yaml" <<YAML
instances:
  - { name: a, host: a.service.signalr.net, listen: "127.0.0.1:0", access_key: key-a-0123456789abcdef }
apps:
  - { listen: "127.0.0.1:0", client_endpoint: "http://127.0.0.1:$edge_port" }
YAML
"$emulator" -c "$run/emulator.yaml" >"$run/emulator.out" 2>"$run/emulator.log" &
pids+=($!)
for _ in $(seq 1 100); do grep -q '^app ' "$run/emulator.out" && break; sleep 0.1; done
instance=$(awk '/^instance a /{print $4}' "$run/emulator.out")
app=$(awk '/^app /{print $2}' "$run/emulator.out")
[ -n "$instance" ] && [ -n "$app" ] || { say "the emulator did not start"; cat "$run/emulator.log" >&2; exit 1; }

cat >"$run/edge.yaml" <<YAML
server: { pid_file: /tmp/edge.pid, upgrade_sock: /tmp/upgrade.sock, grace_period_seconds: 5 }
listeners: [{ address: "127.0.0.1:$edge_port" }]
admin: { listen: "127.0.0.1:$admin_port" }
pools:
  signalr:
    kind: signalr
    endpoints:
      - connection_string: "Endpoint=http://a.service.signalr.net;AccessKey=key-a-0123456789abcdef;Version=1.0;"
        address: "$instance"
routes: [{ path: /client/, pool: signalr }]
YAML
chmod 0644 "$run/edge.yaml"
# The run directory appears as the image's /tmp, in a mount namespace of its own.
unshare -m sh -c "mount --bind '$run' '$mnt/tmp' && exec chroot --userspec=65532:65532 '$mnt' \
  /usr/local/bin/signalr-edge -c /tmp/edge.yaml" >"$run/edge.log" 2>&1 &
edge=$!
pids+=($edge)
ready=
for _ in $(seq 1 200); do
  if in_image probe "http://127.0.0.1:$admin_port/readyz" 2>/dev/null; then ready=1; break; fi
  kill -0 "$edge" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { say "the edge never answered /readyz"; cat "$run/edge.log" >&2; exit 1; }
say "the image's edge is ready (signalr-edge probe /readyz: 0)"

# The app server signs a token for instance a and sends the client to the edge.
token=$(curl -fsS -X POST "http://$app/chat/negotiate" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
answer=$(curl -fsS -X POST -H "Authorization: Bearer $token" \
  "http://127.0.0.1:$edge_port/client/negotiate?hub=chat&negotiateVersion=1")
echo "$answer" | python3 -c 'import json,sys; n=json.load(sys.stdin); assert n["connectionId"], n' ||
  { say "negotiate through the image's edge: $answer"; exit 1; }
say "negotiate through the image's edge: $answer"

kill -TERM "$edge"
for _ in $(seq 1 100); do kill -0 "$edge" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$edge" 2>/dev/null; then say "the edge did not exit on SIGTERM"; exit 1; fi
wait "$edge" || { say "the edge exited with $?"; cat "$run/edge.log" >&2; exit 1; }
say "ok: $tag built, its binary checked the config, served a negotiate and drained on SIGTERM"
