//! What the traces recorded that explains a divergence: data that differed
//! between the runs up to the point where they parted.
//!
//! Three witnesses, each where the traces have it:
//!
//! - system calls (`syscalls`): the calls made by the common blocks are the
//!   same calls in both runs, so they are paired in order; the one nearest
//!   the point whose result (`ret`, `errno`) or data (`syscall_data=`)
//!   differ is named. Calls that return thread or process ids differ in
//!   any two runs whatever the program does, so they are only mentioned;
//! - loads (`mem=values`): the loads of the last common block, paired in
//!   order, whose values differ;
//! - registers (`regs=`): the registers that differ at the last row read at
//!   or before the point (for a row read at the entry of the differing
//!   block, the program counter is left out: it differs by definition).
//!
//! Only the rows near the point are read: `mem` and `regs` row groups are
//! chosen by their `block_seq` statistics.

use std::collections::HashMap;

use anyhow::Result;
use arrow_array::{
    Array, BinaryArray, BooleanArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray,
    UInt16Array, UInt32Array, UInt64Array, UInt8Array,
};
use qtrace_format::schema::{self, col};
use qtrace_format::{scan, PartPath, Table};
use serde_json::{json, Value};

use super::pruned;
use super::Side;
use crate::rows;

/// Calls whose result is a thread or process id: they differ between any
/// two runs, whatever the program does with them.
const ID_CALLS: [&str; 8] = [
    "getpid",
    "gettid",
    "getppid",
    "set_tid_address",
    "clone",
    "clone3",
    "fork",
    "vfork",
];

/// Loads listed at most.
const MAX_LOADS: usize = 16;

/// One system call's row.
#[derive(Clone, Debug)]
struct Call {
    seq: u64,
    block_seq: u64,
    num: i64,
    name: Option<String>,
    ret: Option<i64>,
    data: Option<Vec<u8>>,
}

impl Call {
    fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("syscall {}", self.num))
    }
}

/// A pair of calls that differ.
struct CallDiff {
    a: Call,
    b: Call,
    /// What differs: `call`, `ret`, `data`.
    what: &'static str,
    /// Other pairs that differ before it (calls returning ids left out).
    earlier: Vec<String>,
}

/// A load of the last common block whose value differs.
struct LoadDiff {
    insn_addr: Option<u64>,
    disas: Option<String>,
    addr_a: u64,
    addr_b: u64,
    size: u8,
    value_a: u64,
    value_b: u64,
}

/// Registers that differ at the last `regs` row at or before the point.
struct RegsDiff {
    block_seq: u64,
    at_syscall: bool,
    regs: Vec<(String, String, String)>,
}

/// What explains a divergence, as far as the traces tell.
pub(super) struct Explanation {
    call: Option<CallDiff>,
    /// Calls returning ids that differ, which explain nothing by themselves.
    id_calls: Vec<String>,
    loads: Vec<LoadDiff>,
    regs: Option<RegsDiff>,
    /// What the traces hold to explain with.
    recorded: Vec<String>,
}

