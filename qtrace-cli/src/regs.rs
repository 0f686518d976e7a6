//! `qtrace regs`: the guest's registers from a trace recorded with
//! `-O regs=...`, at a point in time (`--at`) or as one register's history
//! (`--history`).
//!
//! The `regs` table stores a register only when its value changed since the
//! thread's previous row (format/README.md, "Nulls"), so a value at a row
//! is the last one stored at or before it in the same thread. `--at` finds
//! it by walking the vCPU's row groups backwards from the point, a few at
//! a time in parallel, and stops as soon as every register has a value:
//! row groups after the point, and those of other threads, are skipped by
//! their `block_seq`/`seq` and `tid` statistics and never decoded, and the
//! walk rarely goes further back than the thread's last few readings.
//! `--history` streams the rows in order, decoding a few row groups at a
//! time, and carries each thread's last value from row to row; with `--pc`
//! it looks each reading's block up in the `blocks` row groups that hold it.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use arrow_array::{Array, ArrayRef, FixedSizeBinaryArray, RecordBatch, UInt32Array, UInt64Array};
use qtrace_format::schema::{col, RegSpec};
use qtrace_format::{schema, PartPath, RowGroup, RowGroups, Table, Trace};
use serde_json::{json, Value};

use crate::output::{self, Format};
use crate::reading::ReadArgs;
use crate::rows::{self, Rows};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["at", "history"])))]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o` with `-O regs=...`).
    dir: PathBuf,
    /// Every recorded register (or those of `--reg`) at a point in time:
    /// `[V:]B` is the block execution B (`block_seq`, its `seq` in
    /// `blocks`) of vCPU V (default: that of `--tid`, else 0), `[V:]seq=N`
    /// the regs row N. The values are those of the thread's last reading at
    /// or before it.
    #[arg(long, value_name = "POINT", conflicts_with_all = ["history", "changes"])]
    at: Option<Point>,
    /// One register's value at each reading, in order (vCPU, then seq).
    #[arg(long, value_name = "REG")]
    history: Option<String>,
    /// With `--at`: only this register; repeatable.
    #[arg(long = "reg", value_name = "NAME", conflicts_with = "history")]
    regs: Vec<String>,
    /// Only this vCPU (for `--at`: the vCPU of the point).
    #[arg(long, value_name = "V")]
    vcpu: Option<u32>,
    /// Only this guest thread (for `--at`: the thread whose registers to
    /// show, instead of the one running at the point).
    #[arg(long, value_name = "T")]
    tid: Option<u32>,
    /// With `--history`: only the readings where the register changed (and
    /// each thread's first).
    #[arg(long, requires = "history")]
    changes: bool,
    /// With `--history`: also the address and symbol of the block each
    /// reading belongs to (reads the `blocks` row groups that hold them).
    #[arg(long, requires = "history")]
    pc: bool,
    /// How to print: aligned columns, CSV, a JSON array or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// A point in time of one vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    vcpu: Option<u32>,
    bound: Bound,
}

/// The rows at or before a point: those with `block_seq <= B`, or `seq <= N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bound {
    BlockSeq(u64),
    Seq(u64),
}

impl Bound {
    fn column(self) -> &'static str {
        match self {
            Bound::BlockSeq(_) => col::BLOCK_SEQ,
            Bound::Seq(_) => col::SEQ,
        }
    }

    fn value(self) -> u64 {
        match self {
            Bound::BlockSeq(b) | Bound::Seq(b) => b,
        }
    }
}

impl FromStr for Point {
    type Err = String;

    fn from_str(s: &str) -> Result<Point, String> {
        let num = |t: &str, what: &str| -> Result<u64, String> {
            t.trim()
                .parse()
                .map_err(|_| format!("`{t}` is not a {what} (expected [V:]B or [V:]seq=N)"))
        };
        let (vcpu, rest) = match s.split_once(':') {
            Some((v, rest)) => (Some(num(v, "vCPU index")? as u32), rest),
            None => (None, s),
        };
        let bound = match rest.trim().strip_prefix("seq=") {
            Some(n) => Bound::Seq(num(n, "regs row number")?),
            None => Bound::BlockSeq(num(rest, "block_seq")?),
        };
        Ok(Point { vcpu, bound })
    }
}

