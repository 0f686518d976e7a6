//! `qtrace record` for real: the recorder plugin loaded by the real QEMU,
//! recording real programs (the samples and the system's own), checked
//! against what the guest printed, how it ended, and the manifest the
//! recorder wrote.
//!
//! Needs QEMU (`make setup`) and the samples (`make -C samples`); the
//! recorder is built beside `qtrace` on first use (see `common::recorder`).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qtrace_format::Manifest;

/// A working directory for one test, canonical so that paths compare equal
/// to the ones `qtrace` derives from its own current directory.
struct Dir {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        Dir { _tmp: tmp, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `qtrace record ARGS` run in this directory, with the recorder that
    /// was built beside `qtrace` and the project's QEMU.
    fn record<I, S>(&self, args: I) -> assert_cmd::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        common::recorder();
        let mut cmd = common::qtrace(["record"]);
        cmd.args(args)
            .current_dir(&self.root)
            .env_remove("QTRACE_RECORDER")
            .timeout(Duration::from_secs(120));
        cmd
    }

    fn manifest(&self, trace: &str) -> Manifest {
        Manifest::read(&self.path(trace)).unwrap_or_else(|e| panic!("no manifest in {trace}: {e}"))
    }
}

/// What a finished `qtrace` run gave.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn outcome(mut cmd: assert_cmd::Command) -> Outcome {
    let out = cmd.output().unwrap();
    Outcome {
        code: out
            .status
            .code()
            .unwrap_or_else(|| panic!("qtrace did not exit: {:?}", out.status)),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Expects `qtrace` to refuse before running QEMU: status 1, nothing on
/// stdout, one `error:` line on stderr that contains `needle`.
fn refused(cmd: assert_cmd::Command, needle: &str) -> String {
    let out = outcome(cmd);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{}", out.stderr);
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "{needle:?} not in {}",
        out.stderr
    );
    lines[0].to_string()
}

/// The line `qtrace record` ends with, from the manifest it reports on.
fn summary_line(shown: &str, m: &Manifest) -> String {
    let events: u64 = m.vcpus.iter().map(|v| v.block_events).sum();
    format!(
        "qtrace: trace in {shown} ({events} block events, {} distinct blocks, complete; {})\n",
        m.distinct_blocks,
        m.ending()
    )
}

/// What `program ARGS` prints run directly, to compare with the guest's
/// output under QEMU (x86_64 programs only, on this x86_64 host).
fn native_stdout(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {:?}",
        program.display(),
        out.status
    );
    String::from_utf8(out.stdout).unwrap()
}

