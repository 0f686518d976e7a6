//! What the recorder does at each callback: gives each distinct translated
//! block an id, appends executed ids (and, when recorded, memory accesses:
//! see `stream`) to the vCPU's own buffer, hands full buffers to the
//! writers, and at exit writes the block dictionary, the counts and the
//! manifest. System calls, when recorded, go to buffers of their own per
//! vCPU.
//!
//! The execution callback is the hot path: it must take no lock, touch no
//! state shared between vCPUs and allocate nothing but a new buffer when one
//! is full.

use crate::lock;
use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use qtrace_format::manifest::{now_rfc3339, ChildProcess, RunEnd, ThreadTotals};
use qtrace_format::schema::{
    block_counts_batch, BlockCount, BlockDictBuilder, BlockInfo, InsnInfo, Syscall,
};
use qtrace_format::writer::{write_table, PartLimits};
use qtrace_format::{Manifest, Table, VcpuTotals};

use crate::disas::Disassembler;
use crate::ffi::{
    self, Counter, GuestReader, Info, MemInfo, PerVcpu, Plugin, PluginId, Tb, VcpuSlot,
};
use crate::modules::Modules;
use crate::options::{MemMode, MemRw, Options};
use crate::regs;
use crate::session::{self, Session, Settings};
use crate::signals;
use crate::sink::{usable_out_dir, Batch, BlockBatch, Msg, Sent, StreamBatch};
use crate::stream;
use crate::triggers;
use qtrace_format::syscall_names;

pub struct Recorder;

pub(crate) struct State {
    pub(crate) opts: Options,
    /// The trace's root: that of the process that loaded the recorder (a
    /// forked child records into `processes/pid=N/` below it).
    root: PathBuf,
    /// What every session's manifest starts from.
    base: Manifest,
    settings: Settings,
    blocks: Mutex<BlockTable>,
    /// The guest is AArch64 (atomics are recognised by their encoding).
    aarch64: bool,
    /// Syscall names of the guest architecture (empty if not known).
    syscall_names: syscall_names::Table,
    /// The files mapped into the guest (option `modules=`).
    modules: Modules,
}

static STATE: OnceLock<State> = OnceLock::new();
/// Each vCPU's buffer, outside `STATE` so that the hot path reaches it with
/// no check that `STATE` is set.
static LANES: PerVcpu<Lane> = PerVcpu::new();

/// Each vCPU's system calls (option `syscalls=`), boxed at its first call:
/// calls are rare, and an empty slot is then one null pointer.
static SYSCALL_LANES: PerVcpu<Option<Box<SyscallLane>>> = PerVcpu::new();

/// System calls per buffer.
const SYSCALL_BUFFER: usize = 4096;

/// One vCPU's system calls: the call in progress, and those done.
struct SyscallLane {
    /// The call made and not yet returned (one at a time per vCPU).
    pending: Option<Syscall>,
    buf: Vec<Syscall>,
    reader: Option<GuestReader>,
    vcpu: u32,
    /// Sequence number of `buf[0]`.
    next_seq: u64,
    lost: u64,
    /// When the buffer was last handed over (`now_ms`).
    flushed_ms: u64,
}

impl VcpuSlot for Option<Box<SyscallLane>> {
    const EMPTY: Self = None;
}

impl SyscallLane {
    /// Appends a finished (or abandoned) call, flushing a full buffer.
    fn push(&mut self, state: &State, call: Syscall) {
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(SYSCALL_BUFFER);
        }
        self.buf.push(call);
        if self.buf.len() >= SYSCALL_BUFFER {
            self.flush(state);
        }
    }

    /// Writes the pending call as one that never returned.
    fn abandon_pending(&mut self, state: &State) {
        if let Some(call) = self.pending.take() {
            self.push(state, call);
        }
    }

    /// Hands the buffer to the writers.
    fn flush(&mut self, state: &State) {
        let rows = std::mem::take(&mut self.buf);
        hand_over(state, self.vcpu, rows, &mut self.next_seq, &mut self.lost);
        self.flushed_ms = now_ms();
    }

    /// A forked child: what the parent recorded is the parent's to write.
    fn forget(&mut self) {
        self.buf.clear();
        self.pending = None;
        self.next_seq = 0;
        self.lost = 0;
    }
}

/// Hands a lane's full buffer to the writers as rows `*next_seq..` of the
/// vCPU's partition. Rows the writers cannot take count as lost (dropped
/// ones are counted in the manifest).
pub(crate) fn hand_over<T>(
    state: &State,
    vcpu: u32,
    rows: Vec<T>,
    next_seq: &mut u64,
    lost: &mut u64,
) where
    Batch<T>: Into<Msg>,
{
    let n = rows.len() as u64;
    if n == 0 {
        return;
    }
    let batch = Batch {
        vcpu,
        tid: tid_of(vcpu),
        first_seq: *next_seq,
        rows,
    };
    if send(state, batch) == Sent::Lost {
        *lost += n;
    }
    *next_seq += n;
}

/// Hands a batch to this process's session. A forked child that has not
/// yet started its own has the parent's buffers but not its writers: its
/// rows are lost.
fn send(state: &State, batch: impl Into<Msg>) -> Sent {
    match session::current() {
        Some(s) if s.pid == std::process::id() => s.sink.send(batch, state.opts.drop),
        _ => Sent::Lost,
    }
}

/// Milliseconds on a coarse monotonic clock (a few ns to read).
fn now_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// A lane's rows wait at most this long (checked at system calls) before
/// being handed over, so that a SIGKILL loses about a second at most.
const FLUSH_AFTER_MS: u64 = 500;

/// Distinct translated blocks: a block translated again with the same
/// address and code (after a flush, or in another thread) keeps its id.
struct BlockTable {
    ids: HashMap<(u64, Vec<u8>), u32>,
    infos: Vec<BlockInfo>,
    counters: Vec<Counter>,
    disas: Disassembler,
}

