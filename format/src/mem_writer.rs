//! The encoder of the `mem` table: with `mem=values`, every load and store
//! of the guest is a row, several times as many rows as `blocks` has.
//!
//! The columns are built by hand into standard pages (see `pages`), a page
//! per 64K rows, each chosen for what its column holds:
//!
//! - `seq`, `tid`: arithmetic DELTA_BINARY_PACKED, almost no bytes;
//! - `block_seq`: DELTA_BINARY_PACKED (it rises by small steps), then zstd;
//! - `addr`, `value`, `insn`, `size`: BYTE_STREAM_SPLIT, then zstd. The
//!   high bytes of addresses and values hardly change, and split into their
//!   own streams they compress to almost nothing; measured on `xz`, this is
//!   smaller than PLAIN for addresses (0.71 against 0.85 byte a row) and
//!   faster for both (values: 13 against 18 ns a row);
//! - the flags: PLAIN booleans (a bit each), then zstd;
//! - `value` and `value_hi` are optional: their definition levels are RLE
//!   runs, one run when every access has a value.
//!
//! Nothing here may panic on any input; errors are returned.

use std::cell::RefCell;
use std::io::Write;

use rayon::prelude::*;

use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::Result;
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnDescPtr;

use crate::pages::{
    byte_stream_split, column, data_page, delta_page, encode_constant, encode_seq, file_setup,
    plain_bools, rle_levels, rle_run, Chunk, Zstd,
};
use crate::schema::{col, MemAccess, Table};

/// Rows per data page.
pub const PAGE_ROWS: usize = 1 << 16;

/// Rows of `mem` made by one guest thread on one vCPU, column by column:
/// row `i` is access `first_seq + i`.
#[derive(Debug, Default, Clone)]
pub struct MemRows {
    pub first_seq: u64,
    pub tid: u32,
    pub block_seq: Vec<u64>,
    pub insn: Vec<u16>,
    pub addr: Vec<u64>,
    /// Bytes accessed: 1, 2, 4, 8 or 16.
    pub size: Vec<u8>,
    /// [`MemAccess::STORE`] and the other flags.
    pub flags: Vec<u8>,
    /// The value's low 64 bits (0 where the row has no value).
    pub value: Vec<u64>,
    /// The high 64 bits of 16-byte values: (row, bits), rows ascending.
    pub value_hi: Vec<(u32, u64)>,
}

impl MemRows {
    pub fn len(&self) -> usize {
        self.addr.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addr.is_empty()
    }

    /// Empties the columns, keeping their memory.
    pub fn clear(&mut self, first_seq: u64, tid: u32) {
        self.first_seq = first_seq;
        self.tid = tid;
        self.block_seq.clear();
        self.insn.clear();
        self.addr.clear();
        self.size.clear();
        self.flags.clear();
        self.value.clear();
        self.value_hi.clear();
    }

    pub fn push(&mut self, a: &MemAccess) {
        if a.size > 8 && a.flags & MemAccess::HAS_VALUE != 0 {
            self.value_hi.push((self.addr.len() as u32, a.value_hi));
        }
        self.block_seq.push(a.block_seq);
        self.insn.push(a.insn);
        self.addr.push(a.addr);
        self.size.push(a.size);
        self.flags.push(a.flags);
        self.value.push(a.value);
    }

    /// Row `i` as a [`MemAccess`].
    pub fn get(&self, i: usize) -> MemAccess {
        let value_hi = self
            .value_hi
            .binary_search_by_key(&(i as u32), |&(r, _)| r)
            .map_or(0, |k| self.value_hi[k].1);
        MemAccess {
            block_seq: self.block_seq[i],
            addr: self.addr[i],
            value: self.value[i],
            value_hi,
            insn: self.insn[i],
            size: self.size[i],
            flags: self.flags[i],
        }
    }
}

