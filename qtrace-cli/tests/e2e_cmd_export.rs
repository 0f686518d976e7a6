//! `qtrace export` on real recordings, against DuckDB reading the same
//! Parquet files and QEMU's own `libbb`:
//! - every table as CSV, JSON lines and JSON: the same rows (count, order)
//!   and, on a sample of rows, the same value in every column;
//! - Chrome trace-event JSON: a named track per thread, spans that cover
//!   every block event (libbb's count) and every instruction, without
//!   overlap, a system call per `syscalls` row, and the event limit;
//! - a Tenet window: a line per instruction at its address, the window's
//!   memory accesses with their bytes, and the registers recorded.

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use e2e_support::*;
use serde_json::Value;

/// Runs `qtrace export` with `args`; must succeed.
fn export(args: &[&str]) -> Output {
    let out = qtrace().arg("export").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "export {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn hotloop() -> String {
    sample("x86_64", "hotloop")
        .expect("make -C samples")
        .display()
        .to_string()
}

/// Checks an exported table against DuckDB. argv: trace, table, format,
/// file, and optionally `A..B` (the export's `--seq`). Exported rows must
/// come in order (per-vCPU tables by vcpu, then seq), as many as DuckDB
/// counts; on a sample of rows (all rows of small tables), every column
/// must hold DuckDB's value: integers as integers, booleans as
/// true/false, binary as hex, lists and structs as JSON, null as an empty
/// CSV field or JSON null. Prints `rows sampled`.
const CHECK_TABLE: &str = r#"
import csv, duckdb, json, sys
csv.field_size_limit(1 << 30)
t, table, fmt, path = sys.argv[1:5]
window = sys.argv[5] if len(sys.argv) > 5 else None
per_vcpu = table in ("blocks", "mem", "syscalls", "regs")
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
src = (f"read_parquet('{t}/{table}/*/*.parquet', hive_partitioning = true)" if per_vcpu
       else f"read_parquet('{t}/{table}/*.parquet')")
cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
if per_vcpu:
    cols = ["vcpu"] + [c for c in cols if c != "vcpu"]
where = "TRUE"
if window:
    a, b = (int(x) for x in window.split(".."))
    key = "seq" if table == "blocks" else "block_seq"
    where = f"{key} >= {a} AND {key} < {b}"
order = {"block_dict": "block_id", "block_counts": "vcpu, block_id",
         "modules": "module_id"}.get(table, "vcpu, seq")
def sampled(seq):
    return not per_vcpu or seq < 50 or seq % 211 == 0
count = con.execute(f"SELECT count(*) FROM {src} WHERE {where}").fetchall()[0][0]
pick = "(seq < 50 OR seq % 211 = 0)" if per_vcpu else "TRUE"
quoted = ", ".join(f'"{c}"' for c in cols)
expected = con.execute(
    f"SELECT {quoted} FROM {src} WHERE {where} AND {pick} ORDER BY {order}").fetchall()

