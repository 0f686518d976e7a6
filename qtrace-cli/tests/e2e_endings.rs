//! Every way a guest can end leaves a trace that says how it ended and holds
//! exactly what ran: the guest's exit status (or signal) is what it would be
//! natively, every sealed part is what the manifest lists, and the sealed
//! blocks agree with QEMU's own `libbb` to the block.
//!
//! The guest is `samples/src/endings.c`. Where a separate QEMU run of libbb
//! can report (exits, crashes: QEMU runs the plugins' atexit), it runs on
//! its own with the same arguments and an empty environment; where it
//! cannot (a signal the guest does not handle kills plain QEMU without
//! atexit, and asynchronous signals land at a different block each time),
//! libbb runs beside the recorder in the same QEMU, and the recorder must
//! make QEMU run both plugins' atexit before dying of the signal.
//!
//! Forks, execs, SIGKILL and a full disk: `e2e_endings_fork.rs`,
//! `e2e_endings_kill.rs`, `e2e_endings_disk.rs`.

mod common;
mod e2e_support;

use std::io::{BufRead, BufReader};

use e2e_support::*;

/// The `endings` sample for `arch`: must be built for x86_64; others are
/// skipped when their cross compiler is missing.
fn endings(arch: &str) -> Option<String> {
    let p = sample(arch, "endings");
    assert!(
        p.is_some() || arch != "x86_64",
        "samples not built: run make -C samples"
    );
    p.map(|p| p.display().to_string())
}

/// What every ending must leave: the trace verifies, its listed parts are
/// sound, and (when the run got to its atexit) nothing is left unsealed.
fn assert_sealed(trace: &std::path::Path) -> PartRows {
    assert_verifies(trace);
    let rows = assert_parts_sound(trace);
    let m = manifest(trace);
    assert_eq!(
        m["complete"], true,
        "every part sealed at the end; end: {}, errors: {}",
        m["end"], m["errors"]
    );
    rows
}

/// Records `argv` (stdout a pipe), runs libbb on it alone in a separate
/// QEMU, and checks they agree; returns the run's exit status as a shell
/// gives it, and its stdout.
fn record_against_separate_oracle(arch: &str, argv: &[&str]) -> (i32, String, Recording) {
    let mut rec = Recording::start(argv, &[], &[]);
    let (done, _) = rec.finish(120);
    let (oracle, printed) = oracle_run(arch, "bb,inline=on", argv);
    assert_eq!(
        done.shell_code(),
        oracle.shell_code(),
        "{argv:?}: recorded, plain QEMU"
    );
    assert_eq!(done.stdout, oracle.stdout, "{argv:?}: recorded, plain QEMU");
    let rows = assert_sealed(&rec.trace);
    let (per_vcpu, _) = parse_bb(&printed);
    assert_blocks_match_bb(&rec.trace, &rows, &per_vcpu);
    (done.shell_code(), done.stdout, rec)
}

/// Native x86_64 run of the same arguments, for the status and output the
/// guest must keep under QEMU.
fn assert_native_agrees(argv: &[&str], code: i32, stdout: &str) {
    let native = native_run(argv);
    assert_eq!(code, native.shell_code(), "{argv:?}: recorded, native");
    assert_eq!(stdout, native.stdout, "{argv:?}: recorded, native");
}

#[test]
fn exit_status_is_passed_on_and_every_block_is_sealed() {
    for arch in ["x86_64", "aarch64", "riscv64"] {
        let Some(prog) = endings(arch) else { continue };
        let argv = [prog.as_str(), "exit", "3"];
        let (code, stdout, rec) = record_against_separate_oracle(arch, &argv);
        assert_eq!(code, 3, "{arch}");
        assert_end(&rec.trace, "exit", Some(3));
        if arch == "x86_64" {
            assert_native_agrees(&argv, code, &stdout);
        }
    }
}

/// A guest SIGSEGV and abort(): QEMU runs atexit, then dies of the signal.
#[test]
fn a_crash_seals_every_part_and_dies_of_its_signal() {
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = endings(arch) else { continue };
        for (mode, signal) in [("segv", libc::SIGSEGV), ("abort", libc::SIGABRT)] {
            let argv = [prog.as_str(), mode];
            let (code, stdout, rec) = record_against_separate_oracle(arch, &argv);
            assert_eq!(code, 128 + signal, "{arch} {mode}");
            assert_end(&rec.trace, "crash", Some(signal));
            if arch == "x86_64" {
                assert_native_agrees(&argv, code, &stdout);
            }
        }
    }
}

