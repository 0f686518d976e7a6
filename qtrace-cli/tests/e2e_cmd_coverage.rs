//! `qtrace coverage` on real programs recorded under the real QEMU.
//!
//! The oracles are outside qtrace: QEMU's own `libexeclog` (every
//! instruction that executed, in the same QEMU as the recorder),
//! `libhotblocks` and `libbb`; DuckDB over the trace's Parquet files; and a
//! drcov parser written here in Python, apart from the writer.

mod common;
mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2e_support::*;
use serde_json::Value;

/// `qtrace coverage ARGS...`, which must succeed; its stdout.
fn coverage(args: &[&str]) -> String {
    let out = qtrace().arg("coverage").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "coverage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `qtrace coverage ARGS... --format json` as rows.
fn coverage_json(args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    serde_json::from_str::<Value>(&coverage(&all))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("not hex: {s:?}"))
}

/// The addresses `--as addrs` printed.
fn addrs(out: &str) -> Vec<u64> {
    out.lines().map(hex).collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Reads a drcov file with a parser of its own (header lines, module
/// table, binary block table), and the trace it was made from with DuckDB.
/// Prints JSON: the header lines, the module rows, each block entry as
/// (module base + start, size), the trace's modules, and its covered blocks
/// that lie in a module as (pc, size).
const DRCOV_CHECK: &str = r#"
import duckdb, json, re, struct, sys
t, path = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
pos = 0
def line():
    global pos
    end = data.index(b"\n", pos)
    text = data[pos:end].decode()
    pos = end + 1
    return text
header = [line() for _ in range(4)]
count = int(re.fullmatch(r"Module Table: version 2, count (\d+)", header[2])[1])
modules = []
for _ in range(count):
    f = line().split(", ")
    modules.append({"id": int(f[0]), "base": int(f[1], 16), "end": int(f[2], 16),
                    "entry": int(f[3], 16), "checksum": int(f[4], 16),
                    "timestamp": int(f[5], 16), "path": f[-1]})
bbs = int(re.fullmatch(r"BB Table: (\d+) bbs", line())[1])
assert len(data) - pos == 8 * bbs, (len(data) - pos, bbs)
entries = []
for i in range(bbs):
    start, size, mod = struct.unpack_from("<IHH", data, pos + 8 * i)
    entries.append([modules[mod]["base"] + start, size])
duckdb.sql("SET enable_progress_bar = false")
trace_modules = duckdb.sql(f"""
    SELECT base, size, coalesce(entry, 0), path FROM '{t}/modules/*.parquet'
    ORDER BY module_id""").fetchall()
covered = duckdb.sql(f"""
    SELECT d.pc, least(d.size, 65535)
    FROM '{t}/block_dict/*.parquet' d
    JOIN (SELECT DISTINCT block_id FROM '{t}/block_counts/*.parquet') USING (block_id)
    WHERE EXISTS (SELECT 1 FROM '{t}/modules/*.parquet' m
                  WHERE d.pc >= m.base AND d.pc < m.base + m.size)""").fetchall()
print(json.dumps({"header": header, "modules": modules, "entries": entries,
                  "trace_modules": trace_modules, "covered": covered}))
"#;

/// Covered blocks per module path, by DuckDB: a block belongs to the
/// module whose span holds its first byte.
const BLOCKS_PER_MODULE: &str = r#"
import duckdb, json, sys
t = sys.argv[1]
duckdb.sql("SET enable_progress_bar = false")
rows = duckdb.sql(f"""
    SELECT m.path, count(*)
    FROM '{t}/block_dict/*.parquet' d
    JOIN (SELECT DISTINCT block_id FROM '{t}/block_counts/*.parquet') USING (block_id)
    JOIN '{t}/modules/*.parquet' m ON d.pc >= m.base AND d.pc < m.base + m.size
    GROUP BY m.path""").fetchall()
print(json.dumps(dict(rows)))
"#;

/// Writes the trace's coverage as drcov and checks it against the trace.
fn check_drcov(trace: &Path, flavor: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cov.drcov");
    coverage(&[path_str(trace), "--as", "drcov", "-o", path_str(&file)]);
    let v: Value =
        serde_json::from_str(&run_python_with(DRCOV_CHECK, trace, &[path_str(&file)])).unwrap();

    let header: Vec<&str> = v["header"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(header[0], "DRCOV VERSION: 2");
    assert_eq!(header[1], format!("DRCOV FLAVOR: {flavor}"));
    assert_eq!(
        header[3],
        "Columns: id, base, end, entry, checksum, timestamp, path"
    );

    // The module table is the trace's, in order: base, end = base + size,
    // entry point, path.
    let modules = v["modules"].as_array().unwrap();
    let trace_modules = v["trace_modules"].as_array().unwrap();
    assert_eq!(modules.len(), trace_modules.len());
    for (i, (m, t)) in modules.iter().zip(trace_modules).enumerate() {
        let t: Vec<&Value> = t.as_array().unwrap().iter().collect();
        let base = t[0].as_u64().unwrap();
        assert_eq!(m["id"], i);
        assert_eq!(m["base"].as_u64().unwrap(), base);
        assert_eq!(m["end"].as_u64().unwrap(), base + t[1].as_u64().unwrap());
        assert_eq!(m["entry"], *t[2]);
        assert_eq!(m["path"], *t[3]);
    }

    // One entry per covered block in a module: its address and size.
    let pairs = |key: &str| -> Vec<(u64, u64)> {
        let mut p: Vec<(u64, u64)> = v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[0].as_u64().unwrap(), e[1].as_u64().unwrap()))
            .collect();
        p.sort_unstable();
        p
    };
    let entries = pairs("entries");
    assert!(entries.len() > 100, "{} entries", entries.len());
    assert_eq!(entries, pairs("covered"));

    // Counting the events instead of reading the counters gives the same
    // file, byte for byte.
    let events = dir.path().join("events.drcov");
    coverage(&[
        path_str(trace),
        "--as",
        "drcov",
        "--source",
        "events",
        "-o",
        path_str(&events),
    ]);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(&events).unwrap()
    );
}

