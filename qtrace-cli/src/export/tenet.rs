//! `qtrace export TRACE --tenet --seq A..B`: a window of one vCPU as a
//! Tenet text trace, for Tenet, the trace explorer for IDA Pro and Binary
//! Ninja (github.com/gaasedelen/tenet, its `tracers/README.md`).
//!
//! Tenet's format: one line per executed instruction, comma-separated
//! `name=value` entries: registers that changed (`rax=0x1`), the program
//! counter of the instruction (`rip=0x401000`, on every line, after the
//! other registers), and each memory access it made: `mr=ADDR:BYTES`
//! (read) or `mw=ADDR:BYTES` (write), BYTES being the bytes in memory
//! order, as hex. No header: Tenet reads every line as entries.
//!
//! What a qtrace trace gives, and where it goes:
//! - Instructions: each block of the window expands to its instructions'
//!   addresses (`block_dict.insns`). The line count is the window's
//!   instruction count.
//! - Memory: each `mem` row goes on the line of its instruction
//!   (`block_seq`, `insn`), in `seq` order; values need `mem=values` (with
//!   `mem=addr` the entries have no bytes).
//! - Registers, where recorded (`regs=`): a row read at block entry goes on
//!   the block's first instruction, one read at a system call on the
//!   block's last (the call). `regs` stores a value only when it changed,
//!   so its non-null values are the changes; the first line, and the first
//!   line after the vCPU switches threads, carry every register known for
//!   that thread (rows before the window are read for that). Between
//!   readings (`regs_every`, or block entries not recorded) Tenet shows
//!   the last reading. Only registers Tenet knows go out: on x86_64 the 16
//!   general-purpose registers (Tenet's AMD64 set), elsewhere those of up
//!   to 8 bytes; the program counter comes from the instruction addresses.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