def norm(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return v

def as_csv(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return str(v)

def rows():
    with open(path, newline="") as f:
        if fmt == "csv":
            r = csv.reader(f)
            header = next(r)
            assert header == cols, (header, cols)
            for line in r:
                yield line
        elif fmt == "jsonl":
            for line in f:
                o = json.loads(line)
                assert list(o) == cols, (list(o), cols)
                yield [o[c] for c in cols]
        else:
            for o in json.load(f):
                assert list(o) == cols, (list(o), cols)
                yield [o[c] for c in cols]

seq_at = cols.index("seq") if per_vcpu else None
n, got, last = 0, [], None
for row in rows():
    n += 1
    if per_vcpu:
        key = (int(row[0]), int(row[seq_at]))
        assert last is None or key > last, f"row {n}: {key} after {last}"
        last = key
        if not sampled(key[1]):
            continue
    got.append(row)
assert n == count, f"{table} {fmt}: {n} rows exported, DuckDB counts {count}"
assert len(got) == len(expected), (len(got), len(expected))
for g, e in zip(got, expected):
    for c, gv, ev in zip(cols, g, e):
        if fmt == "csv":
            if isinstance(ev, (list, dict)):
                ok = json.loads(gv) == norm(ev)
            else:
                ok = gv == as_csv(ev)
        else:
            ok = gv == norm(ev) and type(gv) is type(norm(ev))
        assert ok, f"{table} {fmt} column {c}: exported {gv!r}, DuckDB {ev!r} (row {e})"
print(n, len(got))
"#;

/// Exports `table` of `trace` in `format` (with `extra` options) to a file
/// and checks it with [`CHECK_TABLE`]; returns (rows, rows compared).
fn check_table(trace: &Path, table: &str, format: &str, window: Option<&str>) -> (u64, u64) {
    let file = trace.with_file_name(format!("{table}.{format}"));
    let mut args = vec![
        trace.to_str().unwrap(),
        table,
        "--format",
        format,
        "-o",
        file.to_str().unwrap(),
    ];
    if let Some(w) = window {
        args.extend(["--seq", w]);
    }
    export(&args);
    let mut script_args = vec![table, format, file.to_str().unwrap()];
    script_args.extend(window);
    let out = run_python_with(CHECK_TABLE, trace, &script_args);
    let f: Vec<u64> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    (f[0], f[1])
}

#[test]
fn every_table_exports_as_duckdb_reads_it() {
    let (_dir, trace) = record(
        &[&hotloop()],
        &[
            "mem=values",
            "regs=rax+rdi+rsp+rip+eflags+xmm0",
            "regs_at=both",
            "regs_every=50",
            "syscall_data=64",
        ],
    );
    let totals = manifest_totals(&trace);
    let blocks: u64 = totals.values().map(|t| t.2).sum();
    let (rows, compared) = check_table(&trace, "blocks", "csv", None);
    assert_eq!(rows, blocks);
    assert!(compared > 1000, "{compared}");
    for format in ["csv", "jsonl", "json"] {
        for table in [
            "mem",
            "syscalls",
            "regs",
            "block_dict",
            "block_counts",
            "modules",
        ] {
            let (rows, compared) = check_table(&trace, table, format, None);
            assert!(
                rows > 0 && compared > 0,
                "{table} {format}: {rows} {compared}"
            );
        }
    }
    // A window picks the same blocks in each per-vCPU table.
    let window = format!("{}..{}", blocks / 3, blocks / 3 + 20_000);
    for table in ["blocks", "mem", "regs"] {
        let (rows, _) = check_table(&trace, table, "jsonl", Some(&window));
        assert!(rows > 0, "{table} in {window}");
    }
}

/// `--resolve`: each block's pc and symbol, from `block_dict`, and symbols
/// outside the main program resolved through the modules (the shared
/// library of `dynhot`).
#[test]
fn blocks_resolve_to_pc_and_symbol() {
    let prog = sample("x86_64", "dynhot").expect("make -C samples");
    let (_dir, trace) = record(&[prog.to_str().unwrap()], &[]);
    check_table(&trace, "modules", "csv", None);
    let out = export(&[
        trace.to_str().unwrap(),
        "blocks",
        "--resolve",
        "--format",
        "jsonl",
        "--columns",
        "seq,block_id,pc,symbol",
    ]);
    const DICT: &str = r#"
import duckdb, sys
for id, pc, sym in duckdb.sql(f"SELECT block_id, pc, symbol FROM '{sys.argv[1]}/block_dict/*.parquet'").fetchall():
    print(id, pc, sym or "-")
"#;
    let dict: BTreeMap<u64, (u64, String)> = run_python(DICT, &trace)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(3, ' ').collect();
            (
                f[0].parse().unwrap(),
                (f[1].parse().unwrap(), f[2].to_string()),
            )
        })
        .collect();
    let mut rows = 0;
    let mut resolved = BTreeMap::<String, u64>::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let o: Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = o.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["seq", "block_id", "pc", "symbol"]);
        assert_eq!(o["seq"].as_u64().unwrap(), rows);
        let (pc, symbol) = &dict[&o["block_id"].as_u64().unwrap()];
        assert_eq!(o["pc"].as_u64().unwrap(), *pc);
        match (symbol.as_str(), o["symbol"].as_str()) {
            ("-", Some(s)) => *resolved.entry(s.to_string()).or_default() += 1,
            (qemu, got) => assert!(got.is_none_or(|g| g == qemu), "{qemu} {got:?}"),
        }
        rows += 1;
    }
    let blocks: u64 = manifest_totals(&trace).values().map(|t| t.2).sum();
    assert_eq!(rows, blocks);
    // The library's function, which QEMU does not name.
    assert!(
        resolved.keys().any(|s| s.contains("hot")),
        "resolved: {resolved:?}"
    );
}

