//! `qtrace diff`: two real runs of the `branchy` sample, whose input
//! differs in the one byte it branches on. The first divergence must be
//! that branch, at the `seq` DuckDB finds by joining the two block streams;
//! the read whose data differ and the load of the differing byte must be
//! named; the count differences must equal DuckDB's set algebra over
//! `block_counts`.

mod common;
mod e2e_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use e2e_support::*;
use serde_json::Value;

/// Two recordings of `branchy`; the directories live as long as this.
struct Runs {
    a: PathBuf,
    b: PathBuf,
    _dirs: [tempfile::TempDir; 3],
}

/// Records `branchy` on an input file holding `first`, then `second` (the
/// same path, so that both runs have the same command line); `None` when
/// the sample was not built for `arch`.
fn two_runs(arch: &str, first: &str, second: &str, options: &[&str]) -> Option<Runs> {
    let prog = sample(arch, "branchy")?;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    let argv = [prog.display().to_string(), input.display().to_string()];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    std::fs::write(&input, first).unwrap();
    let (da, a) = record(&argv, options);
    std::fs::write(&input, second).unwrap();
    let (db, b) = record(&argv, options);
    Some(Runs {
        a,
        b,
        _dirs: [dir, da, db],
    })
}

/// `qtrace diff A B ARGS... --format json`, parsed.
fn diff_json(a: &Path, b: &Path, args: &[&str]) -> Value {
    let out = qtrace()
        .arg("diff")
        .arg(a)
        .arg(b)
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diff {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// DuckDB over both traces (argv: A, B, mode).
const ORACLE: &str = r#"
import duckdb, sys
a, b, mode = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
con.sql("SET enable_progress_bar=false")
def blocks(t):
    return f"""(SELECT x.vcpu, x.seq, d.pc, d.code, d.insns
                FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) x
                JOIN read_parquet('{t}/block_dict/*.parquet') d USING (block_id))"""
def counts(t):
    return f"""(SELECT d.pc, d.code, sum(c.execs) AS execs
                FROM read_parquet('{t}/block_counts/*.parquet') c
                JOIN read_parquet('{t}/block_dict/*.parquet') d USING (block_id)
                GROUP BY ALL)"""
if mode == "first":
    for v, s in con.sql(f"""SELECT x.vcpu, min(x.seq) FROM {blocks(a)} x JOIN {blocks(b)} y USING (vcpu, seq)
                            WHERE x.pc <> y.pc OR x.code <> y.code GROUP BY ALL ORDER BY ALL""").fetchall():
        print("first", v, s)
        for (d,) in con.sql(f"""SELECT unnest(insns).disas FROM {blocks(a)}
                                WHERE vcpu = {v} AND seq = {s - 1}""").fetchall():
            print("disas", d)
    for (buf,) in con.sql(f"""SELECT arg1 FROM read_parquet('{a}/syscalls/*/*.parquet')
                              WHERE name = 'read' ORDER BY seq""").fetchall():
        print("read", buf)
else:
    for (pc,) in con.sql(f"SELECT pc FROM (SELECT pc, code FROM {counts(a)} EXCEPT SELECT pc, code FROM {counts(b)})").fetchall():
        print("only-a", pc)
    for (pc,) in con.sql(f"SELECT pc FROM (SELECT pc, code FROM {counts(b)} EXCEPT SELECT pc, code FROM {counts(a)})").fetchall():
        print("only-b", pc)
    for pc, x, y in con.sql(f"""SELECT x.pc, x.execs, y.execs FROM {counts(a)} x JOIN {counts(b)} y USING (pc, code)
                                WHERE x.execs <> y.execs""").fetchall():
        print("changed", pc, x, y)
"#;

fn oracle_lines(a: &Path, b: &Path, mode: &str) -> Vec<Vec<String>> {
    run_python_with(ORACLE, a, &[&b.display().to_string(), mode])
        .lines()
        .map(|l| l.split(' ').map(str::to_string).collect())
        .collect()
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not an address: {v}"));
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn first_divergence_is_the_branch(arch: &str) {
    let opts = ["syscall_data=64", "mem=values"];
    let Some(runs) = two_runs(arch, "xyzaxyz\n", "xyzbxyz\n", &opts) else {
        assert_ne!(arch, "x86_64", "samples not built");
        return;
    };
    let (a, b) = (&runs.a, &runs.b);
    let found = diff_json(a, b, &["--first"]);
    let reports = found.as_array().unwrap();
    assert_eq!(reports.len(), 1, "one vCPU: {found}");
    let r = &reports[0];
    assert_eq!(r["diverges"], true, "{r}");
    assert_eq!(r["how"], "blocks differ", "{r}");

    // DuckDB: the lowest seq where the blocks' address or code differ.
    let oracle = oracle_lines(a, b, "first");
    let first: Vec<&Vec<String>> = oracle.iter().filter(|l| l[0] == "first").collect();
    assert_eq!(first.len(), 1, "{oracle:?}");
    assert_eq!(first[0][1], "0", "vCPU");
    let seq: u64 = first[0][2].parse().unwrap();
    assert_eq!(r["seq"].as_u64(), Some(seq), "{r}");

    // The last common block is decide()'s, which compares the byte; the
    // first blocks that differ are path_a's and path_b's.
    let common = r["common"].as_array().unwrap();
    assert_eq!(common.len(), 5, "{r}");
    let last = common.last().unwrap();
    assert_eq!(last["seq"].as_u64(), Some(seq - 1));
    assert_eq!(last["symbol"], "decide", "{r}");
    assert!(last["place"].as_str().unwrap().starts_with("branchy+0x"));
    let disas: Vec<&str> = oracle
        .iter()
        .filter(|l| l[0] == "disas")
        .map(|l| l[1].as_str())
        .collect();
    assert!(
        disas.iter().any(|d| d.starts_with("cmp")),
        "decide's block compares: {disas:?}"
    );
    assert_eq!(r["a"]["symbol"], "path_a", "{r}");
    assert_eq!(r["b"]["symbol"], "path_b", "{r}");
    assert_eq!(r["a"]["seq"].as_u64(), Some(seq));
    assert!(!r["a"]["insns"].as_array().unwrap().is_empty());
    assert_ne!(r["a"]["address"], r["b"]["address"]);

    // Explained by the read whose data differ...
    let why = &r["explained_by"];
    let call = &why["syscall"];
    assert_eq!(call["name"], "read", "{why}");
    assert_eq!(call["differs"], "data", "{why}");
    assert_eq!(call["a"]["text"], "xyzaxyz\\n", "{why}");
    assert_eq!(call["b"]["text"], "xyzbxyz\\n", "{why}");
    // ...and by the load of byte 3 of the buffer it read into.
    let buffer: u64 = oracle
        .iter()
        .rfind(|l| l[0] == "read")
        .map(|l| l[1].parse().unwrap())
        .unwrap();
    let loads = why["loads"].as_array().unwrap();
    let byte = loads
        .iter()
        .find(|l| l["size"] == 1)
        .unwrap_or_else(|| panic!("no byte load: {why}"));
    assert_eq!(hex(&byte["addr_a"]), buffer + 3, "{why}");
    assert_eq!(hex(&byte["value_a"]), u64::from(b'a'), "{why}");
    assert_eq!(hex(&byte["value_b"]), u64::from(b'b'), "{why}");

    // The table says the same in words.
    let out = qtrace()
        .args(["diff", "--first"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("part at seq {seq}")), "{text}");
    assert!(text.contains("system call read"), "{text}");
    assert!(text.contains("A 0x61, B 0x62"), "{text}");
}

#[test]
fn first_divergence_is_the_branch_x86_64() {
    first_divergence_is_the_branch("x86_64");
}

#[test]
fn first_divergence_is_the_branch_aarch64() {
    first_divergence_is_the_branch("aarch64");
}

/// Without syscall data or memory values, nothing recorded explains the
/// branch: the read returned as many bytes in both runs, and the calls
/// that return ids differ in any two runs.
#[test]
fn without_data_nothing_explains_it() {
    let runs = two_runs("x86_64", "xyzaxyz\n", "xyzbxyz\n", &[]).unwrap();
    let (a, b) = (&runs.a, &runs.b);
    let r = &diff_json(a, b, &["--first"])[0];
    let why = &r["explained_by"];
    assert!(why["syscall"].is_null(), "{why}");
    assert_eq!(
        why["id_calls_differ"],
        serde_json::json!(["set_tid_address", "getppid"]),
        "{why}"
    );
    assert!(why["loads"].as_array().unwrap().is_empty());
    let out = qtrace()
        .args(["diff", "--first"])
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("nothing recorded explains it"), "{text}");
}

#[test]
fn identical_runs_do_not_diverge() {
    let runs = two_runs("x86_64", "xyzaxyz\n", "xyzaxyz\n", &[]).unwrap();
    let (a, b) = (&runs.a, &runs.b);
    let found = diff_json(a, b, &["--first"]);
    for r in found.as_array().unwrap() {
        assert_eq!(r["diverges"], false, "{r}");
        assert_eq!(r["events_a"], r["events_b"]);
    }
    for show in ["only-a", "only-b"] {
        let rows = diff_json(a, b, &["--show", show, "-n", "0"]);
        assert_eq!(rows, serde_json::json!([]), "{show}");
    }
}

#[test]
fn counts_equal_duckdb_set_algebra() {
    let runs = two_runs("x86_64", "xyzaxyz\n", "xyzbxyz\n", &[]).unwrap();
    let (a, b) = (&runs.a, &runs.b);
    let oracle = oracle_lines(a, b, "counts");
    let expect = |kind: &str| -> BTreeSet<Vec<u64>> {
        oracle
            .iter()
            .filter(|l| l[0] == kind)
            .map(|l| l[1..].iter().map(|x| x.parse().unwrap()).collect())
            .collect()
    };
    assert!(!expect("only-a").is_empty() && !expect("only-b").is_empty());
    for source in ["counts", "events"] {
        let rows = diff_json(a, b, &["-n", "0", "--source", source]);
        let got = |kind: &str| -> BTreeSet<Vec<u64>> {
            rows.as_array()
                .unwrap()
                .iter()
                .filter(|r| r["status"] == kind)
                .map(|r| match kind {
                    "only-a" => vec![hex(&r["address_a"])],
                    "only-b" => vec![hex(&r["address_b"])],
                    _ => vec![
                        hex(&r["address_a"]),
                        r["execs_a"].as_u64().unwrap(),
                        r["execs_b"].as_u64().unwrap(),
                    ],
                })
                .collect()
        };
        for kind in ["only-a", "only-b", "changed"] {
            assert_eq!(got(kind), expect(kind), "{kind} from {source}");
        }
        // Ranked by the size of the change.
        let deltas: Vec<u64> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["delta"].as_i64().unwrap().unsigned_abs())
            .collect();
        assert!(deltas.windows(2).all(|w| w[0] >= w[1]), "{deltas:?}");
    }
    // Per symbol: path_a ran only in A, path_b only in B.
    let by_symbol = diff_json(a, b, &["--by", "symbol", "-n", "0"]);
    let status = |sym: &str| {
        by_symbol
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["symbol"] == sym)
            .map(|r| r["status"].clone())
    };
    assert_eq!(status("path_a"), Some("only-a".into()), "{by_symbol}");
    assert_eq!(status("path_b"), Some("only-b".into()), "{by_symbol}");
    assert_eq!(status("decide"), None, "decide ran once in each");
}

