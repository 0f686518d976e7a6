//! Standard Parquet pages built by hand, for the tables whose rows arrive
//! faster than the generic Arrow writer encodes them (`blocks`, `mem`).
//!
//! Every page here is an ordinary DATA_PAGE_V2 in an encoding of the
//! Parquet specification (PLAIN, DELTA_BINARY_PACKED, BYTE_STREAM_SPLIT, RLE
//! definition levels), so DuckDB, pyarrow and arrow-rs read it as usual. What
//! is saved is the generic machinery: no Arrow arrays, no dictionary, no
//! per-value dispatch.
//!
//! Nothing here may panic on any input; errors are returned.

use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::{add_encoded_arrow_schema_to_metadata, ArrowSchemaConverter};
use parquet::basic::{Compression, Encoding, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, SchemaDescriptor};

use crate::schema::Table;

/// DELTA_BINARY_PACKED block layout of the arithmetic pages: 32768 values
/// in 4 miniblocks (the format asks for a multiple of 128 and of 4 × 32).
/// A block costs 5 bytes whatever its size, so large blocks make `seq` and
/// `tid` almost free: 128-value blocks cost 0.04 byte a row each.
const ARITH_BLOCK: usize = 1 << 15;
const ARITH_MINIBLOCKS: usize = 4;

/// DELTA_BINARY_PACKED layout of pages with real deltas: 128 values in 4
/// miniblocks of 32, each with its own bit width.
const DELTA_BLOCK: usize = 128;
const DELTA_MINIBLOCK: usize = 32;

/// The Parquet schema of a hand-encoded `table`, and the properties of its
/// files: format v2, zstd at `zstd_level`, and the Arrow schema embedded so
/// that readers that honour it (pyarrow, arrow-rs) give back its unsigned
/// types.
pub(crate) fn file_setup(
    table: Table,
    zstd_level: i32,
) -> Result<(SchemaDescriptor, Arc<WriterProperties>)> {
    let arrow_schema = table.schema();
    let schema = ArrowSchemaConverter::new().convert(&arrow_schema)?;
    let level = ZstdLevel::try_new(zstd_level)?;
    let mut props = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_compression(Compression::ZSTD(level))
        .set_created_by(concat!("qtrace ", env!("CARGO_PKG_VERSION")).to_string())
        .build();
    add_encoded_arrow_schema_to_metadata(&arrow_schema, &mut props);
    Ok((schema, Arc::new(props)))
}

pub(crate) fn column(schema: &SchemaDescriptor, name: &str) -> Result<ColumnDescPtr> {
    schema
        .columns()
        .iter()
        .find(|c| c.name() == name)
        .cloned()
        .ok_or_else(|| ParquetError::General(format!("no column {name}")))
}

/// The pages of one column chunk, being assembled in memory.
pub(crate) struct Chunk {
    sink: TrackedWrite<Vec<u8>>,
    uncompressed: u64,
}

impl Chunk {
    pub(crate) fn new(capacity: usize) -> Chunk {
        Chunk {
            sink: TrackedWrite::new(Vec::with_capacity(capacity)),
            uncompressed: 0,
        }
    }

    pub(crate) fn page(&mut self, page: Page, uncompressed_size: usize) -> Result<()> {
        let spec = SerializedPageWriter::new(&mut self.sink)
            .write_page(CompressedPage::new(page, uncompressed_size))?;
        debug_assert_eq!(spec.page_type, PageType::DATA_PAGE_V2);
        self.uncompressed += spec.uncompressed_size as u64;
        Ok(())
    }

    pub(crate) fn finish(
        self,
        descr: &ColumnDescPtr,
        rows: usize,
        encodings: Vec<Encoding>,
        compression: Compression,
        statistics: Option<Statistics>,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let bytes = Bytes::from(self.sink.into_inner()?);
        let metadata = ColumnChunkMetaData::builder(descr.clone())
            .set_encodings(encodings)
            .set_compression(compression)
            .set_num_values(rows as i64)
            .set_total_compressed_size(bytes.len() as i64)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_data_page_offset(0)
            .set_statistics_opt(statistics)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: None,
        };
        Ok((bytes, close))
    }
}

/// Builder extension: statistics are optional for the hand-built columns.
trait SetStatisticsOpt {
    fn set_statistics_opt(self, s: Option<Statistics>) -> Self;
}

