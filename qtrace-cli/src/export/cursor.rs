//! Reading a table's rows in their stored order, one batch at a time,
//! keeping only rows whose key (`seq` or `block_seq`) lies in a range.
//!
//! `qtrace_format::scan` folds row groups in parallel and in no order;
//! exports need the order (a vCPU's rows by `seq`) and must not hold a
//! table in memory, so this walks parts and row groups in order, decoding
//! one batch at a time. Row groups whose min/max statistics of the key lie
//! outside the range are skipped unread.

use std::collections::VecDeque;
use std::fs::File;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{BooleanArray, RecordBatch};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;
use qtrace_format::PartPath;

/// Rows decoded at a time.
const BATCH_ROWS: usize = 64 * 1024;

/// Keep rows whose `column` lies in `range`.
#[derive(Clone, Debug)]
pub struct KeyRange {
    pub column: &'static str,
    pub range: Range<u64>,
}

/// The batches of some parts, in order (parts as given, row groups in
/// order), projected and filtered.
pub struct Ordered {
    parts: VecDeque<PartPath>,
    key: Option<KeyRange>,
    /// Columns to decode, by name; `None`: all.
    columns: Option<Vec<String>>,
    current: Option<(PartPath, ParquetRecordBatchReader)>,
}

impl Ordered {
    /// `parts` must be in the order to read them (for a per-vCPU table:
    /// one vCPU's parts by index). The key column is decoded whether or
    /// not `columns` names it.
    pub fn new(parts: Vec<PartPath>, key: Option<KeyRange>, columns: Option<Vec<String>>) -> Self {
        let columns = columns.map(|mut c| {
            if let Some(k) = &key {
                if !c.iter().any(|n| n == k.column) {
                    c.push(k.column.to_string());
                }
            }
            c
        });
        Ordered {
            parts: parts.into(),
            key,
            columns,
            current: None,
        }
    }

    /// The next batch that has rows in the range, or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if self.current.is_none() {
                let Some(part) = self.parts.pop_front() else {
                    return Ok(None);
                };
                if let Some(reader) = self.open(&part)? {
                    self.current = Some((part, reader));
                }
                continue;
            }
            let (part, reader) = self.current.as_mut().expect("checked above");
            let path = part.path.clone();
            let next = catch_unwind(AssertUnwindSafe(|| reader.next()))
                .map_err(|_| anyhow!("{}: corrupt: unreadable Parquet", path.display()))?;
            match next {
                None => self.current = None,
                Some(batch) => {
                    let batch = batch.with_context(|| format!("{}: corrupt", path.display()))?;
                    let batch = self.keep_in_range(batch, &path)?;
                    if batch.num_rows() > 0 {
                        return Ok(Some(batch));
                    }
                }
            }
        }
    }

    /// A reader over the part's row groups that may hold rows in range, or
    /// `None` when none may.
    fn open(&self, part: &PartPath) -> Result<Option<ParquetRecordBatchReader>> {
        let path = &part.path;
        let opened = catch_unwind(AssertUnwindSafe(|| -> Result<_> {
            let file = File::open(path).with_context(|| path.display().to_string())?;
            let meta = ArrowReaderMetadata::load(&file, Default::default())
                .with_context(|| format!("{}: corrupt", path.display()))?;
            let groups: Vec<usize> = match &self.key {
                None => (0..meta.metadata().num_row_groups()).collect(),
                Some(key) => {
                    let leaf = leaf_index(&meta, key.column).ok_or_else(|| {
                        anyhow!("{}: has no column `{}`", path.display(), key.column)
                    })?;
                    meta.metadata()
                        .row_groups()
                        .iter()
                        .enumerate()
                        .filter(|(_, rg)| may_hold(rg, leaf, &key.range))
                        .map(|(i, _)| i)
                        .collect()
                }
            };
            if groups.is_empty() {
                return Ok(None);
            }
            let projection = match &self.columns {
                None => ProjectionMask::all(),
                Some(names) => {
                    let schema = meta.schema();
                    let roots = names
                        .iter()
                        .map(|n| {
                            schema
                                .index_of(n)
                                .map_err(|_| anyhow!("{}: has no column `{n}`", path.display()))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    ProjectionMask::roots(meta.parquet_schema(), roots)
                }
            };
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
                .with_row_groups(groups)
                .with_projection(projection)
                .with_batch_size(BATCH_ROWS)
                .build()
                .with_context(|| format!("{}: corrupt", path.display()))?;
            Ok(Some(reader))
        }));
        opened.map_err(|_| anyhow!("{}: corrupt: unreadable Parquet", path.display()))?
    }

    /// The rows of `batch` whose key lies in the range.
    fn keep_in_range(&self, batch: RecordBatch, path: &std::path::Path) -> Result<RecordBatch> {
        let Some(key) = &self.key else {
            return Ok(batch);
        };
        let column = batch
            .column_by_name(key.column)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| anyhow!("{}: column `{}` is not UInt64", path.display(), key.column))?;
        let values = column.values();
        if values.iter().all(|v| key.range.contains(v)) {
            return Ok(batch);
        }
        let keep = BooleanArray::from_iter(values.iter().map(|v| Some(key.range.contains(v))));
        Ok(arrow_select::filter::filter_record_batch(&batch, &keep)?)
    }
}

impl Iterator for Ordered {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

/// Index of the top-level column `name` among the file's leaf columns.
fn leaf_index(meta: &ArrowReaderMetadata, name: &str) -> Option<usize> {
    let schema = meta.parquet_schema();
    (0..schema.num_columns()).find(|&i| schema.column(i).path().parts() == [name])
}

/// Whether a row group's statistics of column `leaf` leave room for values
/// in `range` (no statistics: it may).
fn may_hold(rg: &RowGroupMetaData, leaf: usize, range: &Range<u64>) -> bool {
    let (min, max) = match rg.column(leaf).statistics() {
        Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
            (Some(&min), Some(&max)) => (min as u64, max as u64),
            _ => return true,
        },
        _ => return true,
    };
    min < range.end && range.start <= max
}

/// Row by row over [`Ordered`]: the row under the cursor, then the next.
/// Merges a table into a walk of the blocks (`block_seq` against `seq`).
pub struct RowCursor {
    batches: Ordered,
    batch: Option<RecordBatch>,
    row: usize,
}

impl RowCursor {
    pub fn new(batches: Ordered) -> RowCursor {
        RowCursor {
            batches,
            batch: None,
            row: 0,
        }
    }

    /// The batch and row under the cursor; `None` past the last row.
    pub fn current(&mut self) -> Result<Option<(&RecordBatch, usize)>> {
        while self.batch.as_ref().is_none_or(|b| self.row >= b.num_rows()) {
            match self.batches.next_batch()? {
                Some(b) => {
                    self.batch = Some(b);
                    self.row = 0;
                }
                None => {
                    self.batch = None;
                    return Ok(None);
                }
            }
        }
        Ok(self.batch.as_ref().map(|b| (b, self.row)))
    }

    /// Moves past the current row.
    pub fn advance(&mut self) {
        self.row += 1;
    }
}