#[test]
fn a_missing_or_foreign_trace_is_one_line_naming_it() {
    let runs = two_runs("x86_64", "xyzaxyz\n", "xyzaxyz\n", &[]).unwrap();
    let a = &runs.a;
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("nope.parquet");
    for b in [missing.as_path(), empty.path()] {
        let out = qtrace().arg("diff").arg(a).arg(b).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&b.display().to_string()), "{err}");
        assert!(err.contains("trace B"), "{err}");
    }
    let Some(other) = two_runs("aarch64", "xyza", "xyza", &[]) else {
        return;
    };
    let out = qtrace().arg("diff").arg(a).arg(&other.a).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("different architectures"), "{err}");
}

/// rax at the `regs` row read at the entry of block `seq`, rebuilt from
/// the nulls-when-unchanged rows as the format's README does it.
const RAX_AT: &str = r#"
import duckdb, sys
t, seq = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.sql("SET enable_progress_bar=false")
(rax,) = con.sql(f"""SELECT last_value(rax IGNORE NULLS) OVER (PARTITION BY tid ORDER BY seq) AS rax, block_seq
    FROM read_parquet('{t}/regs/*/*.parquet')
    QUALIFY block_seq = {seq}""").fetchall()[0][:1]
print(rax)
"#;

/// With registers read at every block, the registers that differ at the
/// entry of the first differing block are named (not its address), with
/// the values DuckDB rebuilds.
#[test]
fn registers_that_differ_at_the_point_are_named() {
    let opts = ["regs=rax+rip", "regs_at=blocks"];
    let runs = two_runs("x86_64", "xyzaxyz\n", "xyzbxyz\n", &opts).unwrap();
    let r = &diff_json(&runs.a, &runs.b, &["--first"])[0];
    let seq = r["seq"].as_u64().unwrap();
    let regs = &r["explained_by"]["registers"];
    assert_eq!(regs["block_seq"].as_u64(), Some(seq), "{regs}");
    let named: Vec<&Value> = regs["registers"].as_array().unwrap().iter().collect();
    assert!(named.iter().all(|x| x["name"] != "rip"), "{regs}");
    let rax = |t: &Path| -> u64 {
        run_python_with(RAX_AT, t, &[&seq.to_string()])
            .trim()
            .parse()
            .unwrap()
    };
    let (ra, rb) = (rax(&runs.a), rax(&runs.b));
    let listed = named.iter().find(|x| x["name"] == "rax");
    if ra == rb {
        assert!(listed.is_none(), "{regs}");
    } else {
        let listed = listed.unwrap_or_else(|| panic!("rax differs: {regs}"));
        assert_eq!((hex(&listed["a"]), hex(&listed["b"])), (ra, rb));
    }
}

