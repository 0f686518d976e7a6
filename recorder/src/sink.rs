//! Background writer threads: they take full event buffers from the vCPUs and
//! encode them into sealed Parquet parts.
//!
//! Each writer owns the partitions of the vCPUs assigned to it (`vcpu %
//! writers`), so no two threads ever write the same file. What a vCPU has
//! handed over and is not yet written is capped in bytes per vCPU
//! (`max_memory=`): when the writers fall behind, the vCPU waits (nothing is
//! lost), or with `backpressure=drop` the batch is dropped and the manifest
//! counts it.
//!
//! A write error (a full disk) stops the recording: what is open is sealed
//! where possible, the manifest says what happened, and the guest runs on.
//!
//! Writers never call QEMU's API, and block the signals a guest may get, so
//! that the kernel delivers those to QEMU's threads.

use crate::lock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use qtrace_format::mem_writer::{MemRows, PAGE_ROWS};
use qtrace_format::schema::{regs_batch, syscalls_batch, RegsRow, Syscall, Table};
use qtrace_format::writer::{PartLimits, PartWriter};

use crate::ledger::Ledger;
use crate::stream;

/// Rows of one table made by one guest thread on one vCPU: rows
/// `first_seq..` of that vCPU's partition.
pub struct Batch<T> {
    pub vcpu: u32,
    /// The guest thread that made every row of the batch.
    pub tid: u32,
    pub first_seq: u64,
    pub rows: Vec<T>,
}

/// Block ids executed, for `blocks`.
pub type BlockBatch = Batch<u32>;
/// Block ids with memory accesses between them (see `stream`), for
/// `blocks` and `mem`.
pub struct StreamBatch {
    /// `rows` are the stream's words; `first_seq` is that of its first block.
    pub blocks: BlockBatch,
    /// Blocks in the stream.
    pub block_rows: u64,
    /// `seq` in `mem` of the stream's first access, and the accesses.
    pub mem_first_seq: u64,
    pub mem_records: u64,
}
/// System calls, for `syscalls`.
pub type SyscallBatch = Batch<Syscall>;
/// Registers read, for `regs`.
pub type RegsBatch = Batch<RegsRow>;

/// What vCPUs hand to the writers: one batch of one table, or the order to stop.
pub enum Msg {
    Blocks(BlockBatch),
    Stream(StreamBatch),
    Syscalls(SyscallBatch),
    Regs(RegsBatch),
    /// Seal every open part, then say so.
    Checkpoint(SyncSender<()>),
    /// Remove the last sealed part of a partition (see `Sink::retract_last`).
    Retract(Table, u32, SyncSender<()>),
    /// Seal everything and stop.
    Finish,
}

impl Msg {
    /// The vCPU whose partition the batch goes to (its writer is `vcpu % writers`).
    fn vcpu(&self) -> u32 {
        match self {
            Msg::Blocks(b) => b.vcpu,
            Msg::Stream(b) => b.blocks.vcpu,
            Msg::Syscalls(b) => b.vcpu,
            Msg::Regs(b) => b.vcpu,
            Msg::Retract(_, vcpu, _) => *vcpu,
            Msg::Checkpoint(_) | Msg::Finish => 0,
        }
    }

    /// Bytes the batch holds, counted against its vCPU's `max_memory`.
    fn bytes(&self) -> u64 {
        fn of<T>(rows: &[T]) -> u64 {
            std::mem::size_of_val(rows) as u64
        }
        match self {
            Msg::Blocks(b) => of(&b.rows),
            Msg::Stream(b) => of(&b.blocks.rows),
            Msg::Syscalls(b) => of(&b.rows),
            Msg::Regs(b) => of(&b.rows),
            _ => 0,
        }
    }

    /// What dropping the batch loses: (table, first seq, rows) for each table.
    fn contents(&self) -> Vec<(Table, u64, u64)> {
        let rows = |n: usize| n as u64;
        match self {
            Msg::Blocks(b) => vec![(Table::Blocks, b.first_seq, rows(b.rows.len()))],
            Msg::Stream(b) => vec![
                (Table::Blocks, b.blocks.first_seq, b.block_rows),
                (Table::Mem, b.mem_first_seq, b.mem_records),
            ],
            Msg::Syscalls(b) => vec![(Table::Syscalls, b.first_seq, rows(b.rows.len()))],
            Msg::Regs(b) => vec![(Table::Regs, b.first_seq, rows(b.rows.len()))],
            _ => Vec::new(),
        }
    }
}