#[test]
fn drcov_of_a_static_program_reads_back_as_the_trace() {
    let Some(prog) = sample("x86_64", "calls") else {
        return;
    };
    let (_d, trace) = record(&[path_str(&prog), "3"], &[]);
    check_drcov(&trace, "drcov-64");
}

#[test]
fn drcov_of_a_dynamic_program_has_every_module_and_its_blocks() {
    let Some(prog) = sample("x86_64", "dynhot") else {
        return;
    };
    let (_d, trace) = record(&[path_str(&prog)], &[]);
    check_drcov(&trace, "drcov-64");

    // The per-module totals count the blocks DuckDB places in each module.
    let expected: BTreeMap<String, u64> =
        serde_json::from_str::<BTreeMap<String, u64>>(&run_python(BLOCKS_PER_MODULE, &trace))
            .unwrap();
    let mut got = BTreeMap::new();
    for row in coverage_json(&[path_str(&trace), "--as", "modules"]) {
        let blocks = row["blocks"].as_u64().unwrap();
        if blocks > 0 {
            *got.entry(row["path"].as_str().unwrap().to_string())
                .or_default() += blocks;
        }
    }
    assert_eq!(got, expected);
    for lib in ["libqthot.so", "libc.so.6", "dynhot"] {
        assert!(got.keys().any(|p| p.ends_with(lib)), "{lib} in {got:?}");
    }
}

/// `libexeclog`'s instruction addresses: every instruction that started
/// executing.
fn execlog_addrs(log: &str) -> BTreeSet<u64> {
    log.lines()
        .filter_map(|l| {
            let mut f = l.split(", ");
            f.next()?.parse::<u32>().ok()?;
            Some(hex(f.next()?))
        })
        .collect()
}

#[test]
fn covered_addresses_are_what_qemu_executed() {
    let Some(prog) = sample("x86_64", "calls") else {
        return;
    };
    let ((_d, trace), log) = record_beside(
        &[path_str(&prog), "2"],
        &[],
        &["execlog", "hotblocks,inline=on", "bb,inline=on"],
    );
    let executed = execlog_addrs(&log);
    assert!(executed.len() > 1000, "{} instructions", executed.len());

    // Every instruction of every covered block, and nothing else.
    let insns: BTreeSet<u64> = addrs(&coverage(&[path_str(&trace), "--as", "addrs", "--insns"]))
        .into_iter()
        .collect();
    assert_eq!(insns, executed);

    // Blocks start at executed instructions; the list is sorted and unique.
    let blocks = addrs(&coverage(&[path_str(&trace), "--as", "addrs"]));
    assert!(blocks.windows(2).all(|w| w[0] < w[1]));
    assert!(blocks.iter().all(|pc| executed.contains(pc)));

    // The block table agrees with libhotblocks on its hottest blocks and
    // with libbb on the totals.
    let rows = coverage_json(&[path_str(&trace), "--as", "blocks"]);
    assert_eq!(rows.len(), blocks.len());
    let mut by_pc: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    let (mut execs, mut insn_execs) = (0u64, 0u64);
    for r in &rows {
        let (pc, n, e) = (
            hex(r["address"].as_str().unwrap()),
            r["n_insns"].as_u64().unwrap(),
            r["execs"].as_u64().unwrap(),
        );
        *by_pc.entry((pc, n)).or_default() += e;
        execs += e;
        insn_execs += e * n;
    }
    let hot = parse_hotblocks(&log);
    assert!(hot.len() >= 10, "libhotblocks listed {}", hot.len());
    for (pc, n, e) in hot {
        assert_eq!(by_pc.get(&(pc, n)), Some(&e), "block {pc:#x}");
    }
    let (_, (bb_blocks, bb_insns)) = parse_bb(&log);
    assert_eq!((execs, insn_execs), (bb_blocks, bb_insns));
}

