//! System calls (`syscalls=on`, the default) against QEMU's own `libsyscall`
//! in the same QEMU: the same calls in the same order with the same return
//! values, the same counts per number, the right names, and no table with
//! `syscalls=off`.

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;

use e2e_support::*;

/// Every call of a trace, in order per vCPU:
/// `vcpu seq num name ret arg0 arg2 errno` (`-` for null).
const CALLS: &str = r#"
import duckdb, sys
t = sys.argv[1]
rows = duckdb.sql(f"""
    SELECT vcpu, seq, num, name, ret, arg0, arg2, errno
    FROM read_parquet('{t}/syscalls/*/*.parquet', hive_partitioning = true)
    ORDER BY vcpu, seq""").fetchall()
for row in rows:
    print(" ".join("-" if v is None else str(v) for v in row))
"#;

/// One row of `syscalls`.
#[derive(Debug)]
struct Call {
    vcpu: u64,
    seq: u64,
    num: i64,
    name: Option<String>,
    ret: Option<i64>,
    arg0: u64,
    arg2: u64,
    errno: Option<i32>,
}

fn calls(trace: &Path) -> Vec<Call> {
    run_python(CALLS, trace)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let opt = |s: &str| (s != "-").then(|| s.to_string());
            Call {
                vcpu: f[0].parse().unwrap(),
                seq: f[1].parse().unwrap(),
                num: f[2].parse().unwrap(),
                name: opt(f[3]),
                ret: opt(f[4]).map(|s| s.parse().unwrap()),
                arg0: f[5].parse().unwrap(),
                arg2: f[6].parse().unwrap(),
                errno: opt(f[7]).map(|s| s.parse().unwrap()),
            }
        })
        .collect()
}

/// `libsyscall,print=true` output: `call N` and `ret N R` events in order.
fn libsyscall_events(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("syscall #")?;
            Some(match rest.split_once(" returned -> ") {
                Some((num, ret)) => format!("ret {num} {ret}"),
                None => format!("call {rest}"),
            })
        })
        .collect()
}

/// Our calls as the same events.
fn our_events(calls: &[Call]) -> Vec<String> {
    let mut out = Vec::new();
    for c in calls {
        out.push(format!("call {}", c.num));
        if let Some(ret) = c.ret {
            out.push(format!("ret {} {ret}", c.num));
        }
    }
    out
}

fn manifest_syscalls(trace: &Path) -> u64 {
    let m = manifest(trace);
    assert_eq!(m["complete"], true, "{m}");
    m["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["syscalls"].as_u64().unwrap())
        .sum()
}

/// What the sample writes to stdout, run under plain QEMU.
fn sample_output(arch: &str, prog: &Path) -> Vec<u8> {
    let out = std::process::Command::new(common::qemu(arch))
        .arg(prog)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn calls_and_returns_equal_libsyscall_in_order() {
    let mut tested = Vec::new();
    for (arch, write, exit_group) in [("x86_64", 1, 231), ("aarch64", 64, 94), ("riscv64", 64, 94)]
    {
        let Some(prog) = sample(arch, "hotloop") else {
            continue;
        };
        let argv = [prog.display().to_string()];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ((_dir, trace), printed) = record_beside(&argv, &[], &["syscall,print=true"]);
        let ours = calls(&trace);
        let theirs = libsyscall_events(&printed);
        assert!(theirs.len() > 10, "{arch}: libsyscall printed {theirs:?}");
        assert_eq!(our_events(&ours), theirs, "{arch}");
        assert_eq!(manifest_syscalls(&trace), ours.len() as u64, "{arch}");

        for (i, c) in ours.iter().enumerate() {
            assert_eq!((c.vcpu, c.seq), (0, i as u64), "{arch}: {c:?}");
            let errno = c.ret.filter(|r| (-4095..0).contains(r)).map(|r| -r as i32);
            assert_eq!(c.errno, errno, "{arch}: {c:?}");
        }
        // The output line, written to stdout in one call.
        let line = sample_output(arch, &prog);
        let writes: Vec<&Call> = ours.iter().filter(|c| c.num == write).collect();
        assert_eq!(writes.len(), 1, "{arch}: {writes:?}");
        let w = writes[0];
        assert_eq!(w.name.as_deref(), Some("write"), "{arch}");
        assert_eq!((w.arg0, w.arg2), (1, line.len() as u64), "{arch}");
        assert_eq!(w.ret, Some(line.len() as i64), "{arch}");
        // The last call ends the process and never returns.
        let last = ours.last().unwrap();
        assert_eq!(last.num, exit_group, "{arch}");
        assert_eq!(last.name.as_deref(), Some("exit_group"), "{arch}");
        assert_eq!((last.ret, last.errno), (None, None), "{arch}");
        assert!(ours.iter().all(|c| c.name.is_some()), "{arch}: {ours:?}");
        tested.push(arch);
    }
    assert!(tested.len() >= 2, "samples missing: run `make -C samples`");
}

#[test]
fn counts_per_number_equal_libsyscall_summary() {
    let mut tested = 0;
    for (arch, name) in [
        ("x86_64", "hotloop"),
        ("aarch64", "hotloop"),
        ("x86_64", "threads"),
    ] {
        let Some(prog) = sample(arch, name) else {
            continue;
        };
        let argv = [prog.display().to_string()];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ((_dir, trace), printed) = record_beside(&argv, &[], &["syscall"]);
        let theirs = libsyscall_summary(&printed);
        let ours_calls = calls(&trace);
        let mut ours: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for c in &ours_calls {
            let e = ours.entry(c.num).or_default();
            e.0 += 1;
            e.1 += u64::from(c.ret.is_some_and(|r| r < 0));
        }
        assert_eq!(ours, theirs, "{arch} {name}");
        assert_eq!(manifest_syscalls(&trace), ours_calls.len() as u64);
        if name == "threads" {
            let vcpus: std::collections::BTreeSet<u64> =
                ours_calls.iter().map(|c| c.vcpu).collect();
            assert!(vcpus.len() > 1, "{arch} {name}: {vcpus:?}");
        }
        tested += 1;
    }
    assert!(tested >= 2, "samples missing: run `make -C samples`");
}

#[test]
fn syscalls_off_writes_no_table() {
    let prog = sample("x86_64", "hotloop").unwrap().display().to_string();
    let (_dir, trace) = record(&[&prog], &["syscalls=off"]);
    assert!(!trace.join("syscalls").exists());
    assert_eq!(manifest_syscalls(&trace), 0);
}
