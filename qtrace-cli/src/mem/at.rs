//! `qtrace mem at`: every access that touches an address or a range.
//!
//! Accesses come vCPU by vCPU, each vCPU's in `seq` order: a trace has no
//! order between vCPUs (their threads ran concurrently).
//!
//! Row groups are taken in that order (vCPU, then `seq`) a window at a
//! time: the window's row groups are read in parallel, their matches
//! printed in order, then the next window, so output starts at once, holds
//! no more than a window's matches, and stops reading at `--limit`. A row
//! group whose `addr` statistics (or `tid`) rule it out is never decoded;
//! the others decode `addr`, `size` and `store`, and the whole row only
//! where it matches.

use std::path::PathBuf;

use anyhow::Result;
use arrow_array::{BooleanArray, RecordBatch, UInt32Array, UInt64Array, UInt8Array};
use qtrace_format::schema::{self, col};
use rayon::prelude::*;

use super::access::{self, Access, Code, Group, MemReader};
use super::span::Span;
use super::{mem_parts, ScanStats};
use crate::output::Format;
use crate::reading::ReadArgs;
use crate::rows::Rows;

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// The bytes to watch: `ADDR` (one byte), `ADDR+LEN` or `ADDR..END`
    /// (END excluded); hex with `0x`, else decimal. An access matches if
    /// it touches any of them (an 8-byte store at A touches A..A+8).
    #[arg(value_name = "ADDR[+LEN|..END]")]
    span: String,
    /// Only this vCPU's accesses.
    #[arg(long, value_name = "V")]
    vcpu: Option<u32>,
    /// Only this guest thread's accesses.
    #[arg(long, value_name = "T")]
    tid: Option<u32>,
    /// Only stores.
    #[arg(long, conflicts_with = "loads")]
    stores: bool,
    /// Only loads.
    #[arg(long)]
    loads: bool,
    /// Stop after N accesses; 0 lists them all.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 0)]
    limit: u64,
    /// Say on stderr how many row groups were read and how many skipped by
    /// their statistics.
    #[arg(short = 'v', long)]
    stats: bool,
    /// How to print: aligned columns, CSV, a JSON array or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Matches of a row group decoded in parallel with the others of its
/// window and held until printed; a row group with more streams them.
const HELD_ROWS: usize = 16 * 1024;

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let span = Span::parse(&args.span)?;
    let trace = read.open(&args.dir)?;
    let parts = mem_parts(&trace, &args.dir, args.vcpu)?;
    let reader = MemReader::open(&parts, &[col::TID, col::ADDR, col::SIZE, col::STORE])?;
    let block_parts = access::block_parts(&trace)?;
    // Read `block_dict` only once there is an access to name.
    let mut code: Option<Code> = None;

    let mut stats = ScanStats {
        row_groups: reader.groups.len(),
        ..ScanStats::default()
    };
    let groups: Vec<&Group> = reader
        .groups
        .iter()
        .filter(|g| g.addr.is_none_or(|r| span.reachable_from(r)))
        .filter(|g| {
            let t = args.tid.map(u64::from);
            t.is_none_or(|t| g.tid.is_none_or(|(lo, hi)| lo <= t && t <= hi))
        })
        .collect();
    stats.skipped = stats.row_groups - groups.len();

    let want_store = match (args.stores, args.loads) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let test = |b: &RecordBatch| -> qtrace_format::Result<Vec<usize>> {
        let addr: &UInt64Array = schema::column(b, col::ADDR)?;
        let size: &UInt8Array = schema::column(b, col::SIZE)?;
        let store: &BooleanArray = schema::column(b, col::STORE)?;
        let tid: &UInt32Array = schema::column(b, col::TID)?;
        Ok((0..b.num_rows())
            .filter(|&i| span.touched_by(addr.value(i), u64::from(size.value(i))))
            .filter(|&i| want_store.is_none_or(|s| store.value(i) == s))
            .filter(|&i| args.tid.is_none_or(|t| tid.value(i) == t))
            .collect())
    };

    let mut out = Rows::stdout(args.format, &access::COLUMNS)?;
    let mut print = |accesses: &[Access], stats: &mut ScanStats| -> Result<()> {
        if accesses.is_empty() {
            return Ok(());
        }
        stats.decoded_rows += accesses.len() as u64;
        let code = match &mut code {
            Some(code) => code,
            None => code.insert(Code::open(&trace, &block_parts)?),
        };
        let places = code.insns_of(accesses)?;
        for (a, place) in accesses.iter().zip(&places) {
            out.push(access::cells(a, place.as_ref()))?;
        }
        Ok(())
    };
    let window = (rayon::current_num_threads() * 2).max(2);
    let mut left = if args.limit == 0 {
        u64::MAX
    } else {
        args.limit
    };
    for (i, chunk) in groups.chunks(window).enumerate() {
        if left == 0 {
            stats.unneeded = groups.len() - i * window;
            break;
        }
        // Which rows match, in parallel; then only as many as the limit
        // leaves, in order.
        let mut selected: Vec<Vec<usize>> = chunk
            .par_iter()
            .map(|g| reader.select(g, test))
            .collect::<Result<_>>()?;
        for rows in &mut selected {
            let take = rows.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            rows.truncate(take);
            left -= take as u64;
        }
        // Few matches: decoded in parallel and held; many: streamed from
        // their row group, a batch at a time, when their turn comes.
        let decoded: Vec<Option<Vec<Access>>> = chunk
            .par_iter()
            .zip(&selected)
            .map(|(g, rows)| {
                (rows.len() <= HELD_ROWS)
                    .then(|| reader.decode(g, rows))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        for ((g, rows), held) in chunk.iter().zip(&selected).zip(decoded) {
            match held {
                Some(accesses) => print(&accesses, &mut stats)?,
                None => reader.decode_each(g, rows, |accesses| print(&accesses, &mut stats))?,
            }
        }
    }
    out.finish()?;
    if args.stats {
        stats.report("mem at");
    }
    Ok(())
}
