//! The event stream of one vCPU: what the hot callbacks append to the
//! vCPU's buffer, in execution order, and how a writer takes it apart.
//!
//! A buffer is a sequence of 32-bit words. A word below 2^31 is the id of
//! an executed block. A memory access is a header word (top bit set),
//! then its address and, with `mem=values`, its value, each as two words,
//! low half first; a 16-byte value has two more words for its high half.
//! One stream keeps the order of blocks and accesses for free: an access
//! belongs to the block before it.
//!
//! The header holds QEMU's own `qemu_plugin_meminfo_t` as it is (18 bits:
//! the memory operation and the direction), so the hot path calls no API
//! function to take it apart; `decode` does that on the writer thread, and
//! the recorder checks `decode` against QEMU's functions once for each
//! distinct value it meets.

use qtrace_format::mem_writer::MemRows;
use qtrace_format::schema::MemAccess;

/// Marks a header word.
pub const MEM_TAG: u32 = 1 << 31;
/// QEMU's meminfo: bits 0..18 of the header.
pub const MEMINFO_MASK: u32 = (1 << 18) - 1;
/// The instruction's index in its block: 9 bits (TCG puts at most 512
/// instructions in a block).
pub const INSN_SHIFT: u32 = 18;
pub const MAX_INSNS: u32 = 512;
/// The instruction is an atomic read-modify-write (see `recorder`).
pub const INEXACT: u32 = 1 << 27;
/// A value follows the address.
pub const HAS_VALUE: u32 = 1 << 28;

/// A memory access's description, from QEMU's meminfo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// log2 of the bytes accessed.
    pub size_shift: u32,
    pub store: bool,
    pub sign_extended: bool,
    pub big_endian: bool,
}

/// QEMU 10's layout of meminfo: `MemOpIdx | rw << 16`, where `MemOpIdx` is
/// `MemOp << 4 | mmu_idx`; in `MemOp`, bits 0..3 are the size's log2,
/// bit 3 the sign extension, bit 4 "byte-swapped", which on a
/// little-endian host means big-endian; `rw` is 1 (read), 2 (write), 3.
pub fn decode(meminfo: u32) -> Access {
    let memop = meminfo >> 4;
    Access {
        size_shift: memop & 7,
        store: (meminfo >> 16) & 2 != 0,
        sign_extended: memop & 8 != 0,
        big_endian: cfg!(target_endian = "little") == (memop & 16 != 0),
    }
}

/// Words a memory record takes, from its header.
#[inline(always)]
pub fn record_words(header: u32) -> usize {
    if header & HAS_VALUE == 0 {
        3
    } else if decode(header & MEMINFO_MASK).size_shift == 4 {
        7
    } else {
        5
    }
}

/// Takes a stream apart, up to `limit` accesses at a time: block ids go
/// to `ids`, accesses to `mem`. `next_block_seq` is the `seq` the next
/// block id gets (an access belongs to the block before it, in this
/// buffer or the one before). Returns the words consumed, and false if the
/// stream ends inside a record (which the recorder never writes).
pub fn demux(
    words: &[u32],
    next_block_seq: &mut u64,
    ids: &mut Vec<u32>,
    mem: &mut MemRows,
    limit: usize,
) -> (usize, bool) {
    let mut i = 0;
    let mut taken = 0;
    while i < words.len() {
        let w = words[i];
        if w & MEM_TAG == 0 {
            ids.push(w);
            *next_block_seq += 1;
            i += 1;
            continue;
        }
        if taken == limit {
            break;
        }
        let n = record_words(w);
        let Some(rec) = words.get(i..i + n) else {
            return (i, false);
        };
        let pair = |k: usize| u64::from(rec[k]) | u64::from(rec[k + 1]) << 32;
        let a = decode(w & MEMINFO_MASK);
        let flags = (u8::from(a.store) * MemAccess::STORE)
            | (u8::from(a.sign_extended) * MemAccess::SIGN_EXTENDED)
            | (u8::from(a.big_endian) * MemAccess::BIG_ENDIAN)
            | (u8::from(w & INEXACT != 0) * MemAccess::INEXACT)
            | (u8::from(w & HAS_VALUE != 0) * MemAccess::HAS_VALUE);
        mem.push(&MemAccess {
            block_seq: next_block_seq.saturating_sub(1),
            addr: pair(1),
            value: if n > 3 { pair(3) } else { 0 },
            value_hi: if n > 5 { pair(5) } else { 0 },
            insn: ((w >> INSN_SHIFT) & (MAX_INSNS - 1)) as u16,
            size: 1 << a.size_shift,
            flags,
        });
        taken += 1;
        i += n;
    }
    (i, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_accesses_come_apart_in_order() {
        // meminfo: a 16-byte store, a sign-extended 2-byte load.
        let store16 = 4 << 4 | 2 << 16;
        let load2s = (1 | 8) << 4 | 1 << 16;
        let words = [
            7,
            MEM_TAG | HAS_VALUE | 3 << INSN_SHIFT | store16,
            0x1000,
            0,
            1,
            2,
            3,
            4,
            8,
            MEM_TAG | INEXACT | load2s,
            0xdead,
            0xbeef,
        ];
        let (mut ids, mut mem) = (Vec::new(), MemRows::default());
        let mut next = 10;
        assert_eq!(
            demux(&words, &mut next, &mut ids, &mut mem, 10),
            (words.len(), true)
        );
        assert_eq!((ids.clone(), next), (vec![7, 8], 12));
        assert_eq!(mem.len(), 2);
        let a = mem.get(0);
        assert_eq!((a.block_seq, a.insn, a.addr, a.size), (10, 3, 0x1000, 16));
        assert_eq!((a.value, a.value_hi), (1 | 2 << 32, 3 | 4 << 32));
        assert_eq!(a.flags, MemAccess::STORE | MemAccess::HAS_VALUE);
        let b = mem.get(1);
        assert_eq!((b.block_seq, b.addr, b.size), (11, 0xbeef_0000_dead, 2));
        assert_eq!(b.flags, MemAccess::SIGN_EXTENDED | MemAccess::INEXACT);
        // A limit stops before the access past it, and the rest follows.
        let (mut ids, mut mem, mut next) = (Vec::new(), MemRows::default(), 10);
        let (used, ok) = demux(&words, &mut next, &mut ids, &mut mem, 1);
        assert!(ok && used == 9 && mem.len() == 1 && ids == vec![7, 8]);
        let (rest, ok) = demux(&words[used..], &mut next, &mut ids, &mut mem, 1);
        assert!(ok && used + rest == words.len());
        assert_eq!(mem.get(1).block_seq, 11);
        // A record cut short is refused, what precedes it kept.
        let (mut ids, mut mem) = (Vec::new(), MemRows::default());
        assert_eq!(
            demux(&words[..4], &mut 0, &mut ids, &mut mem, 10),
            (1, false)
        );
        assert_eq!((ids.len(), mem.len()), (1, 0));
    }
}
