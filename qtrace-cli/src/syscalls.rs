//! `qtrace syscalls`: the system calls of a trace, listed as strace lists
//! them, or counted per call (`-c`) as `strace -c` counts them.
//!
//! The `syscalls` table is small next to `blocks`, but a long run still
//! makes millions of calls, so the listing streams: row groups are decoded
//! in parallel a few at a time and printed in order (vCPU, then `seq`),
//! and filters on `tid`, `seq` and `block_seq` skip whole row groups by
//! their statistics before anything is decoded. Only the columns the
//! output needs are read (`data` only for listings). The summary folds
//! every row group in parallel into counts per call.
//!
//! How calls are rendered lives in `render`; error names come from `qtrace_format::errno`;
//! syscall names come from the trace (the recorder names them), and `-e`
//! checks the names it is given against the recorder's own table.

mod render;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Result};
use arrow_array::{Array, BinaryArray, Int64Array, StringArray, UInt32Array, UInt64Array};
use qtrace_format::schema::{self, col};
use qtrace_format::{PartPath, RowGroup, RowGroups, Table};
use serde_json::{json, Value};

use crate::output::{self, Format};
use crate::reading::ReadArgs;
use crate::rows::{self, Rows};
use qtrace_format::errno;
use render::{Arch, Call};

#[derive(clap::Args)]
#[command(after_help = "The trace holds no times: the summary counts calls and \
errors, not time spent in them. Arguments are decoded where simple; path names \
and structures show as addresses (the trace holds no guest memory), and the \
buffers of read- and write-like calls show as strings only if recorded with \
`-O syscall_data=N`.")]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// Only the calls of this guest thread.
    #[arg(long, value_name = "T")]
    tid: Option<u32>,
    /// Only the calls made on this vCPU.
    #[arg(long, value_name = "V")]
    vcpu: Option<u32>,
    /// Only these calls, by name or number (`-e openat,read`, `-e 1`).
    #[arg(
        short = 'e',
        long = "name",
        value_name = "NAME[,NAME]",
        value_delimiter = ','
    )]
    names: Vec<String>,
    /// Only the calls that returned an error (-4095..-1).
    #[arg(long)]
    failed: bool,
    /// Only the calls whose `seq` (position in their vCPU's calls) is in
    /// A..B, both included; `A..` and `..B` leave an end open, `N` is one call.
    #[arg(long, value_name = "A..B")]
    seq: Option<SeqRange>,
    /// Only the calls made by the block executions A..B (`block_seq`, the
    /// `seq` of the block in `blocks`), both included.
    #[arg(long = "block-seq", value_name = "A..B")]
    block_seq: Option<SeqRange>,
    /// Count the calls and errors per system call instead of listing them.
    #[arg(short = 'c', long)]
    summary: bool,
    /// With `--summary`: count per thread too, one group of rows per thread.
    #[arg(long, requires = "summary")]
    per_thread: bool,
    /// Bytes of a buffer shown in a listing, at most.
    #[arg(
        short = 's',
        long = "string-limit",
        value_name = "N",
        default_value_t = 32
    )]
    string_limit: usize,
    /// How to print: aligned columns (strace-like lines), CSV, a JSON array
    /// or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// An inclusive range of `seq` or `block_seq` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    first: u64,
    last: u64,
}

impl SeqRange {
    fn range(self) -> RangeInclusive<u64> {
        self.first..=self.last
    }

    /// Whether a row group holding values `min..=max` may hold one in range.
    fn overlaps(self, (min, max): (u64, u64)) -> bool {
        min <= self.last && max >= self.first
    }
}

impl FromStr for SeqRange {
    type Err = String;

    fn from_str(s: &str) -> Result<SeqRange, String> {
        let num = |t: &str, open: u64| -> Result<u64, String> {
            if t.is_empty() {
                return Ok(open);
            }
            t.trim()
                .parse()
                .map_err(|_| format!("`{t}` is not a whole number"))
        };
        let (first, last) = match s.split_once("..") {
            Some((a, b)) => (num(a, 0)?, num(b, u64::MAX)?),
            None if !s.is_empty() => {
                let n = num(s, 0)?;
                (n, n)
            }
            None => return Err("expected A..B, A.., ..B or N".to_string()),
        };
        if first > last {
            return Err(format!("{first} is after {last}"));
        }
        Ok(SeqRange { first, last })
    }
}

