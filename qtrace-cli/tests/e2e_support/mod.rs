//! Running the real thing: QEMU with its own plugins (the oracles), and
//! `qtrace record` with the recorder, on the same program with the same
//! arguments and an empty environment (`env -i`), so that counts must agree
//! exactly.
//!
//! Two more things must match for that: stdout is /dev/null in both runs
//! (glibc takes a different path for a character device than for a pipe),
//! and address-space randomisation is off (`setarch -R`), since QEMU maps a
//! dynamically linked guest's libraries where the host kernel says.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{qemu, qemu_dir, qtrace_exe, recorder, repo_root};

/// A sample program built by `make -C samples`, if it was built (a cross
/// compiler may be missing).
pub fn sample(arch: &str, name: &str) -> Option<PathBuf> {
    let p = repo_root().join("samples/build").join(arch).join(name);
    p.is_file().then_some(p)
}

/// `qtrace`, with the recorder built beside it.
pub fn qtrace() -> Command {
    recorder();
    Command::new(qtrace_exe())
}

/// `program`, run with address-space randomisation off.
fn no_aslr(program: &Path) -> Command {
    let mut cmd = Command::new("setarch");
    cmd.arg(std::env::consts::ARCH).arg("-R").arg(program);
    cmd
}

/// Runs `argv` under QEMU with one of QEMU's own plugins and returns what the
/// plugin printed.
pub fn oracle(arch: &str, plugin: &str, argv: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("plugin.log");
    let spec = plugin_spec(plugin);
    let status = no_aslr(&qemu(arch))
        .env_clear()
        .arg("-d")
        .arg("plugin")
        .arg("-D")
        .arg(&log)
        .arg("-plugin")
        .arg(&spec)
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{plugin} on {argv:?}: {status}");
    std::fs::read_to_string(&log).unwrap()
}

/// Records `argv` with `qtrace record --clean-env` into a new trace.
pub fn record(argv: &[&str], options: &[&str]) -> (tempfile::TempDir, PathBuf) {
    record_beside(argv, options, &[]).0
}

/// Records `argv` with QEMU's own `plugins` loaded in the same QEMU beside
/// the recorder; returns what they printed.
///
/// The same process makes the comparison exact for any guest: QEMU places a
/// dynamically linked guest's mappings where the host's mmap says, which
/// depends on what else the host process maps, and when (plugins, their
/// threads), and glibc's string functions take paths that depend on
/// alignment, so two separate runs of `xz` can differ by a few instructions.
pub fn record_beside(
    argv: &[&str],
    options: &[&str],
    plugins: &[&str],
) -> ((tempfile::TempDir, PathBuf), String) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.parquet");
    let log = dir.path().join("plugin.log");
    recorder();
    let mut cmd = no_aslr(&qtrace_exe());
    cmd.arg("record").arg("--clean-env").arg("-o").arg(&trace);
    for o in options {
        cmd.arg("-O").arg(o);
    }
    if !plugins.is_empty() {
        for a in ["-d", "plugin", "-D"] {
            cmd.arg(format!("--qemu-arg={a}"));
        }
        cmd.arg(format!("--qemu-arg={}", log.display()));
    }
    for plugin in plugins {
        cmd.arg("--qemu-arg=-plugin");
        cmd.arg(format!("--qemu-arg={}", plugin_spec(plugin)));
    }
    let out = cmd
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qtrace record {argv:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    ((dir, trace), printed)
}

/// `-plugin` argument for one of QEMU's own plugins: `name[,options]`.
fn plugin_spec(plugin: &str) -> String {
    let (name, opts) = plugin.split_once(',').unwrap_or((plugin, ""));
    let path = qemu_dir().join("plugins").join(format!("lib{name}.so"));
    if opts.is_empty() {
        path.display().to_string()
    } else {
        format!("{},{opts}", path.display())
    }
}