/// exit_group from a second thread while the first is blocked: both vCPUs'
/// streams are complete.
#[test]
fn exit_group_from_a_worker_thread_seals_both_threads() {
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = endings(arch) else { continue };
        let argv = [prog.as_str(), "exit-worker", "5"];
        let mut rec = Recording::start(&argv, &[], &["bb,inline=on"]);
        let (done, printed) = rec.finish(120);
        assert_eq!(done.shell_code(), 5, "{arch}: {}", done.stderr);
        let rows = assert_sealed(&rec.trace);
        let (per_vcpu, _) = parse_bb(&printed);
        assert_eq!(per_vcpu.len(), 2, "{arch}: two vCPUs ran: {printed}");
        assert_blocks_match_bb(&rec.trace, &rows, &per_vcpu);
        assert_end(&rec.trace, "exit", Some(5));
        let m = manifest(&rec.trace);
        let end = &m["end"];
        if let Some(tid) = end["tid"].as_u64() {
            let worker = m["threads"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["vcpu"] == 1)
                .unwrap_or_else(|| panic!("{arch}: no thread on vCPU 1: {m}"));
            assert_eq!(
                Some(tid),
                worker["tid"].as_u64(),
                "{arch}: who ended the run"
            );
        }
        if arch == "x86_64" {
            assert_native_agrees(&argv, done.shell_code(), &done.stdout);
        }
    }
}

/// The guest kills itself with a signal it does not handle: QEMU (run here
/// without `qtrace record`, to see its own status) dies of that signal, after
/// the plugins' atexit.
#[test]
fn a_signal_the_guest_raises_kills_qemu_after_sealing() {
    use std::os::unix::process::ExitStatusExt;
    let prog = endings("x86_64").unwrap();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGALRM] {
        let name = signal_name(signal);
        let argv = [prog.as_str(), "raise", &name[3..]];
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("run.parquet");
        let log = dir.path().join("plugin.log");
        let cmd = qemu_recording("x86_64", &trace, &argv, &["bb,inline=on"], &log);
        let done = Spawned::start(cmd).finish(120);
        assert_eq!(
            done.status.signal(),
            Some(signal),
            "{name}: {}",
            done.stderr
        );
        assert_native_agrees(&argv, done.shell_code(), &done.stdout);
        let rows = assert_sealed(&trace);
        assert_end(&trace, "signal", Some(signal));
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        let (per_vcpu, _) = parse_bb(&printed);
        assert_blocks_match_bb(&trace, &rows, &per_vcpu);
    }
}

/// Whom a signal from outside is sent to.
enum Target {
    /// qtrace's process group, as Ctrl-C in a terminal does: qtrace passes
    /// it on too, so QEMU gets it twice.
    Group,
    /// qtrace alone, which passes it on.
    Qtrace,
    /// QEMU alone.
    Qemu,
}

/// `wait` mode (working, or blocked in pause()), signalled from outside at a
/// random moment after it said "ready".
fn signalled_from_outside(signal: i32, target: Target, pause: bool, seed: u64) {
    let prog = endings("x86_64").unwrap();
    let mut argv = vec![prog.as_str(), "wait"];
    if pause {
        argv.push("pause");
    }
    let mut rec = Recording::start(&argv, &[], &["bb,inline=on"]);
    rec.run.expect_line("ready", 60);
    let qemu = rec.run.only_child();
    let delay = XorShift(seed).secs(0.0, 0.3);
    std::thread::sleep(delay);
    match target {
        Target::Group => rec.run.signal_group(signal),
        Target::Qtrace => rec.run.signal(signal),
        Target::Qemu => send_signal(qemu, signal),
    }
    let (done, printed) = rec.finish(60);
    let what = format!("{} after {delay:?}", signal_name(signal));
    assert_eq!(done.shell_code(), 128 + signal, "{what}: {}", done.stderr);
    let rows = assert_sealed(&rec.trace);
    assert_end(&rec.trace, "signal", Some(signal));
    let (per_vcpu, _) = parse_bb(&printed);
    assert_blocks_match_bb(&rec.trace, &rows, &per_vcpu);
}

#[test]
fn sigint_to_the_process_group_while_working() {
    signalled_from_outside(libc::SIGINT, Target::Group, false, 0x5eed_0001);
}

#[test]
fn sigterm_to_qtrace_while_blocked_in_pause() {
    signalled_from_outside(libc::SIGTERM, Target::Qtrace, true, 0x5eed_0002);
}

#[test]
fn sighup_to_qemu_while_working() {
    signalled_from_outside(libc::SIGHUP, Target::Qemu, false, 0x5eed_0003);
}

/// The reader of the guest's stdout goes away: the next write kills it with
/// SIGPIPE, after the plugins' atexit.
#[test]
fn sigpipe_when_the_reader_goes_away() {
    let prog = endings("x86_64").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.parquet");
    let log = dir.path().join("plugin.log");
    let cmd = record_command(&trace, &[&prog, "pipe"], &[], &["bb,inline=on"], &log);
    let (mut run, stdout) = Spawned::start_raw(cmd);
    // Read until the first numbered line, then close the pipe; in a thread,
    // so that a guest that never writes cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            if line.starts_with("line ") {
                let _ = tx.send(line);
                return;
            }
            line.clear();
        }
    });
    let first = rx.recv_timeout(std::time::Duration::from_secs(60));
    assert!(first.is_ok(), "no numbered line on stdout within 60 s");
    let done = run.finish(60);
    assert_eq!(done.shell_code(), 128 + libc::SIGPIPE, "{}", done.stderr);
    let rows = assert_sealed(&trace);
    assert_end(&trace, "signal", Some(libc::SIGPIPE));
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    let (per_vcpu, _) = parse_bb(&printed);
    assert_blocks_match_bb(&trace, &rows, &per_vcpu);
}
