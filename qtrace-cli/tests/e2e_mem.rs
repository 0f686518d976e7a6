//! Memory accesses (`-O mem=values`) against QEMU's own `libmem`: the same
//! number of accesses, and, access by access, the same instruction, address,
//! size, direction and value; and a sample's known pattern of every width.

mod common;
mod e2e_support;

use std::collections::BTreeMap;

use e2e_support::*;

/// Every access of a trace, in order, in `libmem`'s terms: instruction
/// address (found through `block_seq` -> `blocks` -> `block_dict`), address,
/// size in bits, load or store, value in hex.
const ACCESSES: &str = r#"
import duckdb, sys
t = sys.argv[1]
rows = duckdb.sql(f"""
    SELECT d.insns[m.insn + 1].addr, m.addr, m.size, m.store, m.value, m.value_hi
    FROM read_parquet('{t}/mem/*/*.parquet', hive_partitioning = true) m
    JOIN read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) b
      ON b.vcpu = m.vcpu AND b.seq = m.block_seq
    JOIN read_parquet('{t}/block_dict/*.parquet') d ON d.block_id = b.block_id
    ORDER BY m.vcpu, m.seq""").fetchall()
for insn, addr, size, store, value, hi in rows:
    v = f"{hi:016x}{value:016x}" if size == 16 else f"{value:0{size * 2}x}"
    print(f"{insn:x} {addr:x} {size * 8} {'store' if store else 'load'} {v}")
"#;

/// `libmem,print-accesses=on` lines in the same terms.
fn libmem_accesses(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with("0x"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let hex = |s: &str| s.trim_start_matches("0x").to_string();
            format!(
                "{} {} {} {} {}",
                hex(f[0]),
                hex(f[2]),
                f[4],
                f[5],
                hex(f[6])
            )
        })
        .collect()
}

fn mem_total(trace: &std::path::Path) -> u64 {
    let m = manifest(trace);
    assert_eq!(m["complete"], true);
    m["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["mem_accesses"].as_u64().unwrap())
        .sum()
}

fn assert_count_matches_libmem(arch: &str, argv: &[&str], static_guest: bool) {
    let ((_dir, trace), printed) = record_beside(argv, &["mem=values"], &["mem,inline=true"]);
    assert_eq!(mem_total(&trace), libmem_count(&printed), "{argv:?}");
    if static_guest {
        let separate = oracle(arch, "mem,inline=true", argv);
        assert_eq!(
            mem_total(&trace),
            libmem_count(&separate),
            "{argv:?}, separate run"
        );
    }
}

#[test]
fn access_counts_equal_libmem() {
    for arch in ["x86_64", "aarch64", "riscv64"] {
        if let Some(prog) = sample(arch, "hotloop") {
            assert_count_matches_libmem(arch, &[&prog.display().to_string()], true);
        }
    }
}

#[test]
fn debian_xz_access_count_equals_libmem() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    let text: String = (0..3000)
        .map(|i| format!("line {i} {}\n", i * 7919 % 1000))
        .collect();
    std::fs::write(&input, text).unwrap();
    let input = input.display().to_string();
    assert_count_matches_libmem("x86_64", &["/usr/bin/xz", "-1", "-T1", "-c", &input], false);
}

#[test]
fn every_access_equals_libmem_access_by_access() {
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = sample(arch, "memvalues") else {
            continue;
        };
        let argv = [prog.display().to_string()];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ((_dir, trace), printed) =
            record_beside(&argv, &["mem=values"], &["mem,print-accesses=on"]);
        let theirs = libmem_accesses(&printed);
        let ours: Vec<String> = run_python(ACCESSES, &trace)
            .lines()
            .map(String::from)
            .collect();
        assert!(
            theirs.len() > 1000,
            "{arch}: libmem printed {}",
            theirs.len()
        );
        assert_eq!(ours.len(), theirs.len(), "{arch}: number of accesses");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "{arch}: access {i}");
        }
    }
}

/// An address the memvalues sample prints (`key0x...`): static, so the same
/// in every run of that binary.
fn printed_address(arch: &str, prog: &std::path::Path, key: &str) -> u64 {
    let out = std::process::Command::new(common::qemu(arch))
        .arg(prog)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .map(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).unwrap())
        .unwrap_or_else(|| panic!("{key} in {stdout}"))
}

/// The sample's pattern, read back from the trace at the address it prints.
#[test]
fn known_values_of_every_width() {
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = sample(arch, "memvalues") else {
            continue;
        };
        let buf = printed_address(arch, &prog, "buf=");
        let (_dir, trace) = record(&[&prog.display().to_string()], &["mem=values"]);
        let mut seen: BTreeMap<(u64, &str), Vec<String>> = BTreeMap::new();
        let lines = run_python(ACCESSES, &trace);
        for line in lines.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let addr = u64::from_str_radix(f[1], 16).unwrap();
            if (buf..buf + 32).contains(&addr) {
                seen.entry((addr - buf, f[3]))
                    .or_default()
                    .push(format!("{} {}", f[2], f[4]));
            }
        }
        let expect = [
            (0, "8 11"),
            (2, "16 2222"),
            (4, "32 33333333"),
            (8, "64 4444444444444444"),
            (16, "128 66666666666666665555555555555555"),
        ];
        for (offset, access) in expect {
            for dir in ["store", "load"] {
                assert_eq!(
                    seen.get(&(offset, dir)),
                    Some(&vec![access.to_string()]),
                    "{arch}: {dir} at buf+{offset}: {seen:?}"
                );
            }
        }
    }
}