/// Rows per row group: big enough for few footer entries, small enough
/// that a row group's compressed pages stay in memory cheaply.
const GROUP_ROWS: usize = 1 << 20;

/// Writes one Parquet file of the `mem` table. Rows are encoded page by
/// page as they come (while they are still in cache) into the row group
/// being built, which is closed every [`GROUP_ROWS`] rows, when the thread
/// or the sequence changes, and at the end.
pub struct MemFileWriter<W: Write + Send> {
    inner: SerializedFileWriter<W>,
    columns: Columns,
    zstd_level: i32,
    group: Option<Group>,
}

#[derive(Clone)]
struct Columns {
    /// Column names in the schema's order.
    order: Vec<String>,
    seq: ColumnDescPtr,
    tid: ColumnDescPtr,
    block_seq: ColumnDescPtr,
    insn: ColumnDescPtr,
    addr: ColumnDescPtr,
    size: ColumnDescPtr,
    store: ColumnDescPtr,
    value: ColumnDescPtr,
    value_hi: ColumnDescPtr,
    sign_extended: ColumnDescPtr,
    big_endian: ColumnDescPtr,
    inexact: ColumnDescPtr,
}

/// The row group being built: its pages so far, column by column.
struct Group {
    first_seq: u64,
    tid: u32,
    rows: usize,
    block_seq: (u64, u64),
    /// Lowest and highest `addr`, in unsigned order: readers looking for
    /// the accesses to an address skip row groups by them.
    addr: (u64, u64),
    /// One per [`Col`], in that order.
    chunks: Vec<Chunk>,
}

/// The columns encoded page by page (`seq` and `tid` are computed whole).
#[derive(Clone, Copy, Debug)]
enum Col {
    BlockSeq,
    Insn,
    Addr,
    Size,
    Store,
    Value,
    ValueHi,
    SignExtended,
    BigEndian,
    Inexact,
}

const COLS: [Col; 10] = [
    Col::BlockSeq,
    Col::Insn,
    Col::Addr,
    Col::Size,
    Col::Store,
    Col::Value,
    Col::ValueHi,
    Col::SignExtended,
    Col::BigEndian,
    Col::Inexact,
];

/// One page of one column, before compression.
struct RawPage {
    /// Definition levels (`def_len` bytes), then the encoded values.
    bytes: Vec<u8>,
    def_len: usize,
    rows: usize,
    nulls: usize,
    encoding: Encoding,
}

impl Col {
    /// The page of rows `start..end` of `rows`; `hi` are the 16-byte
    /// values among them.
    fn page(self, rows: &MemRows, start: usize, end: usize, hi: &[(u32, u64)]) -> RawPage {
        let n = end - start;
        let mut bytes = Vec::with_capacity(n * 8 + 64);
        let flags = &rows.flags[start..end];
        let page = |bytes: Vec<u8>, encoding| RawPage {
            bytes,
            def_len: 0,
            rows: n,
            nulls: 0,
            encoding,
        };
        let bools = |mut bytes: Vec<u8>, flag: u8| {
            plain_bools(&mut bytes, flags, flag.trailing_zeros());
            bytes
        };
        match self {
            Col::BlockSeq => {
                delta_page(&mut bytes, &rows.block_seq[start..end]);
                page(bytes, Encoding::DELTA_BINARY_PACKED)
            }
            Col::Insn => {
                byte_stream_split::<u16, 4>(&mut bytes, &rows.insn[start..end]);
                page(bytes, Encoding::BYTE_STREAM_SPLIT)
            }
            Col::Addr => {
                byte_stream_split::<u64, 8>(&mut bytes, &rows.addr[start..end]);
                page(bytes, Encoding::BYTE_STREAM_SPLIT)
            }
            Col::Size => {
                byte_stream_split::<u8, 4>(&mut bytes, &rows.size[start..end]);
                page(bytes, Encoding::BYTE_STREAM_SPLIT)
            }
            Col::Store => page(bools(bytes, MemAccess::STORE), Encoding::PLAIN),
            Col::SignExtended => page(bools(bytes, MemAccess::SIGN_EXTENDED), Encoding::PLAIN),
            Col::BigEndian => page(bools(bytes, MemAccess::BIG_ENDIAN), Encoding::PLAIN),
            Col::Inexact => page(bools(bytes, MemAccess::INEXACT), Encoding::PLAIN),
            Col::Value => value_page(bytes, flags, &rows.value[start..end]),
            Col::ValueHi => value_hi_page(bytes, start, end, hi),
        }
    }