/// Records `argv` like `record`, but with address-space randomisation on,
/// so that QEMU maps the program and its libraries somewhere else each run.
fn record_randomised(argv: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.parquet");
    common::recorder();
    let out = Command::new(common::qtrace_exe())
        .args(["record", "--clean-env", "-o"])
        .arg(&trace)
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "record {argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, trace)
}

/// Each covered block of a trace by DuckDB, as JSON `[module file name,
/// offset from the module's base, pc, md5 of the code]`; the module is the
/// one whose span holds the block (`null` and the pc outside modules).
/// Also each module's base by file name.
const KEYS: &str = r#"
import duckdb, json, sys
t = sys.argv[1]
duckdb.sql("SET enable_progress_bar = false")
blocks = duckdb.sql(f"""
    WITH m AS (SELECT regexp_extract(path, '[^/]*$') AS name, base, size
               FROM '{t}/modules/*.parquet'),
         c AS (SELECT d.pc, md5(d.code) AS code
               FROM '{t}/block_dict/*.parquet' d
               JOIN (SELECT DISTINCT block_id FROM '{t}/block_counts/*.parquet')
               USING (block_id))
    SELECT m.name, c.pc - coalesce(m.base, 0), c.pc, c.code
    FROM c LEFT JOIN m ON c.pc >= m.base AND c.pc < m.base + m.size""").fetchall()
bases = duckdb.sql(f"SELECT regexp_extract(path, '[^/]*$'), base FROM '{t}/modules/*.parquet'").fetchall()
print(json.dumps({"blocks": blocks, "bases": bases}))
"#;

/// A block's identity by DuckDB: (module, offset, code digest).
type Key = (Option<String>, u64, String);

struct Keyed {
    /// Key -> the block's address in this trace.
    blocks: BTreeMap<Key, u64>,
    bases: BTreeMap<String, u64>,
}

fn keyed(trace: &Path) -> Keyed {
    let v: Value = serde_json::from_str(&run_python(KEYS, trace)).unwrap();
    let blocks = v["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let key = (
                b[0].as_str().map(str::to_string),
                b[1].as_u64().unwrap(),
                b[3].as_str().unwrap().to_string(),
            );
            (key, b[2].as_u64().unwrap())
        })
        .collect();
    let bases = v["bases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m[0].as_str().unwrap().to_string(), m[1].as_u64().unwrap()))
        .collect();
    Keyed { blocks, bases }
}

/// `--as blocks` rows as (module, offset) pairs.
fn module_offsets(rows: &[Value]) -> BTreeSet<(Option<String>, u64)> {
    rows.iter()
        .map(|r| {
            let offset = r["offset"].as_str().map(hex);
            let addr = hex(r["address"].as_str().unwrap());
            (
                r["module"].as_str().map(str::to_string),
                offset.unwrap_or(addr),
            )
        })
        .collect()
}