impl SetStatisticsOpt for parquet::file::metadata::ColumnChunkMetaDataBuilder {
    fn set_statistics_opt(self, s: Option<Statistics>) -> Self {
        match s {
            Some(s) => self.set_statistics(s),
            None => self,
        }
    }
}

/// A data page of `rows` rows whose body is `buf`: the definition levels
/// (`def_len` bytes, never compressed), then the values, compressed or not.
pub(crate) fn data_page(
    buf: Vec<u8>,
    rows: usize,
    nulls: usize,
    def_len: usize,
    encoding: Encoding,
    compressed: bool,
) -> Page {
    Page::DataPageV2 {
        buf: Bytes::from(buf),
        num_values: rows as u32,
        encoding,
        num_nulls: nulls as u32,
        num_rows: rows as u32,
        def_levels_byte_len: def_len as u32,
        rep_levels_byte_len: 0,
        is_compressed: compressed,
        statistics: None,
    }
}

/// `first, first + step, ...` (`rows` values) as the bytes of one
/// DELTA_BINARY_PACKED page: a header, then per block the minimum delta
/// (`step`) and four zero bit widths, with no payload.
pub(crate) fn arithmetic_page(first: i64, step: i64, rows: usize) -> Vec<u8> {
    let blocks = (rows - 1).div_ceil(ARITH_BLOCK);
    let mut buf = Vec::with_capacity(32 + blocks * (10 + ARITH_MINIBLOCKS));
    varint(&mut buf, ARITH_BLOCK as u64);
    varint(&mut buf, ARITH_MINIBLOCKS as u64);
    varint(&mut buf, rows as u64);
    varint(&mut buf, zigzag(first));
    for _ in 0..blocks {
        varint(&mut buf, zigzag(step));
        buf.extend_from_slice(&[0; ARITH_MINIBLOCKS]);
    }
    buf
}

/// A column chunk of one uncompressed DELTA_BINARY_PACKED page.
fn delta_chunk(
    descr: &ColumnDescPtr,
    page: Vec<u8>,
    rows: usize,
    stats: Statistics,
) -> Result<(Bytes, ColumnCloseResult)> {
    let size = page.len();
    let mut chunk = Chunk::new(size + 64);
    chunk.page(
        data_page(page, rows, 0, 0, Encoding::DELTA_BINARY_PACKED, false),
        size,
    )?;
    chunk.finish(
        descr,
        rows,
        vec![Encoding::DELTA_BINARY_PACKED],
        Compression::UNCOMPRESSED,
        Some(stats),
    )
}

/// `first..first + rows`: a `seq` column.
pub(crate) fn encode_seq(
    descr: &ColumnDescPtr,
    first: u64,
    rows: usize,
) -> Result<(Bytes, ColumnCloseResult)> {
    let last = first + rows as u64 - 1;
    let stats = Statistics::int64(Some(first as i64), Some(last as i64), None, Some(0), false);
    delta_chunk(descr, arithmetic_page(first as i64, 1, rows), rows, stats)
}

/// `value`, `rows` times: a `tid` column, the same for a whole row group.
pub(crate) fn encode_constant(
    descr: &ColumnDescPtr,
    value: u32,
    rows: usize,
) -> Result<(Bytes, ColumnCloseResult)> {
    let v = value as i32;
    let stats = Statistics::int32(Some(v), Some(v), None, Some(0), false);
    delta_chunk(descr, arithmetic_page(i64::from(v), 0, rows), rows, stats)
}

