#!/usr/bin/env bash
# Makes the fuzz targets' seed trace and seed corpus from real recordings of
# a sample (hotloop from the last call of collatz, with every table):
#   fuzz/seed-trace/        the trace of the `manifest` target: 300
#                           instructions (10 distinct blocks), 30 KB
#   fuzz/corpus/manifest/   its manifest, and variants
#   fuzz/corpus/part/       each part file of the same run to the guest's exit
#                           (system calls included), prefixed by its table's
#                           index and a byte that says whether the manifest
#                           lists it
# Run it again after a change of the format; commit what it writes. Needs
# `make setup` (QEMU, the samples, target/release/qtrace).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
qtrace=$root/target/release/qtrace
fuzz=$root/fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

record() {
  "$qtrace" record --clean-env -o "$1" \
    -O mem=values -O regs=rdi+rsi -O regs_at=both -O disas=off \
    -O 'start=sym:collatz@59999' "${@:2}" \
    -- "$root/samples/build/x86_64/hotloop" 3 >/dev/null 2>&1
}
record "$work/run.parquet" -O stop=icount:300
record "$work/to-exit.parquet"

# A recorder that does not list its parts yet: list them from what verify
# finds, so that the targets start from a manifest with checksums.
"$qtrace" verify --format json "$work/run.parquet" >"$work/report.json"
python3 - "$work/run.parquet/manifest.json" "$work/report.json" <<'PY'
import json, sys
path, report = sys.argv[1], json.load(open(sys.argv[2]))["report"]
m = json.load(open(path))
if not m.get("parts"):
    keys = ["path", "table", "vcpu", "index", "rows", "first_seq", "last_seq", "bytes", "xxh3"]
    m["parts"] = [{k: p[k] for k in keys} for p in report["parts"]]
# Paths of this machine mean nothing to the fuzzer.
m["command_line"] = ["qemu-x86_64", "hotloop", "3"]
m["options"]["out"] = "run.parquet"
json.dump(m, open(path, "w"), indent=2)
PY
"$qtrace" verify "$work/run.parquet" | tail -n 1

rm -rf "$fuzz/seed-trace" "$fuzz/corpus"
mkdir -p "$fuzz/corpus/manifest" "$fuzz/corpus/part"
cp -r "$work/run.parquet" "$fuzz/seed-trace"
rm -f "$fuzz/seed-trace/.manifest.json.tmp"

# Manifests: as recorded, then the fields a run cut short, a forked child
# and drop mode fill in.
cp "$work/run.parquet/manifest.json" "$fuzz/corpus/manifest/recorded.json"
python3 - "$work/run.parquet/manifest.json" "$fuzz/corpus/manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
out = sys.argv[2]
def write(name, m):
    json.dump(m, open(f"{out}/{name}.json", "w"), separators=(",", ":"))
write("compact", m)
cut = dict(m, complete=False, end=None, parts=m["parts"][:2])
write("killed", cut)
write("ended", dict(m, end={"how": "signal", "signal": 2, "signal_name": "SIGINT", "tid": 1}, pid=10,
                    dropped=[{"table": "blocks", "vcpu": 0, "rows": 5, "ranges": [[3, 5]]}],
                    children=[{"pid": 11, "path": "processes/pid=11", "vcpu": 0, "tid": 10, "block_seq": 7}],
                    errors=["write failed"]))
write("no-parts", dict(m, parts=[]))
PY

python3 - "$work/to-exit.parquet" "$fuzz/corpus/part" <<'PY'
import os, sys
# The order of qtrace_format::Table::ALL.
tables = ["blocks", "block_dict", "block_counts", "mem", "syscalls", "regs", "modules"]
seed, out = sys.argv[1], sys.argv[2]
for i, t in enumerate(tables):
    d = os.path.join(seed, t, "vcpu=0") if t in ("blocks", "mem", "syscalls", "regs") else os.path.join(seed, t)
    f = os.path.join(d, "part-000000.parquet")
    if not os.path.exists(f):
        continue
    data = open(f, "rb").read()
    for listed in (0, 1):
        open(os.path.join(out, f"{t}-{'listed' if listed else 'unlisted'}"), "wb").write(bytes([i, listed]) + data)
PY
du -sh "$fuzz/seed-trace" "$fuzz/corpus"