/// One vCPU's buffer of executed block ids.
///
/// Stored inline in `LANES` (one cache line each), so the hot path reaches
/// it with no pointer to follow. Ids go into `buf` with non-temporal stores:
/// the buffer is written once and read by a writer thread, and caching it
/// would evict the guest's (and QEMU's) working set from L2.
#[repr(C, align(64))]
struct Lane {
    /// Where the next id goes in `buf`; `cursor < end` while there is room.
    /// Both null until the vCPU's first block.
    cursor: *mut u32,
    /// One past `buf`'s last slot.
    end: *mut u32,
    buf: Option<Vec<u32>>,
    vcpu: u32,
    /// The guest thread running on this vCPU (in linux-user, its Linux
    /// thread id); set at its first block.
    tid: u32,
    /// Sequence number of `buf[0]`.
    next_seq: u64,
    /// `seq` of this thread's first block on this vCPU.
    thread_first_seq: u64,
    /// Words of memory records in `buf`, and how many records.
    mem_words: usize,
    mem_records: u64,
    /// `seq` in `mem` of the first record in `buf`.
    mem_next_seq: u64,
    /// Events (blocks and accesses) that could not be written.
    lost: u64,
    /// When the buffer was last handed over (`now_ms`).
    flushed_ms: u64,
}

// SAFETY: `cursor` and `end` point into `buf`, which the lane owns.
unsafe impl Send for Lane {}

impl VcpuSlot for Lane {
    const EMPTY: Lane = Lane {
        cursor: std::ptr::null_mut(),
        end: std::ptr::null_mut(),
        buf: None,
        vcpu: 0,
        tid: 0,
        next_seq: 0,
        thread_first_seq: 0,
        mem_words: 0,
        mem_records: 0,
        mem_next_seq: 0,
        lost: 0,
        flushed_ms: 0,
    };
}

impl Lane {
    /// The vCPU's thread is gone (its index may go to a new thread): writes
    /// what it recorded and forgets it, so that the next thread's first
    /// block starts afresh, with its own `tid`.
    fn retire(&mut self, state: &State) {
        if self.buf.is_none() {
            return;
        }
        self.flush(state);
        if let Some(s) = session::current() {
            lock(&s.threads).push(self.thread_totals());
        }
        self.buf = None;
        self.cursor = std::ptr::null_mut();
        self.end = std::ptr::null_mut();
    }

    /// A forked child: what the parent recorded is the parent's to write.
    /// The lane of the thread that forked starts again from `seq` 0; the
    /// others' threads did not survive the fork.
    fn forget(&mut self, vcpu: u32, forked_here: bool) {
        let buf = self.buf.take();
        *self = Lane::EMPTY;
        if let (true, Some(buf)) = (forked_here, buf) {
            self.vcpu = vcpu;
            self.tid = current_tid();
            self.start(buf);
        }
    }

    fn thread_totals(&self) -> ThreadTotals {
        ThreadTotals {
            tid: self.tid,
            vcpu: self.vcpu,
            first_seq: self.thread_first_seq,
            block_events: self.next_seq - self.thread_first_seq,
        }
    }

    /// Appends `id`: the hot path.
    #[inline(always)]
    fn push(&mut self, vcpu: u32, id: u32) {
        if self.cursor < self.end {
            // SAFETY: `cursor` is in `buf` (it is below `end`).
            unsafe {
                store(self.cursor, id);
                self.cursor = self.cursor.add(1);
            }
        } else {
            lane_slow(self, vcpu, id);
        }
    }

    /// Appends a memory record (see `stream`): hot like [`Lane::push`].
    #[inline(always)]
    fn push_mem<const N: usize>(&mut self, vcpu: u32, words: [u32; N]) {
        if self.room() < N {
            mem_slow(self, vcpu);
            if self.room() < N {
                self.lost += 1;
                return;
            }
        }
        let p = self.cursor;
        // SAFETY: `N` slots from `cursor` are in `buf` (checked above).
        unsafe {
            for (k, w) in words.into_iter().enumerate() {
                store(p.add(k), w);
            }
            self.cursor = p.add(N);
        }
        self.mem_words += N;
        self.mem_records += 1;
    }

    /// Free slots in `buf` (none before the first event).
    #[inline(always)]
    fn room(&self) -> usize {
        (self.end as usize - self.cursor as usize) / std::mem::size_of::<u32>()
    }

    /// Words written in `buf`.
    fn filled(&self) -> usize {
        let start = self
            .buf
            .as_ref()
            .map_or(self.cursor, |b| b.as_ptr().cast_mut());
        (self.cursor as usize - start as usize) / std::mem::size_of::<u32>()
    }

    /// `seq` of the block executing now (the last one appended).
    fn current_seq(&self) -> u64 {
        self.pushed().saturating_sub(1)
    }

    /// Blocks appended so far: the `seq` the next one gets.
    fn pushed(&self) -> u64 {
        let blocks = self.filled() - self.mem_words;
        self.next_seq + blocks as u64
    }

    /// Hands a full buffer over, or at the vCPU's first event starts its
    /// first one (and notes its thread).
    fn make_room(&mut self, vcpu: u32) {
        let Some(state) = STATE.get() else { return };
        if self.buf.is_some() {
            self.flush(state);
        } else if let Some(s) = session::current() {
            self.vcpu = vcpu;
            self.tid = current_tid();
            self.thread_first_seq = self.next_seq;
            self.start(s.sink.empty_buffer());
        }
    }

    /// Makes `buf` the buffer to fill.
    fn start(&mut self, mut buf: Vec<u32>) {
        buf.clear();
        self.cursor = buf.as_mut_ptr();
        // SAFETY: `capacity()` slots follow `as_mut_ptr()` in one allocation.
        self.end = unsafe { self.cursor.add(buf.capacity()) };
        self.buf = Some(buf);
    }

    /// Hands the buffer to the writers (waiting if they are behind), and
    /// starts a new one.
    #[cold]
    fn flush(&mut self, state: &State) {
        let Some(mut ids) = self.buf.take() else {
            return;
        };
        // SAFETY: `cursor` is in `buf` or one past its end, not before its start.
        let n = unsafe { self.cursor.offset_from(ids.as_mut_ptr()) } as usize;
        if n == 0 {
            self.start(ids);
            return;
        }
        // The non-temporal stores must be visible before another thread reads.
        store_fence();
        // SAFETY: the lane wrote the `n` slots before `cursor`, all within
        // the capacity.
        unsafe { ids.set_len(n) };
        let blocks = (n - self.mem_words) as u64;
        let records = self.mem_records;
        let events = blocks + records;
        let mem_first_seq = self.mem_next_seq;
        self.mem_words = 0;
        self.mem_records = 0;
        self.mem_next_seq += records;
        self.flushed_ms = now_ms();
        // A forked child that has no session of its own yet has the
        // parent's buffers but not its writers (nor, safely, its locks).
        let session = match session::current() {
            Some(s) if s.pid == std::process::id() => s,
            _ => {
                self.start(ids);
                self.lost += events;
                self.next_seq += blocks;
                return;
            }
        };
        self.start(session.sink.empty_buffer());
        let batch = BlockBatch {
            vcpu: self.vcpu,
            tid: self.tid,
            first_seq: self.next_seq,
            rows: ids,
        };
        let sent = if records == 0 {
            send(state, batch)
        } else {
            send(
                state,
                StreamBatch {
                    blocks: batch,
                    block_rows: blocks,
                    mem_first_seq,
                    mem_records: records,
                },
            )
        };
        if sent == Sent::Lost {
            self.lost += events;
        }
        self.next_seq += blocks;
    }
}

