//! Fast reading of the `blocks` table: the block ids a vCPU executed, as
//! runs of consecutive executions, without building Arrow arrays.
//!
//! `blocks` is the table with billions of rows, and most questions about
//! it (top blocks, coverage, first divergence) only need `block_id`. The
//! recorder writes that column as PLAIN little-endian `u32`s in zstd pages
//! with no levels, so a decompressed page *is* the ids: this module hands
//! out slices of it. `seq` is never decoded: it rises by one per row, so a
//! row group's first `seq` (its min statistic) and the row count place
//! every row, and `tid` is the same for a whole row group (its min and max
//! agree). A file written otherwise (another encoding, a row group whose
//! statistics do not say that) is read through the generic Arrow decoder,
//! with the same results.
//!
//! Row groups are the unit of work: [`Blocks::open`] reads every part's
//! footer once, [`Blocks::groups`] lists the row groups in execution order
//! per vCPU with their `seq` range, and a caller picks the ones it needs
//! (skipping the others unread) and reads them in parallel.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use arrow_array::{Array, UInt32Array, UInt64Array};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::Page;
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::reader::{ChunkReader, FileReader, Length, SerializedFileReader};
use parquet::file::statistics::Statistics;
use rayon::prelude::*;

use crate::layout::PartPath;
use crate::reader::guarded;
use crate::schema::col;
use crate::{Error, Result};

/// Consecutive block executions of one vCPU by one thread: `ids[i]` is the
/// block executed at `seq = first_seq + i`.
#[derive(Clone, Copy, Debug)]
pub struct BlockRun<'a> {
    pub vcpu: Option<u32>,
    pub tid: u32,
    pub first_seq: u64,
    pub ids: &'a [u32],
}

/// One row group of a `blocks` part.
#[derive(Clone, Debug)]
pub struct Group {
    /// Index into [`Blocks::parts`].
    pub part: usize,
    pub vcpu: Option<u32>,
    /// Index of the row group in its part.
    pub row_group: usize,
    /// The `seq` of its rows, when the statistics say they run without
    /// gaps (as the recorder writes them); `None`: decode `seq` to know.
    pub seqs: Option<Range<u64>>,
    pub rows: u64,
    /// Its thread, when one thread executed all its rows.
    pub tid: Option<u32>,
}

impl Group {
    /// Whether some of its rows may lie in `seqs`.
    pub fn may_overlap(&self, seqs: &Range<u64>) -> bool {
        self.seqs
            .as_ref()
            .is_none_or(|s| s.start < seqs.end && seqs.start < s.end)
    }
}

struct OpenPart {
    path: PartPath,
    reader: SerializedFileReader<PositionalFile>,
    /// Column indices of `seq`, `tid`, `block_id`.
    seq: usize,
    tid: usize,
    block_id: usize,
}

/// The `blocks` parts of a trace, footers read.
pub struct Blocks {
    parts: Vec<Arc<OpenPart>>,
    groups: Vec<Group>,
}

impl Blocks {
    /// Reads the footers of `parts` (as `Trace::parts(Table::Blocks)`
    /// lists them, checked) in parallel.
    pub fn open(parts: &[PartPath]) -> Result<Blocks> {
        let opened: Vec<OpenPart> = parts.par_iter().map(open_part).collect::<Result<_>>()?;
        let parts: Vec<Arc<OpenPart>> = opened.into_iter().map(Arc::new).collect();
        let mut groups = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let meta: &ParquetMetaData = p.reader.metadata();
            for (rg, rgm) in meta.row_groups().iter().enumerate() {
                groups.push(describe(i, p, rg, rgm));
            }
        }
        // Execution order per vCPU: parts by index, row groups in order.
        groups.sort_by_key(|g| (g.vcpu, parts[g.part].path.index, g.row_group));
        Ok(Blocks { parts, groups })
    }

    pub fn parts(&self) -> impl Iterator<Item = &PartPath> {
        self.parts.iter().map(|p| &p.path)
    }

    /// Every row group, in execution order per vCPU (vCPUs in order).
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Total rows, from the footers.
    pub fn rows(&self) -> u64 {
        self.groups.iter().map(|g| g.rows).sum()
    }

    /// Reads one row group, handing `f` its rows as runs, in order.
    pub fn read(&self, group: &Group, f: &mut dyn FnMut(BlockRun<'_>) -> Result<()>) -> Result<()> {
        let part = &self.parts[group.part];
        let path = &part.path.path;
        guarded(path, || match (&group.seqs, group.tid) {
            (Some(seqs), Some(tid)) => match read_plain(part, group, seqs.start, tid, f)? {
                true => Ok(()),
                false => read_arrow(part, group, f),
            },
            _ => read_arrow(part, group, f),
        })
    }

    /// Folds every block execution whose `seq` lies in `seqs` (all of them
    /// when `None`), one task per row group; row groups outside the range
    /// are not read. Runs reach `fold` in execution order within a task,
    /// tasks in no particular order.
    pub fn scan<T, I, F, M>(
        &self,
        seqs: Option<Range<u64>>,
        init: I,
        fold: F,
        merge: M,
    ) -> Result<T>
    where
        T: Send,
        I: Fn() -> T + Sync + Send,
        F: Fn(&mut T, BlockRun<'_>) + Sync + Send,
        M: Fn(T, T) -> T + Sync + Send,
    {
        let groups: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| seqs.as_ref().is_none_or(|s| g.may_overlap(s)))
            .collect();
        groups
            .par_iter()
            .map(|g| {
                let mut acc = init();
                self.read(g, &mut |run| {
                    match &seqs {
                        Some(s) => {
                            if let Some(run) = clip(run, s) {
                                fold(&mut acc, run);
                            }
                        }
                        None => fold(&mut acc, run),
                    }
                    Ok(())
                })?;
                Ok(acc)
            })
            .try_reduce(&init, |a, b| Ok(merge(a, b)))
    }
}