    fn encodings(self) -> Vec<Encoding> {
        use Encoding::{BYTE_STREAM_SPLIT as BSS, DELTA_BINARY_PACKED as DELTA, PLAIN, RLE};
        match self {
            Col::BlockSeq => vec![DELTA],
            Col::Insn | Col::Addr | Col::Size => vec![BSS],
            Col::Store | Col::SignExtended | Col::BigEndian | Col::Inexact => vec![PLAIN],
            Col::Value => vec![RLE, BSS],
            Col::ValueHi => vec![RLE, PLAIN],
        }
    }

    fn descr(self, c: &Columns) -> &ColumnDescPtr {
        match self {
            Col::BlockSeq => &c.block_seq,
            Col::Insn => &c.insn,
            Col::Addr => &c.addr,
            Col::Size => &c.size,
            Col::Store => &c.store,
            Col::Value => &c.value,
            Col::ValueHi => &c.value_hi,
            Col::SignExtended => &c.sign_extended,
            Col::BigEndian => &c.big_endian,
            Col::Inexact => &c.inexact,
        }
    }
}

/// A page of `value`: present where the access has a value (`mem=values`).
fn value_page(mut bytes: Vec<u8>, flags: &[u8], values: &[u64]) -> RawPage {
    let n = flags.len();
    let has = |f: &u8| f & MemAccess::HAS_VALUE != 0;
    let all = flags.iter().all(has);
    if all {
        // Every access has its value: one run.
        rle_run(&mut bytes, n, true);
    } else {
        rle_levels(&mut bytes, n, |i| has(&flags[i]));
    }
    let def_len = bytes.len();
    let present: Vec<u64>;
    let page: &[u64] = if all {
        values
    } else {
        present = flags
            .iter()
            .zip(values)
            .filter(|(f, _)| has(f))
            .map(|(_, &v)| v)
            .collect();
        &present
    };
    byte_stream_split::<u64, 8>(&mut bytes, page);
    RawPage {
        bytes,
        def_len,
        rows: n,
        nulls: n - page.len(),
        encoding: Encoding::BYTE_STREAM_SPLIT,
    }
}

/// A page of `value_hi` for rows `start..end`, of which the rows of `hi`
/// have one (PLAIN).
fn value_hi_page(mut bytes: Vec<u8>, start: usize, end: usize, hi: &[(u32, u64)]) -> RawPage {
    // Runs of absent values between the rows that have one.
    let mut at = start;
    for &(row, _) in hi {
        let row = row as usize;
        if row > at {
            rle_run(&mut bytes, row - at, false);
        }
        // 16-byte accesses are rare: a run of one each.
        rle_run(&mut bytes, 1, true);
        at = row + 1;
    }
    if end > at {
        rle_run(&mut bytes, end - at, false);
    }
    let def_len = bytes.len();
    for &(_, v) in hi {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    RawPage {
        bytes,
        def_len,
        rows: end - start,
        nulls: end - start - hi.len(),
        encoding: Encoding::PLAIN,
    }
}

/// Compresses a page's values with this thread's zstd context (one per
/// thread: a new context costs more than a page).
fn compress(level: i32, page: &RawPage) -> Result<Vec<u8>> {
    thread_local! {
        static ZSTD: RefCell<Option<Zstd>> = const { RefCell::new(None) };
    }
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|z| z.level != level) {
            *slot = Some(Zstd::new(level)?);
        }
        let zstd = slot
            .as_mut()
            .ok_or_else(|| parquet::errors::ParquetError::General("no zstd context".into()))?;
        let packed = zstd.compress(&page.bytes[page.def_len..])?;
        if page.def_len == 0 {
            return Ok(packed);
        }
        let mut buf = Vec::with_capacity(page.def_len + packed.len());
        buf.extend_from_slice(&page.bytes[..page.def_len]);
        buf.extend_from_slice(&packed);
        Ok(buf)
    })
}

