#!/usr/bin/env bash
# A short run of each fuzz target (fuzz/), as CI's smoke test: installs
# cargo-fuzz if it is missing, builds the targets, and runs each for
# QTRACE_FUZZ_SECS seconds (default 20) from the committed seed corpus.
# The machine's own toolchain will do: without a sanitizer, cargo-fuzz needs
# no nightly feature. For a longer run by hand, with AddressSanitizer:
#   cd fuzz && cargo +nightly fuzz run part -- -max_total_time=600
# What a run finds goes to a scratch corpus, never into fuzz/corpus; a crash
# fails the script and leaves its input in fuzz/artifacts/TARGET/.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# shellcheck source=scripts/env.sh
source "$here/env.sh"
secs=${QTRACE_FUZZ_SECS:-20}
log() { printf 'fuzz-smoke: %s\n' "$*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

cd "$root/fuzz"
scratch=$root/fuzz/scratch
rm -rf "$scratch"
mkdir -p "$scratch/tmp"
trap 'rm -rf "$scratch"' EXIT
# No sanitizer: the crates fuzzed have no unsafe code of their own, and
# without ASan the targets build and run faster. Unoptimised (--dev, with
# debug assertions and overflow checks): a fresh build takes about a minute
# on 2 cores against 5 for --release, and kept in the cache, later runs
# build nothing.
flags=(--sanitizer none --dev --target-dir "$QTRACE_CACHE/fuzz-target")
cargo fuzz build "${flags[@]}"
for target in manifest part; do
  mkdir -p "$scratch/$target"
  log "$target: ${secs}s"
  TMPDIR=$scratch/tmp cargo fuzz run "${flags[@]}" "$target" \
    "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$secs" -print_final_stats=1 2>"$scratch/$target.log" || {
    tail -n 40 "$scratch/$target.log" >&2
    log "$target: crashed (input in fuzz/artifacts/$target/)"
    exit 1
  }
  grep -E '^stat::number_of_executed_units|^Done' "$scratch/$target.log" | sed "s/^/$target: /" >&2
done