/// A Chrome export, parsed: spans by thread as (ts, dur, first seq,
/// blocks), times in instructions; system calls as (tid, ts, block_seq).
struct Chrome {
    json: Value,
    spans: BTreeMap<u64, Vec<(u64, u64, u64, u64)>>,
    calls: Vec<(u64, u64, u64)>,
    span_blocks: u64,
    span_insns: u64,
    syscalls: u64,
    thread_names: BTreeMap<u64, String>,
}

/// Microseconds with three decimals, as instructions.
fn insns(v: &Value) -> u64 {
    (v.as_f64().unwrap() * 1000.0).round() as u64
}

fn chrome(trace: &Path, args: &[&str]) -> (Chrome, String) {
    let file = trace.with_file_name("chrome.json");
    let mut all = vec![
        trace.to_str().unwrap(),
        "--chrome",
        "-o",
        file.to_str().unwrap(),
    ];
    all.extend(args);
    let out = export(&all);
    let json: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(json["displayTimeUnit"], "ns");
    let mut c = Chrome {
        json: Value::Null,
        spans: BTreeMap::new(),
        calls: Vec::new(),
        span_blocks: 0,
        span_insns: 0,
        syscalls: 0,
        thread_names: BTreeMap::new(),
    };
    let pid = manifest(trace)["pid"].as_u64().unwrap();
    for e in json["traceEvents"].as_array().unwrap() {
        assert_eq!(e["pid"].as_u64(), Some(pid), "{e}");
        let tid = e["tid"].as_u64().unwrap();
        match e["ph"].as_str().unwrap() {
            "M" if e["name"] == "thread_name" => {
                let name = e["args"]["name"].as_str().unwrap().to_string();
                assert!(c.thread_names.insert(tid, name).is_none(), "{e}");
            }
            "M" => {}
            "X" => {
                let (ts, dur) = (insns(&e["ts"]), insns(&e["dur"]));
                assert_eq!(dur, e["args"]["insns"].as_u64().unwrap(), "{e}");
                assert!(e["name"].as_str().is_some_and(|n| !n.is_empty()), "{e}");
                let blocks = e["args"]["blocks"].as_u64().unwrap();
                let first = e["args"]["first_seq"].as_u64().unwrap();
                c.span_blocks += blocks;
                c.span_insns += dur;
                c.spans
                    .entry(tid)
                    .or_default()
                    .push((ts, dur, first, blocks));
            }
            "i" => {
                assert_eq!(e["s"], "t");
                assert_eq!(e["cat"], "syscall");
                let block_seq = e["args"]["block_seq"].as_u64().unwrap();
                c.calls.push((tid, insns(&e["ts"]), block_seq));
                c.syscalls += 1;
            }
            other => panic!("unexpected event type {other}: {e}"),
        }
    }
    c.json = json;
    (c, String::from_utf8(out.stderr).unwrap())
}

/// Spans on a track come in time order and do not overlap; a system call
/// lies in the span of the block that made it, on its last instruction's
/// time.
fn assert_tracks_ordered(c: &Chrome) {
    for &(tid, ts, block_seq) in &c.calls {
        let span = c.spans[&tid]
            .iter()
            .find(|s| s.2 <= block_seq && block_seq < s.2 + s.3)
            .unwrap_or_else(|| panic!("no span of thread {tid} holds block {block_seq}"));
        assert!(
            span.0 <= ts && ts < span.0 + span.1,
            "call of block {block_seq} at {ts}, outside its span {span:?}"
        );
    }
    for (tid, spans) in &c.spans {
        for w in spans.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "thread {tid}: span at {} for {} overlaps the next at {}",
                w[0].0,
                w[0].1,
                w[1].0
            );
        }
    }
}