macro_rules! batch_into_msg {
    ($($batch:ident => $variant:ident),*) => {
        $(impl From<$batch> for Msg {
            fn from(b: $batch) -> Msg {
                Msg::$variant(b)
            }
        })*
    };
}
batch_into_msg!(BlockBatch => Blocks, StreamBatch => Stream, SyscallBatch => Syscalls, RegsBatch => Regs);

/// What became of a batch handed to the writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Taken,
    /// Dropped on purpose (`backpressure=drop`) and counted in the manifest.
    Dropped,
    /// Not written: the recording stopped, or the writers are gone.
    Lost,
}

/// What the writers did, per table and vCPU.
#[derive(Debug, Default)]
pub struct SinkReport {
    /// (table, vCPU) -> (rows written, parts sealed).
    pub written: BTreeMap<(Table, u32), (u64, u32)>,
    /// (table, vCPU) -> rows that could not be written.
    pub lost: BTreeMap<(Table, u32), u64>,
    pub errors: Vec<String>,
}

pub struct Sink {
    senders: Vec<Sender<Msg>>,
    threads: Mutex<Vec<JoinHandle<SinkReport>>>,
    pool: Arc<BufferPool>,
    budget: Arc<Budget>,
    /// Set when a write failed: the recording has stopped.
    stop: Arc<Stop>,
    ledger: Arc<Ledger>,
}

/// Bytes handed over and not yet written, per vCPU, under a cap.
struct Budget {
    cap: u64,
    used: Mutex<BTreeMap<u32, u64>>,
    freed: Condvar,
}

