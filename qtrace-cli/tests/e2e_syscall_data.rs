//! `syscall_data=N`: the bytes that read- and write-like system calls
//! transfer are recorded, and equal what the guest really read and wrote.

mod common;
mod e2e_support;

use std::process::{Command, Stdio};

use e2e_support::*;

/// (name, fd, ret, data) of every call with data, in order.
const DATA: &str = r#"
import duckdb, sys
t = sys.argv[1]
for name, fd, ret, data in duckdb.sql(f"""
    SELECT name, arg0, ret, data
    FROM read_parquet('{t}/syscalls/*/*.parquet', hive_partitioning = true)
    WHERE data IS NOT NULL ORDER BY vcpu, seq""").fetchall():
    print(name, fd, ret, data.hex())
"#;

struct Call {
    name: String,
    fd: u64,
    ret: usize,
    data: Vec<u8>,
}

fn calls(trace: &std::path::Path) -> Vec<Call> {
    run_python(DATA, trace)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let data = (0..f[3].len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&f[3][i..i + 2], 16).unwrap())
                .collect();
            Call {
                name: f[0].to_string(),
                fd: f[1].parse().unwrap(),
                ret: f[2].parse().unwrap(),
                data,
            }
        })
        .collect()
}

#[test]
fn writes_hold_what_the_guest_printed() {
    for arch in ["x86_64", "aarch64", "riscv64"] {
        let Some(prog) = sample(arch, "hotloop") else {
            assert_ne!(arch, "x86_64", "samples not built");
            continue;
        };
        let printed = Command::new(common::qemu(arch))
            .arg(&prog)
            .output()
            .unwrap()
            .stdout;
        let (_dir, trace) = record(&[&prog.display().to_string()], &["syscall_data=4096"]);
        let writes: Vec<Call> = calls(&trace)
            .into_iter()
            .filter(|c| c.name == "write" && c.fd == 1)
            .collect();
        assert_eq!(writes.len(), 1, "{arch}: one write");
        assert_eq!(writes[0].data, printed, "{arch}");
    }
}

/// Debian's xz: each read of its input holds the file at that read's
/// offset, and its write holds what xz prints, up to the limit per call.
#[test]
fn xz_reads_its_input_and_writes_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, &text).unwrap();
    let input = input.display().to_string();
    let argv = ["/usr/bin/xz", "-1", "-T1", "-c", &input];
    let compressed = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .stdout;
    let limit = 1000;
    let (_d, trace) = record(&argv, &[&format!("syscall_data={limit}")]);
    let calls = calls(&trace);
    // xz opens its input after the libraries: the last read fd is the input.
    let input_fd = calls.iter().rev().find(|c| c.name == "read").unwrap().fd;
    let mut offset = 0;
    for c in calls
        .iter()
        .filter(|c| c.name == "read" && c.fd == input_fd)
    {
        assert_eq!(c.data.len(), c.ret.min(limit));
        assert_eq!(
            c.data,
            text.as_bytes()[offset..offset + c.data.len()],
            "read at {offset}"
        );
        offset += c.ret;
    }
    assert_eq!(offset, text.len(), "xz read the whole file");
    let writes: Vec<&Call> = calls
        .iter()
        .filter(|c| c.name == "write" && c.fd == 1)
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].ret, compressed.len());
    assert_eq!(writes[0].data, compressed[..compressed.len().min(limit)]);
}

#[test]
fn without_the_option_no_data_is_kept() {
    let prog = common::sample("x86_64", "hotloop").display().to_string();
    let (_dir, trace) = record(&[&prog], &[]);
    assert!(calls(&trace).is_empty());
}
