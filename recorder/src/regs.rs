//! Registers (option `regs=`): read at block entry (`regs_at=blocks` or
//! `both`, at every `regs_every`-th block of each vCPU) and at each system
//! call's entry (`regs_at=syscalls` or `both`), and written as the wide
//! `regs` table: one column per register, whose value is stored only when it
//! changed since the thread's previous row.
//!
//! QEMU lets a plugin read registers only on a vCPU thread, inside a
//! syscall callback or a callback registered as reading them
//! (`QEMU_PLUGIN_CB_R_REGS`). Sampling every N blocks makes no call on the
//! other blocks: an inline per-vCPU counter counts blocks, and a
//! conditional callback runs when it reaches N, reads, and resets it.
//!
//! At block entry, QEMU 10.0 reads a stale program counter: a block entered
//! by a direct jump from another (chained) leaves the guest pc where the
//! last exit to QEMU's main loop put it. The recorder knows the block's
//! address, which is what the pc holds then, and stores that instead.
//!
//! Nothing here may run on a writer thread but [`layout`].

use std::sync::OnceLock;

use qtrace_format::schema::{col, RegBytes, RegSpec, RegsLayout, RegsRow};

use crate::ffi::{self, Counter, GuestReader, PerVcpu, Register, Tb, VcpuSlot};
use crate::filter::glob;
use crate::options::Options;
use crate::recorder::{current_block_seq, hand_over, Recorder, State};

/// Rows per vCPU buffer (1.2 MB).
const REGS_BUFFER: usize = 1 << 14;

/// The registers `regs=` selects, and the table's layout. Found at the first
/// read: QEMU lists registers, and tells their size, only in a vCPU callback.
struct Selected {
    regs: Vec<Register>,
    layout: RegsLayout,
    /// Which of `regs` is the program counter, if selected.
    pc: Option<usize>,
}

/// GDB names of the program counter (`rip` on x86_64, `pc` on AArch64
/// and RISC-V).
const PC_NAMES: [&str; 3] = ["pc", "rip", "eip"];

static SELECTED: OnceLock<Option<Selected>> = OnceLock::new();

/// Blocks each vCPU executed since it last read its registers (with
/// `regs_every` > 1): incremented inline, reset by the callback.
static SINCE_READ: OnceLock<Counter> = OnceLock::new();

/// Each vCPU's rows, boxed at its first.
static LANES: PerVcpu<Option<Box<RegsLane>>> = PerVcpu::new();

/// One vCPU's rows of `regs`.
struct RegsLane {
    rows: Vec<RegsRow>,
    vcpu: u32,
    /// Sequence number of `rows[0]`.
    next_seq: u64,
    lost: u64,
    /// The thread's latest value of every register, laid end to end as
    /// in the layout, and which of them are known (none before the thread's
    /// first row, so that it stores every value).
    prev: Vec<u8>,
    known: Vec<bool>,
    /// The row being read: its bitmap, then the values that changed.
    values: Vec<u8>,
    reader: GuestReader,
}

impl VcpuSlot for Option<Box<RegsLane>> {
    const EMPTY: Self = None;
}

impl RegsLane {
    fn new(vcpu: u32, layout: &RegsLayout) -> RegsLane {
        RegsLane {
            rows: Vec::new(),
            vcpu,
            next_seq: 0,
            lost: 0,
            prev: vec![0; layout.row_bytes()],
            known: vec![false; layout.regs().len()],
            values: Vec::new(),
            reader: GuestReader::new(),
        }
    }

    /// Reads every selected register and keeps those that changed; at block
    /// entry, the pc is `block_pc`.
    fn read(&mut self, selected: &Selected, block_seq: u64, at: At) -> RegsRow {
        let layout = &selected.layout;
        let bitmap = layout.bitmap_bytes();
        self.values.clear();
        self.values.resize(bitmap, 0);
        let (syscall_seq, block_pc) = match at {
            At::Block { pc } => (None, Some(pc.to_le_bytes())),
            At::Syscall { seq } => (Some(seq), None),
        };
        for (i, reg) in selected.regs.iter().enumerate() {
            let range = layout.range(i);
            let value = match &block_pc {
                Some(pc) if selected.pc == Some(i) => pc.get(..range.len()),
                _ => self.reader.read(reg),
            };
            let value = value.filter(|v| v.len() == range.len());
            let Some(value) = value else {
                // Not read (it does not happen): the next read stores it.
                self.known[i] = false;
                continue;
            };
            let prev = &mut self.prev[range];
            if !self.known[i] || !same(prev, value) {
                prev.copy_from_slice(value);
                self.known[i] = true;
                self.values[i / 8] |= 1 << (i % 8);
                self.values.extend_from_slice(value);
            }
        }
        let values = if self.values.len() > bitmap {
            RegBytes::new(&self.values)
        } else {
            RegBytes::default()
        };
        RegsRow {
            block_seq,
            syscall_seq,
            values,
        }
    }

    fn push(&mut self, state: &State, row: RegsRow) {
        if self.rows.capacity() == 0 {
            self.rows.reserve_exact(REGS_BUFFER);
        }
        self.rows.push(row);
        if self.rows.len() >= REGS_BUFFER {
            self.flush(state);
        }
    }

    /// Hands the rows to the writers.
    fn flush(&mut self, state: &State) {
        let rows = std::mem::take(&mut self.rows);
        hand_over(state, self.vcpu, rows, &mut self.next_seq, &mut self.lost);
    }
}

