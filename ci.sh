#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs what it needs, then
# checks formatting and lints, and runs unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# chromium: the demo page's browser test. nginx and haproxy: the load harness's smoke pass runs
# its peer configs. (No cmake: vendor/ patch 0001 builds Pingora's flate2 on its Rust backend.)
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { as_root apt-get update >/dev/null && as_root apt-get install -y --no-install-recommends "${need[@]}"; }
fi
export SIGNALR_EDGE_REQUIRE_BROWSER=1

# The official SignalR client for the end-to-end tests, pinned by tests/e2e/package-lock.json.
(cd tests/e2e && npm ci --no-audit --no-fund)

# vendor/ must be exactly Pingora's published crates plus our numbered patches.
vendor/sync.sh check

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked

# ---- Container image and deployment files (README: Container) ----
# The image, built offline (no base image can be pulled here): a FROM scratch image from the
# debug binaries the tests just built (a release build would cost minutes more; the Dockerfile
# builds the release one), run from its own filesystem: -t, /readyz, a negotiate through it
# against the ASRS emulator, SIGTERM. Needs root and podman.
bins=${CARGO_TARGET_DIR:-target}/debug
if ! command -v podman >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y --no-install-recommends podman >/dev/null 2>&1 \
    || { as_root apt-get update >/dev/null && as_root apt-get install -y --no-install-recommends podman; }
fi
as_root docker/build-offline.sh "$bins/signalr-edge" "$bins/asrs-emulator"
# docker/k8s against the Kubernetes schemas, docker/compose.yaml against the Compose schema,
# their edge configurations through `signalr-edge -t`.
docker/validate.sh "$bins/signalr-edge"
# ---- end: container image and deployment files ----

# Fuzzing. The corpus replay (tests/fuzz_replay.rs) ran above on stable; here every cargo-fuzz
# target of fuzz/ runs FUZZ_SECONDS (20; 0 skips) more on one core, where a nightly toolchain
# exists (the machine's own toolchain is stable; libFuzzer needs nightly's sanitizer flags).
# The sanitizer build is kept in a cache outside the clone: a fresh one takes minutes.
if [ "${FUZZ_SECONDS:-20}" = 0 ]; then
  echo "ci.sh: SKIPPING the cargo-fuzz run: FUZZ_SECONDS=0"
elif cargo +nightly --version >/dev/null 2>&1; then
  if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "ci.sh: installing cargo-fuzz for the nightly toolchain"
    cargo install cargo-fuzz --locked
  fi
  # A fixed seed: the same mutations on every CI run, so a red run is a finding that repeats,
  # not luck (fuzz/run.sh without FUZZ_SEED explores anew each time).
  FUZZ_SEED="${FUZZ_SEED:-1}" \
  FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/signalr-edge/fuzz-target}" \
    fuzz/run.sh "${FUZZ_SECONDS:-20}"
else
  echo "ci.sh: SKIPPING the cargo-fuzz run: no nightly toolchain here (the corpus replay ran in cargo test)"
fi