/// Writes `id` at `p`.
///
/// # Safety
/// `p` must be valid for writes and aligned.
#[inline(always)]
unsafe fn store(p: *mut u32, id: u32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86_64; per the function's contract.
    unsafe {
        std::arch::x86_64::_mm_stream_si32(p.cast(), id as i32)
    };
    #[cfg(not(target_arch = "x86_64"))]
    // SAFETY: per the function's contract.
    unsafe {
        p.write(id)
    };
}

/// Orders the non-temporal stores of [`store`] before later stores.
fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

impl Plugin for Recorder {
    fn install(id: PluginId, info: Info, args: Vec<String>) -> Result<(), String> {
        let opts = Options::parse(&args)?;
        // Modules, the end of the run, fork and exec are followed through
        // the guest's system calls (linux-user).
        let syscalls = opts.syscalls
            || opts.modules
            || triggers::needs_syscalls(&opts.triggers)
            || !info.system_emulation;
        triggers::install(&opts.triggers, id, &info.target, syscalls)?;
        let root = absolute(&opts.out);
        usable_out_dir(&root)?;

        let mut manifest = Manifest::new();
        manifest.recorder_version = env!("CARGO_PKG_VERSION").to_string();
        manifest.target = info.target.clone();
        manifest.mode = if info.system_emulation {
            "system".into()
        } else {
            "linux-user".into()
        };
        manifest.command_line = command_line();
        manifest.options = opts.given.clone();
        manifest.pid = std::process::id();
        let settings = Settings {
            buffer: opts.buffer,
            writers: opts.writers,
            max_memory: opts.max_memory,
            zstd: opts.zstd,
            limits: PartLimits {
                max_rows: opts.part_rows,
                max_age: opts.part_age,
            },
        };

        let modules = Modules::new(
            opts.modules && !info.system_emulation,
            syscall_names::for_target(&info.target),
        );
        let state = State {
            opts,
            root: root.clone(),
            base: manifest.clone(),
            settings: settings.clone(),
            blocks: Mutex::new(BlockTable {
                ids: HashMap::new(),
                infos: Vec::new(),
                counters: Vec::new(),
                disas: Disassembler::new(&info.target, info.system_emulation),
            }),
            aarch64: info.target == "aarch64",
            syscall_names: syscall_names::for_target(&info.target),
            modules,
        };
        STATE
            .set(state)
            .map_err(|_| "the recorder is loaded twice".to_string())?;
        session::start(&root, manifest, &settings, keep)?;
        if !info.system_emulation {
            // SAFETY: the handlers are plain functions that live as long as
            // the process (the plugin is never unloaded in linux-user).
            unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
        }
        ffi::register::<Recorder>(id, syscalls);
        Ok(())
    }

    fn on_translate(tb: &Tb<'_>) {
        let Some(state) = STATE.get() else { return };
        // QEMU has set up its signal handlers by the first translation.
        static ROUTED: Once = Once::new();
        if !state.base.mode.starts_with("system") {
            ROUTED.call_once(signals::route);
        }
        let pc = tb.vaddr();
        // Outside a window a block gets only what detects a start (triggers.rs).
        let plan = triggers::plan(tb);
        // Left out by the filter: no callback, no counter, no cost.
        if !state
            .opts
            .filter
            .includes(pc, || tb.insn(0).and_then(|i| i.symbol()))
        {
            triggers::instrument(tb, &plan, None);
            return;
        }
        if !plan.needs_block_id() {
            triggers::instrument(tb, &plan, None);
            return;
        }
        let insns: Vec<_> = tb.insns().collect();
        let bytes: Vec<Vec<u8>> = insns.iter().map(|i| i.bytes()).collect();
        let code = bytes.concat();
        let mut table = lock(&state.blocks);
        let key = (pc, code);
        let id = match table.ids.get(&key) {
            Some(&id) => id,
            None => {
                let id = table.infos.len() as u32;
                let insns = insns
                    .iter()
                    .zip(bytes)
                    .map(|(insn, bytes)| {
                        let addr = insn.vaddr();
                        let (disas, symbol) = if state.opts.disas {
                            (
                                table.disas.disas(addr, &bytes, || insn.disas()),
                                insn.symbol(),
                            )
                        } else {
                            (String::new(), None)
                        };
                        InsnInfo {
                            addr,
                            bytes,
                            disas,
                            symbol,
                        }
                    })
                    .collect::<Vec<_>>();
                let (pc, code) = key;
                table.infos.push(BlockInfo {
                    id,
                    pc,
                    size: code.len() as u32,
                    symbol: insns.first().and_then(|i| i.symbol.clone()),
                    code: code.clone(),
                    insns,
                });
                table.counters.push(Counter::allocate());
                table.ids.insert((pc, code), id);
                id
            }
        };
        if !plan.records() {
            drop(table);
            triggers::instrument(tb, &plan, Some(id));
            return;
        }
        tb.count_inline(&table.counters[id as usize]);
        let atomic: Vec<bool> = if state.opts.mem == MemMode::Off {
            Vec::new()
        } else {
            let known = &table.infos[id as usize].insns;
            insns
                .iter()
                .zip(known)
                .map(|(insn, k)| {
                    if state.aarch64 {
                        // Capstone 4 does not know the LSE atomics: decode.
                        is_aarch64_atomic_rmw(&k.bytes)
                    } else if k.disas.is_empty() {
                        is_atomic_rmw(&insn.disas())
                    } else {
                        is_atomic_rmw(&k.disas)
                    }
                })
                .collect()
        };
        drop(table);
        if state.opts.mem != MemMode::Off {
            let value = if state.opts.mem == MemMode::Values {
                stream::HAS_VALUE
            } else {
                0
            };
            let loads = state.opts.mem_rw != MemRw::Stores;
            let stores = state.opts.mem_rw != MemRw::Loads;
            for (i, insn) in insns.iter().enumerate().take(stream::MAX_INSNS as usize) {
                let inexact = if atomic[i] { stream::INEXACT } else { 0 };
                let header = stream::MEM_TAG | value | inexact | (i as u32) << stream::INSN_SHIFT;
                insn.on_mem::<Recorder>(loads, stores, u64::from(header));
            }
        }
        tb.on_exec::<Recorder>(id as u64);
        regs::instrument(tb, &state.opts);
        triggers::instrument(tb, &plan, Some(id));
    }

