//! Checks a trace against its manifest: that every part it lists is on disk
//! as it was sealed (size, XXH3-64), decodes completely and holds the rows
//! and `seq` it lists; that the parts of each vCPU partition cover `seq`
//! without gaps but the dropped ones; that each thread's run of `blocks` is
//! there and carries its `tid`; and, once the run ended, that the totals
//! add up. Sealed parts the manifest does not list yet, and the hidden files
//! of parts that were never sealed, are reported for what they hold or lost.
//!
//! The same catalogue of parts (manifest and disk matched up) and the same
//! file checks serve the reader, which checks each listed part's size and
//! checksum before it decodes it. Nothing here may panic on any input:
//! decoding runs under the reader's panic guard, and every number that comes
//! from the manifest is added with saturation.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::hash::Hasher as _;
use std::io::Read;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch, UInt32Array, UInt64Array};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use serde::Serialize;

use crate::layout::{list_in_progress, list_parts, part_rel_path, MANIFEST};
use crate::manifest::{Manifest, PartEntry, RunEnd};
use crate::reader::{guarded, Trace};
use crate::schema::{col, Table};
use crate::{Error, Result};

/// Rows per decoded batch.
const BATCH_ROWS: usize = 64 * 1024;

/// Runs of `seq` (or of `tid`) kept per part: a real part has a handful (one
/// per thread that ran on the vCPU while it was open); a damaged one could
/// have one per row.
const MAX_RUNS: usize = 4096;

/// Child traces nested deeper than this are not followed (a forked child
/// forks again; no real process tree is this deep).
const MAX_DEPTH: usize = 32;

/// One part of a table partition, as the manifest and the disk know it.
#[derive(Clone, Debug)]
pub struct Slot {
    pub table: Table,
    pub vcpu: Option<u32>,
    pub index: u32,
    /// The file.
    pub path: PathBuf,
    /// Its entry in the manifest; none for a part sealed after the
    /// manifest's last rewrite.
    pub entry: Option<PartEntry>,
    /// Whether the file is there.
    pub on_disk: bool,
}

/// A manifest entry that cannot be what it says: an unknown table, or a
/// path that is not where its table, vCPU and index put the part.
#[derive(Clone, Debug)]
pub struct BadEntry {
    /// The table it names (as written).
    pub table: String,
    pub path: String,
    pub why: String,
}

/// The manifest's entries checked against the layout: those of each table
/// (keyed by their file) and those that make no sense.
fn manifest_entries(m: &Manifest) -> (BTreeMap<String, (Table, PartEntry)>, Vec<BadEntry>) {
    let mut good = BTreeMap::new();
    let mut bad = Vec::new();
    for e in &m.parts {
        let bad_entry = |why: String| BadEntry {
            table: e.table.clone(),
            path: e.path.clone(),
            why,
        };
        let Some(table) = Table::from_name(&e.table) else {
            bad.push(bad_entry(format!("unknown table `{}`", e.table)));
            continue;
        };
        if table.per_vcpu() != e.vcpu.is_some() {
            let why = if table.per_vcpu() {
                "no vcpu for a per-vCPU table"
            } else {
                "a vcpu for a table that has no vCPU partitions"
            };
            bad.push(bad_entry(why.to_string()));
            continue;
        }
        let expected = part_rel_path(table, e.vcpu, e.index);
        if e.path != expected {
            bad.push(bad_entry(format!(
                "part {} of its table and vCPU is `{expected}`",
                e.index
            )));
            continue;
        }
        if good.contains_key(&e.path) {
            bad.push(bad_entry("listed twice".to_string()));
            continue;
        }
        good.insert(e.path.clone(), (table, e.clone()));
    }
    (good, bad)
}

/// The parts of `table`, listed or on disk, ordered by vCPU and index, and
/// the manifest's entries for this table that make no sense.
pub fn catalogue(root: &Path, m: &Manifest, table: Table) -> Result<(Vec<Slot>, Vec<BadEntry>)> {
    let (entries, bad) = manifest_entries(m);
    let mut slots: BTreeMap<(Option<u32>, u32), Slot> = BTreeMap::new();
    for (_, (t, e)) in entries.into_iter().filter(|(_, (t, _))| *t == table) {
        let path = root.join(&e.path);
        slots.insert(
            (e.vcpu, e.index),
            Slot {
                table: t,
                vcpu: e.vcpu,
                index: e.index,
                path,
                entry: Some(e),
                on_disk: false,
            },
        );
    }
    for p in list_parts(root, table)? {
        slots
            .entry((p.vcpu, p.index))
            .or_insert_with(|| Slot {
                table,
                vcpu: p.vcpu,
                index: p.index,
                path: p.path.clone(),
                entry: None,
                on_disk: true,
            })
            .on_disk = true;
    }
    let bad = bad
        .into_iter()
        .filter(|b| b.table == table.name())
        .collect();
    Ok((slots.into_values().collect(), bad))
}

/// Why a part cannot be read as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Listed, not on disk.
    Missing,
    /// On disk, but not what was sealed, or unreadable.
    Corrupt(String),
}

impl Fault {
    pub fn why(&self) -> String {
        match self {
            Fault::Missing => "listed in the manifest but missing".to_string(),
            Fault::Corrupt(why) => why.clone(),
        }
    }

    /// The error a reader gives for the part at `path`.
    pub fn into_error(self, path: &Path) -> Error {
        match self {
            Fault::Missing => Error::Missing {
                path: path.to_path_buf(),
            },
            Fault::Corrupt(why) => Error::corrupt(path, why),
        }
    }
}