#[test]
fn runs_loaded_at_different_addresses_combine_by_key() {
    let Some(prog) = sample("x86_64", "dynhot") else {
        return;
    };
    let (_da, a) = record_randomised(&[path_str(&prog)]);
    let (_db, b) = record_randomised(&[path_str(&prog)]);
    let (ka, kb) = (keyed(&a), keyed(&b));
    // QEMU loads the program itself at a fixed base; the libraries move.
    for lib in ["ld-linux-x86-64.so.2", "libqthot.so", "libc.so.6"] {
        assert_ne!(ka.bases[lib], kb.bases[lib], "{lib} at the same base");
    }
    // The same program on the same input ran the same code.
    let keys = |k: &Keyed| k.blocks.keys().cloned().collect::<BTreeSet<Key>>();
    assert_eq!(keys(&ka), keys(&kb));
    let by_offset: BTreeSet<(Option<String>, u64)> =
        ka.blocks.keys().map(|(m, o, _)| (m.clone(), *o)).collect();

    let (sa, sb) = (path_str(&a), path_str(&b));
    for op in ["union", "intersect"] {
        // In the first trace's addresses: exactly its own blocks.
        let pcs: BTreeSet<u64> = ka.blocks.values().copied().collect();
        let got: BTreeSet<u64> = addrs(&coverage(&[sa, sb, "--op", op, "--as", "addrs"]))
            .into_iter()
            .collect();
        assert_eq!(got, pcs, "{op} in A's addresses");
        let pcs: BTreeSet<u64> = kb.blocks.values().copied().collect();
        let got: BTreeSet<u64> = addrs(&coverage(&[sb, sa, "--op", op, "--as", "addrs"]))
            .into_iter()
            .collect();
        assert_eq!(got, pcs, "{op} in B's addresses");
        let rows = coverage_json(&[sa, sb, "--op", op, "--as", "blocks"]);
        assert_eq!(module_offsets(&rows), by_offset, "{op} by module offset");
    }
    for (x, y) in [(sa, sb), (sb, sa)] {
        assert_eq!(coverage(&[x, y, "--op", "diff", "--as", "addrs"]), "");
    }
    // A union's executions are the sum of both runs'.
    let total = |rows: &[Value]| -> u64 { rows.iter().map(|r| r["execs"].as_u64().unwrap()).sum() };
    let one = total(&coverage_json(&[sa, "--as", "blocks"]));
    let two = total(&coverage_json(&[sb, "--as", "blocks"]));
    let both = total(&coverage_json(&[sa, sb, "--as", "blocks"]));
    assert_eq!(both, one + two);
}

/// Covered blocks of trace A and not of trace B, of both, and of either,
/// by DuckDB: the programs are static, so a block is the same block in
/// both when its address and code are. Prints the three lists of pcs.
const ALGEBRA: &str = r#"
import duckdb, json, sys
a, b = sys.argv[1], sys.argv[2]
duckdb.sql("SET enable_progress_bar = false")
def covered(t):
    return f"""SELECT d.pc, d.code FROM '{t}/block_dict/*.parquet' d
               JOIN (SELECT DISTINCT block_id FROM '{t}/block_counts/*.parquet') USING (block_id)"""
out = {}
for name, op in [("diff", "EXCEPT"), ("intersect", "INTERSECT"), ("union", "UNION")]:
    rows = duckdb.sql(f"SELECT DISTINCT pc FROM ({covered(a)} {op} {covered(b)}) ORDER BY pc").fetchall()
    out[name] = [r[0] for r in rows]
print(json.dumps(out))
"#;

#[test]
fn diff_holds_the_blocks_only_the_first_run_executed() {
    let Some(prog) = sample("x86_64", "endings") else {
        return;
    };
    let p = path_str(&prog);
    let (_da, a) = record(&[p, "exec-fail"], &[]);
    let (_db, b) = record(&[p, "exit", "0"], &[]);
    let (sa, sb) = (path_str(&a), path_str(&b));
    for (x, y) in [(sa, sb), (sb, sa)] {
        let v: Value = serde_json::from_str(&run_python_with(ALGEBRA, Path::new(x), &[y])).unwrap();
        let expected = |op: &str| -> Vec<u64> {
            v[op]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
                .collect()
        };
        for op in ["diff", "intersect", "union"] {
            let got = addrs(&coverage(&[x, y, "--op", op, "--as", "addrs"]));
            assert_eq!(got, expected(op), "{op} of {x} and {y}");
        }
        assert!(!expected("diff").is_empty());
    }
    // The run that failed an exec ran execve; the other did not.
    let symbols: BTreeSet<String> = coverage_json(&[sa, sb, "--op", "diff", "--as", "symbols"])
        .iter()
        .filter_map(|r| r["symbol"].as_str().map(str::to_string))
        .collect();
    assert!(symbols.contains("__execve"), "{symbols:?}");
}

/// Per function: covered blocks, their executions, distinct instruction
/// addresses and their bytes, by DuckDB. A block's function is QEMU's
/// symbol, or where QEMU has none, the function `nm` places there (from
/// the CSV `name,value,size` given as the second argument): one whose
/// extent holds the address, or one of unknown size that starts there.
const PER_SYMBOL: &str = r#"
import duckdb, json, sys
t, nm = sys.argv[1], sys.argv[2]
duckdb.sql("SET enable_progress_bar = false")
duckdb.sql(f"""CREATE TABLE nm AS SELECT * FROM read_csv('{nm}', header = false,
    columns = {{'name': 'VARCHAR', 'value': 'UBIGINT', 'size': 'UBIGINT'}})""")
