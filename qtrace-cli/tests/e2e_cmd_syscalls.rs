//! `qtrace syscalls` on real recordings:
//!
//! - the listing holds the calls QEMU's own `libsyscall` (`print=true`)
//!   prints, in the same order, with the same numbers and return values,
//!   and the `-c` summary its counts of calls and errors per number, on
//!   static samples of x86_64, AArch64 (and RISC-V where built), the
//!   `threads` sample, and the host's dynamically linked `ls`;
//! - a write recorded with `syscall_data=` shows the bytes the program
//!   wrote, as strace does, and `--failed`, `--tid`, `--vcpu`, `--seq`,
//!   `--block-seq` and `-e` keep exactly the rows DuckDB selects;
//! - bad arguments are one-line errors.

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;

use e2e_support::*;
use serde_json::Value;

/// `libsyscall,print=true` output: `call N` and `ret N R` in order.
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

/// The programs compared with libsyscall: (arch, argv).
fn programs() -> Vec<(&'static str, Vec<String>)> {
    let mut out = Vec::new();
    for arch in ["x86_64", "aarch64"] {
        for args in [&["hotloop"][..], &["endings", "exec-fail"]] {
            let prog = sample(arch, args[0]).expect("samples not built: make -C samples");
            let mut argv = vec![prog.display().to_string()];
            argv.extend(args[1..].iter().map(|a| a.to_string()));
            out.push((arch, argv));
        }
    }
    if let Some(prog) = sample("riscv64", "hotloop") {
        out.push(("riscv64", vec![prog.display().to_string()]));
    }
    // Dynamically linked, with the host's libraries: ld.so's openat, mmap
    // and the failures of ls's lookups.
    out.push((
        "x86_64",
        vec!["/bin/ls".into(), "-la".into(), "/".into(), "/usr".into()],
    ));
    out
}

#[test]
fn listing_equals_libsyscall_in_order() {
    for (arch, argv) in programs() {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ((_dir, trace), printed) = record_beside(&argv, &[], &["syscall,print=true"]);
        let theirs = libsyscall_events(&printed);
        assert!(theirs.len() > 10, "{arch} {argv:?}: {theirs:?}");
        let rows = qtrace_rows(&["syscalls", trace.to_str().unwrap()]);
        let mut ours = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r["seq"], i, "{arch} {argv:?}: one thread, seq in order");
            let num = r["num"].as_i64().unwrap();
            ours.push(format!("call {num}"));
            let call = r["call"].as_str().unwrap();
            let name = r["name"].as_str().unwrap();
            assert!(call.starts_with(&format!("{name}(")), "{call}");
            match r["ret"].as_i64() {
                Some(ret) => {
                    ours.push(format!("ret {num} {ret}"));
                    let errno = (-4095..0).contains(&ret).then_some(-ret);
                    assert_eq!(r["errno"].as_i64(), errno, "{call}");
                    if errno.is_some() {
                        let suffix = format!(") = -1 {} (", r["errno_name"].as_str().unwrap());
                        assert!(call.contains(&suffix), "{call}");
                    } else if !call.ends_with(&format!(" = {ret}")) {
                        // Calls that return addresses show them in hex.
                        assert!(call.ends_with(&format!(" = {ret:#x}")), "{call}");
                    }
                }
                None => assert!(call.ends_with(") = ?"), "{call}"),
            }
        }
        assert_eq!(ours, theirs, "{arch} {argv:?}");
    }
}