/// Rows of `syscalls`, counted by DuckDB (argv: trace, first block_seq,
/// end).
const SYSCALL_ROWS: &str = r#"
import duckdb, sys
t, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print(duckdb.sql(f"""SELECT count(*) FROM read_parquet('{t}/syscalls/*/*.parquet', hive_partitioning = true)
                     WHERE block_seq >= {a} AND block_seq < {b}""").fetchall()[0][0])
"#;

#[test]
fn chrome_tracks_cover_every_block_of_every_thread() {
    let prog = sample("x86_64", "threads").expect("make -C samples");
    let ((_dir, trace), printed) = record_beside(&[prog.to_str().unwrap()], &[], &["bb,inline=on"]);
    let (_, (bb_blocks, bb_insns)) = parse_bb(&printed);
    let (c, _) = chrome(&trace, &[]);
    // Every block event in a span, every instruction in the time.
    assert_eq!(c.span_blocks, bb_blocks);
    assert_eq!(c.span_insns, bb_insns);
    assert_tracks_ordered(&c);
    let threads = manifest(&trace)["threads"].as_array().unwrap().clone();
    assert!(threads.len() >= 4, "{threads:?}");
    for t in &threads {
        let tid = t["tid"].as_u64().unwrap();
        assert!(
            c.thread_names.contains_key(&tid),
            "no thread_name for {tid}"
        );
        assert!(c.spans.contains_key(&tid), "no spans on thread {tid}");
    }
    assert_eq!(c.thread_names.len(), threads.len());
    let calls: u64 = run_python_with(SYSCALL_ROWS, &trace, &["0", &u64::MAX.to_string()])
        .trim()
        .parse()
        .unwrap();
    assert!(calls > 0);
    assert_eq!(c.syscalls, calls);
    let process = c.json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "process_name")
        .unwrap();
    assert_eq!(process["args"]["name"], "threads");
}

/// A window keeps the whole trace's clock: its first span starts at the
/// instructions executed before it; its spans hold its blocks and the
/// calls its blocks made. The event limit cuts the output, says so, and
/// leaves valid JSON.
#[test]
fn chrome_window_and_event_limit() {
    let (_dir, trace) = record(&[&hotloop()], &[]);
    let (a, b) = (1_000_000u64, 1_400_000u64);
    let window = format!("{a}..{b}");
    let (c, _) = chrome(&trace, &["--seq", &window]);
    assert_eq!(c.span_blocks, b - a);
    assert_tracks_ordered(&c);
    const BEFORE: &str = r#"
import duckdb, sys
t, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
q = lambda w: duckdb.sql(f"""SELECT coalesce(sum(d.n_insns), 0) FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) b
                             JOIN '{t}/block_dict/*.parquet' d USING (block_id) WHERE {w}""").fetchall()[0][0]
print(q(f"seq < {a}"), q(f"seq >= {a} AND seq < {b}"))
"#;
    let out = run_python_with(BEFORE, &trace, &[&a.to_string(), &b.to_string()]);
    let f: Vec<u64> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let first = c.spans.values().flatten().map(|s| s.0).min().unwrap();
    assert_eq!(first, f[0], "the window's first instruction");
    assert_eq!(c.span_insns, f[1]);
    let calls: u64 = run_python_with(SYSCALL_ROWS, &trace, &[&a.to_string(), &b.to_string()])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(c.syscalls, calls);

    let (cut, stderr) = chrome(&trace, &["--max-events", "500"]);
    let counted = cut.spans.values().map(Vec::len).sum::<usize>() as u64 + cut.syscalls;
    assert_eq!(counted, 500);
    assert!(stderr.contains("--max-events"), "{stderr}");
    let (whole, stderr) = chrome(&trace, &["--max-events", "0"]);
    assert!(stderr.is_empty(), "{stderr}");
    let blocks: u64 = manifest_totals(&trace).values().map(|t| t.2).sum();
    assert_eq!(whole.span_blocks, blocks);
}