    #[inline(always)]
    fn on_exec(vcpu: u32, data: u64) {
        // The hot path: nothing here can panic (see `Plugin::on_exec`).
        match LANES.get(vcpu) {
            Some(lane) => lane.push(vcpu, data as u32),
            None => no_lane(),
        }
    }

    #[inline(always)]
    fn on_mem(vcpu: u32, info: MemInfo, vaddr: u64, data: u64) {
        // Hot like `on_exec`: nothing here can panic.
        let Some(lane) = LANES.get(vcpu) else {
            no_lane();
            return;
        };
        let meminfo = info.raw();
        if !meminfo_checked(meminfo) {
            check_meminfo(info);
        }
        let header = data as u32 | (meminfo & stream::MEMINFO_MASK);
        let (lo, hi) = (vaddr as u32, (vaddr >> 32) as u32);
        if header & stream::HAS_VALUE == 0 {
            lane.push_mem(vcpu, [header, lo, hi]);
            return;
        }
        let size_shift = stream::decode(meminfo).size_shift;
        let (v, v_hi) = info.value(size_shift);
        let (v0, v1) = (v as u32, (v >> 32) as u32);
        if size_shift == 4 {
            let (v2, v3) = (v_hi as u32, (v_hi >> 32) as u32);
            lane.push_mem(vcpu, [header, lo, hi, v0, v1, v2, v3]);
        } else {
            lane.push_mem(vcpu, [header, lo, hi, v0, v1]);
        }
    }

    fn on_syscall(vcpu: u32, num: i64, args: [u64; 8]) {
        let Some(state) = STATE.get() else { return };
        // Modules are followed inside and outside the windows.
        let at = LANES.get(vcpu).map_or(0, |l| l.current_seq());
        state.modules.on_syscall(vcpu, num, &args, at);
        let name = syscall_names::name(state.syscall_names, num);
        if let Some(name) = name {
            signals::on_syscall(name, &args, std::process::id(), current_tid());
            note_fork(vcpu, name, &args);
        }
        flush_if_old(state, vcpu);
        record_call(state, vcpu, num, args, name);
        if matches!(name, Some("execve" | "execveat")) {
            seal_before_exec(state, vcpu);
        }
    }

    fn on_syscall_ret(vcpu: u32, num: i64, ret: i64) {
        let Some(state) = STATE.get() else { return };
        match syscall_names::name(state.syscall_names, num) {
            Some("rt_sigaction") => signals::route(),
            Some("fork" | "vfork" | "clone" | "clone3") => after_fork_call(state, vcpu, ret),
            Some("execve" | "execveat") => after_failed_exec(vcpu),
            _ => {}
        }
        state.modules.on_syscall_ret(vcpu, num, ret);
        let Some(Some(lane)) = SYSCALL_LANES.get(vcpu) else {
            return;
        };
        match lane.pending.take() {
            Some(mut call) if call.num == num => {
                call.ret = Some(ret);
                // What the call read in is in its buffer after the call.
                let limit = state.opts.syscall_data;
                if let (true, Some(buf)) = (limit > 0 && ret > 0, call.name.and_then(buffer_in)) {
                    let n = (ret as usize).min(limit);
                    call.data = lane
                        .reader
                        .get_or_insert_with(GuestReader::new)
                        .read_memory(call.args[buf], n);
                }
                lane.push(state, call);
            }
            // A return with no matching call: keep what was seen of the call.
            other => lane.pending = other,
        }
    }

    fn on_regs(vcpu: u32, data: u64) {
        let Some(state) = STATE.get() else { return };
        regs::on_block(state, vcpu, data);
    }

    fn on_vcpu_exit(vcpu: u32) {
        let Some(state) = STATE.get() else { return };
        if let Some(Some(lane)) = SYSCALL_LANES.get(vcpu) {
            lane.abandon_pending(state);
            lane.flush(state);
        }
        regs::retire(state, vcpu);
        let _held = triggers::hold_exits();
        if let Some(lane) = LANES.get(vcpu) {
            lane.retire(state);
        }
    }

    fn on_trigger(vcpu: u32, data: u64) {
        triggers::on_hit(vcpu, data)
    }

    fn on_reset() {
        triggers::on_reset()
    }

    fn on_exit() {
        let Some(state) = STATE.get() else { return };
        let Some(session) = session::current() else {
            return;
        };
        if std::process::id() != session.pid {
            // A forked child that never returned from the fork (cannot
            // happen): the parent writes what it holds.
            return;
        }
        if let Err(e) = finish(state, session, signals::run_end()) {
            warn!(
                "qtrace: could not finish the trace in {}: {e}",
                session.root.display()
            );
        }
    }
}

/// Notes a system call in the vCPU's lane (the call pending until it returns).
fn record_call(state: &State, vcpu: u32, num: i64, args: [u64; 8], name: Option<&'static str>) {
    // Outside every window, or (with `syscalls=off`) only for the triggers.
    let Some(opens_window) = triggers::syscall(vcpu, num) else {
        return;
    };
    if !state.opts.syscalls {
        return;
    }
    let Some(slot) = SYSCALL_LANES.get(vcpu) else {
        no_lane();
        return;
    };
    let lane = slot.get_or_insert_with(|| {
        Box::new(SyscallLane {
            pending: None,
            buf: Vec::new(),
            reader: None,
            vcpu,
            next_seq: 0,
            lost: 0,
            flushed_ms: now_ms(),
        })
    });
    // A call still pending never returned (it should not happen: only
    // calls that end the thread do not return).
    lane.abandon_pending(state);
    let block_seq = match LANES.get(vcpu) {
        // The block that made it is outside the window it opens.
        Some(l) if opens_window => l.pushed(),
        l => l.map_or(0, |l| l.current_seq()),
    };
    if !state.opts.regs.is_empty() && state.opts.regs_at.syscalls() {
        // The call entering now is written after those already done.
        let syscall_seq = lane.next_seq + lane.buf.len() as u64;
        regs::on_syscall(state, vcpu, block_seq, syscall_seq);
    }
    // What the call writes out is in its buffer before the call.
    let data = match (state.opts.syscall_data, name.and_then(buffer_out)) {
        (0, _) | (_, None) => None,
        (limit, Some((buf, len))) => {
            let n = (args[len] as usize).min(limit);
            lane.reader
                .get_or_insert_with(GuestReader::new)
                .read_memory(args[buf], n)
        }
    };
    lane.pending = Some(Syscall {
        block_seq,
        num,
        name,
        args,
        ret: None,
        data,
    });
}