impl<W: Write + Send> MemFileWriter<W> {
    pub fn new(sink: W, zstd_level: i32) -> Result<Self> {
        let (schema, props) = file_setup(Table::Mem, zstd_level)?;
        let c = |name| column(&schema, name);
        let columns = Columns {
            order: schema
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect(),
            seq: c(col::SEQ)?,
            tid: c(col::TID)?,
            block_seq: c(col::BLOCK_SEQ)?,
            insn: c(col::INSN)?,
            addr: c(col::ADDR)?,
            size: c(col::SIZE)?,
            store: c(col::STORE)?,
            value: c(col::VALUE)?,
            value_hi: c(col::VALUE_HI)?,
            sign_extended: c(col::SIGN_EXTENDED)?,
            big_endian: c(col::BIG_ENDIAN)?,
            inexact: c(col::INEXACT)?,
        };
        let inner = SerializedFileWriter::new(sink, schema.root_schema_ptr(), props)?;
        Ok(MemFileWriter {
            inner,
            columns,
            zstd_level,
            group: None,
        })
    }

    /// Appends `rows` (which follow the rows written before, or start a
    /// new row group).
    pub fn write_rows(&mut self, rows: &MemRows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(g) = &self.group {
            if g.tid != rows.tid || g.first_seq + g.rows as u64 != rows.first_seq {
                self.close_group()?;
            }
        }
        let mut group = self.group.take().unwrap_or_else(|| Group {
            first_seq: rows.first_seq,
            tid: rows.tid,
            rows: 0,
            block_seq: (u64::MAX, 0),
            addr: (u64::MAX, 0),
            chunks: COLS.iter().map(|_| Chunk::new(256 * 1024)).collect(),
        });
        let r = self.encode(&mut group, rows);
        self.group = Some(group);
        r?;
        if self.group.as_ref().is_some_and(|g| g.rows >= GROUP_ROWS) {
            self.close_group()?;
        }
        Ok(())
    }

    /// Writes `rows` as one row group of its own.
    pub fn write_row_group(&mut self, rows: &MemRows) -> Result<()> {
        self.close_group()?;
        self.write_rows(rows)?;
        self.close_group()
    }

    /// Writes the footer and gives back the sink.
    pub fn finish(mut self) -> Result<W> {
        self.close_group()?;
        self.inner.into_inner()
    }

    /// Encodes `rows` into the group's pages, a page of every column at a
    /// time, the columns built and compressed in parallel (the recorder's
    /// writer thread has the machine's other cores to itself when QEMU
    /// waits for it).
    fn encode(&mut self, g: &mut Group, rows: &MemRows) -> Result<()> {
        let n = rows.len();
        let level = self.zstd_level;
        let mut hi = 0;
        for start in (0..n).step_by(PAGE_ROWS) {
            let end = (start + PAGE_ROWS).min(n);
            // block_seq never decreases within a thread.
            g.block_seq.0 = g.block_seq.0.min(rows.block_seq[start]);
            g.block_seq.1 = g.block_seq.1.max(rows.block_seq[end - 1]);
            for &a in &rows.addr[start..end] {
                g.addr = (g.addr.0.min(a), g.addr.1.max(a));
            }
            let first = hi;
            while hi < rows.value_hi.len() && (rows.value_hi[hi].0 as usize) < end {
                hi += 1;
            }
            let page_hi = &rows.value_hi[first..hi];
            let pages: Vec<Result<(RawPage, Vec<u8>)>> = COLS
                .par_iter()
                .map(|col| {
                    let raw = col.page(rows, start, end, page_hi);
                    let packed = compress(level, &raw)?;
                    Ok((raw, packed))
                })
                .collect();
            for (chunk, page) in g.chunks.iter_mut().zip(pages) {
                let (raw, packed) = page?;
                let page = data_page(packed, raw.rows, raw.nulls, raw.def_len, raw.encoding, true);
                chunk.page(page, raw.bytes.len())?;
            }
            g.rows += end - start;
        }
        Ok(())
    }