/// Rows `--history` decodes (in parallel, by row group) before printing
/// them: what bounds its memory.
const RUN_ROWS: u64 = 1 << 20;

/// A register's value: up to 8 bytes as a number, wider ones as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RegValue {
    Narrow(u64),
    Wide(Vec<u8>),
}

impl RegValue {
    /// `0x...` for a number; hex bytes in the guest's order for wide ones.
    fn to_json(&self) -> Value {
        match self {
            RegValue::Narrow(v) => rows::hex(*v),
            RegValue::Wide(b) => json!(rows::hex_bytes(b)),
        }
    }

    /// The value stored at row `i` of a register column, if any.
    fn at(array: &ArrayRef, name: &str, i: usize) -> qtrace_format::Result<Option<RegValue>> {
        if array.is_null(i) {
            return Ok(None);
        }
        if let Some(a) = array.as_any().downcast_ref::<UInt64Array>() {
            return Ok(Some(RegValue::Narrow(a.value(i))));
        }
        if let Some(a) = array.as_any().downcast_ref::<FixedSizeBinaryArray>() {
            return Ok(Some(RegValue::Wide(a.value(i).to_vec())));
        }
        Err(qtrace_format::Error::schema(
            name,
            "UInt64 or FixedSizeBinary",
        ))
    }
}

/// Where a row of `regs` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowPos {
    seq: u64,
    tid: u32,
    block_seq: u64,
    syscall_seq: Option<u64>,
}

/// The fixed columns of a `regs` batch.
struct Fixed<'a> {
    seq: &'a UInt64Array,
    tid: &'a UInt32Array,
    block_seq: &'a UInt64Array,
    syscall_seq: &'a UInt64Array,
}

impl<'a> Fixed<'a> {
    fn new(batch: &'a RecordBatch) -> qtrace_format::Result<Fixed<'a>> {
        Ok(Fixed {
            seq: schema::column(batch, col::SEQ)?,
            tid: schema::column(batch, col::TID)?,
            block_seq: schema::column(batch, col::BLOCK_SEQ)?,
            syscall_seq: schema::column(batch, col::SYSCALL_SEQ)?,
        })
    }

    fn row(&self, i: usize) -> RowPos {
        RowPos {
            seq: self.seq.value(i),
            tid: self.tid.value(i),
            block_seq: self.block_seq.value(i),
            syscall_seq: (!self.syscall_seq.is_null(i)).then(|| self.syscall_seq.value(i)),
        }
    }
}

/// Register columns of a batch, in the order asked for.
fn reg_columns<'a>(
    batch: &'a RecordBatch,
    names: &[&str],
) -> qtrace_format::Result<Vec<&'a ArrayRef>> {
    names
        .iter()
        .map(|&n| {
            batch
                .column_by_name(n)
                .ok_or_else(|| qtrace_format::Error::schema(n, "a column"))
        })
        .collect()
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let trace = read.open(&args.dir)?;
    let recorded = &trace.manifest().regs;
    let parts = trace.parts(Table::Regs)?;
    if recorded.is_empty() {
        if parts.is_empty() {
            bail!(
                "{}: no regs table: record the trace with `-O regs=NAME+NAME...` \
                 (for example `-O regs=rip+rsp`)",
                trace.root().display()
            );
        }
        bail!(
            "{}: the manifest lists no registers (the recording did not finish)",
            trace.root().display()
        );
    }
    let mut out = output::stdout();
    if let Some(point) = args.at {
        let wanted: Vec<&RegSpec> = if args.regs.is_empty() {
            recorded.iter().collect()
        } else {
            args.regs
                .iter()
                .map(|r| find_reg(&trace, r))
                .collect::<Result<_>>()?
        };
        at(&trace, parts, point, &args, &wanted, &mut out)?;
    } else if let Some(reg) = &args.history {
        let reg = find_reg(&trace, reg)?;
        history(&trace, parts, reg, &args, &mut out)?;
    }
    out.flush()?;
    Ok(())
}