/// A vCPU's first block, or its buffer is full.
#[cold]
#[inline(never)]
fn lane_slow(lane: &mut Lane, vcpu: u32, id: u32) {
    ffi::guard("block execution", || lane.make_room(vcpu));
    if lane.cursor < lane.end {
        // SAFETY: as in `Lane::push`.
        unsafe {
            store(lane.cursor, id);
            lane.cursor = lane.cursor.add(1);
        }
    } else {
        lane.lost += 1;
        lane.next_seq += 1;
    }
}

/// A memory record does not fit in the vCPU's buffer (or there is none).
#[cold]
#[inline(never)]
fn mem_slow(lane: &mut Lane, vcpu: u32) {
    ffi::guard("memory access", || lane.make_room(vcpu))
}

/// Distinct meminfo values whose decoding (`stream::decode`) was checked
/// against QEMU's own functions: one bit each.
static MEMINFO_CHECKED: [AtomicU64; 1 << 12] = [const { AtomicU64::new(0) }; 1 << 12];
/// Set if QEMU's meminfo does not decode as `stream::decode` expects (a QEMU
/// other than 10.0's layout): the trace is then marked incomplete.
static MEMINFO_MISMATCH: AtomicU64 = AtomicU64::new(0);

#[inline(always)]
fn meminfo_checked(meminfo: u32) -> bool {
    let i = (meminfo & stream::MEMINFO_MASK) as usize;
    MEMINFO_CHECKED[i >> 6].load(Ordering::Relaxed) & (1 << (i & 63)) != 0
        && meminfo & !stream::MEMINFO_MASK == 0
}

#[cold]
#[inline(never)]
fn check_meminfo(info: MemInfo) {
    let meminfo = info.raw();
    let got = stream::decode(meminfo & stream::MEMINFO_MASK);
    let want = stream::Access {
        size_shift: info.size().trailing_zeros(),
        store: info.is_store(),
        sign_extended: info.is_sign_extended(),
        big_endian: info.is_big_endian(),
    };
    if got != want || meminfo & !stream::MEMINFO_MASK != 0 {
        if MEMINFO_MISMATCH.fetch_add(1, Ordering::Relaxed) == 0 {
            warn!(
                "qtrace: this QEMU describes memory accesses differently from QEMU 10.0 \
                 (meminfo {meminfo:#x}): the `mem` table is not reliable"
            );
        }
        return;
    }
    let i = meminfo as usize;
    MEMINFO_CHECKED[i >> 6].fetch_or(1 << (i & 63), Ordering::Relaxed);
}

/// Whether an instruction (its disassembly) is an atomic read-modify-write,
/// whose memory values QEMU 10.0 reports wrongly in multi-threaded guests
/// (and a failed compare-and-swap as a write, in any guest): x86 `lock`ed
/// instructions, `xchg` with memory, `cmpxchg`, `xadd`; Arm exclusives and
/// LSE atomics; RISC-V AMOs and LR/SC.
fn is_atomic_rmw(disas: &str) -> bool {
    let mut words = disas.split_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    let m = first.to_ascii_lowercase();
    if m == "lock" || m.starts_with("cmpxchg") || m.starts_with("xadd") {
        return true;
    }
    if m.starts_with("xchg") {
        return disas.contains('(') || disas.contains('[');
    }
    const ARM: [&str; 18] = [
        "ldxr", "ldaxr", "stxr", "stlxr", "ldxp", "ldaxp", "stxp", "stlxp", "cas", "ldadd",
        "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax", "ldumin", "swp",
    ];
    const RISCV: [&str; 3] = ["amo", "lr.", "sc."];
    ARM.iter().chain(RISCV.iter()).any(|p| m.starts_with(p))
}

/// The same for an AArch64 instruction, from its encoding: load/store
/// exclusives (LDXR, STXR, LDAXR, STLXR and the pair forms), compare-and-swap
/// (CAS*), and the LSE atomics (LDADD, LDCLR, LDEOR, LDSET, LD[SU]MAX/MIN, SWP).
fn is_aarch64_atomic_rmw(bytes: &[u8]) -> bool {
    let Ok(word) = <[u8; 4]>::try_from(bytes) else {
        return false;
    };
    let i = u32::from_le_bytes(word);
    let exclusive = i & 0x3F80_0000 == 0x0800_0000;
    let cas = i & 0x3FA0_0000 == 0x08A0_0000;
    let lse = i & 0x3F20_0C00 == 0x3820_0000;
    exclusive || cas || lse
}

/// The calls that write a buffer out: (buffer argument, length argument).
fn buffer_out(name: &str) -> Option<(usize, usize)> {
    match name {
        "write" | "pwrite64" | "sendto" => Some((1, 2)),
        _ => None,
    }
}

/// The calls that read into a buffer: its argument (the length read is the
/// return value).
fn buffer_in(name: &str) -> Option<usize> {
    match name {
        "read" | "pread64" | "recvfrom" => Some(1),
        "getrandom" => Some(0),
        _ => None,
    }
}

/// The calling thread's Linux thread id: in linux-user, the guest thread's.
pub(crate) fn current_tid() -> u32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() as u32 }
}

/// `seq` of the block `vcpu` is executing (0 before its first block).
pub(crate) fn current_block_seq(vcpu: u32) -> u64 {
    LANES.get(vcpu).map_or(0, |l| l.current_seq())
}

/// The guest thread running on `vcpu` (0 before its first block).
fn tid_of(vcpu: u32) -> u32 {
    LANES.get(vcpu).map_or(0, |l| l.tid)
}