/// Explains the divergence of vCPU `vcpu` at `seq` (A's block there
/// differs from B's); `last` is A's last common block, if any.
pub(super) fn explain(
    a: &Side,
    b: &Side,
    vcpu: u32,
    seq: u64,
    last: Option<u32>,
) -> Result<Explanation> {
    let mut recorded = Vec::new();
    let has = |s: &Side, t: Table| -> Result<Vec<PartPath>> {
        Ok(s.trace
            .parts(t)?
            .into_iter()
            .filter(|p| p.vcpu.unwrap_or(0) == vcpu)
            .collect())
    };
    let (sa, sb) = (has(a, Table::Syscalls)?, has(b, Table::Syscalls)?);
    let (call, id_calls) = if !sa.is_empty() && !sb.is_empty() {
        recorded.push("syscalls".to_string());
        let (ca, cb) = (calls(&sa, seq)?, calls(&sb, seq)?);
        if ca.iter().chain(&cb).any(|c| c.data.is_some()) {
            recorded.push("syscall data".to_string());
        }
        differing_call(ca, cb)
    } else {
        (None, Vec::new())
    };
    let (ma, mb) = (has(a, Table::Mem)?, has(b, Table::Mem)?);
    let loads = match (seq.checked_sub(1), last) {
        (Some(at), Some(last)) if !ma.is_empty() && !mb.is_empty() => {
            recorded.push("mem".to_string());
            let (xa, xb) = (accesses(ma, at)?, accesses(mb, at)?);
            if xa.iter().chain(&xb).any(|x| x.value.is_some()) {
                recorded.push("mem values".to_string());
            }
            differing_loads(a, last, &xa, &xb)
        }
        _ => Vec::new(),
    };
    let (ra, rb) = (has(a, Table::Regs)?, has(b, Table::Regs)?);
    let regs = if !ra.is_empty() && !rb.is_empty() {
        recorded.push("regs".to_string());
        match (regs_at(ra, seq)?, regs_at(rb, seq)?) {
            (Some(x), Some(y)) => differing_regs(x, y, seq),
            _ => None,
        }
    } else {
        None
    };
    Ok(Explanation {
        call,
        id_calls,
        loads,
        regs,
        recorded,
    })
}

fn calls(parts: &[PartPath], before: u64) -> Result<Vec<Call>> {
    let mut calls = scan(
        parts,
        &[
            col::SEQ,
            col::BLOCK_SEQ,
            col::NUM,
            col::NAME,
            col::RET,
            col::DATA,
        ],
        Vec::new,
        |mut acc, batch, _| {
            let seq: &UInt64Array = schema::column(batch, col::SEQ)?;
            let block_seq: &UInt64Array = schema::column(batch, col::BLOCK_SEQ)?;
            let num: &Int64Array = schema::column(batch, col::NUM)?;
            let name: &StringArray = schema::column(batch, col::NAME)?;
            let ret: &Int64Array = schema::column(batch, col::RET)?;
            let data: &BinaryArray = schema::column(batch, col::DATA)?;
            for i in 0..batch.num_rows() {
                // Calls made by the blocks both runs share.
                if block_seq.value(i) >= before {
                    continue;
                }
                acc.push(Call {
                    seq: seq.value(i),
                    block_seq: block_seq.value(i),
                    num: num.value(i),
                    name: (!name.is_null(i)).then(|| name.value(i).to_string()),
                    ret: (!ret.is_null(i)).then(|| ret.value(i)),
                    data: (!data.is_null(i)).then(|| data.value(i).to_vec()),
                });
            }
            Ok(acc)
        },
        |mut x, y| {
            x.extend(y);
            x
        },
    )?;
    calls.sort_by_key(|c| c.seq);
    Ok(calls)
}

