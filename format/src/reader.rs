//! Opens a trace directory and scans its tables in parallel.
//!
//! Only sealed parts are read. A part the manifest lists is read only once
//! its size and XXH3-64 match the manifest's (arrow-rs writes no page
//! checksums, and most flipped bits would decode to wrong rows); a part
//! sealed after the manifest's last rewrite has no checksum and is read if
//! its footer is. A part that fails is an error naming it, or, with
//! [`Trace::skip_corrupt`], left out with a warning.
//!
//! Files are opened (footer and schema) in parallel, then every row group of
//! every part becomes one task for rayon; each task folds its batches into a
//! partial result and the partials are merged. A reader never panics on bad
//! input: a corrupt file is an error that names it.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaDataReader;
pub use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;
use rayon::prelude::*;

use crate::layout::{PartPath, MANIFEST};
use crate::manifest::Manifest;
use crate::schema::{self, BlockCount, BlockInfo, Module, Table};
use crate::verify::{self, Fault, Slot};
use crate::{Error, Result};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;

/// A trace directory, opened and checked.
pub struct Trace {
    root: PathBuf,
    manifest: Manifest,
    /// Told of each part left out; none: a bad part is an error.
    on_skip: Option<OnSkip>,
    /// What checking each part found (none: fine), so that a part is
    /// hashed once however often its table is read.
    verdicts: Mutex<HashMap<PathBuf, Option<Fault>>>,
    /// Parts (and manifest entries) already reported to `on_skip`.
    skipped: Mutex<HashSet<String>>,
}

/// What a reader is told of each part it leaves out.
pub type OnSkip = Arc<dyn Fn(&SkippedPart) + Send + Sync>;

/// A part left out because it is missing or damaged.
#[derive(Clone, Debug)]
pub struct SkippedPart {
    /// The file (for a bad manifest entry, `manifest.json`).
    pub path: PathBuf,
    pub table: Table,
    pub vcpu: Option<u32>,
    /// What the manifest says it held, when it lists it.
    pub rows: Option<u64>,
    pub seq: Option<(u64, u64)>,
    pub why: String,
}

impl fmt::Display for SkippedPart {
    /// `PATH (blocks of vCPU 0, 1000 rows, seq 0..999): WHY`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.path.display(), self.table.name())?;
        if let Some(v) = self.vcpu {
            write!(f, " of vCPU {v}")?;
        }
        if let Some(rows) = self.rows {
            write!(f, ", {rows} rows")?;
        }
        if let Some((a, b)) = self.seq {
            write!(f, ", seq {a}..{b}")?;
        }
        write!(f, "): {}", self.why)
    }
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("root", &self.root)
            .field("skip_corrupt", &self.on_skip.is_some())
            .finish_non_exhaustive()
    }
}

impl Trace {
    /// Opens the trace at `root`: it must be a directory holding a qtrace manifest.
    pub fn open(root: impl AsRef<Path>) -> Result<Trace> {
        let root = root.as_ref();
        let meta = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
        if !meta.is_dir() {
            return Err(Error::not_a_trace(root, "not a directory"));
        }
        if !root.join(MANIFEST).is_file() {
            return Err(Error::not_a_trace(root, "no manifest.json"));
        }
        let manifest = Manifest::read(root)?;
        Ok(Trace {
            root: root.to_path_buf(),
            manifest,
            on_skip: None,
            verdicts: Mutex::default(),
            skipped: Mutex::default(),
        })
    }