/// The part of a run that lies in `seqs`.
pub fn clip<'a>(run: BlockRun<'a>, seqs: &Range<u64>) -> Option<BlockRun<'a>> {
    let end = run.first_seq + run.ids.len() as u64;
    let from = seqs.start.max(run.first_seq);
    let to = seqs.end.min(end);
    (from < to).then(|| BlockRun {
        first_seq: from,
        ids: &run.ids[(from - run.first_seq) as usize..(to - run.first_seq) as usize],
        ..run
    })
}

fn open_part(part: &PartPath) -> Result<OpenPart> {
    let path = &part.path;
    guarded(path, || {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = SerializedFileReader::new(PositionalFile(Arc::new(file)))
            .map_err(|e| Error::parquet(path, e))?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let index = |name: &str| {
            (0..schema.num_columns())
                .find(|&i| schema.column(i).name() == name)
                .ok_or_else(|| Error::corrupt(path, format!("has no column `{name}`")))
        };
        Ok(OpenPart {
            seq: index(col::SEQ)?,
            tid: index(col::TID)?,
            block_id: index(col::BLOCK_ID)?,
            path: part.clone(),
            reader,
        })
    })
}

/// A file read with `pread`, so that rayon's threads can read row groups
/// of one opened part at once. (`File` as a `ChunkReader` seeks a shared
/// file offset: concurrent readers would read each other's bytes.)
#[derive(Clone)]
struct PositionalFile(Arc<File>);

impl Length for PositionalFile {
    fn len(&self) -> u64 {
        self.0.metadata().map(|m| m.len()).unwrap_or(0)
    }
}

