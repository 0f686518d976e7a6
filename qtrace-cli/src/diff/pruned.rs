//! Reading only the row groups of a per-vCPU table (`mem`, `regs`) whose
//! `block_seq` statistics can hold the rows asked for.
//!
//! The explanation of a divergence needs the few `mem` or `regs` rows of
//! one or two block executions out of possibly billions: the footers say
//! each row group's `block_seq` range (it never decreases within a vCPU's
//! stream), so everything else is left unread.

use std::fs::File;
use std::ops::RangeInclusive;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Context, Result};
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;
use qtrace_format::schema::col;
use qtrace_format::PartPath;

/// One row group of a part, with the `block_seq` range its statistics give.
pub(super) struct Group {
    part: PartPath,
    meta: ArrowReaderMetadata,
    row_group: usize,
    /// `None` when the statistics say nothing: it must be read.
    pub block_seqs: Option<RangeInclusive<u64>>,
}

impl Group {
    /// Whether some of its rows may have a `block_seq` in `range`.
    pub fn may_hold(&self, range: &RangeInclusive<u64>) -> bool {
        self.block_seqs
            .as_ref()
            .is_none_or(|s| s.start() <= range.end() && range.start() <= s.end())
    }

    /// Its rows, `columns` only (all when empty).
    pub fn read(&self, columns: &[&str]) -> Result<Vec<RecordBatch>> {
        let path = &self.part.path;
        guarded(path, || {
            let file = File::open(path).with_context(|| path.display().to_string())?;
            let projection = if columns.is_empty() {
                ProjectionMask::all()
            } else {
                let schema = self.meta.schema();
                let indices = columns
                    .iter()
                    .map(|c| {
                        schema
                            .index_of(c)
                            .map_err(|_| anyhow!("{}: has no column `{c}`", path.display()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                ProjectionMask::roots(self.meta.parquet_schema(), indices)
            };
            let reader =
                ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
                    .with_row_groups(vec![self.row_group])
                    .with_projection(projection)
                    .build()
                    .with_context(|| path.display().to_string())?;
            reader
                .map(|b| b.with_context(|| format!("{}: corrupt", path.display())))
                .collect()
        })
    }
}

/// The row groups of `parts` (one vCPU's, in execution order), footers
/// read, with their `block_seq` ranges.
pub(super) fn groups(mut parts: Vec<PartPath>) -> Result<Vec<Group>> {
    parts.sort_by_key(|p| p.index);
    let mut groups = Vec::new();
    for part in parts {
        let path = part.path.clone();
        let meta = guarded(&path, || {
            let file = File::open(&path).with_context(|| path.display().to_string())?;
            ArrowReaderMetadata::load(&file, Default::default())
                .with_context(|| format!("{}: corrupt", path.display()))
        })?;
        let column = meta
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == col::BLOCK_SEQ);
        for rg in 0..meta.metadata().num_row_groups() {
            let stats = column.and_then(|c| meta.metadata().row_group(rg).column(c).statistics());
            let block_seqs = match stats {
                Some(Statistics::Int64(s)) => s
                    .min_opt()
                    .zip(s.max_opt())
                    .map(|(&min, &max)| min as u64..=max as u64),
                _ => None,
            };
            groups.push(Group {
                part: part.clone(),
                meta: meta.clone(),
                row_group: rg,
                block_seqs,
            });
        }
    }
    Ok(groups)
}

/// Runs `f`, turning a panic of the Parquet decoder on a corrupt file
/// into an error that names the file.
fn guarded<T>(path: &std::path::Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(anyhow!("{}: corrupt: unreadable Parquet", path.display())))
}