    /// Completes the row group being built, if any.
    fn close_group(&mut self) -> Result<()> {
        let Some(g) = self.group.take() else {
            return Ok(());
        };
        if g.rows == 0 {
            return Ok(());
        }
        let codec = Compression::ZSTD(ZstdLevel::try_new(self.zstd_level)?);
        let (c, n) = (&self.columns, g.rows);
        let (min, max) = g.block_seq;
        let block_seq_stats =
            Statistics::int64(Some(min as i64), Some(max as i64), None, Some(0), false);
        // Stored as the same bits; Parquet orders UINT64 statistics unsigned.
        let (lo, hi) = g.addr;
        let addr_stats = Statistics::int64(Some(lo as i64), Some(hi as i64), None, Some(0), false);
        let mut encoded = vec![
            encode_seq(&c.seq, g.first_seq, n)?,
            encode_constant(&c.tid, g.tid, n)?,
        ];
        for (col, chunk) in COLS.into_iter().zip(g.chunks) {
            let stats = match col {
                Col::BlockSeq => Some(block_seq_stats.clone()),
                Col::Addr => Some(addr_stats.clone()),
                _ => None,
            };
            encoded.push(chunk.finish(col.descr(c), n, col.encodings(), codec, stats)?);
        }
        // The file's columns are in the schema's order.
        let order = |name: &str| c.order.iter().position(|o| o == name);
        encoded.sort_by_key(|(_, close)| order(close.metadata.column_descr().name()));
        let mut rg = self.inner.next_row_group()?;
        for (bytes, close) in encoded {
            rg.append_column(&bytes, close)?;
        }
        rg.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, BooleanArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Rows of every kind: each size, loads and stores, with and without a
    /// value, the flags, addresses across the whole range.
    fn rows(n: usize, first_seq: u64) -> MemRows {
        let mut r = MemRows::default();
        r.clear(first_seq, 42);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut block_seq = 1u64 << 40;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            block_seq += x % 3;
            let size = 1u8 << (x % 5);
            let mut flags = (x >> 8) as u8 & (MemAccess::STORE | MemAccess::SIGN_EXTENDED);
            if i % 5 != 0 {
                flags |= MemAccess::HAS_VALUE;
            }
            if i % 97 == 0 {
                flags |= MemAccess::INEXACT | MemAccess::BIG_ENDIAN;
            }
            r.push(&MemAccess {
                block_seq,
                addr: if i % 2 == 0 {
                    x
                } else {
                    0x7fff_0000 + (x & 0xfff)
                },
                value: if flags & MemAccess::HAS_VALUE != 0 {
                    x.rotate_left(9)
                } else {
                    0
                },
                value_hi: x.rotate_left(33),
                insn: (x % 512) as u16,
                size,
                flags,
            });
        }
        r
    }

