//! Opens a trace directory and scans its tables in parallel.
//!
//! Files are opened (footer and schema) in parallel, then every row group of
//! every part becomes one task for rayon; each task folds its batches into a
//! partial result and the partials are merged. A reader never panics on bad
//! input: a corrupt file is an error that names it.

use std::cell::Cell;
use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaDataReader;
use rayon::prelude::*;

use crate::layout::{list_parts, PartPath, MANIFEST};
use crate::manifest::Manifest;
use crate::schema::{self, BlockCount, BlockInfo, Module, Table};
use crate::{Error, Result};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;

/// A trace directory, opened and checked.
#[derive(Debug)]
pub struct Trace {
    root: PathBuf,
    manifest: Manifest,
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
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The sealed parts of a table.
    pub fn parts(&self, table: Table) -> Result<Vec<PartPath>> {
        list_parts(&self.root, table)
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

/// One part file with its footer decoded.
struct OpenedPart<'a> {
    part: &'a PartPath,
    meta: ArrowReaderMetadata,
    projection: ProjectionMask,
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
    let opened: Vec<OpenedPart> = parts
        .par_iter()
        .map(|part| open_part(part, columns))
        .collect::<Result<_>>()?;
    let tasks: Vec<(&OpenedPart, usize)> = opened
        .iter()
        .flat_map(|o| (0..o.meta.metadata().num_row_groups()).map(move |rg| (o, rg)))
        .collect();
    tasks
        .par_iter()
        .map(|&(o, rg)| {
            guarded(&o.part.path, || {
                let file = File::open(&o.part.path).map_err(|e| Error::io(&o.part.path, e))?;
                let reader =
                    ParquetRecordBatchReaderBuilder::new_with_metadata(file, o.meta.clone())
                        .with_row_groups(vec![rg])
                        .with_projection(o.projection.clone())
                        .with_batch_size(BATCH_ROWS)
                        .build()
                        .map_err(|e| Error::parquet(&o.part.path, e))?;
                let mut acc = init();
                for batch in reader {
                    let batch = batch.map_err(|e| Error::corrupt(&o.part.path, e.to_string()))?;
                    acc = fold(acc, &batch, o.part)?;
                }
                Ok(acc)
            })
        })
        .try_reduce(&init, |a, b| Ok(merge(a, b)))
}

fn open_part<'a>(part: &'a PartPath, columns: &[&str]) -> Result<OpenedPart<'a>> {
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
        Ok(OpenedPart {
            part,
            meta,
            projection,
        })
    })
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
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
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
