//! Filters (`ranges=`, `syms=`): a filtered trace holds exactly the blocks
//! of the full trace that the filter selects, each with exactly its count,
//! and nothing else.

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;

use e2e_support::*;

/// (pc, instructions) -> (symbol, executions), from `top-blocks` in JSON.
fn blocks(trace: &Path) -> BTreeMap<(u64, u64), (String, u64)> {
    top_blocks(trace, &["-n", "0"])
        .iter()
        .map(|r| {
            let pc =
                u64::from_str_radix(r["address"].as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap();
            let symbol = r["symbol"].as_str().unwrap_or("").to_string();
            (
                (pc, r["n_insns"].as_u64().unwrap()),
                (symbol, r["execs"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_filtered_trace_is_the_selected_part_of_the_full_one() {
    let prog = common::sample("x86_64", "hotloop").display().to_string();
    let (_full_dir, full) = record(&[&prog], &[]);
    let all = blocks(&full);
    let pick = |f: &dyn Fn(u64, &str) -> bool| -> BTreeMap<(u64, u64), (String, u64)> {
        all.iter()
            .filter(|((pc, _), (sym, _))| f(*pc, sym))
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    };

    // By symbol pattern.
    let (_d1, by_sym) = record(&[&prog], &["syms=coll*+sieve"]);
    let want = pick(&|_, s| s == "collatz" || s == "sieve");
    assert!(want.len() >= 5, "{want:?}");
    assert_eq!(blocks(&by_sym), want);

    // By address range: the collatz blocks' span.
    let collatz: Vec<u64> = all
        .iter()
        .filter(|(_, (s, _))| s == "collatz")
        .map(|((pc, _), _)| *pc)
        .collect();
    let (lo, hi) = (
        collatz.iter().min().unwrap(),
        collatz.iter().max().unwrap() + 1,
    );
    let range = format!("ranges={lo:#x}-{hi:#x}");
    let (_d2, by_range) = record(&[&prog], &[&range]);
    assert_eq!(blocks(&by_range), pick(&|pc, _| (*lo..hi).contains(&pc)));

    // The events written agree with the counters in a filtered trace too.
    let counts = top_blocks(&by_range, &["-n", "0", "--source", "counts"]);
    let events = top_blocks(&by_range, &["-n", "0", "--source", "events"]);
    assert_eq!(counts, events);
}

#[test]
fn bad_filters_refuse_the_load_naming_the_option() {
    let prog = common::sample("x86_64", "hotloop").display().to_string();
    for (opt, needle) in [("ranges=0x20-0x10", "ranges="), ("syms=a++b", "syms=")] {
        let dir = tempfile::tempdir().unwrap();
        let out = qtrace()
            .args(["record", "-O", opt, "-o"])
            .arg(dir.path().join("t.parquet"))
            .arg("--")
            .arg(&prog)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{opt}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{opt}: {err}");
    }
}