#[test]
fn summary_equals_libsyscall_counts() {
    let mut runs = programs();
    let threads = sample("x86_64", "threads").expect("make -C samples");
    runs.push(("x86_64", vec![threads.display().to_string()]));
    for (arch, argv) in runs {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ((_dir, trace), printed) = record_beside(&argv, &[], &["syscall"]);
        let theirs = libsyscall_summary(&printed);
        let t = trace.to_str().unwrap();
        let rows = qtrace_rows(&["syscalls", t, "-c"]);
        let ours: BTreeMap<i64, (u64, u64)> = rows
            .iter()
            .map(|r| {
                let n = r["num"].as_i64().unwrap();
                (
                    n,
                    (r["calls"].as_u64().unwrap(), r["errors"].as_u64().unwrap()),
                )
            })
            .collect();
        assert_eq!(ours.len(), rows.len(), "one row per call");
        assert_eq!(ours, theirs, "{arch} {argv:?}");
        // Sorted by calls, shares of all calls.
        let calls: Vec<u64> = rows.iter().map(|r| r["calls"].as_u64().unwrap()).collect();
        assert!(calls.windows(2).all(|w| w[0] >= w[1]), "{calls:?}");
        let share: f64 = rows.iter().map(|r| r["share"].as_f64().unwrap()).sum();
        assert!((share - 100.0).abs() < 0.01, "{share}");

        // Per thread: the same counts, split.
        let per = qtrace_rows(&["syscalls", t, "-c", "--per-thread"]);
        let mut summed: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for r in &per {
            let e = summed.entry(r["num"].as_i64().unwrap()).or_default();
            e.0 += r["calls"].as_u64().unwrap();
            e.1 += r["errors"].as_u64().unwrap();
        }
        assert_eq!(summed, theirs, "{arch} {argv:?} per thread");
        let tids: std::collections::BTreeSet<u64> =
            per.iter().map(|r| r["tid"].as_u64().unwrap()).collect();
        if argv[0].ends_with("threads") {
            assert!(tids.len() > 1, "{tids:?}");
        }
    }
}

#[test]
fn recorded_writes_show_what_the_program_wrote() {
    for arch in ["x86_64", "aarch64"] {
        let prog = sample(arch, "calls").expect("make -C samples");
        let printed = std::process::Command::new(common::qemu(arch))
            .arg(&prog)
            .output()
            .unwrap()
            .stdout;
        let lines: Vec<&str> = std::str::from_utf8(&printed).unwrap().lines().collect();
        assert_eq!(lines.len(), 6, "{arch}: {lines:?}");
        let (_dir, trace) = record(&[prog.to_str().unwrap()], &["syscall_data=4096"]);
        let t = trace.to_str().unwrap();
        let writes = qtrace_rows(&["syscalls", t, "-e", "write"]);
        assert_eq!(writes.len(), lines.len(), "{arch}");
        for (w, line) in writes.iter().zip(&lines) {
            let bytes = format!("{line}\n");
            let hex: String = bytes.bytes().map(|b| format!("{b:02x}")).collect();
            assert_eq!(w["data"], hex.as_str(), "{arch}");
            let n = bytes.len();
            assert_eq!(
                w["call"],
                format!("write(1, \"{line}\\n\", {n}) = {n}").as_str(),
                "{arch}"
            );
        }
        // At most -s bytes, then `...`.
        let short = qtrace_rows(&["syscalls", t, "-e", "write", "-s", "5", "--seq", "..100"]);
        assert!(
            short[0]["call"]
                .as_str()
                .unwrap()
                .starts_with("write(1, \"round\"..., "),
            "{}",
            short[0]["call"]
        );
    }
}

/// `vcpu tid seq block_seq num errno` of every call, from DuckDB.
const ALL: &str = r#"
import duckdb, sys
duckdb.sql("SET enable_progress_bar = false")
for row in duckdb.sql(f"""
    SELECT vcpu, tid, seq, block_seq, num, errno
    FROM read_parquet('{sys.argv[1]}/syscalls/*/*.parquet', hive_partitioning = true)
    ORDER BY vcpu, seq""").fetchall():
    print(" ".join("-" if v is None else str(v) for v in row))
"#;

struct Row {
    vcpu: u64,
    tid: u64,
    seq: u64,
    block_seq: u64,
    num: i64,
    errno: Option<i64>,
}

fn duckdb_rows(trace: &Path) -> Vec<Row> {
    run_python(ALL, trace)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Row {
                vcpu: f[0].parse().unwrap(),
                tid: f[1].parse().unwrap(),
                seq: f[2].parse().unwrap(),
                block_seq: f[3].parse().unwrap(),
                num: f[4].parse().unwrap(),
                errno: (f[5] != "-").then(|| f[5].parse().unwrap()),
            }
        })
        .collect()
}