impl Budget {
    /// Counts `bytes` for `vcpu`: waits while that would pass the cap (one
    /// batch at least may always be in flight), or with `drop` answers false.
    fn acquire(&self, vcpu: u32, bytes: u64, drop: bool) -> bool {
        let mut used = lock(&self.used);
        loop {
            let u = used.get(&vcpu).copied().unwrap_or(0);
            if u == 0 || u + bytes <= self.cap {
                used.insert(vcpu, u + bytes);
                return true;
            }
            if drop {
                return false;
            }
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self, vcpu: u32, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut used = lock(&self.used);
        if let Some(u) = used.get_mut(&vcpu) {
            *u = u.saturating_sub(bytes);
        }
        drop(used);
        self.freed.notify_all();
    }
}

/// Written buffers come back to be filled again: a recycled buffer is still
/// in cache and mapped, where a fresh one costs page faults and cache misses
/// on the vCPU's hot path.
struct BufferPool {
    free: Mutex<Vec<Vec<u32>>>,
    capacity: usize,
    keep: usize,
}

impl BufferPool {
    fn take(&self) -> Vec<u32> {
        lock(&self.free)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    fn give(&self, mut buf: Vec<u32>) {
        buf.clear();
        let mut free = lock(&self.free);
        if free.len() < self.keep && buf.capacity() == self.capacity {
            free.push(buf);
        }
    }
}

#[derive(Clone)]
pub struct SinkConfig {
    pub root: PathBuf,
    /// Events per buffer.
    pub buffer: usize,
    pub writers: usize,
    /// Bytes a vCPU may have handed over and not yet written (its buffer
    /// being filled not counted).
    pub max_memory: u64,
    pub zstd: i32,
    pub limits: PartLimits,
    pub ledger: Arc<Ledger>,
}

/// Rows in a `mem` part at most, unless `part_rows=` says fewer: accesses
/// take about 3 bytes a row, so parts stay at a few tens of MB.
const MEM_PART_ROWS: u64 = 8 << 20;

impl Sink {
    pub fn start(cfg: &SinkConfig) -> std::io::Result<Sink> {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let pool = Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            capacity: cfg.buffer,
            keep: cfg.writers.max(1) * 4,
        });
        let budget = Arc::new(Budget {
            cap: cfg.max_memory,
            used: Mutex::new(BTreeMap::new()),
            freed: Condvar::new(),
        });
        let stop = Arc::new(Stop {
            set: AtomicBool::new(false),
            root: cfg.root.clone(),
            ledger: cfg.ledger.clone(),
        });
        for i in 0..cfg.writers.max(1) {
            let (tx, rx) = mpsc::channel::<Msg>();
            let mut w = Writer::new(cfg.clone(), stop.clone());
            let pool = pool.clone();
            let budget = budget.clone();
            let thread = std::thread::Builder::new()
                .name(format!("qtrace-writer-{i}"))
                .spawn(move || {
                    crate::signals::block_in_this_thread();
                    loop {
                        let msg = match rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(msg) => msg,
                            Err(RecvTimeoutError::Disconnected) => break,
                            Err(RecvTimeoutError::Timeout) => {
                                w.flush_mem();
                                w.seal_old();
                                w.report_sealed();
                                w.stop_if_stopped();
                                continue;
                            }
                        };
                        let (vcpu, bytes) = (msg.vcpu(), msg.bytes());
                        match msg {
                            Msg::Blocks(batch) => pool.give(w.write(batch)),
                            Msg::Stream(batch) => pool.give(w.write_stream(batch)),
                            Msg::Syscalls(batch) => w.write_syscalls(batch),
                            Msg::Regs(batch) => w.write_regs(batch),
                            Msg::Checkpoint(done) => {
                                w.seal_all();
                                let _ = done.send(());
                            }
                            Msg::Retract(table, vcpu, done) => {
                                w.retract_last(table, vcpu);
                                let _ = done.send(());
                            }
                            Msg::Finish => break,
                        }
                        budget.release(vcpu, bytes);
                        w.report_sealed();
                        w.stop_if_stopped();
                    }
                    w.finish()
                })?;
            senders.push(tx);
            threads.push(thread);
        }
        Ok(Sink {
            senders,
            threads: Mutex::new(threads),
            pool,
            budget,
            stop,
            ledger: cfg.ledger.clone(),
        })
    }

    /// An empty buffer to fill, recycled where possible.
    pub fn empty_buffer(&self) -> Vec<u32> {
        self.pool.take()
    }

    /// Hands a full buffer to its vCPU's writer, waiting while the vCPU has
    /// `max_memory` handed over and not yet written; with `drop`, drops it
    /// instead (counted in the manifest). `Lost` if the recording stopped
    /// (a write failed) or the writers finished.
    pub fn send(&self, batch: impl Into<Msg>, drop: bool) -> Sent {
        let msg = batch.into();
        if self.stopped() {
            return Sent::Lost;
        }
        let (vcpu, bytes) = (msg.vcpu(), msg.bytes());
        if !self.budget.acquire(vcpu, bytes, drop) {
            for (table, first_seq, rows) in msg.contents() {
                self.ledger.add_dropped(table.name(), vcpu, first_seq, rows);
            }
            return Sent::Dropped;
        }
        let tx = &self.senders[vcpu as usize % self.senders.len()];
        if tx.send(msg).is_err() {
            self.budget.release(vcpu, bytes);
            return Sent::Lost;
        }
        Sent::Taken
    }

    /// True once a write failed: nothing more is recorded.
    pub fn stopped(&self) -> bool {
        self.stop.is_set()
    }

    /// Stops the recording after a write error elsewhere (the keeper's, the
    /// end's): see [`Stop::fail`].
    pub fn fail(&self, error: &str) {
        self.stop.fail(error);
    }

    /// Seals every open part of every writer, after the batches already
    /// handed over; returns once they are sealed and listed.
    pub fn checkpoint(&self) {
        let mut waits = Vec::new();
        for tx in &self.senders {
            let (done, wait) = mpsc::sync_channel(1);
            if tx.send(Msg::Checkpoint(done)).is_ok() {
                waits.push(wait);
            }
        }
        for wait in waits {
            let _ = wait.recv();
        }
    }

    /// Removes the last sealed part of `table`'s partition `vcpu`, and its
    /// manifest entry: a part sealed ahead of an exec that then failed.
    pub fn retract_last(&self, table: Table, vcpu: u32) {
        let (done, wait) = mpsc::sync_channel(1);
        let tx = &self.senders[vcpu as usize % self.senders.len()];
        if tx.send(Msg::Retract(table, vcpu, done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Seals every part and stops the writers; the batches already queued are
    /// written first.
    pub fn finish(&self) -> SinkReport {
        for tx in &self.senders {
            let _ = tx.send(Msg::Finish);
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        let mut report = SinkReport::default();
        for t in threads {
            match t.join() {
                Ok(r) => {
                    report.written.extend(r.written);
                    report.lost.extend(r.lost);
                    report.errors.extend(r.errors);
                }
                Err(_) => report.errors.push("a writer thread panicked".into()),
            }
        }
        report
    }
}

/// One writer thread's state.
struct Writer {
    cfg: SinkConfig,
    parts: BTreeMap<(Table, u32), PartWriter>,
    /// Per vCPU, `mem` rows not yet written (less than a page).
    mem: BTreeMap<u32, MemRows>,
    /// Block ids taken out of a stream.
    ids: Vec<u32>,
    report: SinkReport,
    failed: bool,
    stop: Arc<Stop>,
}

impl Writer {
    fn new(cfg: SinkConfig, stop: Arc<Stop>) -> Writer {
        Writer {
            cfg,
            parts: BTreeMap::new(),
            mem: BTreeMap::new(),
            ids: Vec::new(),
            report: SinkReport::default(),
            failed: false,
            stop,
        }
    }

    /// The part writer of `table`'s partition `vcpu`, unless writing failed.
    fn part(&mut self, table: Table, vcpu: u32, rows: usize) -> Option<&mut PartWriter> {
        if self.failed {
            *self.report.lost.entry((table, vcpu)).or_default() += rows as u64;
            return None;
        }
        let cfg = &self.cfg;
        Some(self.parts.entry((table, vcpu)).or_insert_with(|| {
            let mut limits = cfg.limits;
            if table == Table::Mem {
                limits.max_rows = limits.max_rows.min(MEM_PART_ROWS);
            }
            PartWriter::new(&cfg.root, table, Some(vcpu), cfg.zstd, limits)
        }))
    }

    fn result(&mut self, table: Table, vcpu: u32, rows: usize, r: qtrace_format::Result<()>) {
        if let Err(e) = r {
            *self.report.lost.entry((table, vcpu)).or_default() += rows as u64;
            // A part whose write failed half-way is not to be sealed.
            if let Some(part) = self.parts.get_mut(&(table, vcpu)) {
                part.discard();
            }
            self.fail(e.to_string());
        }
    }

    /// Lists the parts sealed since the last call in the manifest.
    fn report_sealed(&mut self) {
        let sealed: Vec<_> = self
            .parts
            .values_mut()
            .flat_map(|p| p.take_sealed())
            .collect();
        self.cfg.ledger.add_parts(sealed);
        if let Err(e) = self.cfg.ledger.tick() {
            self.fail(e);
        }
    }

    /// Seals every open part (`mem` rows gathered included).
    fn seal_all(&mut self) {
        self.flush_mem();
        self.seal_each(PartWriter::seal);
        self.report_sealed();
    }

    /// Seals the open parts `seal` says to, stopping at the first error.
    fn seal_each(&mut self, seal: fn(&mut PartWriter) -> qtrace_format::Result<()>) {
        if self.failed {
            return;
        }
        let error = self
            .parts
            .values_mut()
            .find_map(|part| seal(part).err().map(|e| e.to_string()));
        if let Some(e) = error {
            self.fail(e);
        }
    }

    fn retract_last(&mut self, table: Table, vcpu: u32) {
        self.report_sealed();
        if let Some(path) = self
            .parts
            .get_mut(&(table, vcpu))
            .and_then(|p| p.unseal_last())
        {
            self.cfg.ledger.remove_part(&path);
        }
    }

    /// Writes a batch and gives back its buffer.
    fn write(&mut self, batch: BlockBatch) -> Vec<u32> {
        let n = batch.rows.len();
        if let Some(part) = self.part(Table::Blocks, batch.vcpu, n) {
            let r = part.write_blocks(batch.first_seq, batch.tid, &batch.rows);
            self.result(Table::Blocks, batch.vcpu, n, r);
        }
        batch.rows
    }

    /// Takes a stream apart: its blocks are written at once, its accesses
    /// a page at a time (see `MemFileWriter`). Gives back the buffer.
    fn write_stream(&mut self, batch: StreamBatch) -> Vec<u32> {
        let StreamBatch {
            blocks,
            mem_first_seq,
            ..
        } = batch;
        let vcpu = blocks.vcpu;
        let mut rows = self.mem.remove(&vcpu).unwrap_or_default();
        let follows = rows.first_seq + rows.len() as u64 == mem_first_seq;
        if !rows.is_empty() && (rows.tid != blocks.tid || !follows) {
            self.write_mem(vcpu, &mut rows);
        }
        if rows.is_empty() {
            rows.clear(mem_first_seq, blocks.tid);
        }
        let mut ids = std::mem::take(&mut self.ids);
        ids.clear();
        let mut next_block_seq = blocks.first_seq;
        let mut words = &blocks.rows[..];
        while !words.is_empty() {
            let room = PAGE_ROWS.saturating_sub(rows.len()).max(1);
            let (used, ok) = stream::demux(words, &mut next_block_seq, &mut ids, &mut rows, room);
            if !ok {
                self.report
                    .errors
                    .push(format!("vCPU {vcpu}: a memory record cut short"));
                break;
            }
            words = &words[used..];
            if rows.len() >= PAGE_ROWS {
                self.write_mem(vcpu, &mut rows);
            }
        }
        let n = ids.len();
        if let Some(part) = self.part(Table::Blocks, vcpu, n) {
            let r = part.write_blocks(blocks.first_seq, blocks.tid, &ids);
            self.result(Table::Blocks, vcpu, n, r);
        }
        self.ids = ids;
        self.mem.insert(vcpu, rows);
        blocks.rows
    }

    /// Writes the `mem` rows gathered for `vcpu`, and empties them.
    fn write_mem(&mut self, vcpu: u32, rows: &mut MemRows) {
        let n = rows.len();
        if n > 0 {
            if let Some(part) = self.part(Table::Mem, vcpu, n) {
                let r = part.write_mem(rows);
                self.result(Table::Mem, vcpu, n, r);
            }
        }
        rows.clear(rows.first_seq + n as u64, rows.tid);
    }

    /// Writes every vCPU's gathered `mem` rows.
    fn flush_mem(&mut self) {
        let mut all = std::mem::take(&mut self.mem);
        for (&vcpu, rows) in all.iter_mut() {
            self.write_mem(vcpu, rows);
        }
        self.mem = all;
    }

    fn write_syscalls(&mut self, batch: SyscallBatch) {
        let n = batch.rows.len();
        if let Some(part) = self.part(Table::Syscalls, batch.vcpu, n) {
            let r = part.write(&syscalls_batch(batch.first_seq, batch.tid, &batch.rows));
            self.result(Table::Syscalls, batch.vcpu, n, r);
        }
    }

    fn write_regs(&mut self, batch: RegsBatch) {
        let n = batch.rows.len();
        // Rows exist only once the layout is known.
        let Some(layout) = crate::regs::layout() else {
            return;
        };
        if let Some(part) = self.part(Table::Regs, batch.vcpu, n) {
            let r = part.write(&regs_batch(layout, batch.first_seq, batch.tid, &batch.rows));
            self.result(Table::Regs, batch.vcpu, n, r);
        }
    }

    fn seal_old(&mut self) {
        self.seal_each(PartWriter::seal_if_old);
    }

    /// Stops recording after an I/O error (a full disk), said once for
    /// the whole session (see [`Stop::fail`]); this writer stops too.
    fn fail(&mut self, error: String) {
        self.stop.fail(&error);
        self.stop_if_stopped();
    }

    /// Once the recording has stopped: seals what this writer holds where it
    /// can (a part that cannot be completed is removed, which gives its space
    /// back), and writes nothing more.
    fn stop_if_stopped(&mut self) {
        if self.failed || !self.stop.is_set() {
            return;
        }
        self.failed = true;
        for part in self.parts.values_mut() {
            let _ = part.seal();
        }
        let lost: u64 = self.parts.values().map(PartWriter::lost_rows).sum();
        self.report_sealed();
        let _ = self.cfg.ledger.write_now();
        if lost > 0 {
            self.report
                .errors
                .push(format!("{lost} rows of open parts could not be sealed"));
        }
    }

    fn finish(mut self) -> SinkReport {
        self.seal_all();
        for (&key, part) in self.parts.iter_mut() {
            self.report
                .written
                .insert(key, (part.sealed_rows(), part.sealed_parts()));
        }
        self.report
    }
}

/// Set once a write failed: the recording stops, for every writer and the
/// keeper.
pub struct Stop {
    set: AtomicBool,
    root: PathBuf,
    ledger: Arc<Ledger>,
}

impl Stop {
    fn is_set(&self) -> bool {
        self.set.load(Ordering::Relaxed)
    }

    /// The first failure stops the recording: the space kept in reserve is
    /// given back, and the failure said on stderr and in the manifest. The
    /// guest runs on. Later failures are not repeated.
    fn fail(&self, error: &str) {
        if self.set.swap(true, Ordering::Relaxed) {
            return;
        }
        crate::session::release_reserve(&self.root);
        warn!("qtrace: writing the trace failed, recording stops: {error}");
        let msg = format!("writing the trace failed, recording stopped: {error}");
        self.ledger.update(|m| {
            m.errors.push(msg);
            m.complete = false;
        });
        let _ = self.ledger.write_now();
    }
}

/// True if `dir` can become a trace directory: it does not exist, or is empty.
pub fn usable_out_dir(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(format!(
                "out={}: the directory exists and is not empty",
                dir.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("out={}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtrace_format::Trace;

    /// A sink writing into `dir/t.parquet`, and its ledger.
    fn start(
        dir: &Path,
        writers: usize,
        max_memory: u64,
        limits: PartLimits,
    ) -> (PathBuf, Sink, Arc<Ledger>) {
        let root = dir.join("t.parquet");
        std::fs::create_dir_all(&root).unwrap();
        let ledger = Arc::new(Ledger::new(&root, qtrace_format::Manifest::new()));
        let sink = Sink::start(&SinkConfig {
            root: root.clone(),
            buffer: 1000,
            writers,
            max_memory,
            zstd: 3,
            limits,
            ledger: ledger.clone(),
        })
        .unwrap();
        (root, sink, ledger)
    }

    #[test]
    fn writes_every_batch_in_order_and_seals_parts() {
        let dir = tempfile::tempdir().unwrap();
        let limits = PartLimits {
            max_rows: 2000,
            max_age: Duration::from_secs(60),
        };
        let (root, sink, ledger) = start(dir.path(), 2, 8000, limits);
        for vcpu in 0..3u32 {
            for k in 0..5u64 {
                let ids = vec![vcpu * 10 + k as u32; 1000];
                let sent = sink.send(
                    BlockBatch {
                        vcpu,
                        tid: 100 + vcpu,
                        first_seq: k * 1000,
                        rows: ids,
                    },
                    false,
                );
                assert_eq!(sent, Sent::Taken, "writers gone");
            }
        }
        let report = sink.finish();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        for vcpu in 0..3 {
            assert_eq!(report.written[&(Table::Blocks, vcpu)], (5000, 3));
        }
        ledger.write_now().unwrap();
        let trace = Trace::open(&root).unwrap();
        let parts = trace.parts(Table::Blocks).unwrap();
        assert_eq!(parts.len(), 9);
        // Every part is listed, with its rows, seq range and checksum.
        let listed = &trace.manifest().parts;
        assert_eq!(listed.len(), 9);
        for p in listed {
            let bytes = std::fs::read(root.join(&p.path)).unwrap();
            assert_eq!(qtrace_format::writer::file_checksum(&bytes), p.xxh3);
            assert_eq!(p.bytes, bytes.len() as u64);
            let (first, last) = (p.first_seq.unwrap(), p.last_seq.unwrap());
            assert_eq!(last - first + 1, p.rows);
        }
    }

    #[test]
    fn drop_mode_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        // One batch of 1000 ids (4000 bytes) in flight at most.
        let (root, sink, ledger) = start(dir.path(), 1, 4000, PartLimits::default());
        let (mut taken, mut dropped) = (0u64, 0u64);
        for k in 0..200u64 {
            let batch = BlockBatch {
                vcpu: 0,
                tid: 1,
                first_seq: k * 1000,
                rows: vec![7; 1000],
            };
            match sink.send(batch, true) {
                Sent::Taken => taken += 1000,
                Sent::Dropped => dropped += 1000,
                Sent::Lost => panic!("lost"),
            }
        }
        let report = sink.finish();
        assert!(dropped > 0, "the writer kept up with 200 batches");
        assert_eq!(report.written[&(Table::Blocks, 0)].0, taken);
        ledger.write_now().unwrap();
        let m = qtrace_format::Manifest::read(&root).unwrap();
        assert_eq!(m.dropped.len(), 1);
        assert_eq!(m.dropped[0].rows, dropped);
        let ranged: u64 = m.dropped[0].ranges.iter().map(|r| r.1).sum();
        assert_eq!(ranged, dropped);
    }
}
