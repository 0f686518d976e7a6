//! The qtrace recorder: a QEMU TCG plugin (`-plugin libqtrace_recorder.so,out=run.parquet`)
//! that records what a guest executes into a trace directory (see `qtrace-format`).
//!
//! - [`ffi`]: the only place that touches QEMU's API (bindings, trampolines);
//! - `options`: the plugin's options, checked at install;
//! - `filter`: which blocks are recorded, decided at translation;
//! - `modules`: the files mapped into the guest (`modules` table), followed
//!   through its system calls;
//! - `triggers`: when recording starts and stops (windows), decided at
//!   translation too (function entries from `qtrace_format::elf`);
//! - `recorder`: what each callback does (the hot path is `on_exec`);
//! - `regs`: registers at block entry and system calls (option `regs=`);
//! - `session`: one guest process's trace (a forked child gets its own),
//!   its writers and its manifest (`ledger`, rewritten as parts are sealed);
//! - `signals`: terminating signals handed to QEMU so that the trace is
//!   sealed, and how the run ended;
//! - `sink`: background writer threads that turn buffers into Parquet parts;
//! - `stream`: the per-vCPU event stream of block ids and memory accesses;
//! - `syscall_names`: syscall numbers to names per guest architecture (generated).
//!
//! No panic may reach QEMU: every callback runs under `catch_unwind`, and
//! messages go through [`warn!`], which cannot panic (`eprintln!` panics
//! when stderr fails, and QEMU shares the guest's file descriptors).

/// Prints a line on stderr, ignoring any error, and appends it to the
/// trace's `recorder.log` (the guest may have closed stderr).
macro_rules! warn {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stderr(), "{line}");
        $crate::session::log(&line);
    }};
}

/// Locks `m`, going on with its data if a thread panicked holding it: the
/// recorder must not stop for that.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

mod disas;
pub mod ffi;
mod filter;
mod ledger;
mod modules;
mod options;
mod recorder;
mod regs;
mod session;
mod signals;
mod sink;
mod stream;
mod triggers;