/// (vcpu, seq) of each listed row.
fn keys(rows: &[Value]) -> Vec<(u64, u64)> {
    rows.iter()
        .map(|r| (r["vcpu"].as_u64().unwrap(), r["seq"].as_u64().unwrap()))
        .collect()
}

#[test]
fn filters_keep_exactly_what_duckdb_selects() {
    let prog = sample("x86_64", "threads").expect("make -C samples");
    let (_dir, trace) = record(&[prog.to_str().unwrap()], &[]);
    let t = trace.to_str().unwrap();
    let all = duckdb_rows(&trace);
    let select = |keep: &dyn Fn(&Row) -> bool| -> Vec<(u64, u64)> {
        all.iter()
            .filter(|r| keep(r))
            .map(|r| (r.vcpu, r.seq))
            .collect()
    };
    assert_eq!(keys(&qtrace_rows(&["syscalls", t])), select(&|_| true));

    let failed = select(&|r| r.errno.is_some());
    assert!(!failed.is_empty());
    let listed = qtrace_rows(&["syscalls", t, "--failed"]);
    assert_eq!(keys(&listed), failed);
    for r in &listed {
        assert!(r["call"].as_str().unwrap().contains(" = -1 E"), "{r}");
    }

    let tid = all.iter().rev().find(|r| r.vcpu == 1).unwrap().tid;
    assert_eq!(
        keys(&qtrace_rows(&["syscalls", t, "--tid", &tid.to_string()])),
        select(&|r| r.tid == tid)
    );
    assert_eq!(
        keys(&qtrace_rows(&[
            "syscalls", t, "--vcpu", "1", "--seq", "2..5"
        ])),
        select(&|r| r.vcpu == 1 && (2..=5).contains(&r.seq))
    );
    let mid = all[all.len() / 2].block_seq;
    let range = format!("{mid}..");
    assert_eq!(
        keys(&qtrace_rows(&[
            "syscalls",
            t,
            "--vcpu",
            "0",
            "--block-seq",
            &range
        ])),
        select(&|r| r.vcpu == 0 && r.block_seq >= mid)
    );
    // Names and numbers (x86_64: write is 1).
    let futex = 202;
    assert_eq!(
        keys(&qtrace_rows(&["syscalls", t, "-e", "futex,1"])),
        select(&|r| r.num == futex || r.num == 1)
    );
    assert!(!select(&|r| r.num == futex).is_empty());
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let prog = sample("x86_64", "hotloop").expect("make -C samples");
    let prog = prog.to_str().unwrap();
    let (_dir, trace) = record(&[prog], &[]);
    let (_dir2, off) = record(&[prog], &["syscalls=off"]);
    let t = trace.to_str().unwrap();
    let o = off.to_str().unwrap();
    for (args, expect) in [
        (
            vec!["syscalls", t, "-e", "write,nosuchcall"],
            vec!["unknown system call `nosuchcall` for x86_64"],
        ),
        (vec!["syscalls", t, "--seq", "5..x"], vec!["--seq", "`x`"]),
        (
            vec!["syscalls", t, "--seq", "9..3"],
            vec!["--seq", "9 is after 3"],
        ),
        (vec!["syscalls", t, "--block-seq", ""], vec!["--block-seq"]),
        (vec!["syscalls", t, "--per-thread"], vec!["--summary"]),
        (vec!["syscalls", t, "--vcpu", "7"], vec![t, "no vCPU 7"]),
        (vec!["syscalls", o], vec![o, "syscalls=off"]),
        (
            vec!["syscalls", "/nonexistent/trace"],
            vec!["/nonexistent/trace"],
        ),
    ] {
        let out = qtrace().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(err.starts_with("error:"), "{args:?}: {err}");
        for e in expect {
            assert!(err.contains(e), "{args:?}: {err}");
        }
    }
}
