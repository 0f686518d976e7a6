//! `qtrace mem`: questions about a trace's memory accesses (the `mem`
//! table, recorded with `-O mem=values` or `mem=addr`).
//!
//! - `hot`: the pages (or regions of adjacent pages) accessed most;
//! - `at`: every access to an address or a range, in order;
//! - `last-write`: the last store to an address before a point.
//!
//! A trace can hold billions of accesses, so nothing here holds them: `hot`
//! keeps one counter per distinct page, and `at` and `last-write` decide
//! from each row group's footer statistics (`addr`, `seq`, `block_seq`,
//! `tid`) whether it can hold an answer before decoding any of it, then
//! decode the few columns the test needs, and the other columns only for
//! the rows that pass.

mod access;
mod at;
mod hot;
mod last_write;
mod span;

use std::path::Path;

use anyhow::{bail, Result};
use qtrace_format::{PartPath, Table, Trace};

use crate::reading::ReadArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The most accessed pages (or, with --regions, runs of adjacent
    /// pages), with loads, stores and bytes, and where they are.
    Hot(hot::Args),
    /// Every access that touches an address or a range, with the
    /// instruction that made it: vCPU 0's in the order it made them, then
    /// vCPU 1's, and so on (a trace does not order vCPUs against each
    /// other).
    At(at::Args),
    /// The last store that wrote any byte of an address before a point of
    /// one vCPU's execution, and the bytes it wrote there.
    LastWrite(last_write::Args),
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    match args.command {
        Command::Hot(a) => hot::run(a, read),
        Command::At(a) => at::run(a, read),
        Command::LastWrite(a) => last_write::run(a, read),
    }
}

/// The `mem` parts of a trace (of one vCPU if given), ordered by vCPU and
/// part number. A trace recorded without memory accesses is an error that
/// says how to record them.
fn mem_parts(trace: &Trace, dir: &Path, vcpu: Option<u32>) -> Result<Vec<PartPath>> {
    let mut parts = trace.parts(Table::Mem)?;
    let recorded = trace
        .manifest()
        .options
        .get("mem")
        .is_some_and(|m| m != "off");
    if parts.is_empty() && !recorded {
        bail!(
            "{}: no memory accesses in this trace: record it with `qtrace record -O mem=values` (or `-O mem=addr`)",
            dir.display()
        );
    }
    if let Some(v) = vcpu {
        if !trace.manifest().vcpus.iter().any(|t| t.vcpu == v) {
            bail!("{}: no vCPU {v} in this trace", dir.display());
        }
        parts.retain(|p| p.vcpu == Some(v));
    }
    parts.sort_by_key(|p| (p.vcpu, p.index));
    Ok(parts)
}

/// How many row groups a query read and how many it skipped by their
/// statistics, for `--stats`.
#[derive(Debug, Default)]
struct ScanStats {
    row_groups: usize,
    /// Ruled out by their footer statistics, never decoded.
    skipped: usize,
    /// Left unread because the answer was found first.
    unneeded: usize,
    /// Matching rows decoded in full.
    decoded_rows: u64,
}

impl ScanStats {
    fn report(&self, what: &str) {
        use std::io::Write;
        let read = self.row_groups - self.skipped - self.unneeded;
        // Not eprintln!, which panics when stderr is closed.
        let _ = writeln!(
            std::io::stderr(),
            "{what}: {} row groups: {} skipped by their statistics, {} not needed, {read} read; {} matching rows decoded",
            self.row_groups,
            self.skipped,
            self.unneeded,
            self.decoded_rows
        );
    }
}
