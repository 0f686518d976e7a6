//! `qtrace regs` on real recordings, against DuckDB's reconstruction of the
//! same files as the format's README shows it (`last_value(... IGNORE
//! NULLS) OVER (PARTITION BY tid ORDER BY seq)`):
//!
//! - `--at [V:]B`: every register of the thread running block B, from its
//!   last reading at or before B, with the row each value was stored in;
//! - `--at seq=N`: the same at regs row N;
//! - `--history REG`: the value at every row, and with `--changes` exactly
//!   the rows that store it, and with `--pc` the block of each row;
//!
//! on a single-threaded sample with a wide register (`xmm0`), and on the
//! `threads` sample, whose vCPUs run several threads one after another.

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;

use e2e_support::*;
use serde_json::Value;

/// DuckDB's answer for points of a trace. Arguments: the trace, the
/// registers (comma-separated), the vCPU, and how many points to take.
/// Points are chosen from the trace itself: the `block_seq` of rows read at
/// system calls and of every few other rows, each also minus and plus one,
/// block 0, and the vCPU's last block. Prints one JSON object per point:
/// `{"point": B, "tid": T, "row": {...} or null, "stored": {...}}`, then
/// the same for rows `seq=N` (`"seq": N`).
const AT: &str = r#"
import duckdb, sys, json
t, regs, vcpu, step = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4])
duckdb.sql("SET enable_progress_bar = false")
duckdb.sql(f"""
    CREATE VIEW regs AS
        SELECT * FROM read_parquet('{t}/regs/*/*.parquet', hive_partitioning = true);
    CREATE VIEW regs_full AS
        SELECT vcpu, tid, seq, block_seq, syscall_seq,
               last_value(COLUMNS(* EXCLUDE (vcpu, tid, seq, block_seq, syscall_seq)) IGNORE NULLS)
                   OVER (PARTITION BY tid ORDER BY seq)
        FROM regs;
    CREATE TABLE runs AS
        SELECT tid, min(seq) AS first, max(seq) AS last
        FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true)
        WHERE vcpu = {vcpu} GROUP BY tid;
""")

def value(v):
    return v.hex() if isinstance(v, (bytes, bytearray)) else hex(v)

def answer(row):
    if row is None:
        return None, None
    cols = ["vcpu", "tid", "seq", "block_seq", "syscall_seq"] + regs
    r = dict(zip(cols, row))
    stored = {}
    for reg in regs:
        stored[reg] = duckdb.sql(f"""
            SELECT max(seq) FROM regs
            WHERE vcpu = {vcpu} AND tid = {r['tid']} AND seq <= {r['seq']} AND "{reg}" IS NOT NULL
        """).fetchall()[0][0]
    out = {k: r[k] for k in ["tid", "seq", "block_seq", "syscall_seq"]}
    out["values"] = {reg: value(r[reg]) for reg in regs}
    return out, stored

select = ", ".join(["vcpu", "tid", "seq", "block_seq", "syscall_seq"] + [f'"{r}"' for r in regs])
rows = duckdb.sql(f"SELECT seq, block_seq, syscall_seq FROM regs WHERE vcpu = {vcpu} ORDER BY seq").fetchall()
last_block = duckdb.sql("SELECT max(last) FROM runs").fetchall()[0][0]
points = {0, last_block}
for i, (seq, block_seq, syscall_seq) in enumerate(rows):
    if syscall_seq is not None or i % step == 0:
        points.update(p for p in (block_seq - 1, block_seq, block_seq + 1) if 0 <= p <= last_block)
for p in sorted(points):
    # A thread runs one stretch of its vCPU's blocks.
    tid = duckdb.sql(f"SELECT tid FROM runs WHERE first <= {p} AND {p} <= last").fetchall()[0][0]
    found = duckdb.sql(f"""
        SELECT {select} FROM regs_full
        WHERE vcpu = {vcpu} AND tid = {tid} AND block_seq <= {p}
        ORDER BY seq DESC LIMIT 1""").fetchall()
    row, stored = answer(found[0] if found else None)
    print(json.dumps({"point": p, "tid": tid, "row": row, "stored": stored}))
for i, (seq, _, _) in enumerate(rows):
    if i % step == 0 or i == len(rows) - 1:
        found = duckdb.sql(f"SELECT {select} FROM regs_full WHERE vcpu = {vcpu} AND seq = {seq}").fetchall()
        row, stored = answer(found[0])
        print(json.dumps({"seq": seq, "row": row, "stored": stored}))
"#;

/// Every row of a register, reconstructed: `vcpu tid seq value stored`.
const HISTORY: &str = r#"
import duckdb, sys
t, reg = sys.argv[1], sys.argv[2]
duckdb.sql("SET enable_progress_bar = false")
for vcpu, tid, seq, v, stored in duckdb.sql(f"""
    SELECT vcpu, tid, seq, last_value("{reg}" IGNORE NULLS) OVER (PARTITION BY tid ORDER BY seq),
           "{reg}" IS NOT NULL
    FROM read_parquet('{t}/regs/*/*.parquet', hive_partitioning = true)
    ORDER BY vcpu, seq""").fetchall():
    print(vcpu, tid, seq, v.hex() if isinstance(v, bytes) else hex(v), str(stored).lower())
