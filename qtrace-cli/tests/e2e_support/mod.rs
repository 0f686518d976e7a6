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
    let out = record_command(&trace, argv, options, plugins, &log)
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

/// `qtrace ARGS --format json` as rows (the command must succeed).
pub fn qtrace_rows(args: &[&str]) -> Vec<Value> {
    let out = qtrace()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qtrace {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `qtrace top-blocks` as JSON.
pub fn top_blocks(trace: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["top-blocks", trace.to_str().unwrap()];
    all.extend(args);
    qtrace_rows(&all)
}

/// `libsyscall`'s summary: number -> (calls, errors).
pub fn libsyscall_summary(log: &str) -> BTreeMap<i64, (u64, u64)> {
    let table = log
        .split_once("syscall no.  calls  errors\n")
        .unwrap_or_else(|| panic!("no summary in libsyscall output:\n{log}"))
        .1;
    table
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                (f[1].parse().unwrap(), f[2].parse().unwrap()),
            )
        })
        .collect()
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

// ---------------------------------------------------------------------------
// Runs that end badly: processes with deadlines, and what a trace must hold
// whatever the ending.

/// A process started in a process group of its own, with stdout read line by
/// line (each line with the time it arrived) and stderr collected. Dropped
/// before it was waited for, it is killed with its whole group: a failing
/// test leaves no QEMU running.
pub struct Spawned {
    child: std::process::Child,
    pub started: std::time::Instant,
    lines: Option<std::sync::mpsc::Receiver<(std::time::Duration, String)>>,
    /// The lines of stdout read so far, with when they arrived.
    pub seen: Vec<(std::time::Duration, String)>,
    stdout: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    reaped: bool,
}

/// How a `Spawned` process ended, and everything it printed.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub lines: Vec<(std::time::Duration, String)>,
    pub stderr: String,
}

impl Finished {
    /// The exit status as a shell reports it: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        shell_code(self.status)
    }
}

/// The exit status as a shell reports it, and as `qtrace record` passes it on.
pub fn shell_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        _ => panic!("no exit status: {status:?}"),
    }
}