/// Checks a Tenet export of window argv[3]..argv[4] (file argv[2]) against
/// DuckDB: one line per instruction of the window's blocks, in order, with
/// `rip` the instruction's address; every line's entries are names Tenet's
/// AMD64 parser takes; the `mr`/`mw` entries are the window's `mem` rows
/// on their instruction's line with their bytes; the registers on the
/// first line are the last recorded values, and on every other line the
/// values recorded at that instruction. Prints `lines accesses registers`.
const CHECK_TENET: &str = r#"
import duckdb, sys
t, path, a, b = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"""CREATE VIEW blocks AS SELECT * FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) WHERE vcpu = 0;
               CREATE VIEW dict AS SELECT * FROM '{t}/block_dict/*.parquet';
               CREATE VIEW mem AS SELECT * FROM read_parquet('{t}/mem/*/*.parquet', hive_partitioning = true) WHERE vcpu = 0;
               CREATE VIEW regs AS SELECT * FROM read_parquet('{t}/regs/*/*.parquet', hive_partitioning = true) WHERE vcpu = 0;""")
insns = con.execute(f"""SELECT b.seq, i.n - 1, i.insn.addr, d.n_insns FROM blocks b JOIN dict d USING (block_id),
                        LATERAL (SELECT unnest(d.insns) AS insn, generate_subscripts(d.insns, 1) AS n) i
                        WHERE b.seq >= {a} AND b.seq < {b} ORDER BY b.seq, i.n""").fetchall()
total = con.execute(f"""SELECT sum(d.n_insns) FROM blocks b JOIN dict d USING (block_id)
                        WHERE b.seq >= {a} AND b.seq < {b}""").fetchall()[0][0]
lines = open(path).read().splitlines()
assert len(lines) == total == len(insns), (len(lines), total, len(insns))
line_of = {}
for n, (seq, k, addr, count) in enumerate(insns):
    line_of[(seq, k)] = n
    line_of[(seq, "first")] = line_of.get((seq, "first"), n)
    line_of[(seq, "last")] = n
tenet = {"RAX","RBX","RCX","RDX","RBP","RSP","RSI","RDI","R8","R9","R10","R11","R12","R13","R14","R15","RIP","MR","MW","MRW"}
got_mem, got_regs = [], {}
for n, (line, (seq, k, addr, count)) in enumerate(zip(lines, insns)):
    entries = [e.split("=") for e in line.split(",")]
    assert all(len(e) == 2 and e[0].upper() in tenet for e in entries), line
    pcs = [v for name, v in entries if name == "rip"]
    assert pcs == [hex(addr)], (n, line, hex(addr))
    for name, v in entries:
        if name in ("mr", "mw"):
            where, data = v.split(":")
            got_mem.append((n, name, int(where, 16), data))
        elif name != "rip":
            got_regs[(n, name)] = int(v, 16)
want_mem = []
for seq, insn, addr, size, store, value, hi in con.execute(f"""
        SELECT block_seq, insn, addr, size, store, value, value_hi FROM mem
        WHERE block_seq >= {a} AND block_seq < {b} ORDER BY seq""").fetchall():
    full = value | ((hi or 0) << 64)
    want_mem.append((line_of[(seq, insn)], "mw" if store else "mr", addr,
                     full.to_bytes(16, "little")[:size].hex()))
assert got_mem == want_mem, [(g, w) for g, w in zip(got_mem, want_mem) if g != w][:5] or (len(got_mem), len(want_mem))
names = [r[0] for r in con.execute("DESCRIBE regs").fetchall()
         if r[0].upper() in tenet and r[0] != "rip"]
want_regs = {}
for name in names:
    # The state at the first line: the last value recorded before the
    # window, or at its first block's entry.
    first = con.execute(f"""SELECT {name} FROM regs WHERE {name} IS NOT NULL AND
                            (block_seq < {a} OR (block_seq = {a} AND syscall_seq IS NULL))
                            ORDER BY seq DESC LIMIT 1""").fetchall()
    if first:
        want_regs[(0, name)] = first[0][0]
    for seq, at_call, v in con.execute(f"""SELECT block_seq, syscall_seq IS NOT NULL, {name} FROM regs
            WHERE {name} IS NOT NULL AND block_seq >= {a} AND block_seq < {b} ORDER BY seq""").fetchall():
        n = line_of[(seq, "last" if at_call else "first")]
        if n != 0:
            want_regs[(n, name)] = v