/// For `triggers`: records one execution of block `id` on `vcpu`, as the
/// block's callback and counter would (a start trigger fired in a block
/// translated outside the window, which has neither). On `vcpu`'s thread.
pub(crate) fn record_block(vcpu: u32, id: u32) {
    let Some(state) = STATE.get() else { return };
    match LANES.get(vcpu) {
        Some(lane) => lane.push(vcpu, id),
        None => return no_lane(),
    }
    if let Some(counter) = lock(&state.blocks).counters.get(id as usize) {
        counter.add(vcpu, 1);
    }
}

/// For `triggers`: blocks recorded on `vcpu` so far. On `vcpu`'s thread.
pub(crate) fn block_events(vcpu: u32) -> u64 {
    LANES.get(vcpu).map_or(0, |l| l.pushed())
}

/// The same, from another thread while `vcpu` is stopped (see
/// `PerVcpu::get_stopped`).
pub(crate) fn block_events_stopped(vcpu: u32) -> u64 {
    LANES.get_stopped(vcpu).map_or(0, |l| l.pushed())
}

/// For `triggers`, when the run cannot go on before the guest has started:
/// removes the trace directory the recorder made.
pub(crate) fn discard_trace() {
    if let Some(state) = STATE.get() {
        if let Some(s) = session::current() {
            s.finished.store(true, Ordering::Relaxed);
        }
        let _ = std::fs::remove_dir_all(&state.root);
    }
}

/// A vCPU beyond `ffi::MAX_VCPUS`.
#[cold]
#[inline(never)]
fn no_lane() {
    if let Some(s) = session::current() {
        s.lost_no_lane.fetch_add(1, Ordering::Relaxed);
    }
}

/// Seals every part, writes the rest of the block dictionary, the counts,
/// the modules, then the final manifest with how the run ended.
fn finish(state: &State, session: &Session, end: RunEnd) -> Result<(), String> {
    session.finished.store(true, Ordering::Relaxed);
    let mut lanes = Vec::new();
    let mut threads = std::mem::take(&mut *lock(&session.threads));
    LANES.for_each_at_exit(|vcpu, lane| {
        if lane.buf.is_some() {
            lane.flush(state);
            threads.push(lane.thread_totals());
        }
        lanes.push((vcpu, lane.next_seq, lane.lost));
    });
    SYSCALL_LANES.for_each_at_exit(|vcpu, slot| {
        let Some(lane) = slot else { return };
        lane.abandon_pending(state);
        lane.flush(state);
        lanes.push((vcpu, lane.next_seq, lane.lost));
    });
    regs::finish(state, &mut lanes);
    let report = session.sink.finish();
    let mut errors = report.errors;
    let lost: u64 = lanes.iter().map(|(_, _, lost)| lost).sum::<u64>()
        + report.lost.values().sum::<u64>()
        + session.lost_no_lane.load(Ordering::Relaxed);
    if lost > 0 {
        errors.push(format!("{lost} events could not be written"));
    }
    describe(state, session, threads, end, errors)
}

/// Writes what the manifest needs beside the parts (the dictionary's new
/// blocks, the counts, the modules), then the manifest itself: at the end,
/// and before an exec.
fn describe(
    state: &State,
    session: &Session,
    mut threads: Vec<ThreadTotals>,
    end: RunEnd,
    mut errors: Vec<String>,
) -> Result<(), String> {
    // Not at the same time as the keeper, which writes the same files.
    let _gate = lock(&GATE);
    let zstd = state.opts.zstd;
    // A write that fails here stops the recording like any other, said once.
    let mut failed = |e: String| {
        session.sink.fail(&e);
        errors.push(e);
    };
    if let Err(e) = write_new_blocks(state, session) {
        failed(e);
    }
    let (counts, mut totals, distinct_blocks) = block_counts(state);
    match write_table(
        &session.root,
        Table::BlockCounts,
        0,
        &block_counts_batch(&counts),
        zstd,
    ) {
        Ok(part) => session.ledger.add_parts(vec![part]),
        Err(e) => failed(e.to_string()),
    }
    match state.modules.write(&session.root, zstd) {
        Ok(part) => session.ledger.add_parts(part.into_iter().collect()),
        Err(e) => failed(e),
    }
    if MEMINFO_MISMATCH.load(Ordering::Relaxed) > 0 {
        errors.push("memory accesses of a layout this recorder does not know".into());
    }
    threads.sort_by_key(|t| (t.vcpu, t.first_seq));
    let stopped = session.sink.stopped();
    session.ledger.update(|m| {
        // Rows and parts sealed, per table and vCPU, from the parts listed.
        let mut sealed: BTreeMap<(&str, u32), (u64, u32)> = BTreeMap::new();
        for p in &m.parts {
            if let Some(vcpu) = p.vcpu {
                let e = sealed.entry((table_key(&p.table), vcpu)).or_default();
                e.0 += p.rows;
                e.1 += 1;
            }
        }
        let rows = |table: Table, vcpu: u32| sealed.get(&(table.name(), vcpu)).copied();
        for t in totals.iter_mut() {
            (t.block_events, t.parts) = rows(Table::Blocks, t.vcpu).unwrap_or_default();
            t.mem_accesses = rows(Table::Mem, t.vcpu).map_or(0, |r| r.0);
            t.syscalls = rows(Table::Syscalls, t.vcpu).map_or(0, |r| r.0);
            t.regs_rows = rows(Table::Regs, t.vcpu).map_or(0, |r| r.0);
        }
        totals.retain(|t| t.blocks > 0 || t.block_events > 0);
        m.qemu_version = qemu_version(&m.target);
        m.ended_at = Some(now_rfc3339());
        m.distinct_blocks = distinct_blocks;
        m.vcpus = totals;
        m.threads = threads;
        m.windows = triggers::windows_at_exit();
        m.regs = regs::layout().map_or_else(Vec::new, |l| l.regs().to_vec());
        errors.retain(|e| !m.errors.contains(e));
        m.errors.extend(errors.iter().cloned());
        m.complete = m.errors.is_empty() && m.dropped.is_empty() && !stopped;
        m.end = Some(end);
    });
    session::release_reserve(&session.root);
    // Write failures were said when they happened; the rest is said now.
    if !stopped {
        for e in &errors {
            warn!("qtrace: {e}");
        }
    }
    session.ledger.write_now()
}