"#;

/// `vcpu seq pc symbol` of the block of every row of `regs`.
const BLOCK_PCS: &str = r#"
import duckdb, sys
t = sys.argv[1]
duckdb.sql("SET enable_progress_bar = false")
for vcpu, seq, pc, sym in duckdb.sql(f"""
    SELECT r.vcpu, r.seq, d.pc, d.symbol
    FROM read_parquet('{t}/regs/*/*.parquet', hive_partitioning = true) r
    JOIN read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) b
      ON b.vcpu = r.vcpu AND b.seq = r.block_seq
    JOIN read_parquet('{t}/block_dict/*.parquet') d USING (block_id)
    ORDER BY r.vcpu, r.seq""").fetchall():
    print(vcpu, seq, hex(pc), sym or "-")
"#;

/// `qtrace ARGS --format json` as rows; on failure, the error line.
fn qtrace_rows(args: &[&str]) -> Result<Vec<Value>, String> {
    let out = qtrace()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone())
}

/// Checks `qtrace regs --at` at every point DuckDB chose; returns how many
/// had a row.
fn check_points(trace: &Path, regs: &[&str], vcpu: u32, step: usize) -> usize {
    let t = trace.to_str().unwrap();
    let expected = run_python_with(
        AT,
        trace,
        &[&regs.join(","), &vcpu.to_string(), &step.to_string()],
    );
    let mut with_row = 0;
    let mut points = 0;
    for line in expected.lines() {
        let want: Value = serde_json::from_str(line).unwrap();
        let point = match (want["point"].as_u64(), want["seq"].as_u64()) {
            (Some(b), _) => format!("{vcpu}:{b}"),
            (None, Some(n)) => format!("{vcpu}:seq={n}"),
            _ => unreachable!(),
        };
        points += 1;
        let got = qtrace_rows(&["regs", t, "--at", &point]);
        let Some(row) = want["row"].as_object() else {
            let e = got.expect_err(&point);
            assert!(
                e.contains("no regs row of thread") && e.contains(t),
                "{point}: {e}"
            );
            continue;
        };
        with_row += 1;
        let got = got.unwrap_or_else(|e| panic!("{point}: {e}"));
        let names: Vec<&str> = got
            .iter()
            .map(|r| r["register"].as_str().unwrap())
            .collect();
        assert_eq!(names, regs, "{point}");
        for r in &got {
            let reg = r["register"].as_str().unwrap();
            for key in ["tid", "seq", "block_seq", "syscall_seq"] {
                assert_eq!(r[key], row[key], "{point} {reg} {key}");
            }
            assert_eq!(r["vcpu"], vcpu, "{point}");
            assert_eq!(r["value"], row["values"][reg], "{point} {reg}");
            assert_eq!(r["stored_seq"], want["stored"][reg], "{point} {reg}");
        }
    }
    assert!(points > 20, "only {points} points:\n{expected}");
    with_row
}

/// `qtrace regs --history` against DuckDB, whole and `--changes`.
fn check_history(trace: &Path, reg: &str, extra: &[&str]) {
    let t = trace.to_str().unwrap();
    let tid: Option<u64> = extra
        .windows(2)
        .find(|w| w[0] == "--tid")
        .map(|w| w[1].parse().unwrap());
    let want: Vec<String> = run_python_with(HISTORY, trace, &[reg])
        .lines()
        .filter(|l| tid.is_none_or(|t| l.split(' ').nth(1) == Some(&t.to_string())))
        .map(str::to_string)
        .collect();
    assert!(want.len() > 10, "{reg}: {want:?}");
    let mut args = vec!["regs", t, "--history", reg];
    args.extend(extra);
    let line = |r: &Value| {
        format!(
            "{} {} {} {} {}",
            r["vcpu"],
            r["tid"],
            r["seq"],
            r["value"].as_str().unwrap(),
            r["stored"]
        )
    };
    let got: Vec<String> = qtrace_rows(&args).unwrap().iter().map(line).collect();
    assert_eq!(got, want, "{reg} {extra:?}");
    args.push("--changes");
    let changes: Vec<String> = qtrace_rows(&args).unwrap().iter().map(line).collect();
    let stored: Vec<String> = want.into_iter().filter(|l| l.ends_with(" true")).collect();
    assert_eq!(changes, stored, "{reg} {extra:?} --changes");
}

