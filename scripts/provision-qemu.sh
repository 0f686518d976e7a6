#!/usr/bin/env bash
# Provisions a QEMU 10.0.2 that loads plugins (Debian's qemu-user does not),
# with QEMU's own plugins kept beside it: they are the tests' oracles and the
# benchmarks' peers.
#
# Result: $QTRACE_QEMU_DIR/{bin/qemu-*,include/qemu-plugin.h,plugins/*.so,VERSION}
# Default QTRACE_QEMU_DIR: ${QTRACE_CACHE:-$HOME/.cache/qtrace}/qemu-10.0.2.
# If QTRACE_QEMU_DIR already holds a plugin-capable QEMU, nothing is done.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/env.sh
source "$here/env.sh"

version=10.0.2
tarball=qemu_${version}+ds.orig.tar.xz
sha256=0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1
prefix=$QTRACE_QEMU_DIR
stamp=$prefix/.complete

if [ -f "$stamp" ]; then
  exit 0
fi
if [ -x "$prefix/bin/qemu-x86_64" ] && [ -f "$prefix/include/qemu-plugin.h" ]; then
  # Someone else's QEMU, pointed to by QTRACE_QEMU_DIR: use it as it is.
  exit 0
fi

log() { printf 'provision-qemu: %s\n' "$*" >&2; }

src_dir=$QTRACE_CACHE/src
mkdir -p "$src_dir"
cd "$src_dir"

if [ ! -f "$tarball" ] || ! echo "$sha256  $tarball" | sha256sum -c --quiet - 2>/dev/null; then
  log "fetching the QEMU $version source from Debian's archive (bookworm-backports)"
  list=/etc/apt/sources.list.d/qtrace-bookworm-backports-src.list
  if [ ! -f "$list" ]; then
    echo "deb-src http://deb.debian.org/debian bookworm-backports main" >"$list"
    apt-get update -qq
  fi
  rm -f "$tarball"
  apt-get source --download-only --tar-only qemu/bookworm-backports >/dev/null 2>&1
  echo "$sha256  $tarball" | sha256sum -c --quiet - || {
    log "checksum mismatch for $src_dir/$tarball"
    exit 1
  }
fi

build_root=$QTRACE_CACHE/build/qemu-$version
if [ ! -f "$build_root/.unpacked" ]; then
  log "unpacking"
  rm -rf "$build_root"
  mkdir -p "$build_root"
  tar -xJf "$src_dir/$tarball" -C "$build_root" --strip-components=1
  touch "$build_root/.unpacked"
fi

targets=x86_64-linux-user,aarch64-linux-user,riscv64-linux-user
cd "$build_root"
mkdir -p build
cd build
if [ ! -f build.ninja ]; then
  log "configuring ($targets)"
  ../configure --prefix="$prefix" --python="$QTRACE_PY/bin/python3" \
    --target-list="$targets" --enable-plugins --enable-capstone \
    --disable-system --disable-docs --disable-install-blobs --disable-download \
    --disable-werror >configure.log 2>&1 || {
      tail -n 30 configure.log >&2
      exit 1
    }
fi
log "building (a few minutes the first time)"
ninja >ninja.log 2>&1 || { tail -n 40 ninja.log >&2; exit 1; }
ninja tests/tcg/plugins/all contrib/plugins/all >>ninja.log 2>&1 || true
ninja install >install.log 2>&1 || { tail -n 20 install.log >&2; exit 1; }

mkdir -p "$prefix/plugins"
for so in tests/tcg/plugins/*.so contrib/plugins/*.so; do
  cp -f "$so" "$prefix/plugins/"
done
for p in libbb libinsn libmem libsyscall libhotblocks libexeclog; do
  [ -f "$prefix/plugins/$p.so" ] || { log "QEMU's plugin $p.so was not built"; exit 1; }
done
echo "$version" >"$prefix/VERSION"
touch "$stamp"
log "QEMU $version installed in $prefix"
