//! Guest threads: every row of every table says which thread made it (`tid`,
//! the guest's own thread id), even when linux-user gives a later thread the
//! vCPU index of one that has exited.

mod common;
mod e2e_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use e2e_support::*;

const ROWS_PER_THREAD: &str = r#"
import duckdb, sys
t = sys.argv[1]
for table in ["blocks", "mem", "syscalls"]:
    for vcpu, tid, n, lo, hi in duckdb.sql(f"""
        SELECT vcpu, tid, count(*), min(seq), max(seq)
        FROM read_parquet('{t}/{table}/*/*.parquet', hive_partitioning = true)
        GROUP BY ALL ORDER BY ALL""").fetchall():
        print(table, vcpu, tid, n, lo, hi)
"#;

#[test]
fn every_row_names_its_guest_thread() {
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = sample(arch, "threads") else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("t.parquet");
        let out = qtrace()
            .args(["record", "-O", "mem=addr", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&prog)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{arch}: {:?}", out.status);
        // The guest's own view: its main thread and its 9 workers.
        let guest_tids: BTreeSet<u64> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("tid="))
            .map(|t| t.parse().unwrap())
            .collect();
        assert_eq!(guest_tids.len(), 10, "{arch}: {guest_tids:?}");

        let m = manifest(&trace);
        assert_eq!(m["complete"], true);
        let threads = m["threads"].as_array().unwrap();
        let manifest_tids: BTreeSet<u64> =
            threads.iter().map(|t| t["tid"].as_u64().unwrap()).collect();
        assert_eq!(manifest_tids, guest_tids, "{arch}: manifest threads");
        let vcpus: BTreeSet<u64> = threads
            .iter()
            .map(|t| t["vcpu"].as_u64().unwrap())
            .collect();
        assert!(
            vcpus.len() < 10,
            "{arch}: vCPU indices were reused: {vcpus:?}"
        );

        // Per table: each thread's rows, and its blocks as the manifest says.
        let mut seen: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
        let text = run_python(ROWS_PER_THREAD, &trace);
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let n = |i: usize| f[i].parse::<u64>().unwrap();
            seen.entry(f[0]).or_default().insert(n(2));
            if f[0] == "blocks" {
                let t = threads
                    .iter()
                    .find(|t| t["tid"].as_u64() == Some(n(2)))
                    .unwrap_or_else(|| panic!("{arch}: thread {} not in manifest", n(2)));
                assert_eq!(t["vcpu"].as_u64(), Some(n(1)), "{line}");
                assert_eq!(t["block_events"].as_u64(), Some(n(3)), "{line}");
                assert_eq!(t["first_seq"].as_u64(), Some(n(4)), "{line}");
                assert_eq!(
                    n(4) + n(3) - 1,
                    n(5),
                    "{arch}: one thread's rows are contiguous"
                );
            }
        }
        for table in ["blocks", "mem", "syscalls"] {
            assert_eq!(
                seen.get(table),
                Some(&guest_tids),
                "{arch}: tids in {table}"
            );
        }
    }
}

/// A single-threaded guest is one thread, which ran every block.
#[test]
fn a_single_threaded_guest_is_one_thread() {
    let prog = common::sample("x86_64", "hotloop");
    let (_dir, trace) = record(&[&prog.display().to_string()], &[]);
    let m = manifest(&trace);
    let threads = m["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 1, "{threads:?}");
    assert_eq!(threads[0]["first_seq"], 0);
    assert_eq!(threads[0]["block_events"], m["vcpus"][0]["block_events"]);
}