/// The name of a table as `Table::name` spells it (for the lookups above).
fn table_key(name: &str) -> &'static str {
    [Table::Blocks, Table::Mem, Table::Syscalls, Table::Regs]
        .into_iter()
        .map(|t| t.name())
        .find(|&n| n == name)
        .unwrap_or("")
}

/// Per block and vCPU, executions from the inline counters; the totals of
/// each vCPU; the distinct blocks. On a vCPU thread (counters are QEMU's).
fn block_counts(state: &State) -> (Vec<BlockCount>, Vec<VcpuTotals>, u64) {
    let table = lock(&state.blocks);
    let nvcpus = ffi::num_vcpus();
    let mut counts = Vec::new();
    let mut totals: Vec<VcpuTotals> = (0..nvcpus)
        .map(|vcpu| VcpuTotals {
            vcpu,
            ..Default::default()
        })
        .collect();
    for (id, counter) in table.counters.iter().enumerate() {
        let n_insns = table.infos[id].insns.len() as u64;
        for t in totals.iter_mut() {
            let execs = counter.get(t.vcpu);
            if execs > 0 {
                counts.push(BlockCount {
                    vcpu: t.vcpu,
                    block_id: id as u32,
                    execs,
                });
                t.blocks += execs;
                t.insns += execs * n_insns;
            }
        }
    }
    counts.sort_by_key(|c| (c.vcpu, c.block_id));
    (counts, totals, table.infos.len() as u64)
}

/// Writes the blocks translated since the last call as a new part of
/// `block_dict` (every second from the keeper, and at the end).
fn write_new_blocks(state: &State, session: &Session) -> Result<(), String> {
    let mut dict = lock(&session.dict);
    let (written, index) = *dict;
    let new: Vec<BlockInfo> = lock(&state.blocks).infos[written..].to_vec();
    if new.is_empty() {
        return Ok(());
    }
    let mut builder = BlockDictBuilder::default();
    for info in &new {
        builder.append(info);
    }
    let part = write_table(
        &session.root,
        Table::BlockDict,
        index,
        &builder.finish(),
        state.opts.zstd,
    )
    .map_err(|e| e.to_string())?;
    session.ledger.add_parts(vec![part]);
    *dict = (written + new.len(), index + 1);
    Ok(())
}

/// Held by whoever writes `block_dict` and `modules` (the keeper, `describe`),
/// and across a fork (see `before_fork`).
static GATE: Mutex<()> = Mutex::new(());

/// The keeper's work, every second: the dictionary's new blocks, and the
/// modules if they changed.
fn keep(session: &'static Session) {
    let Some(state) = STATE.get() else { return };
    let _gate = lock(&GATE);
    if let Err(e) = write_new_blocks(state, session) {
        session.sink.fail(&e);
    }
    match state
        .modules
        .write_if_changed(&session.root, state.opts.zstd)
    {
        Ok(part) => session.ledger.add_parts(part.into_iter().collect()),
        Err(e) => session.sink.fail(&e),
    }
}

