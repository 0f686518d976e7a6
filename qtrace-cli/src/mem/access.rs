//! Reading chosen rows of `mem` and naming the instruction of each: the
//! row groups of the `mem` parts with their footer statistics, a two-step
//! read (test columns first, the whole row only where the test passed), and
//! the lookup of the block executed at a `block_seq` (in `blocks`, by its
//! `seq` statistics) to reach `block_dict`'s instruction.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use arrow_array::{
    Array, BooleanArray, RecordBatch, UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use qtrace_format::reader::{u64_range, PartReader};
use qtrace_format::schema::{self, col};
use qtrace_format::{BlockInfo, InsnInfo, PartPath, Table, Trace};
use rayon::prelude::*;
use serde_json::Value;

use crate::rows::{self, Column};

/// One memory access: a row of `mem`, with its vCPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub vcpu: u32,
    pub seq: u64,
    pub tid: u32,
    pub block_seq: u64,
    pub insn: u16,
    pub addr: u64,
    pub size: u8,
    pub store: bool,
    /// Null in a trace recorded with `mem=addr`.
    pub value: Option<u64>,
    pub value_hi: Option<u64>,
    pub big_endian: bool,
    pub inexact: bool,
}

impl Access {
    /// The bytes the access moved, in address order; `None` without values.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        let lo = self.value?;
        let wide = u128::from(self.value_hi.unwrap_or(0)) << 64 | u128::from(lo);
        let mut b = wide.to_le_bytes()[..usize::from(self.size).min(16)].to_vec();
        if self.big_endian {
            b.reverse();
        }
        Some(b)
    }

    /// The value as the guest saw it, full width (16-byte accesses too).
    pub fn value_text(&self) -> Option<String> {
        let lo = self.value?;
        let wide = u128::from(self.value_hi.unwrap_or(0)) << 64 | u128::from(lo);
        Some(format!("{wide:#x}"))
    }
}

/// The columns a whole [`Access`] needs.
const ACCESS_COLUMNS: [&str; 11] = [
    col::SEQ,
    col::TID,
    col::BLOCK_SEQ,
    col::INSN,
    col::ADDR,
    col::SIZE,
    col::STORE,
    col::VALUE,
    col::VALUE_HI,
    col::BIG_ENDIAN,
    col::INEXACT,
];

/// The accesses of a decoded batch of [`ACCESS_COLUMNS`].
fn batch_accesses(batch: &RecordBatch, vcpu: u32) -> qtrace_format::Result<Vec<Access>> {
    let u64s = |name| schema::column::<UInt64Array>(batch, name);
    let bools = |name| schema::column::<BooleanArray>(batch, name);
    let (seq, block_seq, addr) = (u64s(col::SEQ)?, u64s(col::BLOCK_SEQ)?, u64s(col::ADDR)?);
    let (value, value_hi) = (u64s(col::VALUE)?, u64s(col::VALUE_HI)?);
    let tid: &UInt32Array = schema::column(batch, col::TID)?;
    let insn: &UInt16Array = schema::column(batch, col::INSN)?;
    let size: &UInt8Array = schema::column(batch, col::SIZE)?;
    let (store, be, inexact) = (
        bools(col::STORE)?,
        bools(col::BIG_ENDIAN)?,
        bools(col::INEXACT)?,
    );
    let opt = |a: &UInt64Array, i| a.is_valid(i).then(|| a.value(i));
    Ok((0..batch.num_rows())
        .map(|i| Access {
            vcpu,
            seq: seq.value(i),
            tid: tid.value(i),
            block_seq: block_seq.value(i),
            insn: insn.value(i),
            addr: addr.value(i),
            size: size.value(i),
            store: store.value(i),
            value: opt(value, i),
            value_hi: opt(value_hi, i),
            big_endian: be.value(i),
            inexact: inexact.value(i),
        })
        .collect())
}

/// A row group of `mem`, with what its footer says of it.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    /// Index of its part in [`MemReader`]'s parts.
    part: usize,
    /// Index of the row group in its part.
    rg: usize,
    pub vcpu: u32,
    /// Min and max from the statistics; `None` where the writer stored
    /// none (`addr` has them only in traces of this recorder version on),
    /// and then the row group is read.
    pub seq: Option<(u64, u64)>,
    pub block_seq: Option<(u64, u64)>,
    pub addr: Option<(u64, u64)>,
    pub tid: Option<(u64, u64)>,
}

/// The `mem` parts of a query, opened twice: to decode the columns that
/// decide which rows match, and to decode whole rows.
pub struct MemReader<'a> {
    test: Vec<PartReader<'a>>,
    full: Vec<PartReader<'a>>,
    /// Every row group, in the order of the parts, then of the file.
    pub groups: Vec<Group>,
}

