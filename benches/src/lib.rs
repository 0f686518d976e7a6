//! Shared helpers of the qtrace benchmarks: where QEMU, the recorder and the
//! benchmark inputs are, running one guest under QEMU while measuring its
//! wall time and peak memory, and reading what the recorder wrote.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// `$QTRACE_CACHE`, by default `~/.cache/qtrace` (as in `scripts/env.sh`).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = non_empty_env("QTRACE_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    let home = non_empty_env("HOME").context("neither QTRACE_CACHE nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/qtrace"))
}

/// `$QTRACE_QEMU_DIR`, by default `$QTRACE_CACHE/qemu-10.0.2`.
pub fn qemu_dir(cache: &Path) -> PathBuf {
    match non_empty_env("QTRACE_QEMU_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => cache.join("qemu-10.0.2"),
    }
}

/// `$QTRACE_RECORDER`, by default the release build of the recorder in this
/// workspace's target directory (`$CARGO_TARGET_DIR` if set).
pub fn recorder_path() -> PathBuf {
    if let Some(path) = non_empty_env("QTRACE_RECORDER") {
        return PathBuf::from(path);
    }
    let target = match non_empty_env("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("benches/ is inside the workspace")
            .join("target"),
    };
    target.join("release/libqtrace_recorder.so")
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// What the benchmark input tar is made of, relative to `/`, in this order.
/// Each entry that exists is archived (directories recursively, sorted by
/// name) and the archive is cut at the requested size. For 12 MiB that is
/// about 1.9 MB of Perl modules (text), 3.8 MB of the `perl` ELF executable
/// and the rest C headers from `/usr/include` (text): a mix of source text
/// and machine code, as found in a real source or system tarball.
pub const INPUT_SOURCES: &[&str] = &["usr/share/perl5", "usr/bin/perl", "usr/include"];

/// Returns `$cache/bench/input-{mib}m.tar`, making it first if needed: a
/// reproducible `tar` of [`INPUT_SOURCES`] (names sorted, times, owners and
/// groups zeroed) truncated to exactly `mib` MiB. `xz` compresses bytes and
/// does not care that the archive is cut mid-member.
pub fn ensure_input(cache: &Path, mib: u64) -> Result<PathBuf> {
    ensure!(mib > 0, "the input must be at least 1 MiB");
    let dir = cache.join("bench");
    let path = dir.join(format!("input-{mib}m.tar"));
    let want = mib * 1024 * 1024;
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.len() == want {
            return Ok(path);
        }
        eprintln!(
            "{} has {} bytes instead of {want}: remaking it",
            path.display(),
            meta.len()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let sources: Vec<&str> = INPUT_SOURCES
        .iter()
        .copied()
        .filter(|s| Path::new("/").join(s).exists())
        .collect();
    ensure!(
        !sources.is_empty(),
        "none of the input sources exist: {INPUT_SOURCES:?}"
    );
    eprintln!(
        "making {} from {} (once; cached)",
        path.display(),
        sources.join(", ")
    );

    let tar_stderr = tempfile::tempfile_in(&dir)?;
    let mut tar = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--format=gnu",
            "-C",
            "/",
            "-cf",
            "-",
        ])
        .args(&sources)
        .env_clear()
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(tar_stderr.try_clone()?)
        .spawn()
        .context("cannot run tar")?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    let copied = {
        let stdout = tar.stdout.take().expect("tar stdout is piped");
        io::copy(&mut stdout.take(want), tmp.as_file_mut())
            .context("cannot write the benchmark input")?
    };
    // Enough read: tar need not archive the rest.
    let _ = tar.kill();
    let status = tar.wait()?;
    if copied < want {
        bail!(
            "tar of {sources:?} makes only {copied} bytes, fewer than the {want} asked for \
             (tar {status}): {}",
            read_tail(&tar_stderr, 4096)
        );
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// How one process ended and what it cost.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    pub wall: Duration,
    /// Peak resident set size, in KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
}

/// Runs `program args` with an empty environment, stdin and stdout on
/// `/dev/null` and stderr captured, and measures its wall time (spawn to
/// reaped) and peak RSS. A non-zero exit, or death by a signal, is an error
/// that quotes the end of the process's stderr.
pub fn run_measured(program: &Path, args: &[String], scratch: &Path) -> Result<Measured> {
    let stderr = tempfile::tempfile_in(scratch)
        .with_context(|| format!("cannot create a file in {}", scratch.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr.try_clone()?);

    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let (status, usage) = wait4(child.id() as libc::pid_t)
        .with_context(|| format!("cannot wait for {}", program.display()))?;
    let wall = start.elapsed();
    // Reaped above: the handle has nothing left to do.
    drop(child);

    if !status.success() {
        bail!(
            "{} {} failed ({status}); its stderr ends with:\n{}",
            program.display(),
            args.join(" "),
            read_tail(&stderr, 16 * 1024)
        );
    }
    Ok(Measured {
        wall,
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// `wait4(2)` for one child: its exit status and resource usage.
fn wait4(pid: libc::pid_t) -> io::Result<(ExitStatus, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((ExitStatus::from_raw(status), usage));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// The last `max` bytes of `file`, as text.
fn read_tail(file: &File, max: u64) -> String {
    fn read(mut file: &File, max: u64) -> io::Result<String> {
        let len = file.metadata()?.len();
        let start = len.saturating_sub(max);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if start > 0 {
            text.insert_str(0, "[...]\n");
        }
        if text.trim().is_empty() {
            text = "(nothing)".to_string();
        }
        Ok(text)
    }
    read(file, max).unwrap_or_else(|e| format!("(cannot read it: {e})"))
}

/// What one recording left on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TraceStats {
    /// Sum of the sizes of every file under the trace directory.
    pub bytes: u64,
    pub files: u64,
    /// Sum of `vcpus[].block_events` in the manifest.
    pub block_events: u64,
    /// Sum of `vcpus[].blocks` (block executions counted inline).
    pub blocks: u64,
    /// Sum of `vcpus[].insns`.
    pub insns: u64,
    /// Sum of `vcpus[].parts`.
    pub parts: u64,
    /// Sum of `vcpus[].mem_accesses` (rows of the `mem` table).
    pub mem_accesses: u64,
    /// Size of the files under `mem/`: what the memory accesses take.
    pub mem_bytes: u64,
    /// Sum of `vcpus[].syscalls` (rows of the `syscalls` table).
    pub syscalls: u64,
}

/// The part of `manifest.json` the benchmark reads (see
/// `format/src/manifest.rs`).
#[derive(Deserialize)]
struct Manifest {
    complete: bool,
    vcpus: Vec<VcpuTotals>,
}

#[derive(Deserialize)]
struct VcpuTotals {
    #[serde(default)]
    blocks: u64,
    #[serde(default)]
    insns: u64,
    #[serde(default)]
    block_events: u64,
    #[serde(default)]
    parts: u64,
    #[serde(default)]
    mem_accesses: u64,
    #[serde(default)]
    syscalls: u64,
}

/// Reads the manifest of the trace at `root` and sizes the directory. A
/// trace whose manifest is missing, unreadable or not `complete` is an error.
pub fn trace_stats(root: &Path) -> Result<TraceStats> {
    let manifest_path = root.join("manifest.json");
    let text = std::fs::read(&manifest_path)
        .with_context(|| format!("the recorder left no {}", manifest_path.display()))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a qtrace manifest", manifest_path.display()))?;
    ensure!(
        manifest.complete,
        "{} says the recording is not complete",
        manifest_path.display()
    );
    let (bytes, files) = dir_size(root)?;
    let mut stats = TraceStats {
        bytes,
        files,
        ..Default::default()
    };
    for v in &manifest.vcpus {
        stats.block_events += v.block_events;
        stats.blocks += v.blocks;
        stats.insns += v.insns;
        stats.parts += v.parts;
        stats.mem_accesses += v.mem_accesses;
        stats.syscalls += v.syscalls;
    }
    let mem_dir = root.join("mem");
    if mem_dir.is_dir() {
        stats.mem_bytes = dir_size(&mem_dir)?.0;
    }
    Ok(stats)
}

/// Total size in bytes and number of the regular files under `dir`.
pub fn dir_size(dir: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                bytes += meta.len();
                files += 1;
            }
        }
    }
    Ok((bytes, files))
}

/// The instruction count that QEMU's `libinsn` prints at exit (`total
/// insns: N`), found in `log`, the text it wrote through `-d plugin -D`.
pub fn libinsn_total(log: &str) -> Option<u64> {
    log.lines()
        .find_map(|line| line.strip_prefix("total insns: "))
        .and_then(|n| n.trim().parse().ok())
}

/// Bytes that an unprivileged process may still write to the file system
/// holding `path` (`statvfs(3)`).
pub fn free_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    // SAFETY: statvfs is plain old data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a pointer to a live local.
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("cannot statvfs {}", path.display()));
    }
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    Ok(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

/// The median of `values` (mean of the middle two for an even count); NaN
/// for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The smallest of `values`; NaN for none.
pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().reduce(f64::min).unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(min(&[4.0, 1.0, 3.0]), 1.0);
    }

    #[test]
    fn reads_a_trace_and_refuses_an_incomplete_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("blocks/vcpu=0")).unwrap();
        std::fs::write(root.join("blocks/vcpu=0/part-000000.parquet"), [0u8; 100]).unwrap();
        std::fs::create_dir_all(root.join("mem/vcpu=1")).unwrap();
        std::fs::write(root.join("mem/vcpu=1/part-000000.parquet"), [0u8; 30]).unwrap();
        let manifest = |complete: bool| {
            format!(
                r#"{{"format": "qtrace", "complete": {complete}, "vcpus": [
                    {{"vcpu": 0, "blocks": 10, "insns": 50, "block_events": 10, "parts": 1,
                      "syscalls": 3}},
                    {{"vcpu": 1, "blocks": 5, "insns": 20, "block_events": 4, "parts": 2,
                      "mem_accesses": 12, "syscalls": 1}}]}}"#
            )
        };
        std::fs::write(root.join("manifest.json"), manifest(true)).unwrap();
        let stats = trace_stats(root).unwrap();
        let manifest_len = std::fs::metadata(root.join("manifest.json")).unwrap().len();
        assert_eq!(
            stats,
            TraceStats {
                bytes: 100 + 30 + manifest_len,
                files: 3,
                block_events: 14,
                blocks: 15,
                insns: 70,
                parts: 3,
                mem_accesses: 12,
                mem_bytes: 30,
                syscalls: 4,
            }
        );

        std::fs::write(root.join("manifest.json"), manifest(false)).unwrap();
        let err = trace_stats(root).unwrap_err().to_string();
        assert!(err.contains("not complete"), "{err}");
    }

    #[test]
    fn reads_libinsn_total() {
        let log = "cpu 0 insns: 219228072\ntotal insns: 219228072\n";
        assert_eq!(libinsn_total(log), Some(219_228_072));
        assert_eq!(libinsn_total("cpu 0 insns: 5\n"), None);
    }

    #[test]
    fn free_space_of_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_failed_run_is_an_error_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let args = ["-c".to_string(), "echo oops >&2; exit 3".to_string()];
        let err = run_measured(Path::new("/bin/sh"), &args, dir.path()).unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("oops") && err.contains('3'), "{err}");

        let ok = run_measured(
            Path::new("/bin/sh"),
            &["-c".into(), "true".into()],
            dir.path(),
        );
        assert!(ok.unwrap().max_rss_kib > 0);
    }
}