/// Checks a listed part's file against its entry: its size, then the
/// XXH3-64 of its bytes. Nothing is decoded.
pub fn check_file(path: &Path, entry: &PartEntry) -> Result<(), Fault> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Fault::Missing),
        Err(e) => return Err(Fault::Corrupt(format!("cannot open: {e}"))),
    };
    let bytes = file
        .metadata()
        .map_err(|e| Fault::Corrupt(format!("cannot stat: {e}")))?
        .len();
    if bytes != entry.bytes {
        return Err(Fault::Corrupt(format!(
            "{bytes} bytes, the manifest says {}",
            entry.bytes
        )));
    }
    let mut hash = twox_hash::XxHash3_64::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hash.write(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fault::Corrupt(format!("cannot read: {e}"))),
        }
    }
    let got = format!("{:016x}", hash.finish());
    if !got.eq_ignore_ascii_case(&entry.xxh3) {
        return Err(Fault::Corrupt(format!(
            "checksum {got} does not match the manifest's {}",
            entry.xxh3
        )));
    }
    Ok(())
}

/// Checks that a part the manifest does not list has a readable footer (the
/// reader has no checksum to go by).
pub fn check_footer(path: &Path) -> Result<(), Fault> {
    guarded(path, || {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        ArrowReaderMetadata::load(&file, Default::default()).map_err(|e| Error::parquet(path, e))
    })
    .map(drop)
    .map_err(|e| Fault::Corrupt(reason(&e, path)))
}

/// The message of an error about `path`, without the path.
fn reason(e: &Error, path: &Path) -> String {
    match e {
        Error::Corrupt { why, .. } => why.clone(),
        Error::Io { error, .. } => error.to_string(),
        other => {
            let text = other.to_string();
            let prefix = format!("{}: ", path.display());
            text.strip_prefix(&prefix).unwrap_or(&text).to_string()
        }
    }
}

/// A run of consecutive rows: `seq` from `first` to `last`, and for
/// [`PartFacts::tids`] the thread that made them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Run {
    pub first: u64,
    pub last: u64,
    pub tid: u32,
}

/// What decoding a whole part found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartFacts {
    pub rows: u64,
    pub bytes: u64,
    /// Runs of `seq` rising by one, in file order (`tid` 0); empty for
    /// tables without `seq`.
    pub seqs: Vec<Run>,
    /// Runs of rows of one thread with `seq` rising by one.
    pub tids: Vec<Run>,
    /// More runs than [`MAX_RUNS`]: `seqs` and `tids` hold the first ones.
    pub capped: bool,
}

impl PartFacts {
    pub fn first_seq(&self) -> Option<u64> {
        self.seqs.first().map(|r| r.first)
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.seqs.last().map(|r| r.last)
    }

    /// Appends the facts of the next row group.
    fn extend(&mut self, next: PartFacts) -> Result<(), String> {
        if let (Some(last), Some(first)) = (self.last_seq(), next.first_seq()) {
            if first <= last {
                return Err(format!("seq goes back from {last} to {first}"));
            }
        }
        self.rows += next.rows;
        self.capped |= next.capped;
        for r in next.seqs {
            push_run(&mut self.seqs, r, &mut self.capped);
        }
        for r in next.tids {
            push_run(&mut self.tids, r, &mut self.capped);
        }
        Ok(())
    }
}

/// Adds a run, joining it to the last one when it follows it.
fn push_run(runs: &mut Vec<Run>, r: Run, capped: &mut bool) {
    if let Some(prev) = runs.last_mut() {
        if prev.tid == r.tid && prev.last.checked_add(1) == Some(r.first) {
            prev.last = r.last;
            return;
        }
    }
    if runs.len() < MAX_RUNS {
        runs.push(r);
    } else {
        *capped = true;
    }
}

/// Decodes every column of every row group of a part of `table` and says
/// what it holds; an error says why it cannot be read.
pub fn decode_part(path: &Path, table: Table) -> Result<PartFacts, Fault> {
    let opened = guarded(path, || {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let bytes = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let meta = ArrowReaderMetadata::load(&file, Default::default())
            .map_err(|e| Error::parquet(path, e))?;
        Ok((bytes, meta))
    });
    let (bytes, meta) = opened.map_err(|e| match e {
        Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => Fault::Missing,
        e => Fault::Corrupt(reason(&e, path)),
    })?;
    check_schema(&meta, table).map_err(Fault::Corrupt)?;
    let footer_rows = meta.metadata().file_metadata().num_rows();
    let groups = meta.metadata().num_row_groups();
    let parts: Vec<PartFacts> = (0..groups)
        .into_par_iter()
        .map(|rg| decode_row_group(path, &meta, rg, table))
        .collect::<Result<_, String>>()
        .map_err(Fault::Corrupt)?;
    let mut facts = PartFacts {
        bytes,
        ..Default::default()
    };
    for p in parts {
        facts.extend(p).map_err(Fault::Corrupt)?;
    }
    if u64::try_from(footer_rows).ok() != Some(facts.rows) {
        return Err(Fault::Corrupt(format!(
            "{} rows decoded, the footer says {footer_rows}",
            facts.rows
        )));
    }
    Ok(facts)
}

