//! A trace is standard Parquet: DuckDB and pyarrow/pandas read the directory
//! as it is, and their answers equal qtrace's.

mod common;
mod e2e_support;

use std::collections::BTreeMap;

use e2e_support::*;

const DUCKDB_COUNTS: &str = r#"
import duckdb, sys
t = sys.argv[1]
rows = duckdb.sql(f"""
    SELECT vcpu, block_id, count(*) AS execs
    FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true)
    GROUP BY ALL ORDER BY ALL""").fetchall()
for vcpu, block, execs in rows:
    print(vcpu, block, execs)
"#;

const DUCKDB_TOTALS: &str = r#"
import duckdb, sys
t = sys.argv[1]
seq = duckdb.sql(f"""
    SELECT vcpu, min(seq), max(seq), count(*)
    FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true)
    GROUP BY vcpu ORDER BY vcpu""").fetchall()
for vcpu, lo, hi, n in seq:
    print("seq", vcpu, lo, hi, n)
insns = duckdb.sql(f"""
    SELECT b.vcpu, sum(d.n_insns)
    FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) b
    JOIN read_parquet('{t}/block_dict/*.parquet') d USING (block_id)
    GROUP BY b.vcpu ORDER BY b.vcpu""").fetchall()
for vcpu, n in insns:
    print("insns", vcpu, n)
"#;

const PANDAS: &str = r#"
import sys
import pandas as pd
import pyarrow.dataset as ds
t = sys.argv[1]
blocks = ds.dataset(t + "/blocks", format="parquet", partitioning="hive")
print("rows", blocks.count_rows())
d = pd.read_parquet(t + "/block_dict")
print("dict", len(d), int((d["n_insns"] == d["insns"].map(len)).sum()))
c = pd.read_parquet(t + "/block_counts")
print("execs", int(c["execs"].sum()))
"#;

fn hotloop_trace() -> (tempfile::TempDir, std::path::PathBuf) {
    let prog = sample("x86_64", "hotloop").expect("samples not built: make -C samples");
    record(&[&prog.display().to_string()], &[])
}

#[test]
fn duckdb_counts_equal_top_blocks() {
    let (_dir, trace) = hotloop_trace();
    let mut duck: BTreeMap<u64, u64> = BTreeMap::new();
    for line in run_python(DUCKDB_COUNTS, &trace).lines() {
        let f: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        *duck.entry(f[1]).or_default() += f[2];
    }
    let ours: BTreeMap<u64, u64> = top_blocks(&trace, &["-n", "0"])
        .iter()
        .map(|r| {
            (
                r["block_id"].as_u64().unwrap(),
                r["execs"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(ours.len() > 100);
    assert_eq!(duck, ours);
}

#[test]
fn duckdb_sees_contiguous_sequences_and_the_instruction_totals() {
    let (_dir, trace) = hotloop_trace();
    let totals = manifest_totals(&trace);
    let out = run_python(DUCKDB_TOTALS, &trace);
    let mut seen = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let n = |i: usize| f[i].parse::<u64>().unwrap();
        let (blocks, insns, _) = totals[&n(1)];
        match f[0] {
            "seq" => {
                assert_eq!((n(2), n(3), n(4)), (0, blocks - 1, blocks), "{line}");
                seen += 1;
            }
            "insns" => assert_eq!(n(2), insns, "{line}"),
            _ => panic!("{line}"),
        }
    }
    assert_eq!(seen, totals.len());
}

#[test]
fn pandas_and_pyarrow_read_every_table() {
    let (_dir, trace) = hotloop_trace();
    let m = manifest(&trace);
    let blocks: u64 = manifest_totals(&trace).values().map(|t| t.0).sum();
    let distinct = m["distinct_blocks"].as_u64().unwrap();
    let out = run_python(PANDAS, &trace);
    assert_eq!(
        out,
        format!("rows {blocks}\ndict {distinct} {distinct}\nexecs {blocks}\n")
    );
}