impl Spawned {
    /// Starts `cmd` with stdin from /dev/null and stdout read in the background.
    pub fn start(cmd: Command) -> Spawned {
        let (mut spawned, stdout) = Spawned::start_raw(cmd);
        let (tx, rx) = std::sync::mpsc::channel();
        let started = spawned.started;
        spawned.stdout = Some(std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((started.elapsed(), line)).is_err() {
                    break;
                }
            }
        }));
        spawned.lines = Some(rx);
        spawned
    }

    /// The same, but the caller reads stdout (and may close it early).
    pub fn start_raw(mut cmd: Command) -> (Spawned, std::process::ChildStdout) {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = std::time::Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut text);
            String::from_utf8_lossy(&text).into_owned()
        });
        let spawned = Spawned {
            child,
            started,
            lines: None,
            seen: Vec::new(),
            stdout: None,
            stderr: Some(stderr),
            reaped: false,
        };
        (spawned, stdout)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a line of stdout that starts with `prefix`; panics (and the
    /// process is killed) when none comes within `secs` seconds.
    pub fn expect_line(&mut self, prefix: &str, secs: u64) -> std::time::Duration {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let rx = self.lines.as_ref().expect("stdout is read by the caller");
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((at, line)) => {
                    let hit = line.starts_with(prefix);
                    self.seen.push((at, line));
                    if hit {
                        return at;
                    }
                }
                Err(e) => panic!(
                    "no line starting with {prefix:?} within {secs} s ({e}); stdout so far: {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        send_signal(self.pid(), signal);
    }

    /// Sends `signal` to the process's whole group, as a terminal's Ctrl-C does.
    pub fn signal_group(&self, signal: i32) {
        send_signal(-self.pid(), signal);
    }

    /// The one child process this process started (QEMU, for `qtrace
    /// record`), once it has started; panics after 30 s without one.
    pub fn only_child(&mut self) -> i32 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let pid = self.pid();
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            let children: Vec<i32> = children
                .split_whitespace()
                .map(|c| c.parse().unwrap())
                .collect();
            match children[..] {
                [one] => return one,
                [] if std::time::Instant::now() < deadline => {
                    if let Some(status) = self.child.try_wait().unwrap() {
                        self.reaped = true;
                        panic!("{pid} ended before starting a child: {status:?}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => panic!("children of {pid}: {children:?}"),
            }
        }
    }

    /// Waits for the process to end, at most `secs` seconds after it
    /// started (then kills its group and panics), and returns what it printed.
    pub fn finish(&mut self, secs: u64) -> Finished {
        let deadline = self.started + std::time::Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                self.kill_group();
                let stderr = self.stderr.take().unwrap().join().unwrap();
                panic!(
                    "{:?} still running after {secs} s: killed; stdout: {:?}\nstderr:\n{stderr}",
                    self.child, self.seen
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        self.reaped = true;
        // Whatever the group left behind (a forked guest that outlived its
        // parent) would hold stdout open.
        send_signal_quietly(-self.pid(), libc::SIGKILL);
        if let Some(reader) = self.stdout.take() {
            reader.join().unwrap();
        }
        if let Some(rx) = self.lines.take() {
            self.seen.extend(rx.try_iter());
        }
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let lines = std::mem::take(&mut self.seen);
        let stdout = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        Finished {
            status,
            stdout,
            lines,
            stderr,
        }
    }

    fn kill_group(&mut self) {
        send_signal_quietly(-self.pid(), libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill_group();
        }
    }
}

/// kill(2), which must succeed.
pub fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) has no memory effects; every pid given here is a
    // process (or group) this test started and has not reaped.
    let r = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

fn send_signal_quietly(pid: i32, signal: i32) {
    // SAFETY: as in send_signal; the group may be gone already.
    unsafe { libc::kill(pid, signal) };
}

/// `qtrace record --clean-env` of `argv` into `trace`, without address-space
/// randomisation, with QEMU's own `plugins` beside the recorder printing to
/// `log` (see `record_beside`).
pub fn record_command(
    trace: &Path,
    argv: &[&str],
    options: &[&str],
    plugins: &[&str],
    log: &Path,
) -> Command {
    recorder();
    let mut cmd = no_aslr(&qtrace_exe());
    cmd.arg("record").arg("--clean-env").arg("-o").arg(trace);
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
    cmd.arg("--").args(argv);
    cmd
}

/// QEMU itself, with QEMU's own `plugins` (printing to `log`) and then the
/// recorder writing `trace`, on `argv` in an empty environment: how QEMU
/// ends shows without `qtrace record` in between.
pub fn qemu_recording(
    arch: &str,
    trace: &Path,
    argv: &[&str],
    plugins: &[&str],
    log: &Path,
) -> Command {
    let mut cmd = no_aslr(&qemu(arch));
    cmd.env_clear().arg("-d").arg("plugin").arg("-D").arg(log);
    for plugin in plugins {
        cmd.arg("-plugin").arg(plugin_spec(plugin));
    }
    cmd.arg("-plugin")
        .arg(format!("{},out={}", recorder().display(), trace.display()))
        .args(argv);
    cmd
}

/// QEMU with one of its own plugins alone on `argv`, stdout a pipe as in
/// the recorded runs here; returns how QEMU ended, its stdout and what the
/// plugin printed. Unlike `oracle`, any ending is accepted.
pub fn oracle_run(arch: &str, plugin: &str, argv: &[&str]) -> (Finished, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("plugin.log");
    let mut cmd = no_aslr(&qemu(arch));
    cmd.env_clear()
        .arg("-d")
        .arg("plugin")
        .arg("-D")
        .arg(&log)
        .arg("-plugin")
        .arg(plugin_spec(plugin))
        .args(argv);
    let done = Spawned::start(cmd).finish(120);
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    (done, printed)
}

/// `argv` run natively (the host must be its architecture), in an empty
/// environment and without core dumps; how it ended and its stdout.
pub fn native_run(argv: &[&str]) -> Finished {
    let mut cmd = Command::new("/bin/sh");
    cmd.env_clear()
        .arg("-c")
        .arg("ulimit -c 0; exec \"$@\"")
        .arg("sh")
        .args(argv);
    Spawned::start(cmd).finish(60)
}

/// One libbb report: per vCPU (blocks, insns), and the totals.
pub type BbReport = (BTreeMap<u64, (u64, u64)>, (u64, u64));

/// Every report libbb printed, in order: a forked guest's child prints its
/// own (with the counters it inherited) before its parent's.
pub fn parse_bb_reports(log: &str) -> Vec<BbReport> {
    let mut reports = Vec::new();
    let mut current = String::new();
    for line in log.lines() {
        current.push_str(line);
        current.push('\n');
        if line.starts_with("Total:") {
            reports.push(parse_bb(&current));
            current.clear();
        }
    }
    reports
}

/// Like `run_python_with`, but the script must finish within `secs` seconds.
pub fn run_python_within(script: &str, args: &[&Path], secs: u64) -> String {
    let mut cmd = Command::new(python());
    cmd.arg("-c").arg(script).args(args);
    let done = Spawned::start(cmd).finish(secs);
    assert!(done.status.success(), "python: {}", done.stderr);
    done.stdout
}

/// `qtrace verify` accepts the trace. Until `qtrace verify` exists, says
/// so and checks nothing: `assert_parts_sound` checks what it can meanwhile.
pub fn assert_verifies(trace: &Path) {
    let mut cmd = Command::new(qtrace_exe());
    cmd.arg("verify").arg(trace);
    let done = Spawned::start(cmd).finish(120);
    if !done.status.success() && done.stderr.contains("unrecognized subcommand 'verify'") {
        eprintln!(
            "note: this qtrace has no `verify` yet; not run on {}",
            trace.display()
        );
        return;
    }
    assert!(
        done.status.success(),
        "qtrace verify {}: {}\n{}{}",
        trace.display(),
        done.status,
        done.stdout,
        done.stderr
    );
}

/// Reads each part file's footer, and the `seq` range of its rows.
const PART_FOOTERS: &str = r#"
import json, sys
import pyarrow.compute as pc, pyarrow.parquet as pq
for path in sys.argv[1:]:
    try:
        f = pq.ParquetFile(path)
        rows, lo, hi = f.metadata.num_rows, None, None
        if "seq" in f.schema_arrow.names and rows:
            mm = pc.min_max(f.read(columns=["seq"]).column("seq"))
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
        print(json.dumps({"rows": rows, "min_seq": lo, "max_seq": hi}))
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
"#;

/// Rows of the parts the manifest lists, per (table, vCPU).
pub type PartRows = BTreeMap<(String, Option<u64>), u64>;

/// What the manifest's `parts` says holds on disk: each listed file exists
/// with its size, checksum, rows and `seq` range; each partition's parts are
/// numbered from 0 without a gap, and `blocks` runs on from part to part.
/// For a `complete` trace, also every sealed part on disk is listed, none is
/// left half-written, and `blocks` holds each vCPU's `block_events`.
pub fn assert_parts_sound(trace: &Path) -> PartRows {
    let m = manifest(trace);
    let entries = m["parts"].as_array().expect("manifest has no `parts`");
    let paths: Vec<PathBuf> = entries
        .iter()
        .map(|e| trace.join(e["path"].as_str().unwrap()))
        .collect();
    let mut args: Vec<&Path> = Vec::new();
    let mut footers = Vec::new();
    // In slices, to keep the command line short.
    for chunk in paths.chunks(200) {
        args.clear();
        args.extend(chunk.iter().map(PathBuf::as_path));
        let out = run_python_within(PART_FOOTERS, &args, 120);
        footers.extend(
            out.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()),
        );
    }
    assert_eq!(footers.len(), entries.len());

    let mut by_partition: BTreeMap<(String, Option<u64>), Vec<&Value>> = BTreeMap::new();
    let mut rows = PartRows::new();
    for ((entry, path), footer) in entries.iter().zip(&paths).zip(&footers) {
        let what = format!("{} (listed {entry})", path.display());
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            Some(bytes.len() as u64),
            entry["bytes"].as_u64(),
            "size of {what}"
        );
        assert_eq!(
            Some(qtrace_format::writer::file_checksum(&bytes).as_str()),
            entry["xxh3"].as_str(),
            "checksum of {what}"
        );
        assert!(footer.get("error").is_none(), "{what}: {footer}");
        assert_eq!(footer["rows"], entry["rows"], "rows of {what}");
        assert_eq!(footer["min_seq"], entry["first_seq"], "first seq of {what}");
        assert_eq!(footer["max_seq"], entry["last_seq"], "last seq of {what}");
        let table = entry["table"].as_str().unwrap().to_string();
        let vcpu = entry["vcpu"].as_u64();
        let index = entry["index"].as_u64().unwrap() as u32;
        let expected = match vcpu {
            Some(v) => format!(
                "{table}/vcpu={v}/{}",
                qtrace_format::layout::part_name(index)
            ),
            None => format!("{table}/{}", qtrace_format::layout::part_name(index)),
        };
        assert_eq!(entry["path"], expected.as_str(), "path of {what}");
        *rows.entry((table.clone(), vcpu)).or_default() += entry["rows"].as_u64().unwrap();
        by_partition.entry((table, vcpu)).or_default().push(entry);
    }

    let dropped = !m["dropped"].as_array().is_none_or(Vec::is_empty);
    for ((table, vcpu), mut parts) in by_partition {
        parts.sort_by_key(|p| p["index"].as_u64());
        let indices: Vec<u64> = parts.iter().map(|p| p["index"].as_u64().unwrap()).collect();
        let expected: Vec<u64> = (0..parts.len() as u64).collect();
        assert_eq!(indices, expected, "parts of {table} vCPU {vcpu:?}");
        if table == "blocks" && !dropped {
            for pair in parts.windows(2) {
                assert_eq!(
                    pair[1]["first_seq"].as_u64(),
                    pair[0]["last_seq"].as_u64().map(|s| s + 1),
                    "blocks of vCPU {vcpu:?} run on from part to part: {} then {}",
                    pair[0],
                    pair[1]
                );
            }
            for p in &parts {
                let (first, last) = (p["first_seq"].as_u64(), p["last_seq"].as_u64());
                assert_eq!(
                    last.zip(first).map(|(l, f)| l - f + 1),
                    p["rows"].as_u64(),
                    "a part of blocks holds one run of seq: {p}"
                );
            }
        }
    }

    if m["complete"] == true {
        let listed: std::collections::BTreeSet<PathBuf> = paths.iter().cloned().collect();
        for table in qtrace_format::Table::ALL {
            for part in qtrace_format::layout::list_parts(trace, table).unwrap() {
                assert!(
                    listed.contains(&part.path),
                    "complete trace, but {} is not in the manifest",
                    part.path.display()
                );
            }
        }
        let half_written = files_under(trace)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".inprogress"))
            .filter(|p| !p.strip_prefix(trace).unwrap().starts_with("processes"))
            .collect::<Vec<_>>();
        assert!(
            half_written.is_empty(),
            "complete trace, but {half_written:?}"
        );
        for v in m["vcpus"].as_array().unwrap() {
            let vcpu = v["vcpu"].as_u64();
            assert_eq!(
                rows.get(&("blocks".to_string(), vcpu))
                    .copied()
                    .unwrap_or(0),
                v["block_events"].as_u64().unwrap(),
                "rows of blocks vCPU {vcpu:?} against the manifest's block_events"
            );
        }
    }
    rows
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The trace's sealed `blocks` agree with libbb's report, vCPU by vCPU:
/// rows of the listed parts, and the manifest's counters.
pub fn assert_blocks_match_bb(trace: &Path, rows: &PartRows, bb: &BTreeMap<u64, (u64, u64)>) {
    let m = manifest(trace);
    let our_vcpus: Vec<u64> = m["vcpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["blocks"].as_u64() != Some(0))
        .map(|v| v["vcpu"].as_u64().unwrap())
        .collect();
    let bb_vcpus: Vec<u64> = bb.keys().copied().collect();
    assert_eq!(our_vcpus, bb_vcpus, "vCPUs that ran: manifest, libbb");
    for (&vcpu, &(blocks, insns)) in bb {
        let sealed = rows.get(&("blocks".to_string(), Some(vcpu))).copied();
        assert_eq!(sealed, Some(blocks), "sealed blocks of vCPU {vcpu}, libbb");
        let v = m["vcpus"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["vcpu"].as_u64() == Some(vcpu))
            .unwrap();
        assert_eq!(
            v["blocks"].as_u64(),
            Some(blocks),
            "manifest blocks, vCPU {vcpu}"
        );
        assert_eq!(
            v["insns"].as_u64(),
            Some(insns),
            "manifest insns, vCPU {vcpu}"
        );
        assert_eq!(
            v["block_events"].as_u64(),
            Some(blocks),
            "block_events, vCPU {vcpu}"
        );
    }
}

/// The manifest's `end`, which must be an object.
pub fn run_end(trace: &Path) -> Value {
    let m = manifest(trace);
    assert!(m["end"].is_object(), "manifest `end` is {}: {m}", m["end"]);
    m["end"].clone()
}

/// `qtrace record` running in the background (see `record_command`), with
/// stdout a pipe read line by line.
pub struct Recording {
    pub dir: tempfile::TempDir,
    pub trace: PathBuf,
    pub log: PathBuf,
    pub run: Spawned,
}

impl Recording {
    pub fn start(argv: &[&str], options: &[&str], plugins: &[&str]) -> Recording {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("run.parquet");
        let log = dir.path().join("plugin.log");
        let run = Spawned::start(record_command(&trace, argv, options, plugins, &log));
        Recording {
            dir,
            trace,
            log,
            run,
        }
    }

    /// Waits for the end (see `Spawned::finish`); returns it and what QEMU's
    /// plugins printed.
    pub fn finish(&mut self, secs: u64) -> (Finished, String) {
        let done = self.run.finish(secs);
        (done, std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

/// A small xorshift generator: random delays that a seed makes repeatable.
pub struct XorShift(pub u64);

impl XorShift {
    /// Uniform in `lo..hi` seconds.
    pub fn secs(&mut self, lo: f64, hi: f64) -> std::time::Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let unit = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        std::time::Duration::from_secs_f64(lo + (hi - lo) * unit)
    }
}

/// The manifest's `end` is `how`, with this exit code (for `exit`) or
/// signal (for `signal`, and for `crash` where it is given).
pub fn assert_end(trace: &Path, how: &str, number: Option<i32>) {
    let end = run_end(trace);
    assert_eq!(end["how"], how, "end: {end}");
    let n = number.map(i64::from);
    match how {
        "exit" => assert_eq!(end["exit_code"].as_i64(), n, "end: {end}"),
        "signal" => {
            assert_eq!(end["signal"].as_i64(), n, "end: {end}");
            let name = signal_name(number.unwrap());
            assert_eq!(end["signal_name"], name, "end: {end}");
        }
        "crash" if !end["signal"].is_null() => {
            assert_eq!(end["signal"].as_i64(), n, "end: {end}")
        }
        _ => {}
    }
}

/// A signal's name, as the manifest gives it.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => panic!("no name for signal {signal}"),
    }
}

/// The address of a symbol of a static sample, from its symbol table.
pub fn symbol(prog: &Path, name: &str) -> u64 {
    let out = Command::new("nm").arg(prog).output().unwrap();
    assert!(out.status.success(), "nm {}", prog.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3 && f[2] == name).then(|| u64::from_str_radix(f[0], 16).unwrap())
        })
        .unwrap_or_else(|| panic!("no symbol {name} in {}", prog.display()))
}