fn find_reg<'t>(trace: &'t Trace, name: &str) -> Result<&'t RegSpec> {
    let recorded = &trace.manifest().regs;
    recorded.iter().find(|r| r.name == name).with_context(|| {
        let names: Vec<&str> = recorded.iter().map(|r| r.name.as_str()).collect();
        format!(
            "{}: no register `{name}` in the regs table (recorded: {})",
            trace.root().display(),
            names.join(", ")
        )
    })
}

/// A vCPU's parts of `regs`, in order; an error if it has none.
fn vcpu_parts(trace: &Trace, parts: Vec<PartPath>, vcpu: u32) -> Result<Vec<PartPath>> {
    let mut mine: Vec<PartPath> = parts.into_iter().filter(|p| p.vcpu == Some(vcpu)).collect();
    if mine.is_empty() {
        bail!("{}: no regs rows on vCPU {vcpu}", trace.root().display());
    }
    mine.sort_by_key(|p| p.index);
    Ok(mine)
}

/// What a walk back from a point found.
struct Found {
    /// The last row at or before the point (of the thread, if given).
    row: Option<RowPos>,
    /// Per register, the last value stored at or before it, with its row.
    values: Vec<Option<(RowPos, RegValue)>>,
}

impl Found {
    fn new(n: usize) -> Found {
        Found {
            row: None,
            values: vec![None; n],
        }
    }

    fn done(&self) -> bool {
        self.row.is_some() && self.values.iter().all(Option::is_some)
    }

    /// Fills what is missing from an older row group's findings.
    fn fill_from(&mut self, older: Found) {
        if self.row.is_none() {
            self.row = older.row;
        }
        for (mine, theirs) in self.values.iter_mut().zip(older.values) {
            if mine.is_none() {
                *mine = theirs;
            }
        }
    }
}

/// Walks back from `bound` over the row groups of one vCPU, newest first,
/// until the last row at or before it and a value for each of `names` are
/// found (of thread `tid`, if given).
fn walk_back(groups: &RowGroups, bound: Bound, tid: Option<u32>, names: &[&str]) -> Result<Found> {
    let limit = bound.value();
    let candidates: Vec<RowGroup> = groups
        .all()
        .iter()
        .rev()
        .copied()
        .filter(|&g| {
            let before = groups
                .unsigned_range(g, bound.column())
                .is_none_or(|(min, _)| min <= limit);
            let thread = match (tid, groups.unsigned_range(g, col::TID)) {
                (Some(t), Some((min, max))) => (min..=max).contains(&u64::from(t)),
                _ => true,
            };
            before && thread
        })
        .collect();
    let mut found = Found::new(names.len());
    let chunk = rayon::current_num_threads().max(1);
    for groups_now in candidates.chunks(chunk) {
        let partials = groups.fold_each(
            groups_now,
            || Found::new(names.len()),
            |mut acc, batch, _| {
                let fixed = Fixed::new(batch)?;
                let regs = reg_columns(batch, names)?;
                let key = match bound {
                    Bound::BlockSeq(_) => fixed.block_seq,
                    Bound::Seq(_) => fixed.seq,
                };
                // Rows are in seq order: the last that qualifies wins.
                for i in 0..batch.num_rows() {
                    if key.value(i) > limit || tid.is_some_and(|t| fixed.tid.value(i) != t) {
                        continue;
                    }
                    let pos = fixed.row(i);
                    acc.row = Some(pos);
                    for (k, (&array, &name)) in regs.iter().zip(names).enumerate() {
                        if let Some(v) = RegValue::at(array, name, i)? {
                            acc.values[k] = Some((pos, v));
                        }
                    }
                }
                Ok(acc)
            },
        )?;
        for partial in partials {
            found.fill_from(partial);
        }
        if found.done() {
            break;
        }
    }
    Ok(found)
}