assert got_regs == want_regs, sorted(set(got_regs.items()) ^ set(want_regs.items()))[:8]
# Accesses inside a block (not on its first or last line), and registers
# read at system calls (on a block's last line): what a window must have
# for the checks above to see lines placed wrongly.
inside = sum(1 for n, *_ in got_mem if insns[n][1] not in (0, insns[n][3] - 1))
at_calls = con.execute(f"""SELECT count(*) FROM regs WHERE syscall_seq IS NOT NULL
                           AND block_seq > {a} AND block_seq < {b}""").fetchall()[0][0]
print(len(lines), len(got_mem), len(got_regs), inside, at_calls)
"#;

/// Windows for the Tenet test (argv: trace): around the first access made
/// inside a block, around the first system call, and in the middle of the
/// run.
const TENET_WINDOWS: &str = r#"
import duckdb, sys
t = sys.argv[1]
inside = duckdb.sql(f"""SELECT min(m.block_seq) FROM read_parquet('{t}/mem/*/*.parquet', hive_partitioning = true) m
    JOIN read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) b ON b.vcpu = m.vcpu AND b.seq = m.block_seq
    JOIN '{t}/block_dict/*.parquet' d USING (block_id)
    WHERE m.insn > 0 AND m.insn + 1 < d.n_insns""").fetchall()[0][0]
call = duckdb.sql(f"SELECT min(block_seq) FROM read_parquet('{t}/syscalls/*/*.parquet')").fetchall()[0][0]
for s in (inside, call):
    print(max(s - 100, 0), s + 200)
print(2_000_000, 2_004_000)
"#;

#[test]
fn tenet_window_has_each_instruction_access_and_register() {
    let (_dir, trace) = record(
        &[&hotloop()],
        &[
            "mem=values",
            "regs=rax+rbx+rdi+rsp+rip+eflags+xmm0",
            "regs_at=both",
            "regs_every=3",
        ],
    );
    let windows: Vec<(u64, u64)> = run_python(TENET_WINDOWS, &trace)
        .lines()
        .map(|l| {
            let f: Vec<u64> = l.split(' ').map(|n| n.parse().unwrap()).collect();
            (f[0], f[1])
        })
        .collect();
    let (mut inside, mut at_calls) = (0, 0);
    for (a, b) in windows {
        let file: PathBuf = trace.with_file_name(format!("tenet-{a}.log"));
        export(&[
            trace.to_str().unwrap(),
            "--tenet",
            "--seq",
            &format!("{a}..{b}"),
            "-o",
            file.to_str().unwrap(),
        ]);
        let out = run_python_with(
            CHECK_TENET,
            &trace,
            &[file.to_str().unwrap(), &a.to_string(), &b.to_string()],
        );
        let f: Vec<u64> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
        assert!(f[0] >= b - a, "{a}..{b}: {out}");
        assert!(
            f[1] > 0 && f[2] > 0,
            "{a}..{b}: lines, accesses, registers: {out}"
        );
        inside += f[3];
        at_calls += f[4];
    }
    assert!(inside > 0, "no access inside a block in the windows");
    assert!(
        at_calls > 0,
        "no registers read at a system call in the windows"
    );
}

#[test]
fn wrong_arguments_are_one_line_errors() {
    let (_dir, trace) = record(&[&hotloop()], &[]);
    let t = trace.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["export", t, "nope"], "unknown table `nope`"),
        (&["export", t, "mem"], "no mem table"),
        (
            &["export", t, "blocks", "--columns", "seq,pcx"],
            "no column `pcx`",
        ),
        (
            &["export", t, "blocks", "--columns", "seq,seq"],
            "`seq` twice",
        ),
        (&["export", t, "block_dict", "--seq", "0..10"], "--seq"),
        (&["export", t, "modules", "--vcpu", "0"], "--vcpu"),
        (&["export", t, "blocks", "--vcpu", "7"], "no vCPU 7"),
        (&["export", t, "syscalls", "--resolve"], "--resolve"),
        (&["export", t, "--chrome", "--format", "csv"], "--format"),
        (&["export", t, "blocks", "--seq", "9..3"], "ends before"),
        (
            &["export", "/nonexistent/trace", "blocks"],
            "/nonexistent/trace",
        ),
    ];
    for (args, needle) in cases {
        let out = qtrace().args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?}: stdout");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
