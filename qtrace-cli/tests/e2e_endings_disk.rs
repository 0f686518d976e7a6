//! The trace's disk fills up: recording stops, what was sealed stays
//! readable and listed, the failure is said once on stderr and kept in the
//! manifest, and the guest runs on to its normal end as if nothing happened.
//!
//! Needs root, to mount a small tmpfs; skipped otherwise.

mod common;
mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_support::*;

/// A tmpfs mounted for the test, unmounted when dropped, even by a panic.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir);
        let done = Spawned::start(cmd).finish(30);
        assert!(done.status.success(), "mount: {}", done.stderr);
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for lazy in [false, true] {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.0);
            if Spawned::start(cmd).finish(30).status.success() {
                return;
            }
        }
    }
}

#[test]
fn a_full_disk_stops_recording_but_not_the_guest() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let prog = sample("x86_64", "hotloop")
        .expect("samples not built: run make -C samples")
        .display()
        .to_string();
    // About 9 MB of trace with every memory value.
    let argv = [prog.as_str(), "12"];

    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let _tmpfs = Tmpfs::mount(&mnt, "4m");
    let trace = mnt.join("run.parquet");
    let log = dir.path().join("plugin.log");
    let cmd = record_command(&trace, &argv, &["mem=values"], &[], &log);
    let done = Spawned::start(cmd).finish(180);

    let native = native_run(&argv);
    assert_eq!(done.shell_code(), native.shell_code(), "{}", done.stderr);
    assert_eq!(done.stdout, native.stdout, "recorded, native");

    let m = manifest(&trace);
    assert_eq!(m["complete"], false, "{}", done.stderr);
    let errors = m["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("No space left on device")),
        "manifest errors: {errors:?}, end: {}; stderr:\n{}",
        m["end"],
        done.stderr
    );
    assert_end(&trace, "exit", Some(0));
    assert_verifies(&trace);
    assert_parts_sound(&trace);

    // One line says what failed, and on which file; the closing summary may
    // repeat it.
    let failures: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .filter(|l| !l.starts_with("qtrace: trace in "))
        .collect();
    assert_eq!(failures.len(), 1, "stderr:\n{}", done.stderr);
    assert!(
        failures[0].contains(&trace.display().to_string()),
        "the failure names the file: {}",
        failures[0]
    );
}