/// `a == b` for slices of the same length, without a call to `memcmp` for
/// each register (a tenth of the time at every block).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        u64::from_ne_bytes(w)
    };
    a.len() == b.len()
        && a.chunks(8)
            .zip(b.chunks(8))
            .all(|(x, y)| word(x) == word(y))
}

/// Where a row is read.
#[derive(Clone, Copy)]
enum At {
    /// At the entry of the block at `pc`.
    Block { pc: u64 },
    /// At the entry of system call `seq`.
    Syscall { seq: u64 },
}

/// Instruments a block that is recorded, after its execution callback (so
/// that the block is the vCPU's current one when its registers are read).
pub fn instrument(tb: &Tb<'_>, opts: &Options) {
    if opts.regs.is_empty() || !opts.regs_at.blocks() {
        return;
    }
    let pc = tb.vaddr();
    if opts.regs_every <= 1 {
        tb.on_exec_regs::<Recorder>(pc);
        return;
    }
    let since_read = SINCE_READ.get_or_init(Counter::allocate);
    tb.count_inline(since_read);
    tb.on_exec_regs_if::<Recorder>(since_read, opts.regs_every, pc);
}

/// The block at `pc`, instrumented by [`instrument`], is about to execute
/// on `vcpu`.
pub fn on_block(state: &State, vcpu: u32, pc: u64) {
    if let Some(since_read) = SINCE_READ.get() {
        since_read.set(vcpu, 0);
    }
    read(state, vcpu, current_block_seq(vcpu), At::Block { pc });
}

/// `vcpu` is entering system call `syscall_seq`, made by block `block_seq`.
pub fn on_syscall(state: &State, vcpu: u32, block_seq: u64, syscall_seq: u64) {
    read(state, vcpu, block_seq, At::Syscall { seq: syscall_seq });
}

fn read(state: &State, vcpu: u32, block_seq: u64, at: At) {
    let Some(selected) = SELECTED.get_or_init(|| select(&state.opts.regs)) else {
        return;
    };
    let Some(slot) = LANES.get(vcpu) else { return };
    let lane = slot.get_or_insert_with(|| Box::new(RegsLane::new(vcpu, &selected.layout)));
    let row = lane.read(selected, block_seq, at);
    lane.push(state, row);
}

/// `vcpu`'s thread is going away: writes its rows, and forgets its values,
/// so that the next thread on this vCPU starts with a full row.
pub fn retire(state: &State, vcpu: u32) {
    if let Some(Some(lane)) = LANES.get(vcpu) {
        lane.flush(state);
        lane.known.iter_mut().for_each(|k| *k = false);
    }
}

/// Hands `vcpu`'s rows to the writers now (before an exec, or when they
/// have waited long).
pub fn flush(state: &State, vcpu: u32) {
    if let Some(Some(lane)) = LANES.get(vcpu) {
        lane.flush(state);
    }
}

/// A forked child: the rows recorded so far are the parent's to write; the
/// child's `regs` start at `seq` 0, every value written again.
pub fn forget_all() {
    LANES.for_each_at_exit(|_, slot| {
        if let Some(lane) = slot {
            lane.rows.clear();
            lane.next_seq = 0;
            lane.lost = 0;
            lane.known.iter_mut().for_each(|k| *k = false);
        }
    });
}

/// At exit: writes every lane's rows; adds (vCPU, rows, rows lost) of each.
pub fn finish(state: &State, lanes: &mut Vec<(u32, u64, u64)>) {
    LANES.for_each_at_exit(|vcpu, slot| {
        let Some(lane) = slot else { return };
        lane.flush(state);
        lanes.push((vcpu, lane.next_seq, lane.lost));
    });
}

/// The layout of the `regs` table, once a register was read.
pub fn layout() -> Option<&'static RegsLayout> {
    SELECTED.get()?.as_ref().map(|s| &s.layout)
}

/// The registers `patterns` select, each read once for its size. A pattern
/// that selects nothing is reported on stderr with the guest's registers.
fn select(patterns: &[String]) -> Option<Selected> {
    let all = ffi::registers();
    let names: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
    for p in patterns {
        if !names.iter().any(|n| glob(p.as_bytes(), n.as_bytes())) {
            eprintln!(
                "qtrace: regs={p} names no register of this guest (it has {})",
                names.join(" ")
            );
        }
    }
    let fixed = [col::SEQ, col::TID, col::BLOCK_SEQ, col::SYSCALL_SEQ];
    let mut reader = GuestReader::new();
    let mut regs = Vec::new();
    let mut specs = Vec::new();
    for reg in all {
        if !patterns
            .iter()
            .any(|p| glob(p.as_bytes(), reg.name.as_bytes()))
        {
            continue;
        }
        let size = reader.read(&reg).map_or(0, <[u8]>::len);
        if size == 0 || fixed.contains(&reg.name.as_str()) {
            eprintln!("qtrace: register {} cannot be recorded", reg.name);
            continue;
        }
        specs.push(RegSpec {
            name: reg.name.clone(),
            size: size as u32,
        });
        regs.push(reg);
    }
    let pc = specs
        .iter()
        .position(|r| PC_NAMES.contains(&r.name.as_str()));
    (!regs.is_empty()).then(|| Selected {
        regs,
        layout: RegsLayout::new(specs),
        pc,
    })
}