    /// Leaves out parts that are missing or damaged instead of failing;
    /// `on_skip` is told of each, once.
    pub fn skip_corrupt(mut self, on_skip: impl Fn(&SkippedPart) + Send + Sync + 'static) -> Self {
        self.on_skip = Some(Arc::new(on_skip));
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The sealed parts of a table that can be read: those the manifest
    /// lists, once their size and checksum match it, and those sealed after
    /// its last rewrite, once their footer reads. A part that fails is an
    /// error, or is left out when skipping is on.
    pub fn parts(&self, table: Table) -> Result<Vec<PartPath>> {
        let (slots, bad) = verify::catalogue(&self.root, &self.manifest, table)?;
        let manifest = self.root.join(MANIFEST);
        for b in bad {
            let why = format!("part entry `{}`: {}", b.path, b.why);
            let error = Error::corrupt(&manifest, why.clone());
            let skipped = SkippedPart {
                path: manifest.clone(),
                table,
                vcpu: None,
                rows: None,
                seq: None,
                why,
            };
            self.skip(skipped, error)?;
        }
        let checked: Vec<(Slot, Option<Fault>)> = slots
            .into_par_iter()
            .map(|slot| {
                let fault = self.verdict(&slot);
                (slot, fault)
            })
            .collect();
        let mut parts = Vec::new();
        for (slot, fault) in checked {
            match fault {
                None => parts.push(PartPath {
                    vcpu: slot.vcpu,
                    index: slot.index,
                    path: slot.path,
                }),
                Some(fault) => {
                    let entry = slot.entry.as_ref();
                    let skipped = SkippedPart {
                        path: slot.path.clone(),
                        table,
                        vcpu: slot.vcpu,
                        rows: entry.map(|e| e.rows),
                        seq: entry.and_then(|e| e.first_seq.zip(e.last_seq)),
                        why: fault.why(),
                    };
                    self.skip(skipped, fault.into_error(&slot.path))?;
                }
            }
        }
        Ok(parts)
    }

    /// Reports a part left out, once; without skipping, fails with `error`.
    fn skip(&self, skipped: SkippedPart, error: Error) -> Result<()> {
        let Some(on_skip) = &self.on_skip else {
            return Err(error);
        };
        let key = format!("{}\0{}", skipped.path.display(), skipped.why);
        let first = self
            .skipped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        if first {
            on_skip(&skipped);
        }
        Ok(())
    }

    /// Checks a part once: size and checksum of a listed part, the footer
    /// of an unlisted one.
    fn verdict(&self, slot: &Slot) -> Option<Fault> {
        let cached = self
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&slot.path)
            .cloned();
        if let Some(v) = cached {
            return v;
        }
        let fault = match (&slot.entry, slot.on_disk) {
            (Some(_), false) => Some(Fault::Missing),
            (Some(entry), true) => verify::check_file(&slot.path, entry).err(),
            (None, _) => verify::check_footer(&slot.path).err(),
        };
        self.verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(slot.path.clone(), fault.clone());
        fault
    }

    /// Every row of `block_dict`, ordered by block id.
    pub fn block_dict(&self) -> Result<Vec<BlockInfo>> {
        let parts = self.parts(Table::BlockDict)?;
        let mut rows = scan(
            &parts,
            &[],
            Vec::new,
            |mut acc, batch, _| {
                acc.extend(schema::block_dict_rows(batch)?);
                Ok(acc)
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        )?;
        rows.sort_by_key(|b| b.id);
        Ok(rows)
    }

    /// Every row of `modules`, ordered by module id. Empty when the trace
    /// has no `modules` table (recorded with `modules=off`, or unfinished).
    pub fn modules(&self) -> Result<Vec<Module>> {
        let parts = self.parts(Table::Modules)?;
        let mut rows = scan(
            &parts,
            &[],
            Vec::new,
            |mut acc, batch, _| {
                acc.extend(schema::modules_rows(batch)?);
                Ok(acc)
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        )?;
        rows.sort_by_key(|m| m.id);
        Ok(rows)
    }

    /// Every row of `block_counts`. Empty when the recording did not finish.
    pub fn block_counts(&self) -> Result<Vec<BlockCount>> {
        let parts = self.parts(Table::BlockCounts)?;
        scan(
            &parts,
            &[],
            Vec::new,
            |mut acc, batch, _| {
                acc.extend(schema::block_counts_rows(batch)?);
                Ok(acc)
            },
            |mut a, b| {
                a.extend(b);
                a
            },
        )
    }
}

/// Rows (from the footer, nothing decoded) and bytes on disk of a part.
pub fn part_size(part: &PartPath) -> Result<(u64, u64)> {
    let path = &part.path;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let bytes = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let meta = guarded(path, || {
        ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(|e| Error::parquet(path, e))
    })?;
    let rows = meta.file_metadata().num_rows();
    let rows = u64::try_from(rows)
        .map_err(|_| Error::corrupt(path, format!("footer says {rows} rows")))?;
    Ok((rows, bytes))
}

/// A part opened for reading chosen row groups. Its footer is decoded once;
/// its row groups' metadata (rows, column statistics) can be looked at
/// before anything is decoded, and each row group read on its own, from
/// any thread.
pub struct PartReader<'a> {
    part: &'a PartPath,
    meta: ArrowReaderMetadata,
    projection: ProjectionMask,
}

impl<'a> PartReader<'a> {
    /// Opens `part` to decode `columns` (empty: all).
    pub fn open(part: &'a PartPath, columns: &[&str]) -> Result<PartReader<'a>> {
        guarded(&part.path, || {
            let file = File::open(&part.path).map_err(|e| Error::io(&part.path, e))?;
            let meta = ArrowReaderMetadata::load(&file, Default::default())
                .map_err(|e| Error::parquet(&part.path, e))?;
            let projection = if columns.is_empty() {
                ProjectionMask::all()
            } else {
                let schema = meta.schema();
                let indices = columns
                    .iter()
                    .map(|c| {
                        schema
                            .index_of(c)
                            .map_err(|_| Error::corrupt(&part.path, format!("has no column `{c}`")))
                    })
                    .collect::<Result<Vec<_>>>()?;
                ProjectionMask::roots(meta.parquet_schema(), indices)
            };
            Ok(PartReader {
                part,
                meta,
                projection,
            })
        })
    }

    pub fn part(&self) -> &'a PartPath {
        self.part
    }