impl<'a> MemReader<'a> {
    /// Opens `parts` (footers only, in parallel) to test rows on
    /// `test_columns`.
    pub fn open(parts: &'a [PartPath], test_columns: &[&str]) -> Result<MemReader<'a>> {
        let test: Vec<PartReader> = parts
            .par_iter()
            .map(|p| PartReader::open(p, test_columns))
            .collect::<qtrace_format::Result<_>>()?;
        let full: Vec<PartReader> = parts
            .par_iter()
            .map(|p| PartReader::open(p, &ACCESS_COLUMNS))
            .collect::<qtrace_format::Result<_>>()?;
        let mut groups = Vec::new();
        for (i, r) in test.iter().enumerate() {
            for (rg, meta) in r.row_groups().iter().enumerate() {
                groups.push(Group {
                    part: i,
                    rg,
                    vcpu: r.part().vcpu.unwrap_or(0),
                    seq: u64_range(meta, col::SEQ),
                    block_seq: u64_range(meta, col::BLOCK_SEQ),
                    addr: u64_range(meta, col::ADDR),
                    tid: u64_range(meta, col::TID),
                });
            }
        }
        Ok(MemReader { test, full, groups })
    }

    /// Row indices (within the row group) of the rows `test` accepts; it
    /// returns the accepted indices within each decoded batch.
    pub fn select(
        &self,
        g: &Group,
        test: impl Fn(&RecordBatch) -> qtrace_format::Result<Vec<usize>>,
    ) -> Result<Vec<usize>> {
        let reader = &self.test[g.part];
        let start = (Vec::new(), 0usize);
        let (rows, _) = reader.fold(g.rg, None, start, |(mut rows, base), b| {
            rows.extend(test(b)?.into_iter().map(|i| base + i));
            Ok::<_, qtrace_format::Error>((rows, base + b.num_rows()))
        })?;
        Ok(rows)
    }

    /// The whole rows `rows` (ascending indices within the row group).
    pub fn decode(&self, g: &Group, rows: &[usize]) -> Result<Vec<Access>> {
        let mut all = Vec::new();
        self.decode_each(g, rows, |accesses| {
            all.extend(accesses);
            Ok(())
        })?;
        Ok(all)
    }

    /// The whole rows `rows`, handed to `each` a decoded batch at a time,
    /// so that many rows need not be held at once.
    pub fn decode_each(
        &self,
        g: &Group,
        rows: &[usize],
        mut each: impl FnMut(Vec<Access>) -> Result<()>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.full[g.part].fold(g.rg, Some(rows), (), |(), b| {
            each(batch_accesses(b, g.vcpu)?)
        })
    }
}

/// The instructions of a trace's accesses: `block_dict`, and the `blocks`
/// parts to find which block ran at a `block_seq`.
pub struct Code<'a> {
    dict: HashMap<u32, BlockInfo>,
    blocks: Vec<BlockPart<'a>>,
}

/// A `blocks` part, opened to read `seq` and `block_id`.
struct BlockPart<'a> {
    reader: PartReader<'a>,
    vcpu: u32,
    /// Its row groups' `seq` ranges, from their statistics.
    seqs: Vec<Option<(u64, u64)>>,
}