/// Which calls to keep.
struct Filter {
    tid: Option<u32>,
    /// Names and numbers from `-e`; both empty: every call.
    names: HashSet<String>,
    nums: HashSet<i64>,
    failed: bool,
    seq: Option<SeqRange>,
    block_seq: Option<SeqRange>,
}

impl Filter {
    fn new(args: &Args, target: &str) -> Result<Filter> {
        let table = qtrace_format::syscall_names::for_target(target);
        let mut names = HashSet::new();
        let mut nums = HashSet::new();
        for given in &args.names {
            let given = given.trim();
            if let Ok(n) = given.parse::<i64>() {
                nums.insert(n);
            } else if table.is_empty() || table.iter().any(|&(_, name)| name == given) {
                names.insert(given.to_string());
            } else {
                bail!("-e: unknown system call `{given}` for {target} (give its name or number)");
            }
        }
        Ok(Filter {
            tid: args.tid,
            names,
            nums,
            failed: args.failed,
            seq: args.seq,
            block_seq: args.block_seq,
        })
    }

    /// Whether a row group may hold a kept call, from its statistics.
    fn may_hold(&self, groups: &RowGroups, g: RowGroup) -> bool {
        let fits = |column, range: Option<SeqRange>| match (range, groups.unsigned_range(g, column))
        {
            (Some(r), Some(stats)) => r.overlaps(stats),
            _ => true,
        };
        let tid = self.tid.map(|t| SeqRange {
            first: u64::from(t),
            last: u64::from(t),
        });
        fits(col::SEQ, self.seq) && fits(col::BLOCK_SEQ, self.block_seq) && fits(col::TID, tid)
    }

    fn keeps(&self, row: &RowRef) -> bool {
        self.tid.is_none_or(|t| t == row.tid)
            && self.seq.is_none_or(|r| r.range().contains(&row.seq))
            && self
                .block_seq
                .is_none_or(|r| r.range().contains(&row.block_seq))
            && (!self.failed || row.ret.and_then(render::errno_of).is_some())
            && (self.names.is_empty() && self.nums.is_empty()
                || self.nums.contains(&row.num)
                || row.name.is_some_and(|n| self.names.contains(n)))
    }
}

/// The columns of a row that the filter looks at.
struct RowRef<'a> {
    seq: u64,
    tid: u32,
    block_seq: u64,
    num: i64,
    name: Option<&'a str>,
    ret: Option<i64>,
}

