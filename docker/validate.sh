#!/usr/bin/env bash
# Validates the deployment files offline, as CI does:
#   - docker/k8s/*.yaml against the Kubernetes API schemas (kubernetes-validate, pinned, strict:
#     unknown fields are errors), for the Kubernetes version K8S_VERSION;
#   - docker/compose.yaml against the Compose Specification's JSON schema (vendored in
#     docker/compose-spec/, checked with python jsonschema);
#   - the ConfigMap's and compose's edge configurations with `signalr-edge -t` (the ConfigMap's
#     names the app servers' Service `signalr-app`: resolved here through an /etc/hosts of its
#     own, bind-mounted in a private mount namespace);
#   - the drain arithmetic: terminationGracePeriodSeconds covers the preStop sleep and the
#     drain deadline, compose's stop_grace_period the deadline.
# The Python tools live in a venv under ~/.cache (VALIDATE_VENV to move it).
#
# usage: docker/validate.sh EDGE_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] && [ -x "$1" ] || { sed -n '2,15p' "$0"; exit 2; }
bin=$(readlink -f "$1")
say() { echo "validate: $*" >&2; }

K8S_VERSION=${K8S_VERSION:-1.33.0}
venv=${VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/signalr-edge/validate-venv}
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    kubernetes-validate==1.33.1 jsonschema==4.23.0 pyyaml==6.0.2
fi
py=$venv/bin/python

# 1. Kubernetes (kustomization.yaml is kustomize's, not an API object).
manifests=$(ls docker/k8s/*.yaml | grep -v kustomization.yaml)
# shellcheck disable=SC2086
"$venv/bin/kubernetes-validate" --strict -k "$K8S_VERSION" $manifests
say "k8s manifests valid for Kubernetes $K8S_VERSION: $(echo $manifests | tr '\n' ' ')"

# 2. Compose, and 3./4. the configurations and the drain arithmetic.
work=$(mktemp -d /tmp/signalr-edge-validate.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$py" - "$work" <<'PY'
import json, re, sys, yaml, jsonschema
work = sys.argv[1]
schema = json.load(open("docker/compose-spec/compose-spec.json"))
compose = yaml.safe_load(open("docker/compose.yaml"))
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
for e in errors:
    print(f"docker/compose.yaml: {'/'.join(map(str, e.path))}: {e.message}", file=sys.stderr)
if errors:
    sys.exit(1)
print("validate: docker/compose.yaml valid against the Compose Specification schema", file=sys.stderr)

cm = yaml.safe_load(open("docker/k8s/configmap.yaml"))
text = cm["data"]["signalr-edge.yaml"]
open(f"{work}/configmap.yaml", "w").write(text)
edge = yaml.safe_load(text)
deadline = edge["server"]["grace_period_seconds"]
pod = yaml.safe_load(open("docker/k8s/deployment.yaml"))["spec"]["template"]["spec"]
c = pod["containers"][0]
pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
grace = pod["terminationGracePeriodSeconds"]
assert grace > pre_stop + deadline, f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain deadline {deadline}"
assert any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in pod["volumes"])
assert all("subPath" not in m for m in c["volumeMounts"]), "a subPath mount is never updated"
assert "--watch" in c["args"]
assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
stop = compose["x-edge"]["stop_grace_period"]
compose_deadline = yaml.safe_load(open("docker/compose/edge/signalr-edge.yaml"))["server"]["grace_period_seconds"]
assert int(re.fullmatch(r"(\d+)s", stop)[1]) > compose_deadline, f"stop_grace_period {stop} <= {compose_deadline}s"
print(f"validate: drain: terminationGracePeriodSeconds {grace} > preStop {pre_stop} + deadline {deadline}; compose stop_grace_period {stop} > {compose_deadline}s", file=sys.stderr)
PY

printf '127.0.0.1 localhost\n127.0.0.1 signalr-app\n' >"$work/hosts"
ns=(unshare -m)
[ "$(id -u)" = 0 ] || ns=(unshare -r -m)
check() {
  SIGNALR_EDGE_ADMIN_TOKEN=validate-token-0123456789abcdef0123 \
    "${ns[@]}" sh -c 'mount --bind "$1" /etc/hosts && exec "$2" -t -c "$3"' sh "$work/hosts" "$bin" "$1"
}
check "$work/configmap.yaml"
check docker/compose/edge/signalr-edge.yaml
say "ok"
