//! `qtrace export`: a trace's rows for other tools.
//!
//! - `qtrace export TRACE TABLE --format csv|jsonl|json`: any table, rows
//!   in their order (per-vCPU tables vCPU by vCPU, each by `seq`, with the
//!   `vcpu` column first), see [`table`];
//! - `qtrace export TRACE --chrome`: Chrome trace-event JSON (Perfetto UI,
//!   `chrome://tracing`): one track per guest thread, a span per run of
//!   blocks in the same function, system calls as instants, see [`chrome`];
//! - `qtrace export TRACE --tenet --seq A..B`: a Tenet text trace (IDA's
//!   trace explorer): one line per instruction with changed registers and
//!   memory accesses, see [`tenet`].
//!
//! Everything is streamed: memory grows with the distinct blocks of a
//! trace, never with its events, and output is written as it is made.

mod cells;
mod chrome;
mod cursor;
mod names;
mod table;
mod tenet;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use qtrace_format::symbols::DEFAULT_DEBUG_DIR;
use qtrace_format::{PartPath, Table, Trace};

use crate::reading::ReadArgs;

#[derive(clap::Args)]
#[command(
    group = clap::ArgGroup::new("what").args(["table", "chrome", "tenet"]).required(true),
    override_usage = "qtrace export [OPTIONS] DIR TABLE\n       qtrace export [OPTIONS] DIR --chrome\n       qtrace export [OPTIONS] DIR --tenet [--seq A..B]"
)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// The table to export: blocks, block_dict, block_counts, mem,
    /// syscalls, regs or modules.
    table: Option<String>,
    /// Table export: comma-separated values with a header line, JSON lines
    /// (one object per row) or one JSON array.
    #[arg(long, value_enum)]
    format: Option<TableFormat>,
    /// Write to FILE instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Only this vCPU's rows (per-vCPU tables, `block_counts`, --chrome;
    /// --tenet reads one vCPU, by default the first).
    #[arg(long, value_name = "V")]
    vcpu: Option<u32>,
    /// Only these block executions: `A..B` is seq A to B-1 (`A..` and
    /// `..B` too). For `mem`, `syscalls` and `regs` it selects by
    /// `block_seq`, so one range picks the same blocks in every table.
    #[arg(long, value_name = "A..B", value_parser = parse_seq_range)]
    seq: Option<Range<u64>>,
    /// Table export: only these columns, in this order (`vcpu` included).
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    columns: Vec<String>,
    /// `blocks` export: add each block's `pc` and `symbol` (QEMU's, else
    /// resolved offline through the trace's modules).
    #[arg(long)]
    resolve: bool,
    /// Chrome trace-event JSON instead of a table.
    #[arg(long)]
    chrome: bool,
    /// A Tenet text trace of one vCPU instead of a table (one line per
    /// instruction: keep --seq small; without it, the first 100000 blocks).
    #[arg(long)]
    tenet: bool,
    /// --chrome: stop after this many events (spans and system calls), with
    /// a note on stderr; 0: no limit.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    max_events: u64,
    /// Where to look for the separate debug files of stripped modules
    /// (symbols for --chrome and --resolve); repeatable.
    #[arg(long = "debug-dir", value_name = "DIR", default_value = DEFAULT_DEBUG_DIR)]
    debug_dirs: Vec<PathBuf>,
}

/// How a table is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Csv,
    Jsonl,
    Json,
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let trace = read.open(&args.dir)?;
    if let Some(v) = args.vcpu {
        crate::reading::check_vcpu(&trace, v, &[])?;
    }
    let only_for_tables = [
        (args.format.is_some(), "--format"),
        (!args.columns.is_empty(), "--columns"),
        (args.resolve, "--resolve"),
    ];
    if args.chrome || args.tenet {
        if let Some((_, flag)) = only_for_tables.iter().find(|(given, _)| *given) {
            bail!("{flag} applies to table exports, not --chrome or --tenet");
        }
    }
    let table = match &args.table {
        None => None,
        Some(name) => Some(Table::from_name(name).with_context(|| {
            let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
            format!("unknown table `{name}` (tables: {})", names.join(", "))
        })?),
    };
    if let Some(t) = table {
        table::check(t, &args)?;
    }
    let path = args.output.as_deref();
    let mut out = open_output(path)?;
    let written = match table {
        Some(table) => table::run(&trace, table, &args, &mut out),
        None if args.chrome => chrome::run(&trace, &args, &mut out),
        None => tenet::run(&trace, &args, &mut out),
    };
    written
        .and_then(|()| Ok(out.flush()?))
        .map_err(|e| match e.downcast::<io::Error>() {
            // A write that failed: name the file (errors of reading name
            // their own).
            Ok(io) => output_error(path, io),
            Err(other) => other,
        })
}