impl<'a> Code<'a> {
    /// Reads `block_dict` and opens `block_parts` (those of `trace`'s
    /// `blocks` table).
    pub fn open(trace: &Trace, block_parts: &'a [PartPath]) -> Result<Code<'a>> {
        let dict = trace.block_dict()?.into_iter().map(|b| (b.id, b)).collect();
        let blocks = block_parts
            .par_iter()
            .map(|p| {
                let reader = PartReader::open(p, &[col::SEQ, col::BLOCK_ID])?;
                let seqs = reader
                    .row_groups()
                    .iter()
                    .map(|m| u64_range(m, col::SEQ))
                    .collect();
                let vcpu = p.vcpu.unwrap_or(0);
                Ok(BlockPart { reader, vcpu, seqs })
            })
            .collect::<qtrace_format::Result<_>>()?;
        Ok(Code { dict, blocks })
    }

    /// The block executed at each `(vcpu, block_seq)` asked for. Only the
    /// row groups whose `seq` range holds one are read, and of those only
    /// the rows asked for (`seq` rises by one per row, so the row is
    /// `block_seq - first seq`); the decoded `seq` is checked all the same.
    pub fn block_ids(&self, wanted: &BTreeSet<(u32, u64)>) -> Result<HashMap<(u32, u64), u32>> {
        let mut tasks: Vec<(usize, usize, Option<u64>, Vec<u64>)> = Vec::new();
        for (pi, part) in self.blocks.iter().enumerate() {
            let vcpu = &part.vcpu;
            for (rg, range) in part.seqs.iter().enumerate() {
                let seqs: Vec<u64> = match range {
                    Some((lo, hi)) => wanted
                        .range((*vcpu, *lo)..=(*vcpu, *hi))
                        .map(|w| w.1)
                        .collect(),
                    // No statistics: read it whole if its vCPU is wanted.
                    None => wanted
                        .iter()
                        .filter(|w| w.0 == *vcpu)
                        .map(|w| w.1)
                        .collect(),
                };
                if !seqs.is_empty() {
                    tasks.push((pi, rg, range.map(|r| r.0), seqs));
                }
            }
        }
        let found = tasks
            .par_iter()
            .map(|(pi, rg, first, seqs)| {
                let BlockPart { reader, vcpu, .. } = &self.blocks[*pi];
                let rows: Option<Vec<usize>> =
                    first.map(|f| seqs.iter().map(|s| (s - f) as usize).collect());
                reader.fold(*rg, rows.as_deref(), Vec::new(), |mut acc, b| {
                    let seq: &UInt64Array = schema::column(b, col::SEQ)?;
                    let id: &UInt32Array = schema::column(b, col::BLOCK_ID)?;
                    for i in 0..b.num_rows() {
                        if seqs.binary_search(&seq.value(i)).is_ok() {
                            acc.push(((*vcpu, seq.value(i)), id.value(i)));
                        }
                    }
                    Ok::<_, qtrace_format::Error>(acc)
                })
            })
            .collect::<qtrace_format::Result<Vec<_>>>()?;
        Ok(found.into_iter().flatten().collect())
    }

    /// Instruction `insn` of block `id`.
    pub fn insn(&self, id: u32, insn: u16) -> Option<&InsnInfo> {
        self.dict.get(&id)?.insns.get(usize::from(insn))
    }

    /// The block's symbol.
    pub fn symbol(&self, id: u32) -> Option<&str> {
        self.dict.get(&id)?.symbol.as_deref()
    }

    /// The instructions of `accesses`, in their order (`None` where the
    /// block or the instruction is missing from the trace).
    pub fn insns_of(&self, accesses: &[Access]) -> Result<Vec<Option<Place>>> {
        let wanted: BTreeSet<(u32, u64)> = accesses.iter().map(|a| (a.vcpu, a.block_seq)).collect();
        let ids = self.block_ids(&wanted)?;
        Ok(accesses
            .iter()
            .map(|a| {
                let id = *ids.get(&(a.vcpu, a.block_seq))?;
                let insn = self.insn(id, a.insn)?;
                Some(Place {
                    addr: insn.addr,
                    disas: insn.disas.clone(),
                    symbol: insn
                        .symbol
                        .clone()
                        .or_else(|| self.symbol(id).map(String::from)),
                })
            })
            .collect())
    }
}

/// Where an access was made: the instruction.
#[derive(Clone, Debug)]
pub struct Place {
    pub addr: u64,
    pub disas: String,
    pub symbol: Option<String>,
}

/// `Code` for a trace, with its `blocks` parts (kept by the caller, which
/// `Code` borrows).
pub fn block_parts(trace: &Trace) -> Result<Vec<PartPath>> {
    Ok(trace.parts(Table::Blocks)?)
}

/// The columns of an access row.
pub const COLUMNS: [Column; 12] = [
    rows::num("vcpu"),
    rows::num("seq"),
    rows::num("tid"),
    rows::num("block_seq"),
    rows::text("insn_addr"),
    rows::text("disas"),
    rows::text("symbol"),
    rows::text("addr"),
    rows::num("size"),
    rows::text("op"),
    rows::text("value"),
    rows::text("inexact"),
];

/// An access as the cells of [`COLUMNS`].
pub fn cells(a: &Access, place: Option<&Place>) -> Vec<Value> {
    vec![
        a.vcpu.into(),
        a.seq.into(),
        a.tid.into(),
        a.block_seq.into(),
        place.map_or(Value::Null, |p| rows::hex(p.addr)),
        place.map_or(Value::Null, |p| p.disas.clone().into()),
        place.and_then(|p| p.symbol.clone()).into(),
        rows::hex(a.addr),
        a.size.into(),
        if a.store { "store" } else { "load" }.into(),
        a.value_text().into(),
        a.inexact.into(),
    ]
}
