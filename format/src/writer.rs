//! Writes one table partition as a sequence of sealed part files.
//!
//! A part is written under a hidden name and renamed when complete, so a
//! reader never sees half a Parquet file. Parts are sealed when they reach a
//! row limit or an age limit, which bounds what a killed recorder loses.

use std::fs::File;
use std::hash::Hasher as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;

use crate::blocks_writer::BlocksFileWriter;
use crate::layout::{in_progress_name, part_name, partition_dir};
use crate::manifest::PartEntry;
use crate::mem_writer::{MemFileWriter, MemRows};
use crate::schema::Table;
use crate::{Error, Result};

/// When a part is sealed and a new one begun.
#[derive(Clone, Copy, Debug)]
pub struct PartLimits {
    pub max_rows: u64,
    pub max_age: Duration,
}

impl Default for PartLimits {
    fn default() -> Self {
        PartLimits {
            max_rows: 64 << 20,
            max_age: Duration::from_secs(1),
        }
    }
}

/// `blocks` and `mem` have their own encoders (see `blocks_writer`,
/// `mem_writer`); the other tables go through the generic Arrow writer.
enum Encoder {
    Arrow(ArrowWriter<BufWriter<Checksummed>>),
    Blocks(BlocksFileWriter<BufWriter<Checksummed>>),
    Mem(MemFileWriter<BufWriter<Checksummed>>),
}

struct OpenPart {
    encoder: Encoder,
    tmp: PathBuf,
    rows: u64,
    /// `seq` of the first and last rows, where the table has it.
    seqs: Option<(u64, u64)>,
    opened: Instant,
}

impl OpenPart {
    /// Notes rows `first..first + n` appended.
    fn appended(&mut self, first: Option<u64>, n: u64) {
        self.rows += n;
        if let (Some(first), true) = (first, n > 0) {
            let last = first + n - 1;
            self.seqs = Some(self.seqs.map_or((first, last), |(f, _)| (f, last)));
        }
    }
}

/// The file of a part, hashed (XXH3-64) as it is written: arrow-rs writes
/// no page checksums, so the manifest carries one per file.
pub struct Checksummed {
    file: File,
    hash: twox_hash::XxHash3_64,
    bytes: u64,
}

impl Checksummed {
    fn new(file: File) -> Self {
        Checksummed {
            file,
            hash: twox_hash::XxHash3_64::new(),
            bytes: 0,
        }
    }
}