fn at(
    trace: &Trace,
    parts: Vec<PartPath>,
    point: Point,
    args: &Args,
    wanted: &[&RegSpec],
    out: &mut impl Write,
) -> Result<()> {
    let vcpu = match (point.vcpu, args.vcpu) {
        (Some(a), Some(b)) if a != b => bail!("--at {a}:... and --vcpu {b} disagree"),
        (a, b) => a.or(b).unwrap_or_else(|| {
            // A thread stays on one vCPU: `--tid` alone says which.
            let of_tid = |tid| trace.manifest().threads.iter().find(|t| t.tid == tid);
            args.tid.and_then(of_tid).map_or(0, |t| t.vcpu)
        }),
    };
    let parts = vcpu_parts(trace, parts, vcpu)?;
    let names: Vec<&str> = wanted.iter().map(|r| r.name.as_str()).collect();
    let mut columns = vec![col::SEQ, col::TID, col::BLOCK_SEQ, col::SYSCALL_SEQ];
    columns.extend(&names);
    let groups = RowGroups::open(&parts, &columns)?;
    let point_text = match point.bound {
        Bound::BlockSeq(b) => format!("block_seq {b}"),
        Bound::Seq(n) => format!("regs row seq={n}"),
    };

    // The thread: as given, else the one that ran the block at the point
    // (from the manifest), else the one of the last reading before it.
    let running = match point.bound {
        Bound::BlockSeq(b) => trace
            .manifest()
            .threads
            .iter()
            .find(|t| t.vcpu == vcpu && t.first_seq <= b && b - t.first_seq < t.block_events),
        Bound::Seq(_) => None,
    };
    let tid = match (args.tid, running) {
        (Some(t), _) => t,
        (None, Some(t)) => t.tid,
        (None, None) => {
            let last = walk_back(&groups, point.bound, None, &[])?;
            match (last.row, point.bound) {
                (Some(r), Bound::Seq(n)) if r.seq != n => {
                    bail!(
                        "{}: no regs row seq={n} on vCPU {vcpu}",
                        trace.root().display()
                    )
                }
                (Some(r), _) => r.tid,
                (None, _) => bail!(
                    "{}: no regs row on vCPU {vcpu} at or before {point_text}",
                    trace.root().display()
                ),
            }
        }
    };
    let found = walk_back(&groups, point.bound, Some(tid), &names)?;
    let Some(row) = found.row else {
        bail!(
            "{}: no regs row of thread {tid} on vCPU {vcpu} at or before {point_text}",
            trace.root().display()
        );
    };

    let table = args.format == Format::Table;
    let mut header = Vec::new();
    if table {
        let when = match row.syscall_seq {
            Some(s) => format!("at the entry of system call seq {s}"),
            None => "at block entry".to_string(),
        };
        writeln!(
            out,
            "vCPU {vcpu}, thread {tid}: regs row seq {} (block_seq {}, {when}), \
             the last at or before {point_text}",
            row.seq, row.block_seq
        )?;
    } else {
        header.extend([
            rows::num("vcpu"),
            rows::num("tid"),
            rows::num("seq"),
            rows::num("block_seq"),
            rows::num("syscall_seq"),
        ]);
    }
    header.extend([
        rows::text("register"),
        rows::text("value"),
        rows::num("stored_seq"),
        rows::num("stored_block_seq"),
    ]);
    let mut rows_out = Rows::new(out, args.format, &header)?.with_colour(crate::progress::colour());
    for (name, value) in names.iter().zip(&found.values) {
        let mut cells = Vec::new();
        if !table {
            cells.extend([
                json!(vcpu),
                json!(tid),
                json!(row.seq),
                json!(row.block_seq),
                json!(row.syscall_seq),
            ]);
        }
        cells.push(json!(name));
        match value {
            Some((pos, v)) => cells.extend([v.to_json(), json!(pos.seq), json!(pos.block_seq)]),
            None => cells.extend([Value::Null, Value::Null, Value::Null]),
        }
        rows_out.push(cells)?;
    }
    rows_out.finish()?;
    Ok(())
}

/// One reading of the register, as `--history` lists it.
struct Reading {
    vcpu: Option<u32>,
    pos: RowPos,
    /// The value stored in this row: none when unchanged.
    stored: Option<RegValue>,
}

