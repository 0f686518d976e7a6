//! Background writer threads: they take full event buffers from the vCPUs and
//! encode them into sealed Parquet parts.
//!
//! Each writer owns the partitions of the vCPUs assigned to it (`vcpu %
//! writers`), so no two threads ever write the same file. The queue to each
//! writer is bounded: when the writers fall behind, a vCPU that hands over a
//! buffer waits, so memory stays bounded and nothing is dropped.
//!
//! Writers never call QEMU's API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use qtrace_format::mem_writer::{MemRows, PAGE_ROWS};
use qtrace_format::schema::{regs_batch, syscalls_batch, RegsRow, Syscall, Table};
use qtrace_format::writer::{PartLimits, PartWriter};

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
    /// `seq` in `mem` of the stream's first access.
    pub mem_first_seq: u64,
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
            Msg::Finish => 0,
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
    senders: Vec<SyncSender<Msg>>,
    threads: Mutex<Vec<JoinHandle<SinkReport>>>,
    pool: Arc<BufferPool>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone)]
pub struct SinkConfig {
    pub root: PathBuf,
    /// Events per buffer.
    pub buffer: usize,
    pub writers: usize,
    pub queue: usize,
    pub zstd: i32,
    pub limits: PartLimits,
}

impl Sink {
    pub fn start(cfg: &SinkConfig) -> std::io::Result<Sink> {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let pool = Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            capacity: cfg.buffer,
            keep: cfg.writers.max(1) * (cfg.queue + 1),
        });
        for i in 0..cfg.writers.max(1) {
            let (tx, rx) = mpsc::sync_channel::<Msg>(cfg.queue);
            let cfg = cfg.clone();
            let pool = pool.clone();
            let thread = std::thread::Builder::new()
                .name(format!("qtrace-writer-{i}"))
                .spawn(move || {
                    let mut w = Writer::new(cfg);
                    loop {
                        match rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(Msg::Blocks(batch)) => pool.give(w.write(batch)),
                            Ok(Msg::Stream(batch)) => pool.give(w.write_stream(batch)),
                            Ok(Msg::Syscalls(batch)) => w.write_syscalls(batch),
                            Ok(Msg::Regs(batch)) => w.write_regs(batch),
                            Ok(Msg::Finish) | Err(RecvTimeoutError::Disconnected) => break,
                            Err(RecvTimeoutError::Timeout) => {
                                w.flush_mem();
                                w.seal_old()
                            }
                        }
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
        })
    }

    /// An empty buffer to fill, recycled where possible.
    pub fn empty_buffer(&self) -> Vec<u32> {
        self.pool.take()
    }

    /// Hands a full buffer to its vCPU's writer, waiting while that
    /// writer's queue is full. False if the writers have already finished.
    pub fn send(&self, batch: impl Into<Msg>) -> bool {
        let msg = batch.into();
        let tx = &self.senders[msg.vcpu() as usize % self.senders.len()];
        tx.send(msg).is_ok()
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
}

impl Writer {
    fn new(cfg: SinkConfig) -> Writer {
        Writer {
            cfg,
            parts: BTreeMap::new(),
            mem: BTreeMap::new(),
            ids: Vec::new(),
            report: SinkReport::default(),
            failed: false,
        }
    }

    /// The part writer of `table`'s partition `vcpu`, unless writing failed.
    fn part(&mut self, table: Table, vcpu: u32, rows: usize) -> Option<&mut PartWriter> {
        if self.failed {
            *self.report.lost.entry((table, vcpu)).or_default() += rows as u64;
            return None;
        }
        let cfg = &self.cfg;
        Some(
            self.parts.entry((table, vcpu)).or_insert_with(|| {
                PartWriter::new(&cfg.root, table, Some(vcpu), cfg.zstd, cfg.limits)
            }),
        )
    }

    fn result(&mut self, table: Table, vcpu: u32, rows: usize, r: qtrace_format::Result<()>) {
        if let Err(e) = r {
            *self.report.lost.entry((table, vcpu)).or_default() += rows as u64;
            self.fail(e.to_string());
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
        if self.failed {
            return;
        }
        let mut error = None;
        for part in self.parts.values_mut() {
            if let Err(e) = part.seal_if_old() {
                error = Some(e.to_string());
                break;
            }
        }
        if let Some(e) = error {
            self.fail(e);
        }
    }

    /// Stops writing after an I/O error: the guest runs on, and the manifest
    /// says what was lost.
    fn fail(&mut self, error: String) {
        warn!("qtrace: writing the trace failed, recording stops: {error}");
        self.report.errors.push(error);
        self.failed = true;
    }

    fn finish(mut self) -> SinkReport {
        self.flush_mem();
        for (&key, part) in self.parts.iter_mut() {
            if let Err(e) = part.seal() {
                self.report.errors.push(e.to_string());
            }
            self.report
                .written
                .insert(key, (part.sealed_rows(), part.sealed_parts()));
        }
        self.report
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

    #[test]
    fn writes_every_batch_in_order_and_seals_parts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t.parquet");
        let sink = Sink::start(&SinkConfig {
            root: root.clone(),
            buffer: 1000,
            writers: 2,
            queue: 1,
            zstd: 3,
            limits: PartLimits {
                max_rows: 2000,
                max_age: Duration::from_secs(60),
            },
        })
        .unwrap();
        for vcpu in 0..3u32 {
            for k in 0..5u64 {
                let ids = vec![vcpu * 10 + k as u32; 1000];
                let sent = sink.send(BlockBatch {
                    vcpu,
                    tid: 100 + vcpu,
                    first_seq: k * 1000,
                    rows: ids,
                });
                assert!(sent, "writers gone");
            }
        }
        let report = sink.finish();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        for vcpu in 0..3 {
            assert_eq!(report.written[&(Table::Blocks, vcpu)], (5000, 3));
        }
        std::fs::create_dir_all(&root).unwrap();
        qtrace_format::Manifest::new().write(&root).unwrap();
        let trace = Trace::open(&root).unwrap();
        let parts = trace.parts(Table::Blocks).unwrap();
        assert_eq!(parts.len(), 9);
    }
}
