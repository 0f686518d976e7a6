//! `qtrace mem last-write`: the last store that wrote any byte of an
//! address (or range) before a point of one vCPU's execution, and the bytes
//! it left there.
//!
//! The search runs backwards from the point: row groups by descending
//! `seq`, a window of them at a time in parallel, skipping those whose
//! `block_seq`/`seq` statistics start at or after the point or whose
//! `addr` statistics cannot reach the address; the first window with a hit
//! holds the answer, and nothing before it is read.
//!
//! vCPUs are not ordered against each other in a trace, so only the
//! point's vCPU is searched.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arrow_array::{BooleanArray, RecordBatch, UInt64Array, UInt8Array};
use qtrace_format::schema::{self, col};
use rayon::prelude::*;
use serde_json::Value;

use super::access::{self, Access, Code, Group, MemReader};
use super::span::Span;
use super::{mem_parts, ScanStats};
use crate::output::Format;
use crate::reading::ReadArgs;
use crate::rows::{self, Rows};

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// The bytes: `ADDR` (one byte), `ADDR+LEN` or `ADDR..END` (END
    /// excluded); hex with `0x`, else decimal. The store found is the last
    /// that wrote any of them (an 8-byte store at A writes A..A+8).
    #[arg(value_name = "ADDR[+LEN|..END]")]
    span: String,
    /// Search before this point: `[V:]B`, before block execution B (its
    /// `seq` in `blocks`) of vCPU V (default 0), or `[V:]seq=N`, before
    /// access N of vCPU V's accesses. Default: the end of vCPU 0's trace.
    #[arg(long, value_name = "POINT")]
    before: Option<String>,
    /// Say on stderr how many row groups were read and how many skipped by
    /// their statistics.
    #[arg(short = 'v', long)]
    stats: bool,
    /// How to print: aligned columns, CSV, a JSON array or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Where the search starts (excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    vcpu: u32,
    before: Before,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Before {
    /// Accesses of block executions before this `block_seq`.
    Block(u64),
    /// Accesses before this `seq` of `mem`.
    Seq(u64),
    /// Every access.
    End,
}

impl Point {
    fn parse(text: &str) -> Result<Point> {
        let err = || format!("point `{text}`: expected [VCPU:]BLOCK_SEQ or [VCPU:]seq=N");
        let (vcpu, rest) = match text.split_once(':') {
            Some((v, rest)) => (v.trim().parse().ok().with_context(err)?, rest),
            None => (0, text),
        };
        let before = match rest.trim().strip_prefix("seq=") {
            Some(n) => Before::Seq(n.parse().ok().with_context(err)?),
            None => Before::Block(rest.trim().parse().ok().with_context(err)?),
        };
        Ok(Point { vcpu, before })
    }

    /// Whether a row group whose statistics are these can hold an access
    /// before the point.
    fn may_precede(&self, g: &Group) -> bool {
        match self.before {
            Before::Block(b) => g.block_seq.is_none_or(|(lo, _)| lo < b),
            Before::Seq(n) => g.seq.is_none_or(|(lo, _)| lo < n),
            Before::End => true,
        }
    }

    fn describe(&self) -> String {
        match self.before {
            Before::Block(b) => format!("before block execution {b} of vCPU {}", self.vcpu),
            Before::Seq(n) => format!("before access {n} of vCPU {}", self.vcpu),
            Before::End => format!("on vCPU {}", self.vcpu),
        }
    }
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let span = Span::parse(&args.span)?;
    let point = match &args.before {
        Some(p) => Point::parse(p)?,
        None => Point {
            vcpu: 0,
            before: Before::End,
        },
    };
    let trace = read.open(&args.dir)?;
    let parts = mem_parts(&trace, &args.dir, Some(point.vcpu))?;
    if trace.manifest().options.get("mem_rw").map(String::as_str) == Some("r") {
        bail!(
            "{}: recorded with `mem_rw=r`, loads only: it has no stores",
            args.dir.display()
        );
    }
    let reader = MemReader::open(
        &parts,
        &[col::SEQ, col::BLOCK_SEQ, col::ADDR, col::SIZE, col::STORE],
    )?;
    let mut stats = ScanStats {
        row_groups: reader.groups.len(),
        ..ScanStats::default()
    };
    let mut groups: Vec<&Group> = reader
        .groups
        .iter()
        .filter(|g| g.addr.is_none_or(|r| span.reachable_from(r)))
        .filter(|g| point.may_precede(g))
        .collect();
    stats.skipped = stats.row_groups - groups.len();
    // Latest first; a row group without statistics comes first, to be safe.
    groups.sort_by_key(|g| std::cmp::Reverse(g.seq.map_or(u64::MAX, |s| s.1)));

    let test = |b: &RecordBatch| -> qtrace_format::Result<Vec<usize>> {
        let seq: &UInt64Array = schema::column(b, col::SEQ)?;
        let block_seq: &UInt64Array = schema::column(b, col::BLOCK_SEQ)?;
        let addr: &UInt64Array = schema::column(b, col::ADDR)?;
        let size: &UInt8Array = schema::column(b, col::SIZE)?;
        let store: &BooleanArray = schema::column(b, col::STORE)?;
        let before = |i| match point.before {
            Block(b) => block_seq.value(i) < b,
            Seq(n) => seq.value(i) < n,
            End => true,
        };
        use Before::*;
        Ok((0..b.num_rows())
            .filter(|&i| store.value(i) && before(i))
            .filter(|&i| span.touched_by(addr.value(i), u64::from(size.value(i))))
            .collect())
    };