impl ChunkReader for PositionalFile {
    type T = PositionalRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<PositionalRead> {
        Ok(PositionalRead {
            file: self.clone(),
            at: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buf = vec![0; length];
        self.0.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

/// A reader of a [`PositionalFile`] from an offset of its own.
struct PositionalRead {
    file: PositionalFile,
    at: u64,
}

impl Read for PositionalRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.0.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

fn int_range(rgm: &RowGroupMetaData, column: usize) -> Option<(u64, u64)> {
    match rgm.column(column).statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()? as u64, *s.max_opt()? as u64)),
        Statistics::Int32(s) => Some((*s.min_opt()? as u32 as u64, *s.max_opt()? as u32 as u64)),
        _ => None,
    }
}

fn describe(i: usize, p: &OpenPart, row_group: usize, rgm: &RowGroupMetaData) -> Group {
    let rows = rgm.num_rows().max(0) as u64;
    let seqs = int_range(rgm, p.seq)
        .filter(|&(min, max)| max >= min && max - min + 1 == rows)
        .map(|(min, max)| min..max + 1);
    let tid = int_range(rgm, p.tid)
        .filter(|&(min, max)| min == max)
        .and_then(|(t, _)| u32::try_from(t).ok());
    Group {
        part: i,
        vcpu: p.path.vcpu,
        row_group,
        seqs: if rows == 0 { Some(0..0) } else { seqs },
        rows,
        tid,
    }
}

/// The fast path: `block_id` pages that are PLAIN, unnested and without
/// nulls are the ids themselves. Returns false (having called `f` for
/// nothing) when the column is stored any other way.
fn read_plain(
    part: &OpenPart,
    group: &Group,
    first_seq: u64,
    tid: u32,
    f: &mut dyn FnMut(BlockRun<'_>) -> Result<()>,
) -> Result<bool> {
    let path = &part.path.path;
    let rgm = part.reader.metadata().row_group(group.row_group);
    let chunk = rgm.column(part.block_id);
    let plain_only = chunk.column_descr().physical_type() == PhysicalType::INT32
        && chunk.column_descr().max_def_level() == 0
        && chunk.column_descr().max_rep_level() == 0
        && chunk.encodings().all(|e| e == Encoding::PLAIN);
    if !plain_only {
        return Ok(false);
    }
    let rg = part
        .reader
        .get_row_group(group.row_group)
        .map_err(|e| Error::parquet(path, e))?;
    let pages = rg
        .get_column_page_reader(part.block_id)
        .map_err(|e| Error::parquet(path, e))?;
    let mut seq = first_seq;
    let mut ids: Vec<u32> = Vec::new();
    for page in pages {
        let page = page.map_err(|e| Error::parquet(path, e))?;
        let (buf, n, skip) = match &page {
            Page::DataPageV2 {
                buf,
                num_values,
                encoding: Encoding::PLAIN,
                num_nulls: 0,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => (
                buf,
                *num_values as usize,
                (*def_levels_byte_len + *rep_levels_byte_len) as usize,
            ),
            Page::DataPage {
                buf,
                num_values,
                encoding: Encoding::PLAIN,
                ..
            } => (buf, *num_values as usize, 0),
            Page::DictionaryPage { .. } => return Ok(false),
            _ => return Err(Error::corrupt(path, "a block_id page is not PLAIN")),
        };
        let bytes = buf
            .get(skip..skip + n * 4)
            .ok_or_else(|| Error::corrupt(path, "a block_id page is shorter than its values"))?;
        f(BlockRun {
            vcpu: group.vcpu,
            tid,
            first_seq: seq,
            ids: as_ids(bytes, &mut ids),
        })?;
        seq += n as u64;
    }
    if seq - first_seq != group.rows {
        return Err(Error::corrupt(
            path,
            format!(
                "row group {} has {} block ids for {} rows",
                group.row_group,
                seq - first_seq,
                group.rows
            ),
        ));
    }
    Ok(true)
}

/// Little-endian `u32`s as a slice: the bytes themselves when they are
/// aligned on a little-endian host (decompressed pages are), else a copy.
fn as_ids<'a>(bytes: &'a [u8], copy: &'a mut Vec<u32>) -> &'a [u32] {
    if cfg!(target_endian = "little") {
        // SAFETY: every bit pattern is a valid u32, and align_to only puts
        // in `mid` what is aligned and whole.
        let (pre, mid, post) = unsafe { bytes.align_to::<u32>() };
        if pre.is_empty() && post.is_empty() {
            return mid;
        }
    }
    copy.clear();
    copy.extend(
        bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    copy
}

/// The general path: decode `seq`, `tid` and `block_id` with arrow-rs and
/// cut the rows into runs where `tid` changes or `seq` jumps.
fn read_arrow(
    part: &OpenPart,
    group: &Group,
    f: &mut dyn FnMut(BlockRun<'_>) -> Result<()>,
) -> Result<()> {
    let path = &part.path.path;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::parquet(path, e))?;
    let mask = ProjectionMask::leaves(
        builder.parquet_schema(),
        [part.seq, part.tid, part.block_id],
    );
    let reader = builder
        .with_row_groups(vec![group.row_group])
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| Error::parquet(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
        let typed = |e: Error| Error::corrupt(path, e.to_string());
        let seq: &UInt64Array = crate::schema::column(&batch, col::SEQ).map_err(typed)?;
        let tid: &UInt32Array = crate::schema::column(&batch, col::TID).map_err(typed)?;
        let ids: &UInt32Array = crate::schema::column(&batch, col::BLOCK_ID).map_err(typed)?;
        if seq.null_count() + tid.null_count() + ids.null_count() > 0 {
            return Err(Error::corrupt(path, "blocks has nulls"));
        }
        let (seq, tid, ids) = (seq.values(), tid.values(), ids.values());
        let mut start = 0;
        for i in 1..=ids.len() {
            let cut =
                i == ids.len() || tid[i] != tid[start] || seq[i] != seq[i - 1].wrapping_add(1);
            if cut {
                f(BlockRun {
                    vcpu: group.vcpu,
                    tid: tid[start],
                    first_seq: seq[start],
                    ids: &ids[start..i],
                })?;
                start = i;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks_writer::BlocksFileWriter;
    use crate::schema::{blocks_batch, Table};
    use arrow_array::RecordBatch;
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use std::path::Path;

    /// Every (vcpu, tid, seq, id) a scan of `parts` sees, sorted.
    fn rows_of(parts: &[PartPath], seqs: Option<Range<u64>>) -> Vec<(u32, u64, u32)> {
        let blocks = Blocks::open(parts).unwrap();
        let mut rows = blocks
            .scan(
                seqs,
                Vec::new,
                |acc, run| {
                    for (i, &id) in run.ids.iter().enumerate() {
                        acc.push((run.tid, run.first_seq + i as u64, id));
                    }
                },
                |mut a, b| {
                    a.extend(b);
                    a
                },
            )
            .unwrap();
        rows.sort_unstable();
        rows
    }

    fn part(dir: &Path, name: &str) -> PartPath {
        PartPath {
            vcpu: Some(0),
            index: 0,
            path: dir.join(name),
        }
    }

    #[test]
    fn the_recorders_pages_and_the_generic_decoder_agree() {
        let dir = tempfile::tempdir().unwrap();
        let ids_a: Vec<u32> = (0..300_000u32).map(|i| (i * 7919) % 1000).collect();
        let ids_b: Vec<u32> = (0..5000u32).map(|i| i % 13).collect();

        // As the recorder writes them: PLAIN pages, one thread per row group.
        let fast = part(dir.path(), "fast.parquet");
        let file = File::create(&fast.path).unwrap();
        let mut w = BlocksFileWriter::new(file, 1).unwrap();
        w.write_row_group(0, 7, &ids_a).unwrap();
        w.write_row_group(300_000, 8, &ids_b).unwrap();
        w.finish().unwrap();

        // As another tool might: dictionary pages, both threads in one
        // row group, so the generic path must cut runs where tid changes.
        let slow = part(dir.path(), "slow.parquet");
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(1 << 20))
            .build();
        let file = File::create(&slow.path).unwrap();
        let mut w = ArrowWriter::try_new(file, Table::Blocks.schema(), Some(props)).unwrap();
        let a: RecordBatch = blocks_batch(0, 7, &ids_a);
        w.write(&a).unwrap();
        w.write(&blocks_batch(300_000, 8, &ids_b)).unwrap();
        w.close().unwrap();

        let blocks = Blocks::open(std::slice::from_ref(&slow)).unwrap();
        assert_eq!(blocks.groups()[0].tid, None, "one row group, two threads");
        let all = rows_of(std::slice::from_ref(&fast), None);
        assert_eq!(all.len(), 305_000);
        assert_eq!(all, rows_of(std::slice::from_ref(&slow), None));
        assert_eq!(all[299_999], (7, 299_999, ids_a[299_999]));
        assert_eq!(all[300_000], (8, 300_000, 0));
        let window = 299_990..300_010;
        let some = rows_of(&[fast], Some(window.clone()));
        assert_eq!(some.len(), 20);
        assert_eq!(some, rows_of(&[slow], Some(window)));
    }

    #[test]
    fn reads_ids_aligned_or_not() {
        let words: Vec<u32> = vec![1, 0x0102_0304, u32::MAX];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut copy = Vec::new();
        assert_eq!(as_ids(&bytes, &mut copy), &words[..]);
        let mut shifted = vec![0u8];
        shifted.extend(&bytes);
        assert_eq!(as_ids(&shifted[1..], &mut copy), &words[..]);
    }

    #[test]
    fn clips_runs_to_a_range() {
        let ids = [1, 2, 3, 4, 5];
        let run = BlockRun {
            vcpu: Some(0),
            tid: 7,
            first_seq: 10,
            ids: &ids,
        };
        let c = clip(run, &(12..14)).unwrap();
        assert_eq!((c.first_seq, c.ids), (12, &[3, 4][..]));
        assert!(clip(run, &(15..20)).is_none());
        assert!(clip(run, &(0..10)).is_none());
        assert_eq!(clip(run, &(0..100)).unwrap().ids.len(), 5);
    }
}