/// Every column the table's schema has must be there, with its type.
fn check_schema(meta: &ArrowReaderMetadata, table: Table) -> Result<(), String> {
    let got = meta.schema();
    for want in table.schema().fields() {
        match got.field_with_name(want.name()) {
            Err(_) => return Err(format!("has no column `{}`", want.name())),
            Ok(f) if f.data_type() != want.data_type() => {
                return Err(format!(
                    "column `{}` is {}, not {}",
                    want.name(),
                    f.data_type(),
                    want.data_type()
                ))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

fn decode_row_group(
    path: &Path,
    meta: &ArrowReaderMetadata,
    rg: usize,
    table: Table,
) -> Result<PartFacts, String> {
    guarded(path, || {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
            .with_row_groups(vec![rg])
            .with_projection(ProjectionMask::all())
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| Error::parquet(path, e))?;
        let mut facts = PartFacts::default();
        for batch in reader {
            let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
            let next = batch_facts(&batch, table).map_err(|why| Error::corrupt(path, why))?;
            facts
                .extend(next)
                .map_err(|why| Error::corrupt(path, format!("row group {rg}: {why}")))?;
        }
        Ok(facts)
    })
    .map_err(|e| reason(&e, path))
}

fn batch_facts(batch: &RecordBatch, table: Table) -> Result<PartFacts, String> {
    let mut facts = PartFacts {
        rows: batch.num_rows() as u64,
        ..Default::default()
    };
    if !table.has_seq() {
        return Ok(facts);
    }
    let seq = batch
        .column_by_name(col::SEQ)
        .and_then(|a| a.as_any().downcast_ref::<UInt64Array>())
        .ok_or("no `seq` column of UInt64")?;
    let tid = batch
        .column_by_name(col::TID)
        .and_then(|a| a.as_any().downcast_ref::<UInt32Array>())
        .ok_or("no `tid` column of UInt32")?;
    if seq.null_count() > 0 || tid.null_count() > 0 {
        return Err("null `seq` or `tid`".to_string());
    }
    let (seq, tid) = (seq.values(), tid.values());
    // Almost every batch is one thread's rows with seq rising by one: see
    // that in one pass the compiler can vectorise.
    if let (Some(&first), Some(&last), Some(&t)) = (seq.first(), seq.last(), tid.first()) {
        let dense = seq.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 1);
        if dense && last >= first && tid.iter().all(|&x| x == t) {
            facts.seqs.push(Run {
                first,
                last,
                tid: 0,
            });
            facts.tids.push(Run {
                first,
                last,
                tid: t,
            });
            return Ok(facts);
        }
    }
    let mut capped = false;
    let mut prev: Option<u64> = None;
    for (&s, &t) in seq.iter().zip(tid.iter()) {
        if let Some(p) = prev {
            if s <= p {
                return Err(format!("seq goes back from {p} to {s}"));
            }
        }
        prev = Some(s);
        let row = Run {
            first: s,
            last: s,
            tid: t,
        };
        push_run(&mut facts.seqs, Run { tid: 0, ..row }, &mut capped);
        push_run(&mut facts.tids, row, &mut capped);
    }
    facts.capped = capped;
    Ok(facts)
}

/// What the manifest would say of a sealed part file: its rows and `seq`
/// (decoded), size and checksum. For a part sealed after the manifest's
/// last rewrite, and for a trace whose recorder listed no parts.
pub fn part_entry(
    root: &Path,
    table: Table,
    vcpu: Option<u32>,
    index: u32,
) -> Result<PartEntry, Fault> {
    let rel = part_rel_path(table, vcpu, index);
    let path = root.join(&rel);
    let facts = decode_part(&path, table)?;
    let bytes = std::fs::read(&path).map_err(|e| Fault::Corrupt(format!("cannot read: {e}")))?;
    Ok(PartEntry {
        path: rel,
        table: table.name().to_string(),
        vcpu,
        index,
        rows: facts.rows,
        first_seq: facts.first_seq(),
        last_seq: facts.last_seq(),
        bytes: bytes.len() as u64,
        xxh3: crate::writer::file_checksum(&bytes),
    })
}

/// What verification found of one part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Listed, and on disk as it was sealed.
    Ok,
    /// Listed, not on disk.
    Missing,
    /// Listed and damaged, or unlisted and unreadable.
    Corrupt,
    /// Sealed after the manifest's last rewrite, and readable.
    Unlisted,
}

/// One part file and what verification found of it.
#[derive(Clone, Debug, Serialize)]
pub struct PartReport {
    /// Relative to the trace verified (`processes/pid=N/...` in a child).
    pub path: String,
    pub table: &'static str,
    pub vcpu: Option<u32>,
    pub index: u32,
    pub listed: bool,
    pub status: Status,
    /// Why it is missing or corrupt.
    pub why: Option<String>,
    /// What the file holds when it decoded, or else what the manifest says.
    pub rows: Option<u64>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub bytes: Option<u64>,
    /// XXH3-64 of the file: the manifest's for a listed part that matched
    /// it, the file's for an unlisted one that reads.
    pub xxh3: Option<String>,
}

/// The hidden file of a part that was never sealed: its rows are lost.
#[derive(Clone, Debug, Serialize)]
pub struct Unsealed {
    pub path: String,
    pub table: &'static str,
    pub vcpu: Option<u32>,
    pub index: u32,
    pub bytes: u64,
    /// The first `seq` it would have held: the one after the sealed parts
    /// before it.
    pub from_seq: Option<u64>,
}

/// Something wrong beyond one file.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    /// `manifest` (an entry that makes no sense), `gap`, `overlap`,
    /// `thread`, `totals`, `child`.
    pub kind: &'static str,
    pub what: String,
}

/// Everything verification found in one trace and its children.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The trace, relative to the one verified (empty for it).
    pub path: String,
    pub pid: u32,
    pub parent_pid: Option<u32>,
    pub complete: bool,
    /// How the run ended; none when it never finished.
    pub end: Option<RunEnd>,
    /// What the recorder said went wrong while recording.
    pub recorder_errors: Vec<String>,
    /// Rows dropped on purpose (`backpressure=drop`), all tables.
    pub dropped_rows: u64,
    pub parts: Vec<PartReport>,
    pub unsealed: Vec<Unsealed>,
    pub problems: Vec<Problem>,
    /// What is not an error but worth knowing (how far an unfinished
    /// thread's rows go).
    pub notes: Vec<String>,
    pub children: Vec<Report>,
}

impl Report {
    /// Whether everything listed verified, here and in every child.
    pub fn ok(&self) -> bool {
        self.parts
            .iter()
            .all(|p| matches!(p.status, Status::Ok | Status::Unlisted))
            && self.problems.is_empty()
            && self.children.iter().all(Report::ok)
    }

    /// Parts with this status, here and in every child.
    pub fn count(&self, status: Status) -> usize {
        self.parts.iter().filter(|p| p.status == status).count()
            + self.children.iter().map(|c| c.count(status)).sum::<usize>()
    }
}

/// Verifies the trace at `root` and the traces of its forked children. An
/// error means `root` is not a trace at all; everything else is in the
/// report.
pub fn verify(root: &Path) -> Result<Report> {
    let trace = Trace::open(root)?;
    Ok(verify_trace(&trace, "", &[canonical(root)]))
}