    /// The footer's metadata of each row group, in file order.
    pub fn row_groups(&self) -> &[RowGroupMetaData] {
        self.meta.metadata().row_groups()
    }

    /// Folds the batches of row group `rg`. `rows`, if given, are the only
    /// rows to decode: indices within the row group, ascending. `fold` may
    /// fail with an error of its own, which ends the read.
    pub fn fold<T, E: From<Error>>(
        &self,
        rg: usize,
        rows: Option<&[usize]>,
        init: T,
        mut fold: impl FnMut(T, &RecordBatch) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let path = &self.part.path;
        // The outer result is the reader's, the inner one `fold`'s.
        let read = guarded(path, || {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            let mut builder =
                ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
                    .with_row_groups(vec![rg])
                    .with_projection(self.projection.clone())
                    .with_batch_size(BATCH_ROWS);
            if let Some(rows) = rows {
                builder = builder.with_row_selection(selection(rows));
            }
            let reader = builder.build().map_err(|e| Error::parquet(path, e))?;
            let mut acc = init;
            for batch in reader {
                let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
                acc = match fold(acc, &batch) {
                    Ok(acc) => acc,
                    Err(e) => return Ok(Err(e)),
                };
            }
            Ok(Ok(acc))
        });
        read.unwrap_or_else(|e| Err(e.into()))
    }
}

/// Ascending row indices as runs of rows to select and to skip.
fn selection(rows: &[usize]) -> RowSelection {
    let mut runs = Vec::new();
    let mut next = 0;
    for &r in rows {
        if r < next {
            continue;
        }
        if r > next {
            runs.push(RowSelector::skip(r - next));
        }
        runs.push(RowSelector::select(1));
        next = r + 1;
    }
    // Adjacent single-row selections merge into one run.
    RowSelection::from(runs)
}

/// Folds every row of `parts` in parallel, one task per row group.
///
/// `columns` selects the columns to decode (empty: all). `fold` sees each
/// decoded batch with the part it came from; `merge` combines the partial
/// results of the tasks.
pub fn scan<T, I, F, M>(
    parts: &[PartPath],
    columns: &[&str],
    init: I,
    fold: F,
    merge: M,
) -> Result<T>
where
    T: Send,
    I: Fn() -> T + Sync + Send,
    F: Fn(T, &RecordBatch, &PartPath) -> Result<T> + Sync + Send,
    M: Fn(T, T) -> T + Sync + Send,
{
    scan_where(parts, columns, |_, _| true, init, fold, merge)
}

/// [`scan`], reading only the row groups that `keep` accepts: it sees each
/// row group's footer metadata (its rows, and the min/max statistics of its
/// column chunks) before anything of it is decoded.
pub fn scan_where<T, K, I, F, M>(
    parts: &[PartPath],
    columns: &[&str],
    keep: K,
    init: I,
    fold: F,
    merge: M,
) -> Result<T>
where
    T: Send,
    K: Fn(&PartPath, &RowGroupMetaData) -> bool + Sync + Send,
    I: Fn() -> T + Sync + Send,
    F: Fn(T, &RecordBatch, &PartPath) -> Result<T> + Sync + Send,
    M: Fn(T, T) -> T + Sync + Send,
{
    let opened: Vec<PartReader> = parts
        .par_iter()
        .map(|part| PartReader::open(part, columns))
        .collect::<Result<_>>()?;
    let tasks: Vec<(&PartReader, usize)> = opened
        .iter()
        .flat_map(|o| {
            let kept = o.row_groups().iter().enumerate();
            kept.filter(|(_, rg)| keep(o.part, rg))
                .map(move |(i, _)| (o, i))
        })
        .collect();
    tasks
        .par_iter()
        .map(|&(o, rg)| {
            o.fold(rg, None, init(), |acc, batch| {
                // A column of the wrong type is the file's fault: name it.
                fold(acc, batch, o.part).map_err(|e| match e {
                    Error::Schema { .. } => Error::corrupt(&o.part.path, e.to_string()),
                    e => e,
                })
            })
        })
        .try_reduce(&init, |a, b| Ok(merge(a, b)))
}

/// The min and max of an unsigned integer column in a row group, from its
/// statistics; `None` when the writer stored none (or no such column).
/// Unsigned values are stored as the same bits in Parquet's signed types,
/// with min and max in unsigned order, which the casts restore.
pub fn u64_range(rg: &RowGroupMetaData, column: &str) -> Option<(u64, u64)> {
    let chunk = rg
        .columns()
        .iter()
        .find(|c| c.column_descr().name() == column)?;
    match chunk.statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()? as u64, *s.max_opt()? as u64)),
        Statistics::Int32(s) => Some((
            u64::from(*s.min_opt()? as u32),
            u64::from(*s.max_opt()? as u32),
        )),
        _ => None,
    }
}

