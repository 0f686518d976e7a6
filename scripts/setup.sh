#!/usr/bin/env bash
# All set-up, idempotent and quick the second time: system packages, a Python
# environment (meson for QEMU's build, DuckDB and pyarrow for the tests), QEMU
# with plugins, the sample programs, and the workspace in release mode.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/env.sh
source "$here/env.sh"
log() { printf 'setup: %s\n' "$*" >&2; }

# Debian packages: QEMU's build dependencies, libclang for bindgen, the
# cross compiler for the aarch64 samples, and the real programs the tests record.
packages=(build-essential pkg-config ninja-build flex bison libglib2.0-dev
  libcapstone-dev libclang-dev libfdt-dev zlib1g-dev dpkg-dev
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-riscv64-linux-gnu
  libc6-dev-riscv64-cross xz-utils python3-venv util-linux)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python: a venv in the cache, so that the system's Python stays as it is.
py_stamp=$QTRACE_PY/.complete-2
if [ ! -f "$py_stamp" ]; then
  log "creating the Python environment in $QTRACE_PY"
  python3 -m venv "$QTRACE_PY"
  "$QTRACE_PY/bin/pip" install -q --disable-pip-version-check \
    'meson>=1.5,<2' 'pycotap==1.3.1' 'duckdb>=1.1' 'duckdb-cli>=1.1' 'pyarrow>=15' 'pandas>=2'
  touch "$py_stamp"
fi

"$here/provision-qemu.sh"

make -s -C "$root/samples"

log "building the workspace (release)"
(cd "$root" && cargo build --release --workspace --quiet)