/// A trace's directory, links resolved, to see a child trace that is a link
/// to one above it.
fn canonical(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// `above`: the traces it is a child of (and itself), outermost first.
fn verify_trace(trace: &Trace, rel: &str, above: &[PathBuf]) -> Report {
    let root = trace.root();
    let m = trace.manifest();
    let rel_of = |p: &str| {
        if rel.is_empty() {
            p.to_string()
        } else {
            format!("{rel}/{p}")
        }
    };
    let mut problems = Vec::new();
    let (_, bad) = manifest_entries(m);
    for b in &bad {
        problems.push(Problem {
            kind: "manifest",
            what: format!("{}: part entry `{}`: {}", rel_of(MANIFEST), b.path, b.why),
        });
    }

    let mut slots = Vec::new();
    let mut hidden = Vec::new();
    for table in Table::ALL {
        match catalogue(root, m, table) {
            Ok((s, _)) => slots.extend(s),
            Err(e) => problems.push(Problem {
                kind: "manifest",
                what: e.to_string(),
            }),
        }
        match list_in_progress(root, table) {
            Ok(h) => hidden.extend(h.into_iter().map(|p| (table, p))),
            Err(e) => problems.push(Problem {
                kind: "manifest",
                what: e.to_string(),
            }),
        }
    }

    // The checks of the files, in parallel: hashing and decoding are the
    // whole cost of verification.
    let checked: Vec<(Slot, std::result::Result<PartFacts, Fault>)> = slots
        .into_par_iter()
        .map(|slot| {
            let result = check_slot(&slot);
            (slot, result)
        })
        .collect();

    let mut parts = Vec::new();
    // Per partition: (index, claimed seq range, rows) of every part, and
    // the tid runs of the readable ones.
    let mut ranges: Ranges = BTreeMap::new();
    let mut tids: BTreeMap<u32, (Vec<Run>, bool)> = BTreeMap::new();
    // The seq the missing and corrupt parts of `blocks` were to hold, per
    // vCPU: rows of a thread there are reported with the part already.
    let mut bad_blocks: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for (slot, result) in checked {
        let rel_path = rel_of(&part_rel_path(slot.table, slot.vcpu, slot.index));
        let entry = slot.entry.as_ref();
        let (status, why) = match (&result, entry) {
            (Ok(_), Some(_)) => (Status::Ok, None),
            (Ok(_), None) => (Status::Unlisted, None),
            (Err(Fault::Missing), _) => (Status::Missing, Some(Fault::Missing.why())),
            (Err(Fault::Corrupt(why)), Some(_)) => (Status::Corrupt, Some(why.clone())),
            (Err(Fault::Corrupt(why)), None) => (
                Status::Corrupt,
                Some(format!("not listed, and unreadable: {why}")),
            ),
        };
        let facts = result.as_ref().ok();
        let claimed = match (entry, facts) {
            (Some(e), _) => e.first_seq.zip(e.last_seq),
            (None, Some(f)) => f.first_seq().zip(f.last_seq()),
            (None, None) => None,
        };
        let rows = entry.map(|e| e.rows).or(facts.map(|f| f.rows));
        if slot.table.has_seq() && (entry.is_some() || facts.is_some()) {
            ranges.entry((slot.table, slot.vcpu)).or_default().push((
                slot.index,
                claimed,
                rows.unwrap_or(0),
            ));
        }
        if let (Table::Blocks, Some(v)) = (slot.table, slot.vcpu) {
            match (facts, claimed) {
                (Some(f), _) => {
                    let (runs, capped) = tids.entry(v).or_default();
                    runs.extend(f.tids.iter().copied());
                    *capped |= f.capped;
                }
                (None, Some(range)) => bad_blocks.entry(v).or_default().push(range),
                (None, None) => {}
            }
        }
        parts.push(PartReport {
            path: rel_path,
            table: slot.table.name(),
            vcpu: slot.vcpu,
            index: slot.index,
            listed: entry.is_some(),
            status,
            why,
            rows: facts.map(|f| f.rows).or(rows),
            first_seq: facts
                .and_then(PartFacts::first_seq)
                .or(claimed.map(|c| c.0)),
            last_seq: facts.and_then(PartFacts::last_seq).or(claimed.map(|c| c.1)),
            bytes: facts.map(|f| f.bytes).or(entry.map(|e| e.bytes)),
            xxh3: match (status, entry) {
                (Status::Ok, Some(e)) => Some(e.xxh3.clone()),
                (Status::Unlisted, _) => std::fs::read(&slot.path)
                    .ok()
                    .map(|b| crate::writer::file_checksum(&b)),
                _ => None,
            },
        });
    }

    let dropped = dropped_ranges(m);
    // A QEMU killed before the recorder could finish (`qtrace record` says
    // `killed`) left no totals, as one whose end is unknown.
    let finished = m.complete || m.end.as_ref().is_some_and(|e| e.how != "killed");
    check_continuity(&ranges, &dropped, &mut problems);
    let mut notes = Vec::new();
    if m.parts.is_empty() && !parts.is_empty() {
        notes.push(
            "the manifest lists no parts: no sizes or checksums to check them against \
             (written by a recorder that did not list them, or killed before it did)"
                .to_string(),
        );
    }
    let threads = Threads {
        tids: &tids,
        bad_blocks: &bad_blocks,
        ranges: &ranges,
        dropped: &dropped,
        finished,
        stopped: !m.complete && !m.errors.is_empty(),
    };
    threads.check(m, &mut problems, &mut notes);
    if finished {
        check_totals(m, &ranges, &dropped, &mut problems);
    }

    let unsealed = hidden
        .into_iter()
        .map(|(table, p)| {
            let from_seq = table.has_seq().then(|| {
                ranges
                    .get(&(table, p.vcpu))
                    .into_iter()
                    .flatten()
                    .filter(|(i, _, _)| *i < p.index)
                    .filter_map(|(_, r, _)| r.map(|r| r.1.saturating_add(1)))
                    .max()
                    .unwrap_or(0)
            });
            Unsealed {
                path: rel_of(&format!(
                    "{}/{}",
                    crate::layout::partition_dir(Path::new(""), table, p.vcpu).display(),
                    crate::layout::in_progress_name(p.index)
                )),
                table: table.name(),
                vcpu: p.vcpu,
                index: p.index,
                bytes: std::fs::metadata(&p.path).map_or(0, |md| md.len()),
                from_seq,
            }
        })
        .collect();

    let children = verify_children(trace, rel, above, &mut problems);

    Report {
        path: rel.to_string(),
        pid: m.pid,
        parent_pid: m.parent_pid,
        complete: m.complete,
        end: m.end.clone(),
        recorder_errors: m.errors.clone(),
        dropped_rows: m.dropped.iter().fold(0u64, |a, d| a.saturating_add(d.rows)),
        parts,
        unsealed,
        problems,
        notes,
        children,
    }
}

/// Checks one part: a listed one against its entry, then decoded and
/// compared with what the entry says; an unlisted one decoded.
fn check_slot(slot: &Slot) -> std::result::Result<PartFacts, Fault> {
    let Some(entry) = &slot.entry else {
        return decode_part(&slot.path, slot.table);
    };
    if !slot.on_disk {
        return Err(Fault::Missing);
    }
    check_file(&slot.path, entry)?;
    let facts = decode_part(&slot.path, slot.table)?;
    if facts.rows != entry.rows {
        return Err(Fault::Corrupt(format!(
            "{} rows, the manifest says {}",
            facts.rows, entry.rows
        )));
    }
    let (first, last) = (facts.first_seq(), facts.last_seq());
    if slot.table.has_seq() && (first, last) != (entry.first_seq, entry.last_seq) {
        return Err(Fault::Corrupt(format!(
            "seq {}, the manifest says {}",
            seq_text(first.zip(last)),
            seq_text(entry.first_seq.zip(entry.last_seq))
        )));
    }
    Ok(facts)
}

fn seq_text(r: Option<(u64, u64)>) -> String {
    r.map_or_else(|| "none".to_string(), |(a, b)| format!("{a}..{b}"))
}

type Dropped = BTreeMap<(Table, u32), Vec<(u64, u64)>>;

/// The dropped runs of each partition, as inclusive ranges.
fn dropped_ranges(m: &Manifest) -> Dropped {
    let mut out: Dropped = BTreeMap::new();
    for d in &m.dropped {
        let Some(table) = Table::from_name(&d.table) else {
            continue;
        };
        let ranges = out.entry((table, d.vcpu)).or_default();
        for &(first, rows) in &d.ranges {
            if rows > 0 {
                ranges.push((first, first.saturating_add(rows - 1)));
            }
        }
    }
    for ranges in out.values_mut() {
        ranges.sort_unstable();
    }
    out
}

/// How many of the `seq` in `a..=b` were dropped.
fn dropped_within(dropped: &[(u64, u64)], a: u64, b: u64) -> u64 {
    let mut n = 0u64;
    let mut next = a; // the first seq not yet counted
    for &(f, l) in dropped {
        let (f, l) = (f.max(next), l.min(b));
        if f <= l {
            n = n.saturating_add(l - f).saturating_add(1);
            next = match l.checked_add(1) {
                Some(x) => x,
                None => break,
            };
        }
    }
    n
}

/// Whether every seq in `a..=b` was dropped.
fn all_dropped(dropped: &[(u64, u64)], a: u64, b: u64) -> bool {
    dropped_within(dropped, a, b) == (b - a).saturating_add(1)
}

/// Per partition, every part's index, `seq` range (as listed, or as
/// decoded for an unlisted part) and rows.
type Ranges = BTreeMap<(Table, Option<u32>), Vec<(u32, Option<(u64, u64)>, u64)>>;

/// The parts of each partition, in index order, must follow one another in
/// `seq` from 0, but for runs the manifest lists as dropped.
fn check_continuity(ranges: &Ranges, dropped: &Dropped, problems: &mut Vec<Problem>) {
    for ((table, vcpu), parts) in ranges {
        let none = Vec::new();
        let drops = vcpu
            .and_then(|v| dropped.get(&(*table, v)))
            .unwrap_or(&none);
        let mut parts = parts.clone();
        parts.sort_unstable_by_key(|p| p.0);
        let mut next = 0u64;
        let mut prev: Option<u32> = None;
        for (index, range, _) in parts {
            let Some((first, last)) = range else {
                continue;
            };
            let between = || match prev {
                Some(p) => format!("between part {p} and part {index}"),
                None => format!("before part {index}"),
            };
            let partition = match vcpu {
                Some(v) => format!("{} vCPU {v}", table.name()),
                None => table.name().to_string(),
            };
            if first > next && !all_dropped(drops, next, first - 1) {
                problems.push(Problem {
                    kind: "gap",
                    what: format!(
                        "{partition}: seq {next}..{} in no part ({})",
                        first - 1,
                        between()
                    ),
                });
            } else if first < next {
                problems.push(Problem {
                    kind: "overlap",
                    what: format!(
                        "{partition}: part {index} starts at seq {first}, but the parts before it go to {}",
                        next - 1
                    ),
                });
            }
            next = next.max(last.saturating_add(1));
            prev = Some(index);
        }
    }
}

/// What the check of threads needs to know of the parts of `blocks`.
struct Threads<'a> {
    /// Per vCPU, the tid runs of the parts that read, and whether there
    /// were too many to keep.
    tids: &'a BTreeMap<u32, (Vec<Run>, bool)>,
    /// Per vCPU, the seq ranges of the parts missing or corrupt.
    bad_blocks: &'a BTreeMap<u32, Vec<(u64, u64)>>,
    ranges: &'a Ranges,
    dropped: &'a Dropped,
    /// Whether the run ended.
    finished: bool,
    /// The recorder stopped early, and says why in the manifest's `errors`
    /// (a write failed): what follows the sealed parts was never written.
    stopped: bool,
}