/// The row groups of some parts, with their footers read once, so that a
/// selective query can choose the groups to decode by their statistics
/// (min/max of `seq`, `block_seq`, `tid`...) and decode only those.
pub struct RowGroups<'a> {
    parts: Vec<PartReader<'a>>,
    all: Vec<RowGroup>,
}

/// One row group of a [`RowGroups`]: which part, and its index in the part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RowGroup {
    part: usize,
    pub index: usize,
}

impl<'a> RowGroups<'a> {
    /// Reads the footers of `parts` in parallel; `columns` are those that
    /// the folds will decode (empty: all).
    pub fn open(parts: &'a [PartPath], columns: &[&str]) -> Result<RowGroups<'a>> {
        let parts: Vec<PartReader> = parts
            .par_iter()
            .map(|part| PartReader::open(part, columns))
            .collect::<Result<_>>()?;
        let all = parts
            .iter()
            .enumerate()
            .flat_map(|(i, o)| {
                (0..o.row_groups().len()).map(move |index| RowGroup { part: i, index })
            })
            .collect();
        Ok(RowGroups { parts, all })
    }

    /// Every row group, part by part (in the order of the parts given),
    /// each part's in file order.
    pub fn all(&self) -> &[RowGroup] {
        &self.all
    }

    /// The part a row group belongs to.
    pub fn part(&self, g: RowGroup) -> &PartPath {
        self.parts[g.part].part()
    }

    /// Rows of a row group, from the footer.
    pub fn rows(&self, g: RowGroup) -> u64 {
        let meta = &self.parts[g.part].row_groups()[g.index];
        u64::try_from(meta.num_rows()).unwrap_or(0)
    }

    /// Min and max of an unsigned integer column (`UInt8` to `UInt64`) in
    /// a row group, from its statistics; none when the file has no
    /// statistics for it (then the group must be read to know).
    pub fn unsigned_range(&self, g: RowGroup, column: &str) -> Option<(u64, u64)> {
        u64_range(&self.parts[g.part].row_groups()[g.index], column)
    }

    /// `groups` cut into runs, in order, of at least one group and at most
    /// `rows` rows where groups allow: how a reader that must keep order
    /// decodes a run in parallel while holding a bounded number of rows.
    pub fn runs<'g>(&self, groups: &'g [RowGroup], rows: u64) -> Vec<&'g [RowGroup]> {
        let mut runs = Vec::new();
        let (mut start, mut held) = (0, 0);
        for (i, &g) in groups.iter().enumerate() {
            let n = self.rows(g);
            if i > start && held + n > rows {
                runs.push(&groups[start..i]);
                (start, held) = (i, 0);
            }
            held += n;
        }
        if start < groups.len() {
            runs.push(&groups[start..]);
        }
        runs
    }

    /// Folds the rows of each of `groups` in parallel, one task per group,
    /// and returns each group's result, in the order given.
    pub fn fold_each<T, I, F>(&self, groups: &[RowGroup], init: I, fold: F) -> Result<Vec<T>>
    where
        T: Send,
        I: Fn() -> T + Sync + Send,
        F: Fn(T, &RecordBatch, &PartPath) -> Result<T> + Sync + Send,
    {
        groups
            .par_iter()
            .map(|&g| self.fold_group(g, &init, &fold))
            .collect()
    }

    fn fold_group<T, I, F>(&self, g: RowGroup, init: &I, fold: &F) -> Result<T>
    where
        I: Fn() -> T,
        F: Fn(T, &RecordBatch, &PartPath) -> Result<T>,
    {
        let o = &self.parts[g.part];
        o.fold(g.index, None, init(), |acc, batch| {
            // A column of the wrong type is the file's fault: name it.
            fold(acc, batch, o.part()).map_err(|e| match e {
                Error::Schema { .. } => Error::corrupt(&o.part().path, e.to_string()),
                e => e,
            })
        })
    }
}

