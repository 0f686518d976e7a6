//! Signals, and how the run ended.
//!
//! qemu-user installs its host signal handler only for the signals that
//! dump core; a guest that leaves SIGINT, SIGTERM, SIGHUP, SIGPIPE (and the
//! other signals whose default is to terminate) at their default lets the
//! host kernel kill QEMU outright, and no plugin's atexit runs. The recorder
//! hands those signals to QEMU's own handler instead (taken from SIGSEGV's
//! action): QEMU then treats them as it treats a fatal SIGSEGV, running the
//! atexit callbacks (the trace is sealed) and dying of the same signal, so
//! the exit status is what it would have been. When the guest installs a
//! handler, QEMU installs its own and the recorder steps aside; when the
//! guest goes back to the default, QEMU restores the host's default and the
//! recorder routes the signal again (after each `rt_sigaction`).
//!
//! The recorder's threads block these signals, so that the kernel never
//! delivers one to a thread that QEMU does not know.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};

use qtrace_format::manifest::{signal_name, RunEnd};

/// The signals whose default action terminates the process without a core
/// dump (real-time signals aside: QEMU remaps those).
const TERMINATING: [libc::c_int; 12] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGSTKFLT,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGIO,
    libc::SIGPWR,
];

/// QEMU's host signal handler, once known.
static QEMU_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// A terminating signal that reached the guest at its default action.
static FATAL: AtomicI32 = AtomicI32::new(0);

type SigAction = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Routes the terminating signals left at their default to QEMU's handler.
/// Call once QEMU has set up its signals (at the first translation), and
/// after each `rt_sigaction` of the guest.
pub fn route() {
    // SAFETY: sigaction with a null new action only reads the current one
    // into a zeroed struct.
    let segv = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGSEGV, std::ptr::null(), &mut old) != 0 {
            return;
        }
        old
    };
    let h = segv.sa_sigaction;
    if h == libc::SIG_DFL || h == libc::SIG_IGN || segv.sa_flags & libc::SA_SIGINFO == 0 {
        // Not QEMU's handler: leave the signals alone.
        return;
    }
    QEMU_HANDLER.store(h, Ordering::Release);
    for sig in TERMINATING {
        // SAFETY: as above; the new action is a valid SA_SIGINFO handler with
        // QEMU's mask (every signal blocked while it runs) and flags.
        unsafe {
            let mut cur: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut cur) != 0
                || cur.sa_sigaction != libc::SIG_DFL
            {
                continue;
            }
            let mut act = segv;
            act.sa_sigaction = on_terminating as SigAction as usize;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

/// The handler of a terminating signal the guest left at its default: notes
/// it and passes it to QEMU's handler, which delivers it to the guest.
extern "C" fn on_terminating(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    FATAL.store(sig, Ordering::Relaxed);
    let h = QEMU_HANDLER.load(Ordering::Acquire);
    if h != 0 {
        // SAFETY: `h` is the SA_SIGINFO handler QEMU installed for SIGSEGV,
        // called as the kernel would call it.
        let qemu: SigAction = unsafe { std::mem::transmute::<usize, SigAction>(h) };
        qemu(sig, info, ctx);
    }
}

/// Blocks, in the calling thread, every signal but the synchronous faults:
/// for the recorder's own threads.
pub fn block_in_this_thread() {
    // SAFETY: plain libc calls on a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The exit status given to exit_group, + 1 (a thread's `exit` ends only
/// the thread).
static EXIT_CODE: AtomicI32 = AtomicI32::new(0);
static EXIT_TID: AtomicU32 = AtomicU32::new(0);
/// A signal the guest sent itself (abort's SIGABRT, `raise`).
static RAISED: AtomicI32 = AtomicI32::new(0);
static RAISED_TID: AtomicU32 = AtomicU32::new(0);

/// Notes what a system call says about the end of the run: `exit_group`
/// with its status, a signal sent to the process itself.
pub fn on_syscall(name: &str, args: &[u64; 8], pid: u32, tid: u32) {
    match name {
        "exit_group" => {
            EXIT_CODE.store((args[0] as i32 & 0xff) + 1, Ordering::Relaxed);
            EXIT_TID.store(tid, Ordering::Relaxed);
        }
        // kill(pid, sig), tkill(tid, sig), tgkill(tgid, tid, sig)
        "kill" | "tkill" | "tgkill" => {
            let (target, sig) = match name {
                "tgkill" => (args[0] as u32, args[2] as i32),
                _ => (args[0] as u32, args[1] as i32),
            };
            let own = target == pid || (name == "tkill" && target == tid) || target == 0;
            if own && sig > 0 {
                RAISED.store(sig, Ordering::Relaxed);
                RAISED_TID.store(tid, Ordering::Relaxed);
            }
        }
        _ => {}
    }
}

/// Forgets what was noted (a forked child starts afresh).
pub fn reset() {
    EXIT_CODE.store(0, Ordering::Relaxed);
    RAISED.store(0, Ordering::Relaxed);
    FATAL.store(0, Ordering::Relaxed);
}

/// How the run ended, at atexit: an exit, a terminating signal routed here,
/// a signal the guest sent itself, or else a fault (QEMU does not say which
/// signal; `qtrace record` fills it in from QEMU's exit status).
pub fn run_end() -> RunEnd {
    let code = EXIT_CODE.load(Ordering::Relaxed);
    if code > 0 {
        return RunEnd {
            how: "exit".into(),
            exit_code: Some(code - 1),
            tid: Some(EXIT_TID.load(Ordering::Relaxed)),
            ..Default::default()
        };
    }
    let fatal = FATAL.load(Ordering::Relaxed);
    if fatal > 0 {
        return signal_end(fatal, None);
    }
    let raised = RAISED.load(Ordering::Relaxed);
    if raised > 0 {
        return signal_end(raised, Some(RAISED_TID.load(Ordering::Relaxed)));
    }
    RunEnd {
        how: "crash".into(),
        ..Default::default()
    }
}

/// The end by signal `sig`: a crash for the signals of faults and abort.
pub fn signal_end(sig: i32, tid: Option<u32>) -> RunEnd {
    let crash = [
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGSEGV,
        libc::SIGSYS,
    ]
    .contains(&sig);
    RunEnd {
        how: if crash { "crash" } else { "signal" }.into(),
        signal: Some(sig),
        signal_name: signal_name(sig),
        tid,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_say_what_happened() {
        reset();
        assert_eq!(run_end().how, "crash");
        on_syscall("tgkill", &[100, 101, 6, 0, 0, 0, 0, 0], 100, 101);
        let end = run_end();
        assert_eq!((end.how.as_str(), end.signal), ("crash", Some(6)));
        assert_eq!(end.signal_name.as_deref(), Some("SIGABRT"));
        on_syscall("kill", &[555, 2, 0, 0, 0, 0, 0, 0], 100, 101);
        assert_eq!(run_end().signal, Some(6), "another process's signal");
        on_syscall("exit_group", &[3, 0, 0, 0, 0, 0, 0, 0], 100, 101);
        let end = run_end();
        assert_eq!((end.how.as_str(), end.exit_code), ("exit", Some(3)));
        assert_eq!(signal_end(15, None).how, "signal");
        reset();
    }
}