/// The differing pair nearest the point, leaving out calls that return
/// ids; and the names of those that differ.
fn differing_call(a: Vec<Call>, b: Vec<Call>) -> (Option<CallDiff>, Vec<String>) {
    let is_id = |c: &Call| c.name.as_deref().is_some_and(|n| ID_CALLS.contains(&n));
    let mut differing: Vec<(Call, Call, &'static str)> = Vec::new();
    let mut id_calls = Vec::new();
    for (x, y) in a.into_iter().zip(b) {
        let what = if x.num != y.num {
            "call"
        } else if x.ret != y.ret {
            "ret"
        } else if x.data != y.data {
            "data"
        } else {
            continue;
        };
        if is_id(&x) && what != "call" {
            id_calls.push(x.name());
        } else {
            differing.push((x, y, what));
        }
    }
    let Some((a, b, what)) = differing.pop() else {
        return (None, id_calls);
    };
    let earlier = differing.iter().map(|(x, _, _)| x.name()).collect();
    (
        Some(CallDiff {
            a,
            b,
            what,
            earlier,
        }),
        id_calls,
    )
}

/// One `mem` row.
struct Access {
    insn: u16,
    addr: u64,
    size: u8,
    store: bool,
    value: Option<u64>,
}

/// The accesses of the block execution `block_seq`, in order.
fn accesses(parts: Vec<PartPath>, block_seq: u64) -> Result<Vec<Access>> {
    let at = block_seq..=block_seq;
    let mut out = Vec::new();
    for g in pruned::groups(parts)?.iter().filter(|g| g.may_hold(&at)) {
        for batch in g.read(&[
            col::BLOCK_SEQ,
            col::INSN,
            col::ADDR,
            col::SIZE,
            col::STORE,
            col::VALUE,
        ])? {
            let bs: &UInt64Array = schema::column(&batch, col::BLOCK_SEQ)?;
            let insn: &UInt16Array = schema::column(&batch, col::INSN)?;
            let addr: &UInt64Array = schema::column(&batch, col::ADDR)?;
            let size: &UInt8Array = schema::column(&batch, col::SIZE)?;
            let store: &BooleanArray = schema::column(&batch, col::STORE)?;
            let value: &UInt64Array = schema::column(&batch, col::VALUE)?;
            for i in (0..batch.num_rows()).filter(|&i| bs.value(i) == block_seq) {
                out.push(Access {
                    insn: insn.value(i),
                    addr: addr.value(i),
                    size: size.value(i),
                    store: store.value(i),
                    value: (!value.is_null(i)).then(|| value.value(i)),
                });
            }
        }
    }
    Ok(out)
}

fn differing_loads(a: &Side, last: u32, xa: &[Access], xb: &[Access]) -> Vec<LoadDiff> {
    let insns = a
        .block(last)
        .map(|b| b.insns.as_slice())
        .unwrap_or_default();
    xa.iter()
        .zip(xb)
        .filter(|(x, y)| !x.store && !y.store && x.insn == y.insn)
        .filter_map(|(x, y)| {
            let (va, vb) = (x.value?, y.value?);
            (va != vb).then(|| {
                let i = insns.get(x.insn as usize);
                LoadDiff {
                    insn_addr: i.map(|i| i.addr),
                    disas: i.map(|i| i.disas.clone()).filter(|d| !d.is_empty()),
                    addr_a: x.addr,
                    addr_b: y.addr,
                    size: x.size,
                    value_a: va,
                    value_b: vb,
                }
            })
        })
        .take(MAX_LOADS)
        .collect()
}

/// The registers at the last `regs` row at or before `block_seq`:
/// (its block_seq, whether read at a system call, name and value of each).
struct RegsRow {
    block_seq: u64,
    at_syscall: bool,
    values: Vec<(String, Option<String>)>,
}

/// Reads back from the last row at or before `upto`, filling each register
/// with its last stored value in the thread (a null means unchanged).
fn regs_at(parts: Vec<PartPath>, upto: u64) -> Result<Option<RegsRow>> {
    let groups = pruned::groups(parts)?;
    let before: Vec<&pruned::Group> = groups
        .iter()
        .filter(|g| g.block_seqs.as_ref().is_none_or(|s| *s.start() <= upto))
        .collect();
    let mut anchor: Option<(u32, RegsRow)> = None;
    for g in before.iter().rev() {
        let batches = g.read(&[])?;
        for batch in batches.iter().rev() {
            let bs: &UInt64Array = schema::column(batch, col::BLOCK_SEQ)?;
            let tid: &UInt32Array = schema::column(batch, col::TID)?;
            let sc: &UInt64Array = schema::column(batch, col::SYSCALL_SEQ)?;
            let regs = register_columns(batch);
            for i in (0..batch.num_rows()).rev() {
                if bs.value(i) > upto {
                    continue;
                }
                let (t, row) = anchor.get_or_insert_with(|| {
                    let row = RegsRow {
                        block_seq: bs.value(i),
                        at_syscall: !sc.is_null(i),
                        values: regs.iter().map(|(n, _)| (n.clone(), None)).collect(),
                    };
                    (tid.value(i), row)
                });
                if *t != tid.value(i) {
                    return Ok(anchor.map(|(_, r)| r));
                }
                for ((_, v), (_, column)) in row.values.iter_mut().zip(&regs) {
                    if v.is_none() && !column.is_null(i) {
                        *v = Some(reg_text(column.as_ref(), i));
                    }
                }
                if row.values.iter().all(|(_, v)| v.is_some()) {
                    return Ok(anchor.map(|(_, r)| r));
                }
            }
        }
    }
    Ok(anchor.map(|(_, r)| r))
}

/// The register columns of a `regs` batch: every column after the fixed ones.
fn register_columns(batch: &RecordBatch) -> Vec<(String, std::sync::Arc<dyn Array>)> {
    let fixed = [col::SEQ, col::TID, col::BLOCK_SEQ, col::SYSCALL_SEQ];
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| !fixed.contains(&f.name().as_str()))
        .map(|(f, c)| (f.name().clone(), c.clone()))
        .collect()
}