thread_local! {
    static IN_GUARD: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the panic hook quiet for panics that [`scan`] turns into errors, so
/// that a corrupt file gives one line, not a backtrace. Other panics are
/// reported as before.
pub fn quiet_contained_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_GUARD.get() {
            previous(info);
        }
    }));
}

/// Runs `f`, turning a panic inside the Parquet decoder (arrow-rs panics on
/// some corrupt files) into an error that names the file.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let was = IN_GUARD.replace(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.set(was);
    result.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("decoder panicked");
        Err(Error::corrupt(path, format!("unreadable Parquet ({msg})")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::list_parts;
    use crate::writer::{PartLimits, PartWriter};
    use arrow_array::UInt64Array;

    /// Row groups are listed in file order with their statistics, and
    /// `fold_each` decodes only the groups asked for, in the order asked.
    #[test]
    fn row_groups_by_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = PartWriter::new(dir.path(), Table::Blocks, Some(0), 1, PartLimits::default());
        // One row group per call: (first seq, tid, rows).
        for (first, tid, rows) in [(0, 5, 100), (100, 6, 50), (150, 5, 10)] {
            w.write_blocks(first, tid, &vec![7; rows]).unwrap();
        }
        w.seal().unwrap();
        let parts = list_parts(dir.path(), Table::Blocks).unwrap();
        let groups = RowGroups::open(&parts, &[schema::col::SEQ]).unwrap();
        let all = groups.all().to_vec();
        assert_eq!(all.len(), 3);
        let seq: Vec<_> = all
            .iter()
            .map(|&g| groups.unsigned_range(g, schema::col::SEQ))
            .collect();
        assert_eq!(seq, [Some((0, 99)), Some((100, 149)), Some((150, 159))]);
        let tid: Vec<_> = all
            .iter()
            .map(|&g| groups.unsigned_range(g, schema::col::TID))
            .collect();
        assert_eq!(tid, [Some((5, 5)), Some((6, 6)), Some((5, 5))]);
        assert_eq!(groups.unsigned_range(all[0], "no_such_column"), None);
        assert_eq!(groups.rows(all[1]), 50);
        assert_eq!(groups.part(all[1]).vcpu, Some(0));
        let runs =
            |rows| -> Vec<usize> { groups.runs(&all, rows).iter().map(|r| r.len()).collect() };
        assert_eq!(runs(1000), [3]);
        assert_eq!(runs(150), [2, 1]);
        assert_eq!(runs(10), [1, 1, 1]);
        assert!(groups.runs(&[], 10).is_empty());

        let firsts = groups
            .fold_each(
                &[all[2], all[0]],
                || None,
                |acc, batch, _| {
                    let seq: &UInt64Array = schema::column(batch, schema::col::SEQ)?;
                    Ok(acc.or(Some((seq.value(0), batch.num_rows()))))
                },
            )
            .unwrap();
        assert_eq!(firsts, [Some((150, 10)), Some((0, 100))]);
    }
}