    fn round_trip(groups: &[MemRows]) -> Vec<(u64, u32, MemAccess)> {
        let mut w = MemFileWriter::new(Vec::new(), 1).unwrap();
        for g in groups {
            w.write_row_group(g).unwrap();
        }
        let buf = w.finish().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(buf))
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for batch in reader {
            let b = batch.unwrap();
            let u64s = |name| {
                crate::schema::column::<UInt64Array>(&b, name)
                    .unwrap()
                    .clone()
            };
            let bools = |name| {
                crate::schema::column::<BooleanArray>(&b, name)
                    .unwrap()
                    .clone()
            };
            let (seq, block_seq, addr) = (u64s(col::SEQ), u64s(col::BLOCK_SEQ), u64s(col::ADDR));
            let (value, value_hi) = (u64s(col::VALUE), u64s(col::VALUE_HI));
            let tid = crate::schema::column::<UInt32Array>(&b, col::TID).unwrap();
            let insn = crate::schema::column::<UInt16Array>(&b, col::INSN).unwrap();
            let size = crate::schema::column::<UInt8Array>(&b, col::SIZE).unwrap();
            let (store, sign) = (bools(col::STORE), bools(col::SIGN_EXTENDED));
            let (be, inexact) = (bools(col::BIG_ENDIAN), bools(col::INEXACT));
            for i in 0..b.num_rows() {
                let mut flags = 0;
                for (set, f) in [
                    (store.value(i), MemAccess::STORE),
                    (sign.value(i), MemAccess::SIGN_EXTENDED),
                    (be.value(i), MemAccess::BIG_ENDIAN),
                    (inexact.value(i), MemAccess::INEXACT),
                    (value.is_valid(i), MemAccess::HAS_VALUE),
                ] {
                    if set {
                        flags |= f;
                    }
                }
                let access = MemAccess {
                    block_seq: block_seq.value(i),
                    addr: addr.value(i),
                    value: if value.is_valid(i) { value.value(i) } else { 0 },
                    value_hi: if value_hi.is_valid(i) {
                        value_hi.value(i)
                    } else {
                        0
                    },
                    insn: insn.value(i),
                    size: size.value(i),
                    flags,
                };
                out.push((seq.value(i), tid.value(i), access));
            }
        }
        out
    }

    #[test]
    fn standard_readers_decode_every_row() {
        for n in [1usize, 2, 128, 129, 1000, PAGE_ROWS + 3] {
            let want = rows(n, 7);
            let got = round_trip(std::slice::from_ref(&want));
            assert_eq!(got.len(), n);
            for (i, (seq, tid, access)) in got.into_iter().enumerate() {
                let mut expected = want.get(i);
                if expected.size <= 8 || expected.flags & MemAccess::HAS_VALUE == 0 {
                    expected.value_hi = 0;
                }
                assert_eq!((seq, tid), (7 + i as u64, 42), "n={n} row {i}");
                assert_eq!(access, expected, "n={n} row {i}");
            }
        }
    }

    #[test]
    fn row_groups_keep_their_own_sequence() {
        let got = round_trip(&[rows(3, 0), rows(2, 100)]);
        let seqs: Vec<u64> = got.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(seqs, vec![0, 1, 2, 100, 101]);
    }

    /// The `addr` statistics are each row group's unsigned min and max,
    /// including addresses above 2^63, which a signed order would misplace.
    #[test]
    fn addr_statistics_are_each_row_groups_unsigned_bounds() {
        let groups = [rows(PAGE_ROWS + 5, 0), rows(300, 1 << 20)];
        let mut w = MemFileWriter::new(Vec::new(), 1).unwrap();
        for g in &groups {
            w.write_row_group(g).unwrap();
        }
        let buf = Bytes::from(w.finish().unwrap());
        let meta = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&buf)
            .unwrap();
        assert_eq!(meta.num_row_groups(), groups.len());
        for (rg, g) in meta.row_groups().iter().zip(&groups) {
            let lo = *g.addr.iter().min().unwrap();
            let hi = *g.addr.iter().max().unwrap();
            assert!(hi > 1 << 63 && lo < 1 << 63);
            assert_eq!(crate::reader::u64_range(rg, col::ADDR), Some((lo, hi)));
        }
    }
}