fn reg_text(column: &dyn Array, i: usize) -> String {
    if let Some(c) = column.as_any().downcast_ref::<UInt64Array>() {
        format!("{:#x}", c.value(i))
    } else if let Some(c) = column.as_any().downcast_ref::<FixedSizeBinaryArray>() {
        rows::hex_bytes(c.value(i))
    } else {
        "?".to_string()
    }
}

fn differing_regs(a: RegsRow, b: RegsRow, point: u64) -> Option<RegsDiff> {
    if a.block_seq != b.block_seq || a.at_syscall != b.at_syscall {
        return None;
    }
    // At the entry of the differing block, the program counter is that
    // block's address: different, and no explanation.
    let entry_of_point = a.block_seq == point && !a.at_syscall;
    let of_b: HashMap<String, Option<String>> = b.values.into_iter().collect();
    let regs: Vec<(String, String, String)> = a
        .values
        .into_iter()
        .filter(|(n, _)| !(entry_of_point && matches!(n.as_str(), "pc" | "rip" | "eip")))
        .filter_map(|(n, va)| {
            let vb = of_b.get(&n)?.clone();
            let (va, vb) = (va?, vb?);
            (va != vb).then_some((n, va, vb))
        })
        .collect();
    (!regs.is_empty()).then_some(RegsDiff {
        block_seq: a.block_seq,
        at_syscall: a.at_syscall,
        regs,
    })
}