pub fn manifest(trace: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(trace.join("manifest.json")).unwrap()).unwrap()
}

/// Per vCPU (blocks, insns, block_events) from the manifest.
pub fn manifest_totals(trace: &Path) -> BTreeMap<u64, (u64, u64, u64)> {
    vcpu_fields(trace, &["vcpu", "blocks", "insns", "block_events"])
        .into_iter()
        .map(|f| (f[0], (f[1], f[2], f[3])))
        .collect()
}

/// These fields of each of the manifest's `vcpus`, in order; the trace
/// must be complete.
pub fn vcpu_fields(trace: &Path, keys: &[&str]) -> Vec<Vec<u64>> {
    let m = manifest(trace);
    assert_eq!(m["complete"], true, "trace incomplete: {m}");
    m["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| keys.iter().map(|k| v[*k].as_u64().unwrap()).collect())
        .collect()
}

/// libbb's report: per vCPU (blocks, insns), and the totals.
pub fn parse_bb(log: &str) -> (BTreeMap<u64, (u64, u64)>, (u64, u64)) {
    let mut per = BTreeMap::new();
    let mut total = None;
    for line in log.lines() {
        let nums: Vec<u64> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect();
        if line.starts_with("CPU") && nums.len() == 3 {
            per.insert(nums[0], (nums[1], nums[2]));
        } else if line.starts_with("Total:") && nums.len() == 2 {
            total = Some((nums[0], nums[1]));
        }
    }
    (
        per,
        total.unwrap_or_else(|| panic!("no total in libbb output:\n{log}")),
    )
}

/// libmem's count of memory accesses (`mem,inline=true`).
pub fn libmem_count(log: &str) -> u64 {
    log.lines()
        .find_map(|l| l.strip_prefix("mem accesses: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in libmem output:\n{log}"))
}

/// libinsn's total instruction count.
pub fn parse_insn_total(log: &str) -> u64 {
    log.lines()
        .find_map(|l| l.strip_prefix("total insns: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total in libinsn output:\n{log}"))
}

/// libhotblocks' rows: (pc, instructions, executions).
pub fn parse_hotblocks(log: &str) -> Vec<(u64, u64, u64)> {
    log.lines()
        .filter(|l| l.starts_with("0x"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let pc = u64::from_str_radix(f[0].trim_start_matches("0x"), 16).unwrap();
            (pc, f[2].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect()
}

/// `qtrace top-blocks` as JSON.
pub fn top_blocks(trace: &Path, args: &[&str]) -> Vec<Value> {
    let out = qtrace()
        .arg("top-blocks")
        .arg(trace)
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "top-blocks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Executions per (pc, instructions) over all blocks of a trace, as libhotblocks counts them.
pub fn execs_by_pc(trace: &Path) -> BTreeMap<(u64, u64), u64> {
    let mut by = BTreeMap::new();
    for row in top_blocks(trace, &["-n", "0"]) {
        let pc = u64::from_str_radix(
            row["address"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap();
        let key = (pc, row["n_insns"].as_u64().unwrap());
        *by.entry(key).or_default() += row["execs"].as_u64().unwrap();
    }
    by
}

/// The project's Python (with DuckDB and pyarrow), from scripts/setup.sh.
pub fn python() -> PathBuf {
    let py = std::env::var_os("QTRACE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("QTRACE_CACHE").map(PathBuf::from);
            let home = || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/qtrace");
            cache.unwrap_or_else(home).join("py")
        })
        .join("bin/python3");
    assert!(
        py.is_file(),
        "{} missing: run scripts/setup.sh",
        py.display()
    );
    py
}

/// Runs a Python script with the trace path as its argument; returns stdout.
pub fn run_python(script: &str, trace: &Path) -> String {
    run_python_with(script, trace, &[])
}

/// The same, with more arguments after the trace (`sys.argv[2:]`).
pub fn run_python_with(script: &str, trace: &Path, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(trace)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
