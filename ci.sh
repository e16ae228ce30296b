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
