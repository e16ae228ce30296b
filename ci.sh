#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine: installs what it needs, then
# checks formatting and lints, and runs unit and integration tests.
set -euo pipefail
cd "$(dirname "$0")"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Pingora builds zlib-ng with cmake.
if ! command -v cmake >/dev/null 2>&1; then
  as_root apt-get install -y cmake >/dev/null 2>&1 || { as_root apt-get update >/dev/null && as_root apt-get install -y cmake; }
fi

# The official SignalR client for the end-to-end tests, pinned by tests/e2e/package-lock.json.
(cd tests/e2e && npm ci --no-audit --no-fund)

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