/// One call, as listed.
struct Row {
    vcpu: Option<u32>,
    seq: u64,
    tid: u32,
    block_seq: u64,
    num: i64,
    name: Option<String>,
    args: [u64; 6],
    ret: Option<i64>,
    data: Option<Vec<u8>>,
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let trace = read.open(&args.dir)?;
    let target = trace.manifest().target.clone();
    let filter = Filter::new(&args, &target)?;
    let mut parts = trace.parts(Table::Syscalls)?;
    if parts.is_empty()
        && trace.manifest().options.get("syscalls").map(String::as_str) == Some("off")
    {
        bail!(
            "{}: no syscalls table (recorded with `-O syscalls=off`)",
            trace.root().display()
        );
    }
    if let Some(v) = args.vcpu {
        crate::reading::check_vcpu(&trace, v, &parts)?;
        parts.retain(|p| p.vcpu == Some(v));
    }
    // Listing order: vCPU, then seq, which is part order within a vCPU.
    parts.sort_by_key(|p| (p.vcpu, p.index));
    let mut out = output::stdout();
    if args.summary {
        summary(&parts, &filter, &args, &mut out)?;
    } else {
        listing(&parts, &filter, &args, Arch::from_target(&target), &mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// The columns a listing or a summary decodes.
fn columns(listing: bool) -> Vec<&'static str> {
    let mut c = vec![
        col::SEQ,
        col::TID,
        col::BLOCK_SEQ,
        col::NUM,
        col::NAME,
        col::RET,
    ];
    if listing {
        c.extend(&col::ARGS[..6]);
        c.push(col::DATA);
    }
    c
}

/// The typed columns of a batch that every command here reads.
struct Batch<'a> {
    seq: &'a UInt64Array,
    tid: &'a UInt32Array,
    block_seq: &'a UInt64Array,
    num: &'a Int64Array,
    name: &'a StringArray,
    ret: &'a Int64Array,
}

impl<'a> Batch<'a> {
    fn new(batch: &'a arrow_array::RecordBatch) -> qtrace_format::Result<Batch<'a>> {
        Ok(Batch {
            seq: schema::column(batch, col::SEQ)?,
            tid: schema::column(batch, col::TID)?,
            block_seq: schema::column(batch, col::BLOCK_SEQ)?,
            num: schema::column(batch, col::NUM)?,
            name: schema::column(batch, col::NAME)?,
            ret: schema::column(batch, col::RET)?,
        })
    }

    fn row(&self, i: usize) -> RowRef<'a> {
        RowRef {
            seq: self.seq.value(i),
            tid: self.tid.value(i),
            block_seq: self.block_seq.value(i),
            num: self.num.value(i),
            name: (!self.name.is_null(i)).then(|| self.name.value(i)),
            ret: (!self.ret.is_null(i)).then(|| self.ret.value(i)),
        }
    }
}

/// Rows a listing decodes (in parallel, by row group) before printing
/// them: what bounds its memory.
const RUN_ROWS: u64 = 256 * 1024;

fn listing(
    parts: &[PartPath],
    filter: &Filter,
    args: &Args,
    arch: Arch,
    out: &mut impl Write,
) -> Result<()> {
    let structured = args.format != Format::Table;
    let mut header = vec![
        rows::num("vcpu"),
        rows::num("tid"),
        rows::num("seq"),
        rows::num("block_seq"),
    ];
    if structured {
        header.extend([rows::num("num"), rows::text("name")]);
        header.extend(col::ARGS[..6].iter().map(|&a| rows::text(a)));
        header.extend([
            rows::num("ret"),
            rows::num("errno"),
            rows::text("errno_name"),
            rows::text("data"),
        ]);
    }
    header.push(rows::text("call"));
    let mut table = Rows::new(out, args.format, &header)?.with_colour(crate::progress::colour());

    let groups = RowGroups::open(parts, &columns(true))?;
    let kept: Vec<RowGroup> = groups
        .all()
        .iter()
        .copied()
        .filter(|&g| filter.may_hold(&groups, g))
        .collect();
    for chunk in groups.runs(&kept, RUN_ROWS) {
        let decoded = groups.fold_each(chunk, Vec::new, |mut acc, batch, part| {
            let b = Batch::new(batch)?;
            let argv: Vec<&UInt64Array> = col::ARGS[..6]
                .iter()
                .map(|a| schema::column(batch, a))
                .collect::<qtrace_format::Result<_>>()?;
            let data: &BinaryArray = schema::column(batch, col::DATA)?;
            for i in 0..batch.num_rows() {
                let r = b.row(i);
                if !filter.keeps(&r) {
                    continue;
                }
                acc.push(Row {
                    vcpu: part.vcpu,
                    seq: r.seq,
                    tid: r.tid,
                    block_seq: r.block_seq,
                    num: r.num,
                    name: r.name.map(str::to_string),
                    args: std::array::from_fn(|k| argv[k].value(i)),
                    ret: r.ret,
                    data: (!data.is_null(i)).then(|| data.value(i).to_vec()),
                });
            }
            Ok(acc)
        })?;
        for row in decoded.into_iter().flatten() {
            table.push(cells(&row, arch, args.string_limit, structured))?;
        }
    }
    table.finish()?;
    Ok(())
}

fn cells(row: &Row, arch: Arch, string_limit: usize, structured: bool) -> Vec<Value> {
    let call = Call {
        name: row.name.as_deref(),
        num: row.num,
        args: row.args,
        ret: row.ret,
        data: row.data.as_deref(),
    };
    let rendered = render::render(arch, &call, string_limit);
    let mut cells = vec![
        json!(row.vcpu),
        json!(row.tid),
        json!(row.seq),
        json!(row.block_seq),
    ];
    if structured {
        let errno = row.ret.and_then(render::errno_of);
        cells.extend([json!(row.num), json!(row.name)]);
        // Strings, as addresses are: 64-bit values do not survive readers
        // that hold JSON numbers as doubles.
        cells.extend(row.args.iter().map(|&a| rows::hex(a)));
        cells.extend([
            json!(row.ret),
            json!(errno),
            json!(errno.and_then(errno::name)),
            json!(row.data.as_deref().map(rows::hex_bytes)),
        ]);
    }
    cells.push(json!(rendered));
    cells
}

/// Calls and errors of one system call (of one thread, per thread).
#[derive(Default, Clone, Copy)]
struct Tally {
    calls: u64,
    errors: u64,
}

/// The summary's key: thread (with `--per-thread`), number, name.
type Key = (Option<u32>, i64, Option<String>);

fn summary(parts: &[PartPath], filter: &Filter, args: &Args, out: &mut impl Write) -> Result<()> {
    let groups = RowGroups::open(parts, &columns(false))?;
    let kept: Vec<RowGroup> = groups
        .all()
        .iter()
        .copied()
        .filter(|&g| filter.may_hold(&groups, g))
        .collect();
    let partials = groups.fold_each(&kept, HashMap::<Key, Tally>::new, |mut acc, batch, _| {
        let b = Batch::new(batch)?;
        for i in 0..batch.num_rows() {
            let r = b.row(i);
            if !filter.keeps(&r) {
                continue;
            }
            let tid = args.per_thread.then_some(r.tid);
            let t = acc
                .entry((tid, r.num, r.name.map(str::to_string)))
                .or_default();
            t.calls += 1;
            t.errors += u64::from(r.ret.and_then(render::errno_of).is_some());
        }
        Ok(acc)
    })?;
    let mut counts: HashMap<Key, Tally> = HashMap::new();
    for partial in partials {
        for (k, t) in partial {
            let e = counts.entry(k).or_default();
            e.calls += t.calls;
            e.errors += t.errors;
        }
    }
    let mut rows: Vec<(Key, Tally)> = counts.into_iter().collect();
    // Threads in order, then the most made calls first; ties by number so
    // the output is the same on every run.
    rows.sort_by(|(ka, ta), (kb, tb)| {
        ka.0.cmp(&kb.0)
            .then(tb.calls.cmp(&ta.calls))
            .then(ka.1.cmp(&kb.1))
    });
    let mut per_thread: HashMap<Option<u32>, Tally> = HashMap::new();
    for (k, t) in &rows {
        let e = per_thread.entry(k.0).or_default();
        e.calls += t.calls;
        e.errors += t.errors;
    }

    let table_format = args.format == Format::Table;
    let share = |part: u64, whole: u64| -> Value {
        let pct = if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        };
        if table_format {
            json!(format!("{pct:.2}%"))
        } else {
            json!((pct * 10_000.0).round() / 10_000.0)
        }
    };
    let mut header = Vec::new();
    if args.per_thread {
        header.push(rows::num("tid"));
    }
    header.extend([
        rows::text("syscall"),
        rows::num("num"),
        rows::num("calls"),
        rows::num("errors"),
        rows::num("share"),
    ]);
    let mut table = Rows::new(out, args.format, &header)?.with_colour(crate::progress::colour());
    let total_row = |table: &mut Rows<_>, tid: Option<u32>, t: Tally| -> Result<()> {
        let mut cells = Vec::new();
        if args.per_thread {
            cells.push(json!(tid));
        }
        cells.extend([json!("total"), Value::Null, json!(t.calls), json!(t.errors)]);
        cells.push(if t.calls == 0 {
            Value::Null
        } else {
            share(1, 1)
        });
        table.push(cells)?;
        Ok(())
    };
    let mut previous: Option<Option<u32>> = None;
    for ((tid, num, name), t) in &rows {
        // The table closes each thread's rows with its total.
        if table_format && previous.is_some_and(|p| p != *tid) {
            let p = previous.unwrap_or_default();
            total_row(&mut table, p, per_thread[&p])?;
        }
        previous = Some(*tid);
        let mut cells = Vec::new();
        if args.per_thread {
            cells.push(json!(tid));
        }
        cells.extend([
            json!(name.clone().unwrap_or_else(|| format!("syscall_{num}"))),
            json!(num),
            json!(t.calls),
            json!(t.errors),
            share(t.calls, per_thread[tid].calls),
        ]);
        table.push(cells)?;
    }
    if table_format {
        let last = previous.unwrap_or_default();
        total_row(
            &mut table,
            last,
            per_thread.get(&last).copied().unwrap_or_default(),
        )?;
    }
    table.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges() {
        let r = |s: &str| s.parse::<SeqRange>().map(|r| (r.first, r.last));
        assert_eq!(r("3..7"), Ok((3, 7)));
        assert_eq!(r("3.."), Ok((3, u64::MAX)));
        assert_eq!(r("..7"), Ok((0, 7)));
        assert_eq!(r("5"), Ok((5, 5)));
        assert!(r("7..3").is_err());
        assert!(r("a..3").unwrap_err().contains("`a`"));
        assert!(r("").is_err());
        assert!(r("1..2..3").is_err());
    }
}
