//! `qtrace record` with a stand-in for QEMU: a shell script that logs its
//! arguments and environment and writes a manifest where `out=` says, so the
//! command line, the summary and the exit status can be checked without a
//! real QEMU or recorder.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::qtrace;

/// A directory with a fake QEMU, a fake recorder and a fake x86_64 program.
struct Rig {
    tmp: tempfile::TempDir,
}

const MANIFEST: &str = r#"{"format":"qtrace","format_version":1,"complete":true,"distinct_blocks":7,"vcpus":[{"vcpu":0,"block_events":40},{"vcpu":1,"block_events":2}]}"#;

impl Rig {
    /// `body` runs after the stand-in has logged its arguments.
    fn new(body: &str) -> Rig {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("qemu/bin")).unwrap();
        let log = root.join("args.log");
        let script = format!(
            "#!/bin/sh\n\
             for a in \"$@\"; do printf '%s\\n' \"$a\"; done > '{log}'\n\
             printf 'marker=%s\\n' \"${{QTRACE_TEST_MARKER-unset}}\" >> '{log}'\n\
             out=\"${{2#*,out=}}\"; out=\"${{out%%,*}}\"\n\
             {body}\n",
            log = log.display()
        );
        let qemu = root.join("qemu/bin/qemu-x86_64");
        std::fs::write(&qemu, script).unwrap();
        std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(root.join("libqtrace_recorder.so"), "").unwrap();
        // An ELF header is all qtrace reads of the program.
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        std::fs::write(root.join("prog"), elf).unwrap();
        std::fs::set_permissions(root.join("prog"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        Rig { tmp }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    fn cmd<I: IntoIterator<Item = S>, S: AsRef<std::ffi::OsStr>>(
        &self,
        args: I,
    ) -> assert_cmd::Command {
        let mut cmd = qtrace(["record"]);
        cmd.args(args)
            .current_dir(self.root())
            .env("QTRACE_QEMU_DIR", self.path("qemu"))
            .env("QTRACE_RECORDER", self.path("libqtrace_recorder.so"))
            .env("QTRACE_TEST_MARKER", "set")
            .timeout(std::time::Duration::from_secs(60));
        cmd
    }

    fn logged_args(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("args.log"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn write_manifest_and_exit(code: u8) -> String {
    format!("mkdir -p \"$out\"\nprintf '%s' '{MANIFEST}' > \"$out/manifest.json\"\nexit {code}")
}

#[test]
fn runs_qemu_with_the_plugin_and_reports_the_trace() {
    let rig = Rig::new(&write_manifest_and_exit(3));
    let out = rig
        .cmd([
            "-o",
            "t.parquet",
            "-O",
            "zstd=5",
            "./prog",
            "-o",
            "x",
            "two words",
        ])
        .assert()
        .code(3)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "qtrace: trace in t.parquet (42 block events, 7 distinct blocks, complete)\n"
    );
    let recorder = rig.path("libqtrace_recorder.so");
    let trace = rig.path("t.parquet");
    assert_eq!(
        rig.logged_args(),
        [
            "-plugin".to_string(),
            format!("{},out={},zstd=5", recorder.display(), trace.display()),
            "./prog".into(),
            "-o".into(),
            "x".into(),
            "two words".into(),
            "marker=set".into(),
        ]
    );
    assert!(trace.join("manifest.json").is_file());
}

#[test]
fn double_dash_and_path_lookup() {
    let rig = Rig::new(&write_manifest_and_exit(0));
    let path = format!("/nonexistent:{}:/usr/bin:/bin", rig.root().display());
    rig.cmd(["--", "prog", "--force"])
        .env("PATH", &path)
        .assert()
        .success();
    let args = rig.logged_args();
    assert_eq!(args[2], rig.path("prog").display().to_string());
    assert_eq!(args[3], "--force");
    // The default output directory.
    assert!(rig.path("run.parquet/manifest.json").is_file());
}

#[test]
fn clean_env_empties_the_environment() {
    let rig = Rig::new(&write_manifest_and_exit(0));
    rig.cmd(["--clean-env", "./prog"]).assert().success();
    assert_eq!(rig.logged_args().last().unwrap(), "marker=unset");
}

#[test]
fn says_when_there_is_no_manifest_and_passes_on_signals() {
    let rig = Rig::new("kill -TERM $$");
    let out = rig
        .cmd(["./prog"])
        .assert()
        .code(128 + 15)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr == "qtrace: no trace written in run.parquet\n",
        "{stderr}"
    );
}

#[test]
fn reports_an_incomplete_recording() {
    let body = format!(
        "mkdir -p \"$out\"\nprintf '%s' '{}' > \"$out/manifest.json\"\nexit 0",
        MANIFEST.replace("\"complete\":true", "\"complete\":false")
    );
    let rig = Rig::new(&body);
    let out = rig.cmd(["./prog"]).assert().success().get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("incomplete: recording did not finish"),
        "{stderr}"
    );
}

#[test]
fn reports_an_unreadable_manifest() {
    let rig = Rig::new("mkdir -p \"$out\"\necho garbage > \"$out/manifest.json\"\nexit 0");
    let out = rig.cmd(["./prog"]).assert().success().get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("qtrace: no readable trace in run.parquet (")
            && stderr.contains("manifest.json"),
        "{stderr}"
    );
}

#[test]
fn existing_output_needs_force_and_must_be_a_trace() {
    let rig = Rig::new(&write_manifest_and_exit(0));
    rig.cmd(["./prog"]).assert().success();
    one_error_line_in(&rig, ["./prog"], "run.parquet: already exists");
    rig.cmd(["--force", "./prog"]).assert().success();

    std::fs::create_dir(rig.path("keep")).unwrap();
    std::fs::write(rig.path("keep/data.txt"), "precious").unwrap();
    one_error_line_in(
        &rig,
        ["--force", "-o", "keep", "./prog"],
        "keep: exists and is not a qtrace trace",
    );
    assert!(rig.path("keep/data.txt").is_file());
}

#[test]
fn program_errors_name_the_program() {
    let rig = Rig::new(&write_manifest_and_exit(0));
    std::fs::write(rig.path("script.sh"), "#!/bin/sh\n").unwrap();
    one_error_line_in(&rig, ["./script.sh"], "./script.sh: not an ELF executable");
    one_error_line_in(&rig, ["./missing"], "./missing");
    let mut cmd = rig.cmd(["no-such-program-qtrace"]);
    cmd.env("PATH", "/nonexistent");
    expect_one_line(cmd, "no-such-program-qtrace: not found in PATH");
    let mut i386 = std::fs::read(rig.path("prog")).unwrap();
    i386[4] = 1;
    i386[18] = 3;
    std::fs::write(rig.path("i386"), i386).unwrap();
    one_error_line_in(&rig, ["./i386"], "machine 3 (i386)");
    assert!(!rig.path("args.log").exists(), "QEMU must not have run");
}

#[test]
fn missing_qemu_or_recorder_says_how_to_get_them() {
    let rig = Rig::new(&write_manifest_and_exit(0));
    let mut cmd = rig.cmd(["./prog"]);
    cmd.env("QTRACE_QEMU_DIR", rig.path("nowhere"));
    let line = expect_one_line(cmd, "make setup");
    assert!(line.contains("nowhere/bin/qemu-x86_64"), "{line}");

    let mut cmd = rig.cmd(["./prog"]);
    cmd.env("QTRACE_RECORDER", rig.path("nothing.so"));
    let line = expect_one_line(cmd, "cargo build --release");
    assert!(line.contains("nothing.so"), "{line}");
    assert!(!rig.path("args.log").exists(), "QEMU must not have run");
}

#[test]
fn bad_recorder_options_are_refused() {
    let rig = Rig::new(&write_manifest_and_exit(0));
    one_error_line_in(&rig, ["-O", "zstd", "./prog"], "expected KEY=VALUE");
    one_error_line_in(&rig, ["-O", "a=1,b=2", "./prog"], "comma");
    assert!(!rig.path("args.log").exists());
}

fn one_error_line_in<const N: usize>(rig: &Rig, args: [&str; N], needle: &str) -> String {
    expect_one_line(rig.cmd(args), needle)
}

fn expect_one_line(mut cmd: assert_cmd::Command, needle: &str) -> String {
    let out = cmd.assert().code(1).get_output().clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{needle:?} not in {stderr}"
    );
    lines[0].to_string()
}

#[test]
fn options_after_the_program_belong_to_the_program() {
    // `qtrace record ./prog --force` hands `--force` to the program.
    let rig = Rig::new(&write_manifest_and_exit(0));
    rig.cmd(["./prog", "--clean-env"]).assert().success();
    let args = rig.logged_args();
    assert_eq!(args[3], "--clean-env");
    assert_eq!(args.last().unwrap(), "marker=set");
}