/// Several threads, so several vCPUs, searched in parallel: each vCPU's
/// answer is DuckDB's join of that vCPU's two streams, or, where no block
/// differs, the end of the shorter stream.
#[test]
fn every_vcpu_of_a_threaded_run_is_searched() {
    let prog = sample("x86_64", "threads").expect("make -C samples");
    let argv = [prog.to_str().unwrap()];
    let (_da, a) = record(&argv, &[]);
    let (_db, b) = record(&argv, &[]);
    let found = diff_json(&a, &b, &["--first"]);
    let found = found.as_array().unwrap();
    let oracle: Vec<(u64, u64)> = oracle_lines(&a, &b, "first")
        .iter()
        .filter(|l| l[0] == "first")
        .map(|l| (l[1].parse().unwrap(), l[2].parse().unwrap()))
        .collect();
    let vcpus: BTreeSet<u64> = found.iter().map(|r| r["vcpu"].as_u64().unwrap()).collect();
    assert!(vcpus.len() > 1, "{found:?}");
    assert_eq!(vcpus.len(), found.len());
    for r in found {
        let v = r["vcpu"].as_u64().unwrap();
        let (ea, eb) = (
            r["events_a"].as_u64().unwrap(),
            r["events_b"].as_u64().unwrap(),
        );
        match oracle.iter().find(|o| o.0 == v) {
            Some(&(_, seq)) => {
                assert_eq!(r["seq"], seq, "vCPU {v}: {r}");
                assert_eq!(r["how"], "blocks differ", "vCPU {v}: {r}");
            }
            None if ea == eb => assert_eq!(r["diverges"], false, "vCPU {v}: {r}"),
            None => assert_eq!(r["seq"], ea.min(eb), "vCPU {v}: {r}"),
        }
    }
}