impl Threads<'_> {
    /// Each thread's run of `blocks` must be in sealed parts and carry its tid;
    /// a run that never finished goes as far as the sealed parts do.
    fn check(&self, m: &Manifest, problems: &mut Vec<Problem>, notes: &mut Vec<String>) {
        let Threads {
            tids,
            bad_blocks,
            ranges,
            dropped,
            finished,
            stopped,
        } = *self;
        for t in m.threads.iter().filter(|t| t.block_events > 0) {
            let (first, last) = (t.first_seq, t.first_seq.saturating_add(t.block_events - 1));
            let who = format!("thread {} (vCPU {}, seq {first}..{last})", t.tid, t.vcpu);
            let empty = (Vec::new(), false);
            let (runs, capped) = tids.get(&t.vcpu).unwrap_or(&empty);
            if *capped {
                notes.push(format!(
                    "{who}: not checked (the tid changes too often in blocks/vcpu={})",
                    t.vcpu
                ));
                continue;
            }
            let mut covered = 0u64;
            let mut wrong: Option<(u64, u64, u32)> = None;
            for r in runs {
                let (a, b) = (r.first.max(first), r.last.min(last));
                if a > b {
                    continue;
                }
                if r.tid == t.tid {
                    covered = covered.saturating_add(b - a + 1);
                } else if wrong.is_none() {
                    wrong = Some((a, b, r.tid));
                }
            }
            if let Some((a, b, other)) = wrong {
                problems.push(Problem {
                    kind: "thread",
                    what: format!("{who}: seq {a}..{b} carry tid {other}"),
                });
                continue;
            }
            let no_drops = Vec::new();
            let drops = dropped.get(&(Table::Blocks, t.vcpu)).unwrap_or(&no_drops);
            let want = (last - first).saturating_add(1) - dropped_within(drops, first, last);
            // Rows in parts already reported missing or corrupt.
            let in_bad = bad_blocks
                .get(&t.vcpu)
                .into_iter()
                .flatten()
                .map(|&(a, b)| (a.max(first), b.min(last)))
                .filter(|(a, b)| a <= b)
                .fold(0u64, |n, (a, b)| n.saturating_add(b - a).saturating_add(1));
            if covered.saturating_add(in_bad) >= want {
                continue;
            }
            // How far the sealed parts of the partition go.
            let sealed_end = ranges
                .get(&(Table::Blocks, Some(t.vcpu)))
                .into_iter()
                .flatten()
                .filter_map(|(_, r, _)| r.map(|r| r.1))
                .max();
            let prefix_whole = match sealed_end {
                Some(end) if end >= first => {
                    let end = end.min(last);
                    covered >= (end - first).saturating_add(1) - dropped_within(drops, first, end)
                }
                _ => covered == 0,
            };
            if (!finished || stopped) && prefix_whole {
                let upto = match sealed_end {
                    Some(end) if end >= first => format!("up to seq {}", end.min(last)),
                    _ => "none of it".to_string(),
                };
                let why = if finished {
                    "the recording stopped early (see the manifest's errors)"
                } else {
                    "the run never finished"
                };
                notes.push(format!(
                    "{who}: {why}; sealed parts hold {upto} ({} rows not sealed)",
                    want - covered
                ));
            } else {
                problems.push(Problem {
                    kind: "thread",
                    what: format!(
                        "{who}: {} of its rows are in no readable part",
                        want - covered
                    ),
                });
            }
        }
    }
}