/// `--history --pc`: the block of each reading, as DuckDB joins it.
fn check_pcs(trace: &Path) {
    let want = run_python(BLOCK_PCS, trace);
    let t = trace.to_str().unwrap();
    let got: Vec<String> = qtrace_rows(&["regs", t, "--history", "rip", "--pc"])
        .unwrap()
        .iter()
        .map(|r| {
            let sym = r["symbol"].as_str().unwrap_or("-");
            format!(
                "{} {} {} {sym}",
                r["vcpu"],
                r["seq"],
                r["pc"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(got, want.lines().collect::<Vec<_>>());
}

#[test]
fn at_and_history_equal_duckdb_reconstruction() {
    let prog = sample("x86_64", "hotloop").expect("make -C samples");
    let (_dir, trace) = record(
        &[prog.to_str().unwrap()],
        &[
            "regs=rax+rdi+rsp+rip+xmm0",
            "regs_at=both",
            "regs_every=1000",
        ],
    );
    let regs = ["rax", "rdi", "rsp", "rip", "xmm0"];
    let with_row = check_points(&trace, &regs, 0, 250);
    assert!(with_row > 20, "{with_row}");
    for reg in regs {
        check_history(&trace, reg, &[]);
    }
    // The count the task names: rows that store rip.
    let t = trace.to_str().unwrap();
    let changes = qtrace_rows(&["regs", t, "--history", "rip", "--changes"]).unwrap();
    let count = run_python(
        r#"
import duckdb, sys
print(duckdb.sql(f"SELECT count(rip) FROM read_parquet('{sys.argv[1]}/regs/*/*.parquet')").fetchall()[0][0])
"#,
        &trace,
    );
    assert_eq!(changes.len().to_string(), count.trim());
    check_pcs(&trace);
    // `--reg` picks registers, in the order given.
    let some = qtrace_rows(&["regs", t, "--at", "5000", "--reg", "rsp", "--reg", "rax"]).unwrap();
    let names: Vec<&str> = some
        .iter()
        .map(|r| r["register"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rsp", "rax"]);
}

#[test]
fn threads_sharing_a_vcpu_keep_their_own_values() {
    let prog = sample("x86_64", "threads").expect("make -C samples");
    let (_dir, trace) = record(
        &[prog.to_str().unwrap()],
        &["regs=rsp+rip+rdi", "regs_at=both", "regs_every=50"],
    );
    let m = manifest(&trace);
    // The vCPU with the most threads, to test that the thread at the point
    // is the one whose registers are shown.
    let mut per_vcpu: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for t in m["threads"].as_array().unwrap() {
        per_vcpu
            .entry(t["vcpu"].as_u64().unwrap())
            .or_default()
            .push(t["tid"].as_u64().unwrap());
    }
    let (&vcpu, tids) = per_vcpu.iter().max_by_key(|(_, t)| t.len()).unwrap();
    assert!(tids.len() > 1, "{per_vcpu:?}");
    // In the guest's register order, as the table has them.
    check_points(&trace, &["rdi", "rsp", "rip"], vcpu as u32, 40);
    check_history(&trace, "rsp", &[]);
    check_pcs(&trace);
    // `--tid` alone picks the thread's vCPU; at the thread's last block it
    // is the thread running there.
    let thread = m["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == tids[1])
        .unwrap();
    let last = thread["first_seq"].as_u64().unwrap() + thread["block_events"].as_u64().unwrap() - 1;
    let t = trace.to_str().unwrap();
    let tid = tids[1].to_string();
    let by_tid = qtrace_rows(&["regs", t, "--at", &last.to_string(), "--tid", &tid]).unwrap();
    let by_point = qtrace_rows(&["regs", t, "--at", &format!("{vcpu}:{last}")]).unwrap();
    assert_eq!(by_tid, by_point);
    assert!(by_tid
        .iter()
        .all(|r| r["tid"] == tids[1] && r["vcpu"] == vcpu));
    check_history(&trace, "rdi", &["--tid", &tid]);
}

#[test]
fn errors_name_the_trace_and_what_is_wrong() {
    let prog = sample("x86_64", "hotloop").expect("make -C samples");
    let prog = prog.to_str().unwrap();
    let (_dir, plain) = record(&[prog], &[]);
    let (_dir2, with) = record(&[prog], &["regs=rax+rsp"]);
    let p = plain.to_str().unwrap();
    let w = with.to_str().unwrap();
    for (args, expect) in [
        (
            vec!["regs", p, "--at", "5"],
            vec![p, "no regs table", "-O regs="],
        ),
        (
            vec!["regs", w, "--history", "rbx"],
            vec![w, "no register `rbx`", "rax, rsp"],
        ),
        (
            vec!["regs", w, "--at", "0:x"],
            vec!["`x` is not a block_seq"],
        ),
        (vec!["regs", w, "--at", "seq=-1"], vec!["`-1`"]),
        (
            vec!["regs", w, "--at", "3:5"],
            vec![w, "no regs rows on vCPU 3"],
        ),
        (
            vec!["regs", w, "--at", "seq=999999"],
            vec![w, "no regs row seq=999999"],
        ),
        (vec!["regs", w], vec!["--at", "--history"]),
        (
            vec!["regs", "/nonexistent/trace", "--at", "1"],
            vec!["/nonexistent/trace"],
        ),
    ] {
        let out = qtrace().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        for e in expect {
            assert!(err.contains(e), "{args:?}: {err}");
        }
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
