//! `qtrace`: record a QEMU run as a trace, and read traces.
//!
//! This file only parses arguments and turns the outcome into an exit code;
//! each command lives in its own module.

mod counts;
mod coverage;
mod diff;
mod export;
mod info;
mod locate;
mod mem;
mod output;
mod places;
mod progress;
mod reading;
mod record;
mod regs;
mod rows;
mod syscalls;
mod top_blocks;
mod tui;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Record QEMU execution traces as Parquet, and read them.
#[derive(Parser)]
#[command(name = "qtrace", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    read: reading::ReadArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a program under QEMU and record its execution as a trace.
    #[command(override_usage = "qtrace record [OPTIONS] [--] PROGRAM [ARGS]...")]
    Record(record::Args),
    /// Say what a trace holds: target, command line, totals, tables.
    Info(info::Args),
    /// List the most executed blocks of a trace.
    TopBlocks(top_blocks::Args),
    /// Which code ran: a drcov file, address lists, totals per function or
    /// module; union, intersection or difference of several traces.
    Coverage(coverage::Args),
    /// Compare two runs: blocks executed only in one, execution counts that
    /// changed, or (--first) where the runs first part and why.
    Diff(diff::Args),
    /// Browse a trace in an interactive terminal interface (or compare
    /// two): overview, hot blocks, timeline, syscalls, memory, diff.
    Tui(tui::Args),
    /// Memory accesses: hot pages, every access to an address, the last
    /// store to it (traces recorded with `-O mem=values` or `mem=addr`).
    Mem(mem::Args),
    /// List the system calls of a trace as strace does, or count them (`-c`).
    Syscalls(syscalls::Args),
    /// The registers of a trace recorded with `-O regs=...`: all of them at
    /// a point in time, or one register's history.
    Regs(regs::Args),
    /// Check every part of a trace against its manifest (sizes, checksums,
    /// rows, sequence numbers), and say what a cut-short run left.
    Verify(verify::Args),
    /// Write a table as CSV or JSON, or the trace as Chrome trace-event
    /// JSON (Perfetto) or a Tenet trace.
    Export(export::Args),
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    cli.read.set_threads()?;
    match cli.command {
        Command::Record(args) => record::run(args),
        Command::Info(args) => info::run(args, &cli.read).map(|()| 0),
        Command::TopBlocks(args) => top_blocks::run(args, &cli.read).map(|()| 0),
        Command::Mem(args) => mem::run(args, &cli.read).map(|()| 0),
        Command::Verify(args) => verify::run(args),
        Command::Coverage(args) => coverage::run(args, &cli.read).map(|()| 0),
        Command::Diff(args) => diff::run(args, &cli.read).map(|()| 0),
        Command::Tui(args) => tui::run(args),
        Command::Syscalls(args) => syscalls::run(args, &cli.read).map(|()| 0),
        Command::Regs(args) => regs::run(args, &cli.read).map(|()| 0),
        Command::Export(args) => export::run(args, &cli.read).map(|()| 0),
    }
}

fn main() -> ExitCode {
    qtrace_format::reader::quiet_contained_panics();
    keep_freed_memory();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`qtrace top-blocks t | head`): not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// Scans decompress pages of a few MiB by the thousand; glibc would map
/// and unmap each (its threshold for mmap starts at 128 KiB; 32 MiB is its maximum), and the page
/// faults cost more than the decompression. Such buffers come from the
/// heap instead, and freed memory stays for the next page.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// `{:#}` of the error (each cause after the context it explains), on one
/// line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let broken = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(broken)
            || matches!(
                cause.downcast_ref::<qtrace_format::Error>(),
                Some(qtrace_format::Error::Io { error, .. }) if broken(error)
            )
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Catches clashing flags (a command's `-j` against the global one...)
    /// that clap only reports at run time.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