/// stdout, or a new file; buffered either way.
fn open_output(path: Option<&Path>) -> Result<Box<dyn Write>> {
    Ok(match path {
        None => Box::new(BufWriter::with_capacity(1 << 20, io::stdout().lock())),
        Some(p) => {
            let file = File::create(p).map_err(|e| output_error(Some(p), e))?;
            Box::new(BufWriter::with_capacity(1 << 20, file))
        }
    })
}

/// A write error, naming the file written (a closed stdout stays an
/// `io::Error` in the chain, which `main` takes as a quiet exit).
fn output_error(path: Option<&Path>, e: io::Error) -> anyhow::Error {
    match path {
        Some(p) => anyhow::Error::new(e).context(format!("writing {}", p.display())),
        None => e.into(),
    }
}

/// `A..B`, `A..`, `..B` (B exclusive), or `A..=B`.
fn parse_seq_range(s: &str) -> Result<Range<u64>, String> {
    let bad = || format!("`{s}` is not a range of seq (A..B, A.., ..B or A..=B)");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let num = |t: &str| t.trim().replace('_', "").parse::<u64>().map_err(|_| bad());
    let start = if a.trim().is_empty() { 0 } else { num(a)? };
    let end = match b.strip_prefix('=') {
        Some(last) => num(last)?.checked_add(1).ok_or_else(bad)?,
        None if b.trim().is_empty() => u64::MAX,
        None => num(b)?,
    };
    if end < start {
        return Err(format!("`{s}`: the range ends before it starts"));
    }
    Ok(start..end)
}

/// A per-vCPU table's parts, grouped by vCPU (in order), each vCPU's parts
/// in order; only `vcpu`'s when given.
fn parts_by_vcpu(
    trace: &Trace,
    table: Table,
    vcpu: Option<u32>,
) -> Result<Vec<(u32, Vec<PartPath>)>> {
    let mut parts: Vec<PartPath> = trace
        .parts(table)?
        .into_iter()
        .filter(|p| vcpu.is_none_or(|v| p.vcpu == Some(v)))
        .collect();
    parts.sort_by_key(|p| (p.vcpu, p.index));
    let mut grouped: Vec<(u32, Vec<PartPath>)> = Vec::new();
    for p in parts {
        let v = p.vcpu.unwrap_or(0);
        match grouped.last_mut() {
            Some((last, list)) if *last == v => list.push(p),
            _ => grouped.push((v, vec![p])),
        }
    }
    Ok(grouped)
}

/// Carries an error (or a deliberate stop) out of a `Blocks::read`
/// callback, whose own error type is the format crate's.
#[derive(Default)]
struct Escape {
    error: Option<anyhow::Error>,
}

impl Escape {
    /// Keeps `e` and returns what makes `Blocks::read` stop.
    fn keep(&mut self, e: anyhow::Error) -> qtrace_format::Error {
        self.error = Some(e);
        qtrace_format::Error::corrupt(Path::new(""), "stopped by the export")
    }

    /// The outcome of a `Blocks::read`: the kept error, if any, wins.
    fn outcome(&mut self, read: qtrace_format::Result<()>) -> Result<()> {
        match (self.error.take(), read) {
            (Some(e), _) => Err(e),
            (None, r) => Ok(r?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_ranges() {
        assert_eq!(parse_seq_range("10..20"), Ok(10..20));
        assert_eq!(parse_seq_range("10..=20"), Ok(10..21));
        assert_eq!(parse_seq_range("..5"), Ok(0..5));
        assert_eq!(parse_seq_range("1_000.."), Ok(1000..u64::MAX));
        assert!(parse_seq_range("5").is_err());
        assert!(parse_seq_range("a..b").is_err());
        assert!(parse_seq_range("9..3").unwrap_err().contains("ends before"));
    }
}