fn history(
    trace: &Trace,
    mut parts: Vec<PartPath>,
    reg: &RegSpec,
    args: &Args,
    out: &mut impl Write,
) -> Result<()> {
    if let Some(v) = args.vcpu {
        parts = vcpu_parts(trace, parts, v)?;
    }
    parts.sort_by_key(|p| (p.vcpu, p.index));
    let name = reg.name.as_str();
    let groups = RowGroups::open(
        &parts,
        &[col::SEQ, col::TID, col::BLOCK_SEQ, col::SYSCALL_SEQ, name],
    )?;
    let kept: Vec<RowGroup> = groups
        .all()
        .iter()
        .copied()
        .filter(|&g| match (args.tid, groups.unsigned_range(g, col::TID)) {
            (Some(t), Some((min, max))) => (min..=max).contains(&u64::from(t)),
            _ => true,
        })
        .collect();
    let mut columns = vec![
        rows::num("vcpu"),
        rows::num("tid"),
        rows::num("seq"),
        rows::num("block_seq"),
        rows::num("syscall_seq"),
        rows::text("register"),
        rows::text("value"),
        rows::text("stored"),
    ];
    let block_parts = if args.pc {
        columns.extend([rows::text("pc"), rows::text("symbol")]);
        trace.parts(Table::Blocks)?
    } else {
        Vec::new()
    };
    let blocks = if args.pc {
        Some(BlockPcs::open(trace, &block_parts)?)
    } else {
        None
    };
    let mut rows_out =
        Rows::new(out, args.format, &columns)?.with_colour(crate::progress::colour());
    // Each thread's value so far (threads never move between vCPUs).
    let mut last: HashMap<u32, RegValue> = HashMap::new();
    for groups_now in groups.runs(&kept, RUN_ROWS) {
        let decoded = groups.fold_each(groups_now, Vec::new, |mut acc, batch, part| {
            let fixed = Fixed::new(batch)?;
            let array = reg_columns(batch, &[name])?[0];
            for i in 0..batch.num_rows() {
                if args.tid.is_some_and(|t| fixed.tid.value(i) != t) {
                    continue;
                }
                let stored = RegValue::at(array, name, i)?;
                if args.changes && stored.is_none() {
                    continue;
                }
                acc.push(Reading {
                    vcpu: part.vcpu,
                    pos: fixed.row(i),
                    stored,
                });
            }
            Ok(acc)
        })?;
        let readings: Vec<Reading> = decoded.into_iter().flatten().collect();
        let ids = match &blocks {
            Some(b) => b.block_ids(&readings)?,
            None => BlockIds::new(),
        };
        for r in readings {
            let stored = r.stored.is_some();
            if let Some(v) = r.stored {
                last.insert(r.pos.tid, v);
            }
            let mut cells = vec![
                json!(r.vcpu),
                json!(r.pos.tid),
                json!(r.pos.seq),
                json!(r.pos.block_seq),
                json!(r.pos.syscall_seq),
                json!(name),
                last.get(&r.pos.tid).map_or(Value::Null, RegValue::to_json),
                json!(stored),
            ];
            if let Some(b) = &blocks {
                let block = ids.get(&r.vcpu).and_then(|v| {
                    let i = v.binary_search_by_key(&r.pos.block_seq, |e| e.0).ok()?;
                    b.dict.get(&v[i].1)
                });
                cells.push(block.map_or(Value::Null, |(pc, _)| rows::hex(*pc)));
                cells.push(block.map_or(Value::Null, |(_, sym)| json!(sym)));
            }
            rows_out.push(cells)?;
        }
    }
    rows_out.finish()?;
    Ok(())
}

/// The blocks of readings, for `--pc`: `blocks` to find which block each
/// reading's `block_seq` executed, `block_dict` for its address and
/// symbol.
struct BlockPcs<'p> {
    groups: RowGroups<'p>,
    /// Block id -> (pc, symbol).
    dict: HashMap<u32, (u64, Option<String>)>,
}