thread_local! {
    /// The locks the forking thread holds across `fork`.
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Before a fork (QEMU has stopped the other vCPUs): takes the locks a
/// child needs, so that none is held by a thread the child will not have.
extern "C" fn before_fork() {
    ffi::guard("fork", || {
        let Some(state) = STATE.get() else { return };
        let gate: Box<dyn Any> = Box::new(lock(&GATE));
        let blocks: Box<dyn Any> = Box::new(lock(&state.blocks));
        let modules = state.modules.hold();
        HELD.with(|h| h.borrow_mut().extend([gate, blocks, modules]));
    })
}

/// After a fork, in the parent and in the child: lets the locks go.
extern "C" fn after_fork() {
    ffi::guard("fork", || HELD.with(|h| h.borrow_mut().clear()))
}

/// Which vCPUs are in a call that makes a process (not a thread).
static FORKING: [AtomicBool; 64] = [const { AtomicBool::new(false) }; 64];

/// At a fork-like call: notes whether it makes a process.
fn note_fork(vcpu: u32, name: &str, args: &[u64; 8]) {
    const CLONE_THREAD: u64 = 0x10000;
    let process = match name {
        "fork" | "vfork" => true,
        "clone" => args[0] & CLONE_THREAD == 0,
        // clone3's flags are the first field of the struct it points to.
        "clone3" => GuestReader::new()
            .read_memory(args[0], 8)
            .and_then(|b| b.try_into().ok())
            .is_some_and(|b: [u8; 8]| u64::from_le_bytes(b) & CLONE_THREAD == 0),
        _ => return,
    };
    if let Some(f) = FORKING.get(vcpu as usize) {
        f.store(process, Ordering::Relaxed);
    }
}

/// The return of a fork-like call: in a new child, starts its own session;
/// in the parent, lists the child.
fn after_fork_call(state: &State, vcpu: u32, ret: i64) {
    let Some(session) = session::current() else {
        return;
    };
    if std::process::id() != session.pid {
        start_child(state, session, vcpu);
        return;
    }
    let process = FORKING
        .get(vcpu as usize)
        .is_some_and(|f| f.swap(false, Ordering::Relaxed));
    if ret > 0 && process {
        let pid = ret as u32;
        let block_seq = current_block_seq(vcpu);
        session.ledger.update(|m| {
            m.children.push(ChildProcess {
                pid,
                path: format!("processes/pid={pid}"),
                vcpu,
                tid: current_tid(),
                block_seq,
            })
        });
    }
}

/// In a forked child, at the fork's return: forgets what the parent
/// recorded (the parent writes it) and records from here into
/// `processes/pid=N/` of the trace, with writers of its own.
fn start_child(state: &State, parent: &Session, vcpu: u32) {
    let pid = std::process::id();
    LANES.for_each_at_exit(|v, lane| lane.forget(v, v == vcpu));
    SYSCALL_LANES.for_each_at_exit(|_, slot| {
        if let Some(lane) = slot {
            lane.forget();
        }
    });
    regs::forget_all();
    signals::reset();
    {
        let table = lock(&state.blocks);
        let nvcpus = ffi::num_vcpus();
        for counter in &table.counters {
            for v in 0..nvcpus {
                counter.set(v, 0);
            }
        }
    }
    let root = state.root.join("processes").join(format!("pid={pid}"));
    let mut manifest = state.base.clone();
    manifest.started_at = now_rfc3339();
    manifest.pid = pid;
    manifest.parent_pid = Some(parent.pid);
    manifest.command_line = command_line();
    if let Err(e) = session::start(&root, manifest, &state.settings, keep) {
        warn!("qtrace: the forked child {pid} is not recorded: {e}");
    }
}

/// Before an execve (the call is pending in the vCPU's lane): seals what
/// this process recorded, so that the trace is whole if the exec succeeds.
/// The call itself goes alone into a last part of `syscalls`, taken back if
/// the exec fails (see `after_failed_exec`). Other threads' buffers, which
/// an exec kills, cannot be reached from here.
fn seal_before_exec(state: &State, vcpu: u32) {
    let Some(session) = session::current() else {
        return;
    };
    if session.pid != std::process::id() {
        return;
    }
    // As in `flush_if_old`.
    let held = triggers::hold_exits();
    if let Some(lane) = LANES.get(vcpu) {
        lane.flush(state);
    }
    regs::flush(state, vcpu);
    drop(held);
    let mut pending = None;
    if let Some(Some(lane)) = SYSCALL_LANES.get(vcpu) {
        lane.flush(state);
        pending = lane.pending.clone().map(|call| (call, lane.next_seq));
    }
    session.sink.checkpoint();
    if let Some((call, seq)) = pending {
        let batch = Batch {
            vcpu,
            tid: current_tid(),
            first_seq: seq,
            rows: vec![call],
        };
        if send(state, batch) == Sent::Taken {
            session.sink.checkpoint();
            EXEC_ROW.store(true, Ordering::Relaxed);
        }
    }
    let mut threads = lock(&session.threads).clone();
    if let Some(lane) = LANES.get(vcpu) {
        threads.push(lane.thread_totals());
    }
    let end = RunEnd {
        how: "exec".into(),
        tid: Some(current_tid()),
        ..Default::default()
    };
    if let Err(e) = describe(state, session, threads, end, Vec::new()) {
        warn!("qtrace: could not seal the trace before exec: {e}");
    }
}

/// Set while the pending execve's row is sealed in a part of its own.
static EXEC_ROW: AtomicBool = AtomicBool::new(false);

/// The return of an execve, which failed (a successful one does not
/// return): the recording goes on as if nothing had been sealed.
fn after_failed_exec(vcpu: u32) {
    let Some(session) = session::current() else {
        return;
    };
    if EXEC_ROW.swap(false, Ordering::Relaxed) {
        session.sink.retract_last(Table::Syscalls, vcpu);
    }
    session.ledger.update(|m| {
        m.end = None;
        m.complete = false;
    });
    let _ = session.ledger.write_now();
}

/// At a system call: hands over the vCPU's buffers if they have waited
/// long, so that what a SIGKILL loses stays small.
fn flush_if_old(state: &State, vcpu: u32) {
    let now = now_ms();
    if let Some(lane) = LANES.get(vcpu) {
        if lane.buf.is_some() && now.saturating_sub(lane.flushed_ms) >= FLUSH_AFTER_MS {
            // A vCPU in a system call is not stopped by QEMU for a reset:
            // `triggers::on_reset` must not read the lane while it changes.
            let _held = triggers::hold_exits();
            lane.flush(state);
            regs::flush(state, vcpu);
        }
    }
    if let Some(Some(lane)) = SYSCALL_LANES.get(vcpu) {
        if !lane.buf.is_empty() && now.saturating_sub(lane.flushed_ms) >= FLUSH_AFTER_MS {
            lane.flush(state);
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// QEMU's command line (the guest program and its arguments included).
fn command_line() -> Vec<String> {
    std::fs::read("/proc/self/cmdline")
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The version of the QEMU we run in: the plugin API does not tell, but
/// linux-user QEMU carries its `--version` text, `qemu-TARGET version X.Y.Z`.
/// Read at exit, in small chunks: a large allocation while the guest runs
/// would move where QEMU maps the guest's memory.
fn qemu_version(target: &str) -> Option<String> {
    use std::io::Read;
    let needle = format!("qemu-{target} version ");
    let finder = memchr::memmem::Finder::new(needle.as_bytes());
    let mut exe = std::fs::File::open("/proc/self/exe").ok()?;
    let mut window = Vec::with_capacity(CHUNK + 128);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = exe.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        window.extend_from_slice(&chunk[..n]);
        if let Some(at) = finder.find(&window) {
            // The version follows; read on if it straddles the chunk's end.
            let start = at + needle.len();
            let mut rest = window[start..].to_vec();
            while rest.len() < 64 {
                let n = exe.read(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            let end = rest
                .iter()
                .position(|&c| c.is_ascii_whitespace() || c == 0)
                .unwrap_or(rest.len().min(64));
            let v = std::str::from_utf8(&rest[..end]).ok()?;
            return (!v.is_empty()).then(|| v.to_string());
        }
        // Keep the tail, where the next chunk may complete the needle.
        let keep = window.len().min(needle.len());
        window.drain(..window.len() - keep);
    }
}

const CHUNK: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_and_riscv_atomics_by_disassembly() {
        for (disas, want) in [
            ("lock cmpxchgl %edx, (%rbp)", true),
            ("lock xaddl %esi, 0xa2b6e(%rip)", true),
            ("xchgl %eax, (%rdi)", true),
            ("xchgq %rax, %rbx", false),
            ("cmpxchg8b (%rdi)", true),
            ("movl %eax, (%rdi)", false),
            ("amoadd.w a0, a1, (a2)", true),
            ("lr.d a0, (a1)", true),
            ("sd a0, 8(sp)", false),
            ("", false),
        ] {
            assert_eq!(is_atomic_rmw(disas), want, "{disas}");
        }
    }

    #[test]
    fn aarch64_atomics_by_encoding() {
        for (word, what, want) in [
            (0xb8e0_0020u32, "ldaddal w0, w0, [x1]", true),
            (0x885f_fc40, "ldaxr w0, [x2]", true),
            (0x8811_7c41, "stxr w17, w1, [x2]", true),
            (0x88e0_fc41, "casal w0, w1, [x2]", true),
            (0x88df_fc20, "ldar w0, [x1]", false),
            (0xb940_52e7, "ldr w7, [x23, #0x50]", false),
        ] {
            assert_eq!(is_aarch64_atomic_rmw(&word.to_le_bytes()), want, "{what}");
        }
        assert!(!is_aarch64_atomic_rmw(&[0x20, 0x00]));
    }
}