    let mut found: Option<Access> = None;
    // The latest row group most often holds the answer: windows start at
    // one row group and double, up to two per thread.
    let widest = (rayon::current_num_threads() * 2).max(2);
    let (mut read_groups, mut window) = (0, 1);
    while read_groups < groups.len() {
        let chunk = &groups[read_groups..(read_groups + window).min(groups.len())];
        read_groups += chunk.len();
        window = (window * 2).min(widest);
        let hits: Vec<Option<Access>> = chunk
            .par_iter()
            .map(|g| {
                let rows = reader.select(g, test)?;
                // Rows are in `seq` order: the last is the latest.
                let last = rows.last().map(|&r| vec![r]).unwrap_or_default();
                Ok(reader.decode(g, &last)?.pop())
            })
            .collect::<Result<_>>()?;
        found = hits.into_iter().flatten().max_by_key(|a| a.seq);
        if found.is_some() {
            break;
        }
    }
    stats.unneeded = groups.len() - read_groups;
    stats.decoded_rows = u64::from(found.is_some());

    let mut columns = access::COLUMNS.to_vec();
    columns.extend([
        rows::text("wrote_from"),
        rows::num("wrote_len"),
        rows::text("bytes"),
        rows::text("value_at"),
    ]);
    let mut out = Rows::stdout(args.format, &columns)?;
    if let Some(a) = &found {
        let block_parts = access::block_parts(&trace)?;
        let code = Code::open(&trace, &block_parts)?;
        let place = code.insns_of(std::slice::from_ref(a))?.pop().flatten();
        let mut cells = access::cells(a, place.as_ref());
        cells.extend(written(a, &span));
        out.push(cells)?;
    }
    out.finish()?;
    if found.is_none() && args.format == Format::Table {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "no store wrote {} {}",
            args.span,
            point.describe()
        );
    }
    if args.stats {
        stats.report("mem last-write");
    }
    Ok(())
}

/// What the store left in the span: the first byte it wrote there, how
/// many, those bytes in address order, and their value read as the guest
/// would (little-endian, or big-endian for a big-endian store).
fn written(a: &Access, span: &Span) -> [Value; 4] {
    let from = a.addr.max(span.start);
    let to = a.addr.saturating_add(u64::from(a.size)).min(span.end);
    let len = to.saturating_sub(from);
    let bytes = a.bytes().map(|b| {
        let skip = (from - a.addr) as usize;
        b[skip..skip + len as usize].to_vec()
    });
    let value = bytes.as_ref().map(|b| {
        let mut v = [0u8; 16];
        if a.big_endian {
            v[16 - b.len()..].copy_from_slice(b);
            format!("{:#x}", u128::from_be_bytes(v))
        } else {
            v[..b.len()].copy_from_slice(b);
            format!("{:#x}", u128::from_le_bytes(v))
        }
    });
    [
        rows::hex(from),
        len.into(),
        bytes.map(|b| rows::hex_bytes(&b)).into(),
        value.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(addr: u64, size: u8, value: u64) -> Access {
        Access {
            vcpu: 0,
            seq: 0,
            tid: 1,
            block_seq: 0,
            insn: 0,
            addr,
            size,
            store: true,
            value: Some(value),
            value_hi: None,
            big_endian: false,
            inexact: false,
        }
    }

    #[test]
    fn points_parse() {
        let p = |s| Point::parse(s).unwrap();
        assert_eq!(
            p("123"),
            Point {
                vcpu: 0,
                before: Before::Block(123)
            }
        );
        assert_eq!(
            p("2:7"),
            Point {
                vcpu: 2,
                before: Before::Block(7)
            }
        );
        assert_eq!(
            p("seq=9"),
            Point {
                vcpu: 0,
                before: Before::Seq(9)
            }
        );
        assert_eq!(
            p("1:seq=9"),
            Point {
                vcpu: 1,
                before: Before::Seq(9)
            }
        );
        for bad in ["", "x", "1:", "seq=", "a:3", "-1"] {
            let e = format!("{:#}", Point::parse(bad).unwrap_err());
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn takes_the_bytes_of_the_span_from_the_stored_value() {
        // An 8-byte store at 0x100 of 0x8877665544332211: byte 0x102 is 0x33.
        let a = store(0x100, 8, 0x8877_6655_4433_2211);
        let cells = written(&a, &Span::parse("0x102").unwrap());
        assert_eq!(cells[0], rows::hex(0x102));
        assert_eq!(cells[1], 1);
        assert_eq!(cells[2], "33");
        assert_eq!(cells[3], "0x33");
        // A word at 0x106 that the store only half covers.
        let cells = written(&a, &Span::parse("0x106+4").unwrap());
        assert_eq!(cells[1], 2);
        assert_eq!(cells[2], "7788");
        assert_eq!(cells[3], "0x8877");
        // A 16-byte store's high half.
        let mut wide = store(0x200, 16, 0x1111_1111_1111_1111);
        wide.value_hi = Some(0x2222_2222_2222_2222);
        let cells = written(&wide, &Span::parse("0x208+8").unwrap());
        assert_eq!(cells[3], "0x2222222222222222");
    }
}