/// Bytes as text: printable ASCII as it is, the rest escaped.
fn show_bytes(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

impl Explanation {
    pub fn is_empty(&self) -> bool {
        self.call.is_none() && self.loads.is_empty() && self.regs.is_none()
    }

    pub fn to_json(&self) -> Value {
        let call = self.call.as_ref().map(|c| {
            let side = |x: &Call| {
                json!({
                    "seq": x.seq,
                    "block_seq": x.block_seq,
                    "ret": x.ret,
                    "data": x.data.as_deref().map(rows::hex_bytes),
                    "text": x.data.as_deref().map(show_bytes),
                })
            };
            json!({
                "name": c.a.name(),
                "differs": c.what,
                "a": side(&c.a),
                "b": side(&c.b),
                "earlier_differing": c.earlier,
            })
        });
        let loads: Vec<Value> = self
            .loads
            .iter()
            .map(|l| {
                json!({
                    "insn_addr": l.insn_addr.map(rows::hex),
                    "disas": l.disas,
                    "addr_a": rows::hex(l.addr_a),
                    "addr_b": rows::hex(l.addr_b),
                    "size": l.size,
                    "value_a": rows::hex(l.value_a),
                    "value_b": rows::hex(l.value_b),
                })
            })
            .collect();
        let regs = self.regs.as_ref().map(|r| {
            json!({
                "block_seq": r.block_seq,
                "at_syscall": r.at_syscall,
                "registers": r.regs.iter().map(|(n, a, b)| json!({"name": n, "a": a, "b": b})).collect::<Vec<_>>(),
            })
        });
        json!({
            "syscall": call,
            "id_calls_differ": self.id_calls,
            "loads": loads,
            "registers": regs,
            "recorded": self.recorded,
        })
    }

    /// The report's lines, for the table.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(c) = &self.call {
            let mut l = format!(
                "system call {} (A's call {}, B's {}; made at block seq {}): {} differ",
                c.a.name(),
                c.a.seq,
                c.b.seq,
                c.a.block_seq,
                match c.what {
                    "call" => "the calls",
                    "ret" => "results",
                    _ => "data",
                }
            );
            match c.what {
                "data" => {
                    let d = |x: &Call| x.data.as_deref().map(show_bytes).unwrap_or_default();
                    l.push_str(&format!(": A \"{}\", B \"{}\"", d(&c.a), d(&c.b)));
                }
                "ret" => {
                    let r = |x: &Call| x.ret.map_or("none".to_string(), |r| r.to_string());
                    l.push_str(&format!(": A {}, B {}", r(&c.a), r(&c.b)));
                }
                _ => {}
            }
            lines.push(l);
            if !c.earlier.is_empty() {
                lines.push(format!(
                    "  ({} earlier call(s) differ too: {})",
                    c.earlier.len(),
                    c.earlier.join(", ")
                ));
            }
        }
        for l in &self.loads {
            lines.push(format!(
                "load in the last common block by {}{}: {} byte(s) at {:#x}{}: A {:#x}, B {:#x}",
                l.insn_addr.map_or("?".to_string(), |a| format!("{a:#x}")),
                l.disas
                    .as_deref()
                    .map_or(String::new(), |d| format!(" `{d}`")),
                l.size,
                l.addr_a,
                if l.addr_b == l.addr_a {
                    String::new()
                } else {
                    format!(" (B: {:#x})", l.addr_b)
                },
                l.value_a,
                l.value_b
            ));
        }
        if let Some(r) = &self.regs {
            let at = if r.at_syscall {
                "a system call"
            } else {
                "block entry"
            };
            let regs: Vec<String> = r
                .regs
                .iter()
                .map(|(n, a, b)| format!("{n} A {a} B {b}"))
                .collect();
            lines.push(format!(
                "registers read at {at} of block seq {}: {}",
                r.block_seq,
                regs.join(", ")
            ));
        }
        if self.is_empty() {
            let what = if self.recorded.is_empty() {
                "no syscalls, mem or regs".to_string()
            } else {
                self.recorded.join(", ")
            };
            lines.push(format!("nothing recorded explains it (recorded: {what})"));
        }
        if !self.id_calls.is_empty() {
            lines.push(format!(
                "(calls returning ids differ, as in any two runs: {})",
                self.id_calls.join(", ")
            ));
        }
        lines
    }

    /// One line for CSV.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.call {
            parts.push(format!("{} {} differ", c.a.name(), c.what));
        }
        for l in &self.loads {
            parts.push(format!(
                "load at {:#x}: {:#x} vs {:#x}",
                l.addr_a, l.value_a, l.value_b
            ));
        }
        if let Some(r) = &self.regs {
            let names: Vec<&str> = r.regs.iter().map(|(n, _, _)| n.as_str()).collect();
            parts.push(format!("registers {}", names.join(" ")));
        }
        if parts.is_empty() {
            "nothing recorded explains it".to_string()
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(seq: u64, name: &str, ret: i64, data: Option<&[u8]>) -> Call {
        Call {
            seq,
            block_seq: seq * 10,
            num: 0,
            name: Some(name.to_string()),
            ret: Some(ret),
            data: data.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn the_call_nearest_the_point_is_named_and_ids_are_not() {
        let a = vec![
            call(0, "set_tid_address", 100, None),
            call(1, "getrandom", 8, Some(b"ab")),
            call(2, "read", 3, Some(b"xya")),
            call(3, "getppid", 7, None),
        ];
        let mut b = a.clone();
        b[0].ret = Some(101);
        b[1].data = Some(b"cd".to_vec());
        b[2].data = Some(b"xyb".to_vec());
        b[3].ret = Some(8);
        let (found, ids) = differing_call(a.clone(), b);
        let found = found.unwrap();
        assert_eq!((found.a.name(), found.what), ("read".to_string(), "data"));
        assert_eq!(found.earlier, vec!["getrandom"]);
        assert_eq!(ids, vec!["set_tid_address", "getppid"]);
        let (none, ids) = differing_call(a.clone(), a);
        assert!(none.is_none() && ids.is_empty());
    }
}