/// Addresses only, loads only: the counts follow the options.
#[test]
fn options_select_what_is_recorded() {
    let prog = sample("x86_64", "hotloop").unwrap().display().to_string();
    let ((_d1, loads), printed) = record_beside(
        &[&prog],
        &["mem=addr", "mem_rw=r"],
        &["mem,inline=true,track=r"],
    );
    assert_eq!(mem_total(&loads), libmem_count(&printed));
    let nulls = run_python(
        r#"
import duckdb, sys
t = sys.argv[1]
print(duckdb.sql(f"SELECT count(value), sum(store::int) FROM read_parquet('{t}/mem/*/*.parquet')").fetchall())
"#,
        &loads,
    );
    assert_eq!(
        nulls.trim(),
        "[(0, 0)]",
        "addr mode records no value; r mode no store"
    );
}

/// Atomic read-modify-writes are marked `inexact` (QEMU 10 may report their
/// values wrongly); plain accesses to the same address are not.
#[test]
fn atomic_accesses_are_marked_inexact() {
    const BY_ADDR: &str = r#"
import duckdb, sys
t = sys.argv[1]
for addr, store, inexact in duckdb.sql(f"""
    SELECT addr, store, inexact
    FROM read_parquet('{t}/mem/*/*.parquet', hive_partitioning = true)
    ORDER BY vcpu, seq""").fetchall():
    print(addr, store, inexact)
"#;
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = sample(arch, "memvalues") else {
            assert_ne!(arch, "x86_64", "samples not built");
            continue;
        };
        let counter = printed_address(arch, &prog, "counter=");
        let buf = printed_address(arch, &prog, "buf=");
        let (_dir, trace) = record(&[&prog.display().to_string()], &["mem=values"]);
        let rows: Vec<(u64, bool, bool)> = run_python(BY_ADDR, &trace)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[0].parse().unwrap(), f[1] == "True", f[2] == "True")
            })
            .collect();
        let on_counter: Vec<&(u64, bool, bool)> = rows.iter().filter(|r| r.0 == counter).collect();
        // The fetch-and-add's load and store, then printf's plain load.
        assert!(
            on_counter.iter().any(|r| r.1 && r.2) && on_counter.iter().any(|r| !r.1 && r.2),
            "{arch}: {on_counter:?}"
        );
        assert!(!on_counter.last().unwrap().2, "{arch}: {on_counter:?}");
        assert!(
            rows.iter()
                .filter(|r| (buf..buf + 32).contains(&r.0))
                .all(|r| !r.2),
            "{arch}: plain accesses are exact"
        );
    }
}

/// Per thread: the block of every access (`block_seq`) was executed by the
/// same thread on the same vCPU, and the thread's accesses are as many as
/// its rows say; the total equals libmem's, for the threads sample whose
/// vCPU indices are reused.
const THREAD_CHECK: &str = r#"
import duckdb, sys
t = sys.argv[1]
mem = f"read_parquet('{t}/mem/*/*.parquet', hive_partitioning = true)"
blocks = f"read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true)"
orphans, wrong = duckdb.sql(f"""
    SELECT count(*) FILTER (WHERE b.seq IS NULL),
           count(*) FILTER (WHERE b.tid <> m.tid)
    FROM {mem} m LEFT JOIN {blocks} b ON b.vcpu = m.vcpu AND b.seq = m.block_seq""").fetchall()[0]
threads = duckdb.sql(f"SELECT count(DISTINCT tid) FROM {mem}").fetchall()[0][0]
all_threads = duckdb.sql(f"SELECT count(DISTINCT tid) FROM {blocks}").fetchall()[0][0]
print(orphans, wrong, threads, all_threads)
"#;

#[test]
fn threads_accesses_belong_to_their_own_thread() {
    let Some(prog) = sample("x86_64", "threads") else {
        return;
    };
    let argv = [prog.display().to_string()];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let ((_dir, trace), printed) = record_beside(&argv, &["mem=values"], &["mem,inline=true"]);
    assert_eq!(mem_total(&trace), libmem_count(&printed));
    let out = run_python(THREAD_CHECK, &trace);
    let f: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(
        &f[..2],
        &[0, 0],
        "accesses without their block, or of another thread"
    );
    // Every thread (the main one and its 9 workers) accessed memory.
    assert_eq!(f[2], f[3], "threads with accesses");
    assert_eq!(f[3], 10, "threads");
}