use anyhow::{bail, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{Array, RecordBatch};
use qtrace_format::block_stream::{clip, Blocks};
use qtrace_format::schema::col;
use qtrace_format::{Table, Trace};

use super::cells::push_hex;
use super::cursor::{KeyRange, Ordered, RowCursor};
use super::{parts_by_vcpu, Args, Escape};
use crate::reading::vcpus;

/// Blocks exported when no `--seq` is given: Tenet itself advises at most
/// about 10 million instructions per trace.
const DEFAULT_BLOCKS: u64 = 100_000;

/// Tenet's AMD64 registers, without the program counter.
const AMD64: [&str; 16] = [
    "rax", "rbx", "rcx", "rdx", "rbp", "rsp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15",
];

pub fn run(trace: &Trace, args: &Args, out: &mut dyn Write) -> Result<()> {
    let vcpu = match args.vcpu {
        Some(v) => v,
        None => {
            let all = vcpus(trace)?;
            let Some(&first) = all.first() else {
                bail!("{}: the trace has no blocks", trace.root().display());
            };
            if all.len() > 1 {
                eprintln!(
                    "note: exporting vCPU {first} of {} (choose with --vcpu)",
                    all.len()
                );
            }
            first
        }
    };
    let range = match &args.seq {
        Some(r) => r.clone(),
        None => {
            eprintln!("note: exporting seq 0..{DEFAULT_BLOCKS} (choose with --seq A..B)");
            0..DEFAULT_BLOCKS
        }
    };
    let target = trace.manifest().target.as_str();
    let pc_name = if target.starts_with("x86_64") {
        "rip"
    } else {
        "pc"
    };
    let registers: Vec<String> = trace
        .manifest()
        .regs
        .iter()
        .filter(|r| r.size <= 8 && r.name != pc_name)
        .filter(|r| target != "x86_64" || AMD64.contains(&r.name.as_str()))
        .map(|r| r.name.clone())
        .collect();

    let insns: HashMap<u32, Vec<u64>> = trace
        .block_dict()?
        .into_iter()
        .map(|b| (b.id, b.insns.iter().map(|i| i.addr).collect()))
        .collect();
    let of_vcpu = |table| -> Result<Vec<_>> {
        Ok(parts_by_vcpu(trace, table, Some(vcpu))?
            .into_iter()
            .flat_map(|(_, p)| p)
            .collect())
    };
    let mem = RowCursor::new(Ordered::new(
        of_vcpu(Table::Mem)?,
        Some(KeyRange {
            column: col::BLOCK_SEQ,
            range: range.clone(),
        }),
        None,
    ));
    let regs = if registers.is_empty() {
        None
    } else {
        let mut columns = vec![
            col::TID.to_string(),
            col::BLOCK_SEQ.to_string(),
            col::SYSCALL_SEQ.to_string(),
        ];
        columns.extend(registers.iter().cloned());
        // From the start: the state at the window's start needs the rows
        // before it.
        Some(RowCursor::new(Ordered::new(
            of_vcpu(Table::Regs)?,
            Some(KeyRange {
                column: col::BLOCK_SEQ,
                range: 0..range.end,
            }),
            Some(columns),
        )))
    };
    let mut walk = Walk {
        pc_name,
        registers,
        mem,
        regs,
        known: HashMap::new(),
        tid: None,
        line: String::with_capacity(256),
        lines: 0,
        threads: 0,
        values_missing: false,
    };

    let blocks = Blocks::open(&of_vcpu(Table::Blocks)?)?;
    let mut escape = Escape::default();
    for group in blocks.groups().iter().filter(|g| g.may_overlap(&range)) {
        let read = blocks.read(group, &mut |run| {
            let Some(run) = clip(run, &range) else {
                return Ok(());
            };
            for (i, &id) in run.ids.iter().enumerate() {
                let seq = run.first_seq + i as u64;
                let step = match insns.get(&id) {
                    Some(addrs) => walk.block(out, run.tid, seq, addrs),
                    None => Err(anyhow::anyhow!(
                        "{}: block {id} (seq {seq}) is missing from block_dict",
                        trace.root().display()
                    )),
                };
                if let Err(e) = step {
                    return Err(escape.keep(e));
                }
            }
            Ok(())
        });
        escape.outcome(read)?;
    }
    if walk.lines == 0 {
        eprintln!(
            "note: no blocks of vCPU {vcpu} in seq {}..{}",
            range.start, range.end
        );
    }
    if walk.threads > 1 {
        eprintln!(
            "note: {} threads ran in this window on vCPU {vcpu}; Tenet sees one stream \
             (each switch repeats the new thread's registers)",
            walk.threads
        );
    }
    if walk.values_missing {
        eprintln!("note: the trace has no memory values (recorded with mem=addr): the mr/mw entries have no bytes");
    }
    Ok(())
}

/// The state of the walk through the window.
struct Walk {
    pc_name: &'static str,
    /// The registers written, in the guest's order.
    registers: Vec<String>,
    mem: RowCursor,
    regs: Option<RowCursor>,
    /// Last value of each register, per thread (`registers`' order).
    known: HashMap<u32, Vec<Option<u64>>>,
    /// The thread of the last line.
    tid: Option<u32>,
    line: String,
    lines: u64,
    threads: u64,
    values_missing: bool,
}

/// Registers read for one block: at its entry, and at its system call.
#[derive(Default)]
struct Readings {
    entry: Vec<(usize, u64)>,
    call: Vec<(usize, u64)>,
}

impl Walk {
    /// One block execution: a line per instruction.
    fn block(&mut self, out: &mut dyn Write, tid: u32, seq: u64, addrs: &[u64]) -> Result<()> {
        let readings = self.readings(tid, seq)?;
        let switched = self.tid != Some(tid);
        if switched {
            self.tid = Some(tid);
            self.threads += 1;
        }
        let last = addrs.len().saturating_sub(1);
        for (i, &addr) in addrs.iter().enumerate() {
            self.line.clear();
            let mut changed: Vec<(usize, u64)> = Vec::new();
            if i == 0 {
                changed.extend(&readings.entry);
            }
            if i == last {
                changed.extend(&readings.call);
            }
            let state = self
                .known
                .entry(tid)
                .or_insert_with(|| vec![None; self.registers.len()]);
            for &(r, v) in &changed {
                state[r] = Some(v);
            }
            if switched && i == 0 {
                // The whole state known, so that Tenet starts from it.
                changed = state
                    .iter()
                    .enumerate()
                    .filter_map(|(r, v)| v.map(|v| (r, v)))
                    .collect();
            } else {
                changed.sort_by_key(|&(r, _)| r);
                changed.dedup_by_key(|(r, _)| *r);
            }
            for (r, v) in changed {
                let _ = write!(self.line, "{}={v:#x},", self.registers[r]);
            }
            let _ = write!(self.line, "{}={addr:#x}", self.pc_name);
            self.accesses(seq, i, i == last)?;
            self.line.push('\n');
            out.write_all(self.line.as_bytes())?;
            self.lines += 1;
        }
        Ok(())
    }

    /// The register rows of block `seq`; rows of earlier blocks (before
    /// the window) only update the state of their threads.
    fn readings(&mut self, tid: u32, seq: u64) -> Result<Readings> {
        let mut readings = Readings::default();
        let Some(regs) = self.regs.as_mut() else {
            return Ok(readings);
        };
        while let Some((batch, row)) = regs.current()? {
            let block_seq = u64_at(batch, col::BLOCK_SEQ, row).unwrap_or(0);
            if block_seq > seq {
                break;
            }
            let row_tid = batch
                .column_by_name(col::TID)
                .and_then(|c| c.as_primitive_opt::<UInt32Type>())
                .map_or(tid, |c| c.value(row));
            let at_call = u64_at(batch, col::SYSCALL_SEQ, row).is_some();
            let values: Vec<(usize, u64)> = self
                .registers
                .iter()
                .enumerate()
                .filter_map(|(r, name)| u64_at(batch, name, row).map(|v| (r, v)))
                .collect();
            regs.advance();
            if block_seq == seq && row_tid == tid {
                if at_call {
                    readings.call.extend(values);
                } else {
                    readings.entry.extend(values);
                }
            } else {
                let state = self
                    .known
                    .entry(row_tid)
                    .or_insert_with(|| vec![None; self.registers.len()]);
                for (r, v) in values {
                    state[r] = Some(v);
                }
            }
        }
        Ok(readings)
    }

    /// Appends the memory accesses of instruction `insn` of block `seq`
    /// (on its last instruction, any with a larger index too).
    fn accesses(&mut self, seq: u64, insn: usize, last: bool) -> Result<()> {
        while let Some((batch, row)) = self.mem.current()? {
            let block_seq = u64_at(batch, col::BLOCK_SEQ, row).unwrap_or(0);
            if block_seq > seq {
                break;
            }
            if block_seq == seq {
                let i = batch
                    .column_by_name(col::INSN)
                    .and_then(|c| c.as_primitive_opt::<UInt16Type>())
                    .map_or(0, |c| usize::from(c.value(row)));
                if i > insn && !last {
                    break;
                }
                access(&mut self.line, &mut self.values_missing, batch, row);
            }
            // Accesses of blocks before this one were not in the blocks
            // read (a damaged trace): nowhere to put them.
            self.mem.advance();
        }
        Ok(())
    }
}

/// Appends one memory access entry to `line`.
fn access(line: &mut String, values_missing: &mut bool, batch: &RecordBatch, row: usize) {
    let addr = u64_at(batch, col::ADDR, row).unwrap_or(0);
    let size = batch
        .column_by_name(col::SIZE)
        .and_then(|c| c.as_primitive_opt::<UInt8Type>())
        .map_or(0, |c| c.value(row));
    let flag = |name| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_boolean_opt())
            .is_some_and(|c| c.value(row))
    };
    let kind = if flag(col::STORE) { "mw" } else { "mr" };
    let _ = write!(line, ",{kind}={addr:#x}:");
    match u64_at(batch, col::VALUE, row) {
        Some(value) => {
            let hi = u64_at(batch, col::VALUE_HI, row);
            push_hex(&memory_bytes(value, hi, size, flag(col::BIG_ENDIAN)), line);
        }
        None => *values_missing = true,
    }
}

/// The bytes an access read or wrote, in memory order, from its value.
fn memory_bytes(value: u64, hi: Option<u64>, size: u8, big_endian: bool) -> Vec<u8> {
    let mut bytes: Vec<u8> = value.to_le_bytes().to_vec();
    if size > 8 {
        bytes.extend(hi.unwrap_or(0).to_le_bytes());
    }
    bytes.truncate(usize::from(size).min(16));
    if big_endian {
        bytes.reverse();
    }
    bytes
}

fn u64_at(batch: &RecordBatch, name: &str, row: usize) -> Option<u64> {
    let c = batch
        .column_by_name(name)?
        .as_primitive_opt::<UInt64Type>()?;
    (!c.is_null(row)).then(|| c.value(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_bytes_in_memory_order() {
        assert_eq!(memory_bytes(0x4443_4241, None, 4, false), b"ABCD");
        assert_eq!(memory_bytes(0x4142, None, 2, true), b"AB");
        let wide = memory_bytes(
            0x0706_0504_0302_0100,
            Some(0x0f0e_0d0c_0b0a_0908),
            16,
            false,
        );
        assert_eq!(wide, (0u8..16).collect::<Vec<_>>());
    }
}