/// Once the run ended, the rows in sealed parts must add up to the
/// manifest's totals.
fn check_totals(m: &Manifest, ranges: &Ranges, dropped: &Dropped, problems: &mut Vec<Problem>) {
    let rows = |table: Table, vcpu: u32| -> u64 {
        ranges
            .get(&(table, Some(vcpu)))
            .into_iter()
            .flatten()
            .fold(0u64, |a, p| a.saturating_add(p.2))
    };
    let mut known = HashSet::new();
    for v in &m.vcpus {
        known.insert(v.vcpu);
        for (table, total) in [
            (Table::Blocks, v.block_events),
            (Table::Mem, v.mem_accesses),
            (Table::Syscalls, v.syscalls),
            (Table::Regs, v.regs_rows),
        ] {
            let sealed = rows(table, v.vcpu);
            let dropped: u64 = dropped
                .get(&(table, v.vcpu))
                .into_iter()
                .flatten()
                .fold(0u64, |a, r| a.saturating_add(r.1 - r.0).saturating_add(1));
            if sealed != total && sealed.saturating_add(dropped) != total {
                problems.push(Problem {
                    kind: "totals",
                    what: format!(
                        "{} vCPU {}: the manifest counts {total} rows, sealed parts hold {sealed}",
                        table.name(),
                        v.vcpu
                    ),
                });
            }
        }
    }
    for ((table, vcpu), parts) in ranges {
        let Some(v) = vcpu else { continue };
        let n = parts.iter().fold(0u64, |a, p| a.saturating_add(p.2));
        if n > 0 && !known.contains(v) {
            problems.push(Problem {
                kind: "totals",
                what: format!(
                    "{} vCPU {v}: {n} rows in sealed parts, but the manifest has no totals for vCPU {v}",
                    table.name()
                ),
            });
        }
    }
}

/// The traces of forked children: those the manifest lists and those on
/// disk under `processes/`.
fn verify_children(
    trace: &Trace,
    rel: &str,
    above: &[PathBuf],
    problems: &mut Vec<Problem>,
) -> Vec<Report> {
    let root = trace.root();
    let mut dirs: BTreeMap<String, Option<u32>> = BTreeMap::new();
    for c in &trace.manifest().children {
        let expected = format!("{PROCESSES}/pid={}", c.pid);
        if c.path.trim_end_matches('/') != expected {
            problems.push(Problem {
                kind: "manifest",
                what: format!(
                    "child pid {}: its trace is at `{}`, not `{expected}`",
                    c.pid, c.path
                ),
            });
        }
        dirs.insert(expected, Some(c.pid));
    }
    if let Ok(entries) = std::fs::read_dir(root.join(PROCESSES)) {
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("pid="))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            dirs.entry(format!("{PROCESSES}/pid={pid}")).or_insert(None);
        }
    }
    let mut reports = Vec::new();
    for (dir, listed) in dirs {
        let child_rel = if rel.is_empty() {
            dir.clone()
        } else {
            format!("{rel}/{dir}")
        };
        if above.len() >= MAX_DEPTH {
            problems.push(Problem {
                kind: "child",
                what: format!("{child_rel}: nested too deep, not verified"),
            });
            continue;
        }
        let path = root.join(&dir);
        if listed.is_some() && !path.exists() {
            problems.push(Problem {
                kind: "child",
                what: format!("{child_rel}: listed in the manifest but missing"),
            });
            continue;
        }
        match Trace::open(&path) {
            Ok(child) => {
                let dir = canonical(&path);
                if above.contains(&dir) {
                    problems.push(Problem {
                        kind: "child",
                        what: format!("{child_rel}: a link to a trace above it, not followed"),
                    });
                    continue;
                }
                let mut chain = above.to_vec();
                chain.push(dir);
                reports.push(verify_trace(&child, &child_rel, &chain));
            }
            Err(e) => problems.push(Problem {
                kind: "child",
                what: e.to_string(),
            }),
        }
    }
    reports
}

