#!/usr/bin/env bash
# Rebuilds vendor/ from the published Pingora crates plus vendor/patches/*.patch, so that every
# line we carry on top of Pingora is in a numbered, reviewed patch file.
#
#   vendor/sync.sh check        rebuild in a temp dir; fail if the committed tree differs (CI)
#   vendor/sync.sh write        replace the vendored crates with the rebuilt ones
#   vendor/sync.sh new NAME     save edits made in vendor/<crate>/ as the next patch, NNNN-NAME.patch
#
# Moving to a new Pingora: bump VERSION and the checksums, run `write`, fix the patches that no
# longer apply (or drop the ones upstream took), then `check`.
set -euo pipefail
cd "$(dirname "$0")"

VERSION=0.9.1
# sha256 of each published .crate, as in the crates.io index (and Cargo.lock before patching).
declare -A SHA256=(
  [pingora-core]=a535f47f65fdcb003f9e1df04cd18e614c128dfe9388acce3f211ae38ac14d68
  [pingora-proxy]=8e3d5670490740405ecc8c6f75c3fcbce4d24f7adaffb355ca44550e7918e358
)
CRATES=(pingora-core pingora-proxy)

die() { echo "vendor/sync.sh: $*" >&2; exit 1; }

# The published .crate: from cargo's download cache when present, else from crates.io.
fetch_crate() {
  local name=$1 file="$name-$VERSION.crate" out=$2 cached
  cached=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$file" 2>/dev/null | head -n1 || true)
  if [ -n "$cached" ]; then
    cp "$cached" "$out"
  else
    local url="https://static.crates.io/crates/$name/$file"
    if command -v curl >/dev/null; then
      curl -fsSL --retry 3 -o "$out" "$url" || die "cannot download $file"
    else
      python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
        "$url" "$out" || die "cannot download $file"
    fi
  fi
  echo "${SHA256[$name]}  $out" | sha256sum -c --quiet - || die "$file: checksum mismatch"
}

# Pristine crates, then the patches in order, into $1. With $2 set, stop before patch $2.
rebuild() {
  local dest=$1 stop=${2:-} name p
  mkdir -p "$dest"
  for name in "${CRATES[@]}"; do
    fetch_crate "$name" "$dest/$name.crate"
    tar -xzf "$dest/$name.crate" -C "$dest"
    rm "$dest/$name.crate"
    mv "$dest/$name-$VERSION" "$dest/$name"
  done
  for p in patches/*.patch; do
    [ -e "$p" ] || continue
    [ -n "$stop" ] && [ "$(basename "$p")" = "$stop" ] && break
    patch -p1 -s --fuzz=0 --no-backup-if-mismatch -d "$dest" <"$p" || die "$p does not apply"
  done
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case "${1:-check}" in
  check)
    rebuild "$tmp/tree"
    status=0
    for name in "${CRATES[@]}"; do
      diff -r "$tmp/tree/$name" "$name" >"$tmp/out" || { cat "$tmp/out"; status=1; }
    done
    [ $status = 0 ] || die "vendor/ differs from Pingora $VERSION plus vendor/patches (see above)"
    echo "vendor/: ${CRATES[*]} $VERSION plus $( (ls patches/*.patch 2>/dev/null || true) | wc -l) patches, identical"
    ;;
  write)
    rebuild "$tmp/tree"
    for name in "${CRATES[@]}"; do
      rm -rf "$name"
      cp -a "$tmp/tree/$name" "$name"
    done
    echo "vendor/: rebuilt ${CRATES[*]}"
    ;;
  new)
    [ -n "${2:-}" ] || die "usage: sync.sh new NAME"
    last=$( (ls patches/*.patch 2>/dev/null || true) | sed -n 's#patches/\([0-9]*\)-.*#\1#p' | sort -n | tail -n1)
    num=$(printf '%04d' $((10#${last:-0} + 1)))
    out="patches/$num-$2.patch"
    rebuild "$tmp/tree"
    mkdir -p "$tmp/a" "$tmp/b"
    for name in "${CRATES[@]}"; do
      cp -a "$tmp/tree/$name" "$tmp/a/$name"
      cp -a "$name" "$tmp/b/$name"
    done
    mkdir -p patches
    {
      echo "What: "
      echo "Why: "
      echo "Effect: "
      echo "Upstream: "
      echo
      # Drop the timestamps diff writes, so a patch rebuilt from the same edits is identical.
      (cd "$tmp" && diff -ruN a b || true) | sed -E 's/^((---|\+\+\+) [^\t]*)\t.*/\1/'
    } >"$out"
    grep -q '^diff ' "$out" || { rm "$out"; die "no changes in vendor/ to save"; }
    echo "wrote $out: fill in its header"
    ;;
  *) die "unknown command '$1' (check | write | new NAME)" ;;
esac
