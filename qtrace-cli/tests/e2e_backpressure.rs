//! Back-pressure: what a vCPU has handed to the writers and they have not
//! written is capped (`max_memory=`). By default the vCPU waits and nothing
//! is lost; with `backpressure=drop` whole buffers are dropped, and the
//! manifest says exactly which rows, so that sealed and dropped rows
//! together are every event QEMU's own plugins counted, each once.

mod common;
mod e2e_support;

use e2e_support::*;
use serde_json::Value;

/// A guest whose memory accesses come faster than one writer encodes them.
fn argv() -> Vec<String> {
    let prog = common::sample("x86_64", "hotloop");
    vec![prog.display().to_string(), "12".into()]
}

/// Per table: the `seq` values in the sealed parts that fall in a dropped
/// range (must be none), the rows sealed and the distinct `seq` sealed.
const SEALED: &str = r#"
import duckdb, json, sys
t = sys.argv[1]
m = json.load(open(f"{t}/manifest.json"))
duckdb.sql("SET enable_progress_bar = false")
for table in ["blocks", "mem"]:
    ranges = [r for d in m["dropped"] if d["table"] == table for r in d["ranges"]]
    duckdb.sql("CREATE OR REPLACE TABLE dropped (lo UBIGINT, n UBIGINT)")
    if ranges:
        duckdb.executemany("INSERT INTO dropped VALUES (?, ?)", ranges)
    inside, rows, distinct = duckdb.sql(f"""
        WITH s AS (SELECT seq FROM read_parquet('{t}/{table}/*/*.parquet'))
        SELECT (SELECT count(*) FROM s JOIN dropped ON s.seq >= lo AND s.seq < lo + n),
               (SELECT count(*) FROM s), (SELECT count(DISTINCT seq) FROM s)""").fetchall()[0]
    print(table, inside, rows, distinct)
"#;

fn dropped_rows(m: &Value, table: &str) -> u64 {
    m["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["table"] == table)
        .map(|d| d["rows"].as_u64().unwrap())
        .sum()
}

#[test]
fn drop_mode_counts_exactly_what_it_drops() {
    let argv = argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let options = [
        "mem=values",
        "backpressure=drop",
        "max_memory=1M",
        "buffer=65536",
        "zstd=9",
    ];
    let ((_dir, trace), printed) = record_beside(&argv, &options, &["bb", "mem,inline=true"]);
    let m = manifest(&trace);
    let (_, (bb_blocks, _)) = parse_bb(&printed);
    let accesses = libmem_count(&printed);
    let (dropped_blocks, dropped_mem) = (dropped_rows(&m, "blocks"), dropped_rows(&m, "mem"));
    assert!(
        dropped_blocks > 0 && dropped_mem > 0,
        "nothing dropped: {}",
        m["dropped"]
    );
    assert_eq!(m["complete"], false, "a trace with drops is not complete");

    let out = run_python(SEALED, &trace);
    let mut sealed = std::collections::BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "{out}");
        let n: Vec<u64> = f[1..].iter().map(|x| x.parse().unwrap()).collect();
        assert_eq!(n[0], 0, "{}: sealed rows inside dropped ranges", f[0]);
        assert_eq!(n[1], n[2], "{}: a seq twice", f[0]);
        sealed.insert(f[0].to_string(), n[1]);
    }
    assert_eq!(sealed["blocks"] + dropped_blocks, bb_blocks, "blocks");
    assert_eq!(sealed["mem"] + dropped_mem, accesses, "memory accesses");
}

#[test]
fn wait_mode_loses_nothing_under_a_small_cap() {
    let argv = argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let options = ["mem=values", "max_memory=1M", "buffer=65536"];
    let ((_dir, trace), printed) = record_beside(&argv, &options, &["bb", "mem,inline=true"]);
    let m = manifest(&trace);
    assert_eq!(m["complete"], true, "{}", m["errors"]);
    assert!(m["dropped"].as_array().unwrap().is_empty());
    let (per_vcpu, _) = parse_bb(&printed);
    for (vcpu, (blocks, _, events)) in manifest_totals(&trace) {
        assert_eq!(events, blocks, "vCPU {vcpu}");
        assert_eq!(blocks, per_vcpu[&vcpu].0, "vCPU {vcpu} against libbb");
    }
    let mem: u64 = vcpu_fields(&trace, &["mem_accesses"])
        .iter()
        .map(|f| f[0])
        .sum();
    assert_eq!(mem, libmem_count(&printed));
}