/// Where the traces of forked children are, under a trace's root.
pub const PROCESSES: &str = "processes";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Dropped, ThreadTotals, VcpuTotals};
    use crate::schema::{block_counts_batch, BlockCount};
    use crate::writer::{write_table, PartLimits, PartWriter};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A finished trace: `blocks` of vCPU 0 in three parts of 10 rows (seq
    /// 0..29, thread 7), and `block_counts`; the manifest lists them all.
    fn trace() -> (tempfile::TempDir, PathBuf, Manifest) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("t.parquet");
        let limits = PartLimits {
            max_rows: 10,
            max_age: Duration::from_secs(3600),
        };
        let mut m = Manifest::new();
        let mut w = PartWriter::new(&root, Table::Blocks, Some(0), 1, limits);
        for k in 0..3u64 {
            let ids: Vec<u32> = (0..10).map(|i| (i % 3) as u32).collect();
            w.write_blocks(k * 10, 7, &ids).unwrap();
        }
        w.seal().unwrap();
        for p in w.take_sealed() {
            m.add_part(p);
        }
        let counts = block_counts_batch(&[BlockCount {
            vcpu: 0,
            block_id: 0,
            execs: 30,
        }]);
        m.add_part(write_table(&root, Table::BlockCounts, 0, &counts, 1).unwrap());
        m.vcpus.push(VcpuTotals {
            vcpu: 0,
            blocks: 30,
            block_events: 30,
            parts: 3,
            ..Default::default()
        });
        m.threads.push(ThreadTotals {
            tid: 7,
            vcpu: 0,
            first_seq: 0,
            block_events: 30,
        });
        m.complete = true;
        m.end = Some(RunEnd {
            how: "exit".into(),
            exit_code: Some(0),
            ..Default::default()
        });
        m.write(&root).unwrap();
        (tmp, root, m)
    }

    fn part(root: &Path, index: u32) -> PathBuf {
        root.join(part_rel_path(Table::Blocks, Some(0), index))
    }

    fn status_of(r: &Report, index: u32) -> (Status, String) {
        let p = r
            .parts
            .iter()
            .find(|p| p.table == "blocks" && p.index == index)
            .unwrap();
        (p.status, p.why.clone().unwrap_or_default())
    }

    fn kinds(r: &Report) -> Vec<&'static str> {
        r.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_sound_trace_verifies() {
        let (_tmp, root, _) = trace();
        let r = verify(&root).unwrap();
        assert!(r.ok(), "{r:#?}");
        assert_eq!(r.count(Status::Ok), 4);
        assert!(r.notes.is_empty(), "{:?}", r.notes);
        let p = &r.parts[0];
        assert_eq!(
            (p.rows, p.first_seq, p.last_seq),
            (Some(10), Some(0), Some(9))
        );
        // What the manifest says of a part is what part_entry finds in it.
        let (_, _, m) = trace();
        let listed = m.parts[1].clone();
        let found = part_entry(&root, Table::Blocks, Some(0), 1).unwrap();
        assert_eq!(
            (found.rows, found.first_seq, found.last_seq),
            (10, Some(10), Some(19))
        );
        assert_eq!(found.path, listed.path);
    }

    #[test]
    fn a_flipped_bit_is_a_corrupt_part_and_a_reader_error() {
        let (_tmp, root, _) = trace();
        let path = part(&root, 1);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let r = verify(&root).unwrap();
        assert!(!r.ok());
        let (status, why) = status_of(&r, 1);
        assert_eq!(status, Status::Corrupt);
        assert!(why.contains("checksum"), "{why}");
        assert_eq!(status_of(&r, 0).0, Status::Ok);

        let err = Trace::open(&root)
            .unwrap()
            .parts(Table::Blocks)
            .unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("checksum"), "{err}");

        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let trace = Trace::open(&root)
            .unwrap()
            .skip_corrupt(move |s| sink.lock().unwrap().push(s.to_string()));
        let parts = trace.parts(Table::Blocks).unwrap();
        assert_eq!(parts.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 2]);
        // Read again: checked once, told once.
        trace.parts(Table::Blocks).unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("10 rows, seq 10..19"), "{}", seen[0]);
    }

    #[test]
    fn truncated_and_deleted_parts() {
        let (_tmp, root, _) = trace();
        let path = part(&root, 0);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        std::fs::remove_file(part(&root, 2)).unwrap();
        let r = verify(&root).unwrap();
        let (status, why) = status_of(&r, 0);
        assert_eq!(status, Status::Corrupt);
        assert!(why.contains("bytes, the manifest says"), "{why}");
        assert_eq!(status_of(&r, 2).0, Status::Missing);
        // Both parts are accounted for: no gap on top of them.
        assert!(!kinds(&r).contains(&"gap"), "{:?}", r.problems);
        let err = Trace::open(&root)
            .unwrap()
            .parts(Table::Blocks)
            .unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        std::fs::write(&path, &bytes).unwrap();
        let err = Trace::open(&root)
            .unwrap()
            .parts(Table::Blocks)
            .unwrap_err();
        assert!(matches!(err, Error::Missing { .. }), "{err}");
        assert!(
            err.to_string()
                .ends_with("listed in the manifest but missing"),
            "{err}"
        );
    }

    #[test]
    fn unlisted_and_unsealed_parts_are_reported_not_failed() {
        let (_tmp, root, mut m) = trace();
        // The last part sealed after the last rewrite; a fourth never sealed.
        m.parts.retain(|p| p.index != 2);
        m.complete = false;
        m.end = None;
        m.write(&root).unwrap();
        let hidden = root
            .join("blocks/vcpu=0")
            .join(crate::layout::in_progress_name(3));
        std::fs::write(&hidden, b"PAR1 half a file").unwrap();
        let r = verify(&root).unwrap();
        assert!(r.ok(), "{r:#?}");
        assert_eq!(status_of(&r, 2).0, Status::Unlisted);
        assert_eq!(r.unsealed.len(), 1);
        assert_eq!(r.unsealed[0].from_seq, Some(30));
        assert_eq!(r.unsealed[0].bytes, 16);
        // Readers read it too.
        let parts = Trace::open(&root).unwrap().parts(Table::Blocks).unwrap();
        assert_eq!(parts.len(), 3);
        // An unlisted part that cannot be read fails.
        std::fs::write(part(&root, 2), b"PAR1 not parquet PAR1").unwrap();
        let r = verify(&root).unwrap();
        assert!(!r.ok());
        assert!(Trace::open(&root).unwrap().parts(Table::Blocks).is_err());
    }

    #[test]
    fn an_unfinished_thread_goes_as_far_as_the_sealed_parts() {
        let (_tmp, root, mut m) = trace();
        m.complete = false;
        m.end = None;
        m.threads[0].block_events = 50;
        m.write(&root).unwrap();
        let r = verify(&root).unwrap();
        assert!(r.ok(), "{r:#?}");
        assert_eq!(r.notes.len(), 1, "{:?}", r.notes);
        assert!(
            r.notes[0].contains("up to seq 29 (20 rows not sealed)"),
            "{}",
            r.notes[0]
        );
        // Once the run ended, the same is a problem, and so are the totals.
        m.end = Some(RunEnd::default());
        m.vcpus[0].block_events = 50;
        m.write(&root).unwrap();
        let r = verify(&root).unwrap();
        assert_eq!(kinds(&r), ["thread", "totals"], "{:?}", r.problems);
        // A run of another thread's rows.
        m.threads[0].block_events = 30;
        m.threads[0].tid = 8;
        m.vcpus[0].block_events = 30;
        m.write(&root).unwrap();
        let r = verify(&root).unwrap();
        assert_eq!(kinds(&r), ["thread"]);
        assert!(
            r.problems[0].what.contains("carry tid 7"),
            "{:?}",
            r.problems
        );
    }

    #[test]
    fn gaps_are_allowed_only_where_rows_were_dropped() {
        let (_tmp, root, mut m) = trace();
        // Part 1 never existed: seq 10..19 are in no part.
        std::fs::remove_file(part(&root, 1)).unwrap();
        m.parts.retain(|p| p.index != 1);
        m.vcpus[0].block_events = 20;
        m.threads.clear();
        m.write(&root).unwrap();
        let r = verify(&root).unwrap();
        assert_eq!(kinds(&r), ["gap"], "{:?}", r.problems);
        assert!(
            r.problems[0].what.contains("seq 10..19"),
            "{:?}",
            r.problems
        );
        m.dropped.push(Dropped {
            table: "blocks".into(),
            vcpu: 0,
            rows: 10,
            ranges: vec![(10, 10)],
        });
        m.write(&root).unwrap();
        let r = verify(&root).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
    }

    #[test]
    fn a_child_that_links_back_is_not_followed() {
        let (_tmp, root, _) = trace();
        std::fs::create_dir(root.join(PROCESSES)).unwrap();
        std::os::unix::fs::symlink(&root, root.join(PROCESSES).join("pid=9")).unwrap();
        let r = verify(&root).unwrap();
        assert_eq!(kinds(&r), ["child"], "{:?}", r.problems);
        assert!(
            r.problems[0].what.contains("not followed"),
            "{:?}",
            r.problems
        );
        assert!(r.children.is_empty());
    }

    #[test]
    fn manifest_entries_that_point_elsewhere_are_refused() {
        let (_tmp, root, mut m) = trace();
        m.parts[0].path = "../../etc/passwd".into();
        m.write(&root).unwrap();
        let r = verify(&root).unwrap();
        assert!(kinds(&r).contains(&"manifest"), "{:?}", r.problems);
        let err = Trace::open(&root)
            .unwrap()
            .parts(Table::Blocks)
            .unwrap_err();
        assert!(err.to_string().contains("manifest.json"), "{err}");
        assert!(err.to_string().contains("../../etc/passwd"), "{err}");
    }

    #[test]
    fn counts_dropped_seq_within_a_range() {
        let d = [(10, 19), (30, 30), (35, 40)];
        assert_eq!(dropped_within(&d, 0, 9), 0);
        assert_eq!(dropped_within(&d, 0, 100), 10 + 1 + 6);
        assert_eq!(dropped_within(&d, 15, 35), 5 + 1 + 1);
        assert!(all_dropped(&d, 10, 19));
        assert!(!all_dropped(&d, 10, 20));
        assert_eq!(dropped_within(&[(0, u64::MAX)], 5, u64::MAX), u64::MAX - 4);
    }

    #[test]
    fn joins_runs_that_follow_each_other() {
        let mut runs = Vec::new();
        let mut capped = false;
        for (first, last, tid) in [(0, 4, 1), (5, 9, 1), (10, 12, 2), (14, 14, 2)] {
            push_run(&mut runs, Run { first, last, tid }, &mut capped);
        }
        let got: Vec<_> = runs.iter().map(|r| (r.first, r.last, r.tid)).collect();
        assert_eq!(got, vec![(0, 9, 1), (10, 12, 2), (14, 14, 2)]);
        assert!(!capped);
    }
}