duckdb.sql(f"""
    CREATE VIEW b AS
    SELECT coalesce(d.symbol, (SELECT min(name) FROM nm
                               WHERE (d.pc >= value AND d.pc < value + size)
                                  OR (size = 0 AND value = d.pc))) AS symbol,
           d.insns, c.execs
    FROM '{t}/block_dict/*.parquet' d
    JOIN (SELECT block_id, sum(execs) AS execs FROM '{t}/block_counts/*.parquet'
          GROUP BY block_id) c USING (block_id)""")
blocks = duckdb.sql("SELECT symbol, count(*), sum(execs) FROM b GROUP BY symbol").fetchall()
insns = duckdb.sql("""
    SELECT symbol, count(*), sum(len) FROM (
        SELECT symbol, i.addr, max(octet_length(i.bytes)) AS len
        FROM (SELECT symbol, unnest(insns) AS i FROM b)
        GROUP BY symbol, i.addr)
    GROUP BY symbol""").fetchall()
n = {s: [c, int(e), 0, 0] for s, c, e in blocks}
for s, c, l in insns:
    n[s][2:] = [c, int(l)]
print(json.dumps([[s] + v for s, v in n.items()]))
"#;

/// `nm -S --defined-only` of a file's functions as CSV `name,value,size`
/// (size 0 where nm gives none).
fn nm_functions_csv(file: &Path) -> String {
    let out = Command::new("nm")
        .args(["-S", "--defined-only"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "nm {}", file.display());
    let mut csv = String::new();
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (value, size, kind, name) = match f[..] {
            [v, s, k, n] => (v, s, k, n),
            [v, k, n] => (v, "0", k, n),
            _ => continue,
        };
        if matches!(kind, "t" | "T" | "i" | "W") {
            csv.push_str(&format!("{name},{},{}\n", hex(value), hex(size)));
        }
    }
    csv
}

#[test]
fn symbol_totals_match_duckdb() {
    let Some(prog) = sample("x86_64", "calls") else {
        return;
    };
    let (d, trace) = record(&[path_str(&prog), "3"], &[]);
    let nm = d.path().join("nm.csv");
    std::fs::write(&nm, nm_functions_csv(&prog)).unwrap();
    let v: Value =
        serde_json::from_str(&run_python_with(PER_SYMBOL, &trace, &[path_str(&nm)])).unwrap();
    let expected: BTreeMap<Option<String>, [u64; 4]> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let n = |i: usize| r[i].as_u64().unwrap();
            (r[0].as_str().map(str::to_string), [n(1), n(2), n(3), n(4)])
        })
        .collect();
    let mut got: BTreeMap<Option<String>, [u64; 4]> = BTreeMap::new();
    for r in coverage_json(&[path_str(&trace), "--as", "symbols"]) {
        let t = got
            .entry(r["symbol"].as_str().map(str::to_string))
            .or_default();
        for (i, k) in ["blocks", "execs", "insns", "bytes"].iter().enumerate() {
            t[i] += r[k].as_u64().unwrap();
        }
    }
    assert!(expected.len() > 20, "{expected:?}");
    assert_eq!(got, expected);
    // QEMU names these; nm alone names the startup code of crtbegin.o.
    for f in ["main", "step", "ping", "pong", "frame_dummy"] {
        assert!(got.contains_key(&Some(f.to_string())), "{f}");
    }
}

#[test]
fn bad_input_is_one_line_naming_it() {
    let Some(prog) = sample("x86_64", "hotloop") else {
        return;
    };
    let (_d, trace) = record(&[path_str(&prog)], &[]);
    let t = path_str(&trace);
    common::one_error_line(["coverage", "/nonexistent/trace"], "/nonexistent/trace");
    common::one_error_line(["coverage", t, "--as", "symbols", "--insns"], "--insns");
    common::one_error_line(
        [
            "coverage",
            t,
            "--as",
            "drcov",
            "-o",
            "/nonexistent/dir/x.drcov",
        ],
        "/nonexistent/dir/x.drcov",
    );
    if let Some(other) = sample("aarch64", "hotloop") {
        let (_d2, arm) = record(&[path_str(&other)], &[]);
        common::one_error_line(["coverage", t, path_str(&arm)], "different guests");
    }
}
