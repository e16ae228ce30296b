#!/usr/bin/env bash
# Sizes of the edge's largest futures (Pingora's monomorphized for EdgeProxy), as rustc lays them
# out in the release profile. A future is as large as its largest state for its whole life, so
# these decide the memory of every request and connection. Needs the nightly toolchain.
#
#   benches/profile/type-sizes.sh [N]     the N largest async bodies and blocks (default 25)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/profile/type-sizes.txt
mkdir -p target/profile
# No LTO and a separate target dir: sizes do not depend on LTO, and the release build stays warm.
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_DEBUG=false \
  cargo +nightly rustc --release --lib --target-dir target/nightly -- -Zprint-type-sizes >"$out"
grep '^print-type-size type:' "$out" \
  | sed -E 's/.*type: `(.*)`: ([0-9]+) bytes.*/\2 \1/' \
  | grep -E '^[0-9]+ \{async (fn body|block)' \
  | sort -n -r | head -n "${1:-25}" | cut -c1-200
echo "(full listing: $out)"