impl<'p> BlockPcs<'p> {
    fn open(trace: &Trace, blocks: &'p [PartPath]) -> Result<BlockPcs<'p>> {
        let dict_parts = trace.parts(Table::BlockDict)?;
        let dict = qtrace_format::scan(
            &dict_parts,
            &[col::BLOCK_ID, col::PC, col::SYMBOL],
            HashMap::new,
            |mut acc, batch, _| {
                let id: &UInt32Array = schema::column(batch, col::BLOCK_ID)?;
                let pc: &UInt64Array = schema::column(batch, col::PC)?;
                let symbol: &arrow_array::StringArray = schema::column(batch, col::SYMBOL)?;
                for i in 0..batch.num_rows() {
                    let sym = (!symbol.is_null(i)).then(|| symbol.value(i).to_string());
                    acc.insert(id.value(i), (pc.value(i), sym));
                }
                Ok(acc)
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        )?;
        let groups = RowGroups::open(blocks, &[col::SEQ, col::BLOCK_ID])?;
        Ok(BlockPcs { groups, dict })
    }

    /// The block id executed at each reading's (vCPU, block_seq), decoding
    /// only the `blocks` row groups whose `seq` range holds one: per vCPU,
    /// (block_seq, block id) sorted by block_seq.
    fn block_ids(&self, readings: &[Reading]) -> Result<BlockIds> {
        let mut wanted: HashMap<Option<u32>, Vec<u64>> = HashMap::new();
        for r in readings {
            wanted.entry(r.vcpu).or_default().push(r.pos.block_seq);
        }
        for seqs in wanted.values_mut() {
            seqs.sort_unstable();
            seqs.dedup();
        }
        let needed: Vec<RowGroup> = self
            .groups
            .all()
            .iter()
            .copied()
            .filter(|&g| {
                let Some(seqs) = wanted.get(&self.groups.part(g).vcpu) else {
                    return false;
                };
                match self.groups.unsigned_range(g, col::SEQ) {
                    Some((min, max)) => in_range(seqs, min, max).next().is_some(),
                    None => true,
                }
            })
            .collect();
        let found = self
            .groups
            .fold_each(&needed, Vec::new, |mut acc, batch, part| {
                let seq: &UInt64Array = schema::column(batch, col::SEQ)?;
                let id: &UInt32Array = schema::column(batch, col::BLOCK_ID)?;
                let (Some(seqs), Some(&first), Some(&last)) = (
                    wanted.get(&part.vcpu),
                    seq.values().first(),
                    seq.values().last(),
                ) else {
                    return Ok(acc);
                };
                // `seq` rises by one per row, so a wanted seq is at its
                // offset from the first; a search covers any other file.
                for &w in in_range(seqs, first, last) {
                    let at = usize::try_from(w - first)
                        .ok()
                        .filter(|&i| seq.values().get(i) == Some(&w))
                        .or_else(|| seq.values().binary_search(&w).ok());
                    if let Some(i) = at {
                        acc.push((part.vcpu, w, id.value(i)));
                    }
                }
                Ok(acc)
            })?;
        let mut ids = BlockIds::new();
        for (vcpu, seq, id) in found.into_iter().flatten() {
            ids.entry(vcpu).or_default().push((seq, id));
        }
        for v in ids.values_mut() {
            v.sort_unstable();
        }
        Ok(ids)
    }
}

/// Per vCPU, (block_seq, block id), sorted.
type BlockIds = HashMap<Option<u32>, Vec<(u64, u32)>>;

/// The values of sorted `seqs` in `min..=max`.
fn in_range(seqs: &[u64], min: u64, max: u64) -> impl Iterator<Item = &u64> {
    let from = seqs.partition_point(|&s| s < min);
    seqs[from..].iter().take_while(move |&&s| s <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points() {
        let p = |s: &str| s.parse::<Point>();
        assert_eq!(
            p("1234"),
            Ok(Point {
                vcpu: None,
                bound: Bound::BlockSeq(1234)
            })
        );
        assert_eq!(
            p("2:99"),
            Ok(Point {
                vcpu: Some(2),
                bound: Bound::BlockSeq(99)
            })
        );
        assert_eq!(
            p("1:seq=7"),
            Ok(Point {
                vcpu: Some(1),
                bound: Bound::Seq(7)
            })
        );
        assert_eq!(p("seq=7").map(|p| p.bound), Ok(Bound::Seq(7)));
        assert!(p("x").unwrap_err().contains("`x`"));
        assert!(p("1:").is_err());
        assert!(p("seq=").is_err());
        assert!(p("-3").is_err());
    }
}