impl Write for Checksummed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.write(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The checksum the manifest gives a file: XXH3-64 in 16 hex digits.
pub fn file_checksum(bytes: &[u8]) -> String {
    format!("{:016x}", twox_hash::XxHash3_64::oneshot(bytes))
}

/// Writes the parts of one partition (`blocks/vcpu=3`, or `block_dict`).
pub struct PartWriter {
    table: Table,
    vcpu: Option<u32>,
    dir: PathBuf,
    /// `dir` relative to the trace's root.
    rel_dir: String,
    zstd_level: i32,
    limits: PartLimits,
    next_index: u32,
    open: Option<OpenPart>,
    sealed_parts: u32,
    sealed_rows: u64,
    sealed: Vec<PartEntry>,
    last_sealed: Option<PartEntry>,
}

impl PartWriter {
    pub fn new(
        root: &Path,
        table: Table,
        vcpu: Option<u32>,
        zstd_level: i32,
        limits: PartLimits,
    ) -> Self {
        let dir = partition_dir(root, table, vcpu);
        let rel_dir = dir
            .strip_prefix(root)
            .unwrap_or(&dir)
            .to_string_lossy()
            .replace('\\', "/");
        PartWriter {
            table,
            vcpu,
            dir,
            rel_dir,
            zstd_level,
            limits,
            next_index: 0,
            open: None,
            sealed_parts: 0,
            sealed_rows: 0,
            sealed: Vec::new(),
            last_sealed: None,
        }
    }

    /// Appends a batch, sealing the current part first if it is full or old.
    /// For every table but `blocks` and `mem`. A part takes the schema of its
    /// first batch (that of `regs` depends on the registers recorded).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let open = self.part_with_room(Some(batch.schema()))?;
        match &mut open.encoder {
            Encoder::Arrow(w) => w.write(batch).map_err(|e| Error::parquet(&open.tmp, e))?,
            Encoder::Blocks(_) | Encoder::Mem(_) => return Err(wrong_encoder()),
        }
        open.appended(first_seq(batch), batch.num_rows() as u64);
        Ok(())
    }

    /// Appends the rows `first_seq..` of `blocks` with these ids, executed by
    /// guest thread `tid`, as one row group.
    pub fn write_blocks(&mut self, first_seq: u64, tid: u32, ids: &[u32]) -> Result<()> {
        let open = self.part_with_room(None)?;
        match &mut open.encoder {
            Encoder::Blocks(w) => w
                .write_row_group(first_seq, tid, ids)
                .map_err(|e| Error::parquet(&open.tmp, e))?,
            Encoder::Arrow(_) | Encoder::Mem(_) => return Err(wrong_encoder()),
        }
        open.appended(Some(first_seq), ids.len() as u64);
        Ok(())
    }

    /// Appends rows of `mem` (a row group is closed when the rows do not
    /// follow the previous ones, or it is full).
    pub fn write_mem(&mut self, rows: &MemRows) -> Result<()> {
        let open = self.part_with_room(None)?;
        match &mut open.encoder {
            Encoder::Mem(w) => w
                .write_rows(rows)
                .map_err(|e| Error::parquet(&open.tmp, e))?,
            Encoder::Arrow(_) | Encoder::Blocks(_) => return Err(wrong_encoder()),
        }
        open.appended(Some(rows.first_seq), rows.len() as u64);
        Ok(())
    }

    fn part_with_room(&mut self, schema: Option<SchemaRef>) -> Result<&mut OpenPart> {
        if let Some(open) = &self.open {
            if open.rows >= self.limits.max_rows || open.opened.elapsed() >= self.limits.max_age {
                self.seal()?;
            }
        }
        if self.open.is_none() {
            self.open = Some(self.begin_part(schema)?);
        }
        Ok(self.open.as_mut().expect("a part is open"))
    }

    /// Seals the open part if it is older than the age limit.
    pub fn seal_if_old(&mut self) -> Result<()> {
        match &self.open {
            Some(open) if open.opened.elapsed() >= self.limits.max_age => self.seal(),
            _ => Ok(()),
        }
    }

    /// Completes the open part, if any, and gives it its visible name. What
    /// the manifest is to say of it waits in [`PartWriter::take_sealed`].
    pub fn seal(&mut self) -> Result<()> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let file = match open.encoder {
            Encoder::Arrow(w) => w.into_inner(),
            Encoder::Blocks(w) => w.finish(),
            Encoder::Mem(w) => w.finish(),
        }
        .map_err(|e| Error::parquet(&open.tmp, e))?;
        let file = file
            .into_inner()
            .map_err(|e| Error::io(&open.tmp, e.into_error()))?;
        file.file.sync_data().map_err(|e| Error::io(&open.tmp, e))?;
        let index = self.next_index - 1;
        let entry = PartEntry {
            path: format!("{}/{}", self.rel_dir, part_name(index)),
            table: self.table.name().to_string(),
            vcpu: self.vcpu,
            index,
            rows: open.rows,
            first_seq: open.seqs.map(|s| s.0),
            last_seq: open.seqs.map(|s| s.1),
            bytes: file.bytes,
            xxh3: format!("{:016x}", file.hash.finish()),
        };
        drop(file);
        let path = self.dir.join(part_name(index));
        std::fs::rename(&open.tmp, &path).map_err(|e| Error::io(&path, e))?;
        self.sealed_parts += 1;
        self.sealed_rows += open.rows;
        self.last_sealed = Some(entry.clone());
        self.sealed.push(entry);
        Ok(())
    }

    /// Removes the part sealed last, if no part was begun after it; its
    /// path relative to the root, for the manifest.
    pub fn unseal_last(&mut self) -> Option<String> {
        if self.open.is_some() {
            return None;
        }
        let last = self.last_sealed.take()?;
        std::fs::remove_file(self.dir.join(part_name(last.index))).ok()?;
        self.sealed.retain(|p| p.path != last.path);
        self.next_index = last.index;
        self.sealed_parts -= 1;
        self.sealed_rows -= last.rows;
        Some(last.path)
    }

    /// The parts sealed since the last call, for the manifest.
    pub fn take_sealed(&mut self) -> Vec<PartEntry> {
        std::mem::take(&mut self.sealed)
    }

    /// Gives up the open part (after a write error): its hidden file is
    /// removed, its rows are not counted as sealed.
    pub fn abandon(&mut self) -> u64 {
        let Some(open) = self.open.take() else {
            return 0;
        };
        drop(open.encoder);
        let _ = std::fs::remove_file(&open.tmp);
        open.rows
    }

    /// Rows in the open part, not yet sealed.
    pub fn open_rows(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.rows)
    }

    /// Parts sealed so far.
    pub fn sealed_parts(&self) -> u32 {
        self.sealed_parts
    }

    /// Rows in sealed parts.
    pub fn sealed_rows(&self) -> u64 {
        self.sealed_rows
    }

    fn begin_part(&mut self, schema: Option<SchemaRef>) -> Result<OpenPart> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let index = self.next_index;
        self.next_index += 1;
        let tmp = self.dir.join(in_progress_name(index));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let sink = BufWriter::with_capacity(1 << 20, Checksummed::new(file));
        let encoder = match self.table {
            Table::Blocks => BlocksFileWriter::new(sink, self.zstd_level).map(Encoder::Blocks),
            Table::Mem => MemFileWriter::new(sink, self.zstd_level).map(Encoder::Mem),
            table => ArrowWriter::try_new(
                sink,
                schema.unwrap_or_else(|| table.schema()),
                Some(table.writer_properties(self.zstd_level)),
            )
            .map(Encoder::Arrow),
        }
        .map_err(|e| Error::parquet(&tmp, e))?;
        Ok(OpenPart {
            encoder,
            tmp,
            rows: 0,
            seqs: None,
            opened: Instant::now(),
        })
    }
}

/// A batch given to the writing function of another table.
fn wrong_encoder() -> Error {
    Error::schema(
        crate::schema::col::SEQ,
        "rows written with the function of another table",
    )
}

/// `seq` of a batch's first row, if it has a `seq` column.
fn first_seq(batch: &RecordBatch) -> Option<u64> {
    let seq = batch.column_by_name(crate::schema::col::SEQ)?;
    let seq = seq.as_any().downcast_ref::<arrow_array::UInt64Array>()?;
    (!seq.is_empty() && seq.null_count() == 0).then(|| seq.value(0))
}

/// Writes a whole small table as part `index` in one go, replacing the file
/// of that name if there is one (atomically: a reader sees the old or the
/// new file).
pub fn write_table(
    root: &Path,
    table: Table,
    index: u32,
    batch: &RecordBatch,
    zstd_level: i32,
) -> Result<PartEntry> {
    let mut w = PartWriter::new(root, table, None, zstd_level, PartLimits::default());
    w.next_index = index;
    w.write(batch)?;
    w.seal()?;
    Ok(w.take_sealed().pop().expect("a part was sealed"))
}