fn canonical(path: impl AsRef<Path>) -> PathBuf {
    let path = path.as_ref();
    path.canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `-plugin` argument QEMU got, split into the plugin's path and its
/// options.
fn plugin_arg(m: &Manifest) -> (PathBuf, Vec<String>) {
    assert_eq!(m.command_line[1], "-plugin", "{:?}", m.command_line);
    let mut parts = m.command_line[2].split(',');
    let plugin = PathBuf::from(parts.next().unwrap());
    (plugin, parts.map(str::to_string).collect())
}

#[test]
fn runs_the_program_under_qemu_with_the_recorder() {
    let dir = Dir::new();
    let hotloop = common::sample("x86_64", "hotloop");
    let mut cmd = dir.record(["-o", "t.parquet", "-O", "zstd=5", "-O", "writers=2"]);
    cmd.arg(&hotloop).arg("1");
    let out = outcome(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, native_stdout(&hotloop, &["1"]));

    let m = dir.manifest("t.parquet");
    let trace = dir.path("t.parquet").display().to_string();
    assert_eq!(m.command_line.len(), 5, "{:?}", m.command_line);
    assert_eq!(
        Path::new(&m.command_line[0]),
        common::qemu("x86_64"),
        "{:?}",
        m.command_line
    );
    let (plugin, options) = plugin_arg(&m);
    assert!(plugin.is_absolute(), "{}", plugin.display());
    assert_eq!(canonical(&plugin), canonical(common::recorder()));
    assert_eq!(
        options,
        [format!("out={trace}"), "zstd=5".into(), "writers=2".into()]
    );
    assert_eq!(
        m.command_line[3..],
        [hotloop.display().to_string(), "1".into()]
    );

    let expected: BTreeMap<String, String> =
        [("out", trace.as_str()), ("zstd", "5"), ("writers", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    assert_eq!(m.options, expected);
    // As the manifest spells them: strings, exactly as given.
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path("t.parquet/manifest.json")).unwrap())
            .unwrap();
    assert_eq!(raw["options"]["zstd"], "5");

    assert_eq!(
        (m.target.as_str(), m.mode.as_str()),
        ("x86_64", "linux-user")
    );
    assert!(m.complete);
    assert!(m.distinct_blocks > 0 && m.vcpus.iter().all(|v| v.block_events > 0));
    assert_eq!(out.stderr, summary_line("t.parquet", &m));
}

#[test]
fn the_summary_counts_what_the_recorder_wrote() {
    // Nine threads, so several vCPUs whose events the summary adds up.
    let dir = Dir::new();
    let threads = common::sample("x86_64", "threads");
    let out = outcome(dir.record([threads.as_os_str()]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The sample also prints its thread ids, which differ from run to run.
    let without_tids = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("tid="))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(
        without_tids(&out.stdout),
        without_tids(&native_stdout(&threads, &[]))
    );

    let m = dir.manifest("run.parquet");
    assert!(m.complete);
    assert!(m.vcpus.len() > 1, "{:?}", m.vcpus);
    let events: u64 = m.vcpus.iter().map(|v| v.block_events).sum();
    assert!(events > 0 && m.distinct_blocks > 0);
    assert_eq!(out.stderr, summary_line("run.parquet", &m));
}

#[test]
fn picks_the_qemu_of_the_programs_architecture() {
    let reference = native_stdout(&common::sample("x86_64", "hotloop"), &[]);
    let archs: Vec<&str> = ["x86_64", "aarch64", "riscv64"]
        .into_iter()
        .filter(|arch| {
            let built = common::repo_root()
                .join("samples/build")
                .join(arch)
                .join("hotloop")
                .is_file();
            if !built {
                eprintln!("no {arch} samples (no cross compiler?): not recording them");
            }
            built
        })
        .collect();
    for arch in archs {
        let dir = Dir::new();
        let hotloop = common::sample(arch, "hotloop");
        let out = outcome(dir.record([hotloop.as_os_str()]));
        assert_eq!(out.code, 0, "{arch}: {}", out.stderr);
        assert_eq!(out.stdout, reference, "{arch}");
        let m = dir.manifest("run.parquet");
        assert_eq!(m.target, arch);
        assert_eq!(Path::new(&m.command_line[0]), common::qemu(arch));
        assert!(m.complete, "{arch}");
        assert_eq!(out.stderr, summary_line("run.parquet", &m), "{arch}");
    }
}

#[test]
fn arguments_after_the_program_are_the_programs() {
    // `-o` and `--force` after PROGRAM look like qtrace's options, but are
    // the guest's; the empty argument too is passed on.
    let dir = Dir::new();
    let script = r#"printf '[%s]' "$@""#;
    let out = outcome(dir.record([
        "/bin/sh",
        "-c",
        script,
        "sh",
        "--force",
        "-o",
        "elsewhere",
        "two words",
        "",
    ]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "[--force][-o][elsewhere][two words][]");
    assert!(!dir.path("elsewhere").exists());
    let m = dir.manifest("run.parquet");
    // The recorder reads QEMU's command line from /proc, where an empty
    // argument cannot be told apart from the separators.
    assert_eq!(
        m.command_line[3..],
        [
            "/bin/sh",
            "-c",
            script,
            "sh",
            "--force",
            "-o",
            "elsewhere",
            "two words"
        ]
    );
}

#[test]
fn the_guests_exit_status_is_qtraces() {
    for (program, code) in [
        (vec!["/bin/true"], 0),
        (vec!["/bin/false"], 1),
        (vec!["/bin/sh", "-c", "exit 3"], 3),
        (vec!["/bin/sh", "-c", "exit 200"], 200),
    ] {
        let dir = Dir::new();
        let out = outcome(dir.record(&program));
        assert_eq!(out.code, code, "{program:?}: {}", out.stderr);
        // However the guest ends, the recording is whole.
        let m = dir.manifest("run.parquet");
        assert!(m.complete, "{program:?}");
        assert_eq!(m.command_line[3..], program[..]);
        assert_eq!(out.stderr, summary_line("run.parquet", &m), "{program:?}");
    }
}

/// A `qtrace record` running in the background, killed with whatever it
/// started if the test ends before it does.
struct Background {
    child: Child,
    /// QEMU, once it has been seen running.
    qemu: Option<i32>,
}

impl Background {
    fn start(dir: &Dir, args: &[&str]) -> Background {
        common::recorder();
        let child = Command::new(common::qtrace_exe())
            .arg("record")
            .args(args)
            .current_dir(&dir.root)
            .env_remove("QTRACE_RECORDER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background { child, qemu: None }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until the recorder has written its first manifest: QEMU runs,
    /// with the plugin installed. Returns QEMU's pid.
    fn wait_for_manifest(&mut self, trace: &Path) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !trace.join("manifest.json").is_file() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("qtrace ended before recording: {status:?}");
            }
            assert!(Instant::now() < deadline, "no manifest after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The one process qtrace started.
        let children = children_of(self.pid());
        assert_eq!(children.len(), 1, "children of qtrace: {children:?}");
        self.qemu = Some(children[0]);
        children[0]
    }

    /// Sends `signal` to `target` (qtrace or its QEMU) and waits for qtrace
    /// to end; panics after 20 s. Returns the exit code and stderr. A signal
    /// to qtrace is sent again every second until it ends, as the first may
    /// have come before qtrace knew QEMU's pid, too early to be forwarded.
    fn end_with(&mut self, target: i32, signal: i32) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut next_signal = Some(Instant::now());
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "qtrace still running after 20 s");
            if next_signal.is_some_and(|at| Instant::now() >= at) {
                // SAFETY: plain kill(2) of qtrace, not yet waited for, or
                // of its QEMU, which qtrace has not waited for either.
                unsafe { libc::kill(target, signal) };
                next_signal =
                    (target == self.pid()).then(|| Instant::now() + Duration::from_secs(1));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Before reading stderr: a QEMU that outlived a killed qtrace would
        // hold it open.
        let Some(code) = status.code() else {
            if let Some(qemu) = self.qemu {
                // SAFETY: kill(2) of the QEMU this test started, orphaned
                // by qtrace's death and so never waited for.
                unsafe { libc::kill(qemu, libc::SIGKILL) };
            }
            panic!("qtrace itself was killed: {status:?}");
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (code, stderr)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            for pid in children_of(self.pid()) {
                // SAFETY: kill(2) of QEMU, whose parent we still hold.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The processes whose parent is `pid`, from /proc.
fn children_of(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`, where comm may hold anything.
        let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
        let ppid: Option<i32> = after_comm
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    children
}

fn check_killed_run(dir: &Dir, code: i32, stderr: &str, started: Instant) {
    assert_eq!(code, 128 + libc::SIGTERM, "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the guest was not killed"
    );
    assert!(
        stderr.starts_with("qtrace: trace in s.parquet (") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let m = dir.manifest("s.parquet");
    assert_eq!(m.command_line[3..], ["/bin/sleep", "30"]);
}

#[test]
fn a_guest_killed_by_sigterm_gives_143() {
    let dir = Dir::new();
    let mut run = Background::start(&dir, &["-o", "s.parquet", "/bin/sleep", "30"]);
    let qemu = run.wait_for_manifest(&dir.path("s.parquet"));
    let started = Instant::now();
    let (code, stderr) = run.end_with(qemu, libc::SIGTERM);
    check_killed_run(&dir, code, &stderr, started);
}

#[test]
fn sigterm_to_qtrace_is_passed_to_qemu() {
    let dir = Dir::new();
    let mut run = Background::start(&dir, &["-o", "s.parquet", "/bin/sleep", "30"]);
    run.wait_for_manifest(&dir.path("s.parquet"));
    let started = Instant::now();
    let qtrace = run.pid();
    let (code, stderr) = run.end_with(qtrace, libc::SIGTERM);
    // qtrace outlived QEMU to report, and exits as the guest did.
    check_killed_run(&dir, code, &stderr, started);
}

#[test]
fn finds_the_program_in_path_after_double_dash() {
    let dir = Dir::new();
    let bin = dir.path("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::copy("/bin/true", bin.join("true")).unwrap();
    let path = format!("/nonexistent:{}:/usr/bin:/bin", bin.display());
    let mut cmd = dir.record(["--", "true"]);
    cmd.env("PATH", &path);
    let out = outcome(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = dir.manifest("run.parquet");
    assert_eq!(
        m.command_line[3..],
        [bin.join("true").display().to_string()]
    );
    assert!(m.complete);

    // A sample, by name, with its argument, and `-o` before the `--`.
    std::fs::copy(common::sample("x86_64", "hotloop"), bin.join("hotloop")).unwrap();
    let mut cmd = dir.record(["-o", "h.parquet", "--", "hotloop", "1"]);
    cmd.env("PATH", &path);
    let out = outcome(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, native_stdout(&bin.join("hotloop"), &["1"]));
    let m = dir.manifest("h.parquet");
    assert_eq!(
        m.command_line[3..],
        [bin.join("hotloop").display().to_string(), "1".into()]
    );
}

#[test]
fn clean_env_gives_the_guest_an_empty_environment() {
    let dir = Dir::new();
    let mut cmd = dir.record(["-o", "with.parquet", "/usr/bin/env"]);
    cmd.env("QTRACE_TEST_MARKER", "set");
    let out = outcome(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.lines().any(|l| l == "QTRACE_TEST_MARKER=set"),
        "{}",
        out.stdout
    );

    let mut cmd = dir.record(["--clean-env", "-o", "without.parquet", "/usr/bin/env"]);
    cmd.env("QTRACE_TEST_MARKER", "set");
    let out = outcome(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "the guest saw an environment");
    assert!(dir.manifest("without.parquet").complete);
}

#[test]
fn force_replaces_an_earlier_trace() {
    let dir = Dir::new();
    let out = outcome(dir.record(["/bin/sh", "-c", "exit 3"]));
    assert_eq!(out.code, 3, "{}", out.stderr);
    std::fs::write(dir.path("run.parquet/left-over"), "from the first run").unwrap();

    refused(dir.record(["/bin/true"]), "run.parquet: already exists");
    assert_eq!(dir.manifest("run.parquet").command_line[3], "/bin/sh");
    assert!(dir.path("run.parquet/left-over").is_file());

    let out = outcome(dir.record(["--force", "/bin/true"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = dir.manifest("run.parquet");
    assert_eq!(m.command_line[3..], ["/bin/true"]);
    assert!(m.complete);
    assert!(!dir.path("run.parquet/left-over").exists());
}

#[test]
fn force_refuses_a_directory_that_is_not_a_trace() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path("keep")).unwrap();
    std::fs::write(dir.path("keep/data.txt"), "precious").unwrap();
    let line = refused(
        dir.record(["--force", "-o", "keep", "/bin/true"]),
        "keep: exists and is not a qtrace trace",
    );
    assert!(line.contains("not replacing it"), "{line}");
    let left: Vec<_> = std::fs::read_dir(dir.path("keep")).unwrap().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(
        std::fs::read_to_string(dir.path("keep/data.txt")).unwrap(),
        "precious"
    );
}

#[test]
fn force_accepts_an_empty_directory() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path("empty")).unwrap();
    let out = outcome(dir.record(["--force", "-o", "empty", "/bin/true"]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = dir.manifest("empty");
    assert!(m.complete);
    assert_eq!(out.stderr, summary_line("empty", &m));
}

#[test]
fn programs_that_cannot_be_recorded_are_named() {
    let dir = Dir::new();
    std::fs::write(dir.path("script.sh"), "#!/bin/sh\necho hello\n").unwrap();
    std::fs::set_permissions(
        dir.path("script.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    refused(
        dir.record(["./script.sh"]),
        "./script.sh: not an ELF executable",
    );
    let line = refused(dir.record(["./missing"]), "./missing");
    assert!(line.contains("No such file"), "{line}");
    let mut cmd = dir.record(["no-such-program-qtrace"]);
    cmd.env("PATH", "/nonexistent");
    refused(cmd, "no-such-program-qtrace: not found in PATH");
    assert!(!dir.path("run.parquet").exists(), "QEMU must not have run");
}

/// An i386 executable: the system's assembler and linker make one without
/// any 32-bit library. None if they cannot.
fn i386_program(dir: &Dir) -> Option<PathBuf> {
    let src = dir.path("exit.s");
    std::fs::write(
        &src,
        ".globl _start\n_start:\n movl $1, %eax\n xorl %ebx, %ebx\n int $0x80\n",
    )
    .unwrap();
    let obj = dir.path("exit.o");
    let exe = dir.path("i386");
    let ok = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
    let built = ok(Command::new("as").arg("--32").arg("-o").arg(&obj).arg(&src))
        && ok(Command::new("ld")
            .args(["-m", "elf_i386", "-e", "_start", "-o"])
            .arg(&exe)
            .arg(&obj));
    built.then_some(exe)
}

#[test]
fn i386_programs_are_refused() {
    let dir = Dir::new();
    let Some(i386) = i386_program(&dir) else {
        eprintln!("skipped: cannot build an i386 executable here (no `as --32` / `ld`)");
        return;
    };
    let line = refused(dir.record([&i386]), "machine 3 (i386)");
    assert!(line.contains(&i386.display().to_string()), "{line}");
    assert!(!dir.path("run.parquet").exists(), "QEMU must not have run");
}

#[test]
fn malformed_recorder_options_are_refused_before_qemu_runs() {
    let dir = Dir::new();
    refused(
        dir.record(["-O", "zstd", "/bin/true"]),
        "-O zstd: expected KEY=VALUE",
    );
    refused(dir.record(["-O", "a=1,b=2", "/bin/true"]), "comma");
    refused(dir.record(["-O", "out=x", "/bin/true"]), "with -o");
    assert!(!dir.path("run.parquet").exists(), "QEMU must not have run");
}

#[test]
fn the_recorder_refuses_options_it_does_not_know() {
    let dir = Dir::new();
    for (option, said) in [
        ("bogus=1", "unknown option `bogus`"),
        ("zstd=99", "zstd=99"),
        ("start=addr:zz", "start=addr:zz"),
        ("windows=0", "windows=0"),
    ] {
        let out = outcome(dir.record(["-O", option, "/bin/true"]));
        assert_ne!(out.code, 0, "{option} accepted: {}", out.stderr);
        assert!(out.stderr.contains(said), "{said:?} not in {}", out.stderr);
        assert!(
            out.stderr
                .contains("qtrace: no trace written in run.parquet"),
            "{}",
            out.stderr
        );
        assert!(!dir.path("run.parquet").exists());
    }
}

#[test]
fn qtrace_recorder_names_the_plugin_to_load() {
    let dir = Dir::new();
    std::fs::copy(common::recorder(), dir.path("copy.so")).unwrap();
    let mut cmd = dir.record(["/bin/true"]);
    // Relative, so also made absolute for QEMU.
    cmd.env("QTRACE_RECORDER", "copy.so");
    let out = outcome(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (plugin, _) = plugin_arg(&dir.manifest("run.parquet"));
    assert_eq!(plugin, dir.path("copy.so"));
}

#[test]
fn a_missing_qemu_says_how_to_set_it_up() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path("no-qemu")).unwrap();
    for arch in ["x86_64", "aarch64"] {
        let mut cmd = dir.record([common::sample(arch, "hotloop")]);
        cmd.env("QTRACE_QEMU_DIR", dir.path("no-qemu"));
        let line = refused(cmd, "make setup");
        let expected = dir.path("no-qemu/bin").join(format!("qemu-{arch}"));
        assert!(line.contains(&expected.display().to_string()), "{line}");
    }
    assert!(!dir.path("run.parquet").exists());
}

#[test]
fn a_missing_recorder_says_how_to_build_it() {
    let dir = Dir::new();
    let mut cmd = dir.record(["/bin/true"]);
    cmd.env("QTRACE_RECORDER", dir.path("nothing.so"));
    let line = refused(cmd, "cargo build");
    assert!(
        line.contains(&dir.path("nothing.so").display().to_string()),
        "{line}"
    );
    assert!(!dir.path("run.parquet").exists());
}
