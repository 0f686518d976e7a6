//! The qtrace recorder: a QEMU TCG plugin (`-plugin libqtrace_recorder.so,out=run.parquet`)
//! that records what a guest executes into a trace directory (see `qtrace-format`).
//!
//! - [`ffi`]: the only place that touches QEMU's API (bindings, trampolines);
//! - `options`: the plugin's options, checked at install;
//! - `filter`: which blocks are recorded, decided at translation;
//! - `recorder`: what each callback does (the hot path is `on_exec`);
//! - `regs`: registers at block entry and system calls (option `regs=`);
//! - `sink`: background writer threads that turn buffers into Parquet parts;
//! - `syscall_names`: syscall numbers to names per guest architecture (generated).
//!
//! No panic may reach QEMU: every callback runs under `catch_unwind`.

mod disas;
pub mod ffi;
mod filter;
mod options;
mod recorder;
mod regs;
mod sink;
mod syscall_names;