/// `values` as one DELTA_BINARY_PACKED page (blocks of 128, miniblocks of
/// 32 with their own bit widths), appended to `buf`.
pub(crate) fn delta_page(buf: &mut Vec<u8>, values: &[u64]) {
    varint(buf, DELTA_BLOCK as u64);
    varint(buf, (DELTA_BLOCK / DELTA_MINIBLOCK) as u64);
    varint(buf, values.len() as u64);
    let Some(&first) = values.first() else {
        varint(buf, 0);
        return;
    };
    let first = first as i64;
    varint(buf, zigzag(first));
    let mut deltas = [0u64; DELTA_BLOCK];
    let mut prev = first;
    for block in values[1..].chunks(DELTA_BLOCK) {
        let mut min = i64::MAX;
        for (d, &v) in deltas.iter_mut().zip(block) {
            let v = v as i64;
            let delta = v.wrapping_sub(prev);
            prev = v;
            min = min.min(delta);
            *d = delta as u64;
        }
        for d in &mut deltas[..block.len()] {
            *d = d.wrapping_sub(min as u64);
        }
        varint(buf, zigzag(min));
        let widths_at = buf.len();
        buf.extend_from_slice(&[0; DELTA_BLOCK / DELTA_MINIBLOCK]);
        for (m, mini) in deltas[..block.len()].chunks(DELTA_MINIBLOCK).enumerate() {
            let width = 64 - mini.iter().fold(0, |a, &d| a | d).leading_zeros();
            buf[widths_at + m] = width as u8;
            bit_pack(buf, mini, width);
        }
    }
}

/// `values` packed LSB first at `width` bits each, padded to 32 values.
fn bit_pack(buf: &mut Vec<u8>, values: &[u64], width: u32) {
    if width == 0 {
        return;
    }
    let mut acc: u128 = 0;
    let mut bits = 0u32;
    for i in 0..DELTA_MINIBLOCK {
        let v = values.get(i).copied().unwrap_or(0);
        acc |= u128::from(v) << bits;
        bits += width;
        while bits >= 8 {
            buf.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    // 32 values of any width fill whole bytes.
    debug_assert_eq!(bits, 0);
}

/// `values` as their BYTE_STREAM_SPLIT encoding, `N` bytes a value (a
/// narrower integer widened, little-endian): byte k of every value, then
/// byte k + 1, ...; the widening bytes are zeros.
pub(crate) fn byte_stream_split<T: Copy + Into<u64>, const N: usize>(
    buf: &mut Vec<u8>,
    values: &[T],
) {
    let n = values.len();
    let width = std::mem::size_of::<T>().min(N);
    buf.reserve(n * N);
    for k in 0..width {
        let shift = 8 * k as u32;
        buf.extend(values.iter().map(|&v| (v.into() >> shift) as u8));
    }
    buf.resize(buf.len() + (N - width) * n, 0);
}

/// Bit `bit` of each of `flags` as PLAIN booleans: packed eight to a
/// byte, LSB first.
pub(crate) fn plain_bools(buf: &mut Vec<u8>, flags: &[u8], bit: u32) {
    let mut chunks = flags.chunks_exact(8);
    for c in &mut chunks {
        let mut byte = 0u8;
        for (j, &f) in c.iter().enumerate() {
            byte |= ((f >> bit) & 1) << j;
        }
        buf.push(byte);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut byte = 0u8;
        for (j, &f) in rest.iter().enumerate() {
            byte |= ((f >> bit) & 1) << j;
        }
        buf.push(byte);
    }
}

/// Definition levels of an optional column (1 = present) as RLE runs of
/// bit width 1, the form data page v2 keeps uncompressed before the values.
pub(crate) fn rle_levels(buf: &mut Vec<u8>, n: usize, present: impl Fn(usize) -> bool) {
    let mut i = 0;
    while i < n {
        let level = present(i);
        let mut run = 1;
        while i + run < n && present(i + run) == level {
            run += 1;
        }
        rle_run(buf, run, level);
        i += run;
    }
}

/// One RLE run of definition levels: `n` times `present`.
pub(crate) fn rle_run(buf: &mut Vec<u8>, n: usize, present: bool) {
    varint(buf, (n as u64) << 1);
    buf.push(u8::from(present));
}

/// zstd with the level the chunk's metadata states.
pub(crate) struct Zstd {
    compressor: zstd::bulk::Compressor<'static>,
    pub(crate) level: i32,
}

impl Zstd {
    pub(crate) fn new(level: i32) -> Result<Zstd> {
        let compressor = zstd::bulk::Compressor::new(level).map_err(external)?;
        Ok(Zstd { compressor, level })
    }

    pub(crate) fn compress(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.compressor.compress(data).map_err(external)
    }

    pub(crate) fn codec(&self) -> Result<Compression> {
        Ok(Compression::ZSTD(ZstdLevel::try_new(self.level)?))
    }
}

pub(crate) fn external(e: std::io::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

pub(crate) fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
