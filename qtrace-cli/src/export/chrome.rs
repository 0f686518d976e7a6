//! `qtrace export TRACE --chrome`: the trace as Chrome trace-event JSON
//! (the JSON Object Format), which the Perfetto UI (ui.perfetto.dev) and
//! `chrome://tracing` open.
//!
//! - One process: the guest (`pid` from the manifest, named after its
//!   program), and one track per guest thread (`tid`), named by
//!   `thread_name` metadata events.
//! - Time is instructions: 1 ns of trace time is one guest instruction,
//!   counted on the vCPU from its first block (`ts` and `dur` are in µs,
//!   as the format wants, with three decimals). A `--seq` window keeps the
//!   times of the whole trace: the instructions before it are counted
//!   first, in parallel, without writing anything.
//! - A span ("X" event) per run of consecutive blocks of the same function
//!   on a thread: name = symbol (QEMU's, else resolved offline; without a
//!   symbol, `module+0xoffset` of the run's first block, and consecutive
//!   symbol-less blocks of one module are one run), cat = module, args =
//!   first pc, blocks, instructions, first seq. Spans are flat: no
//!   call-stack reconstruction.
//! - A system call is an instant ("i", thread scope) at its block's last
//!   instruction (the system call instruction ends its block), named after
//!   the call, with its number, arguments, return value and errno.
//!
//! The JSON is written as it is made. `--max-events` (default 1000000)
//! bounds its size: past it the export stops, says where on stderr, and
//! still closes the JSON.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use anyhow::Result;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use qtrace_format::block_stream::{clip, Blocks};
use qtrace_format::schema::col;
use qtrace_format::{ModuleKind, Table, Trace};
use serde_json::{json, Value};

use super::cursor::{KeyRange, Ordered, RowCursor};
use super::names::{BlockName, BlockNames};
use super::{parts_by_vcpu, Args, Escape};

pub fn run(trace: &Trace, args: &Args, out: &mut dyn Write) -> Result<()> {
    let names = BlockNames::load(trace, args.debug_dirs.clone())?;
    let m = trace.manifest();
    let pid = m.pid;
    let range = args.seq.clone().unwrap_or(0..u64::MAX);
    let parts: Vec<_> = parts_by_vcpu(trace, Table::Blocks, args.vcpu)?
        .into_iter()
        .flat_map(|(_, p)| p)
        .collect();
    let blocks = Blocks::open(&parts)?;
    let clocks = instructions_before(&blocks, &names, range.start)?;

    let mut w = Events::new(out, args.max_events);
    w.header(trace)?;
    let (process, command) = process_name(trace)?;
    w.metadata(json!({
        "name": "process_name", "ph": "M", "pid": pid, "tid": pid,
        "args": {"name": process},
    }))?;
    w.metadata(json!({
        "name": "process_labels", "ph": "M", "pid": pid, "tid": pid,
        "args": {"labels": command},
    }))?;
    let mut named: HashSet<u32> = HashSet::new();
    for t in m
        .threads
        .iter()
        .filter(|t| args.vcpu.is_none_or(|v| v == t.vcpu))
    {
        w.thread_name(pid, t.tid, t.vcpu, &mut named)?;
    }

    let mut syscall_parts: HashMap<u32, Vec<_>> = parts_by_vcpu(trace, Table::Syscalls, args.vcpu)?
        .into_iter()
        .collect();
    let mut escape = Escape::default();
    // Where the limit stopped the export: vCPU and seq (`None`: after its
    // last block).
    let mut cut_at: Option<(u32, Option<u64>)> = None;
    let mut vcpu_now: Option<Option<u32>> = None;
    let mut track = Track::default();
    for group in blocks.groups().iter().filter(|g| g.may_overlap(&range)) {
        if vcpu_now != Some(group.vcpu) {
            // A new vCPU: close the last one's span and calls, and take up
            // this one's clock and calls.
            track.finish(&mut w, pid)?;
            if w.cut {
                cut_at.get_or_insert((track.vcpu, None));
                break;
            }
            vcpu_now = Some(group.vcpu);
            let v = group.vcpu.unwrap_or(0);
            let calls = Ordered::new(
                syscall_parts.remove(&v).unwrap_or_default(),
                Some(KeyRange {
                    column: col::BLOCK_SEQ,
                    range: range.clone(),
                }),
                None,
            );
            track = Track {
                vcpu: v,
                clock: clocks.get(&v).copied().unwrap_or(0),
                span: None,
                calls: Some(RowCursor::new(calls)),
            };
        }
        let read = blocks.read(group, &mut |run| {
            let Some(run) = clip(run, &range) else {
                return Ok(());
            };
            if let Err(e) = w.thread_name(pid, run.tid, track.vcpu, &mut named) {
                return Err(escape.keep(e));
            }
            for (i, &id) in run.ids.iter().enumerate() {
                let seq = run.first_seq + i as u64;
                let step = track.block(&mut w, pid, run.tid, seq, id, names.get(id));
                if let Err(e) = step {
                    return Err(escape.keep(e));
                }
                if w.cut {
                    cut_at = Some((track.vcpu, Some(seq)));
                    return Err(escape.keep(anyhow::anyhow!("cut")));
                }
            }
            Ok(())
        });
        if w.cut {
            break;
        }
        escape.outcome(read)?;
    }
    if !w.cut {
        track.finish(&mut w, pid)?;
        if w.cut {
            cut_at = Some((track.vcpu, None));
        }
    }
    w.end()?;
    if let Some((vcpu, seq)) = cut_at {
        let at = match seq {
            Some(s) => format!("at seq {s} of vCPU {vcpu}"),
            None => format!("after the last block of vCPU {vcpu}"),
        };
        eprintln!(
            "note: stopped at {} events (--max-events) {at}: later blocks and system \
             calls are left out (narrow with --seq or --vcpu, or raise --max-events; \
             0 for no limit)",
            w.events
        );
    }
    Ok(())
}

/// Instructions each vCPU executed before seq `start` (its clock at the
/// window's start), counted in parallel over the row groups before it.
fn instructions_before(
    blocks: &Blocks,
    names: &BlockNames,
    start: u64,
) -> Result<HashMap<u32, u64>> {
    if start == 0 {
        return Ok(HashMap::new());
    }
    let counted = blocks.scan(
        Some(0..start),
        HashMap::<u32, u64>::new,
        |acc, run| {
            let n: u64 = run
                .ids
                .iter()
                .map(|&id| names.get(id).map_or(0, |b| u64::from(b.n_insns)))
                .sum();
            *acc.entry(run.vcpu.unwrap_or(0)).or_default() += n;
        },
        |mut a, b| {
            for (v, n) in b {
                *a.entry(v).or_default() += n;
            }
            a
        },
    )?;
    Ok(counted)
}

/// The process's name (its program's file name) and its command line.
fn process_name(trace: &Trace) -> Result<(String, String)> {
    let m = trace.manifest();
    let modules = trace.modules()?;
    let main = modules.iter().find(|m| m.kind == ModuleKind::Main);
    let command = &m.command_line;
    // QEMU's command line ends with the guest's: from the program on (as
    // given, maybe relative, where the module has it absolute).
    let file_name = |p: &str| Path::new(p).file_name().map(|n| n.to_os_string());
    let guest = main
        .map(|main| main.guest_path.as_deref().unwrap_or(&main.path))
        .and_then(|g| {
            command
                .iter()
                .skip(1)
                .position(|a| a == g || file_name(a) == file_name(g))
        })
        .map_or(&command[..], |i| &command[i + 1..]);
    let program = main
        .map(|m| m.guest_path.clone().unwrap_or_else(|| m.path.clone()))
        .or_else(|| guest.first().cloned())
        .unwrap_or_else(|| "guest".to_string());
    let name = Path::new(&program)
        .file_name()
        .map_or(program.clone(), |n| n.to_string_lossy().into_owned());
    Ok((name, crate::output::shell_join(guest)))
}

/// One vCPU's walk: its clock, the span being built, its system calls.
#[derive(Default)]
struct Track {
    vcpu: u32,
    /// Instructions executed so far on the vCPU.
    clock: u64,
    span: Option<Span>,
    calls: Option<RowCursor>,
}

/// A run of blocks of one function on one thread.
struct Span {
    tid: u32,
    function: Option<u32>,
    first: BlockName,
    first_seq: u64,
    next_seq: u64,
    start: u64,
    blocks: u64,
    insns: u64,
}

impl Track {
    /// Block `id` executed as `seq` by `tid`: extends the span or starts
    /// another, and writes the calls it made.
    fn block<W: Write + ?Sized>(
        &mut self,
        w: &mut Events<'_, W>,
        pid: u32,
        tid: u32,
        seq: u64,
        id: u32,
        name: Option<&BlockName>,
    ) -> Result<()> {
        let function = name.map(|n| n.function);
        let n_insns = name.map_or(0, |n| u64::from(n.n_insns));
        let same = self
            .span
            .as_ref()
            .is_some_and(|s| s.tid == tid && s.function == function && s.next_seq == seq);
        if !same {
            self.close_span(w, pid)?;
            if w.cut {
                return Ok(());
            }
            let first = name.cloned().unwrap_or_else(|| BlockName {
                pc: 0,
                n_insns: 0,
                symbol: Some(format!("block {id}").into()),
                module: None,
                offset: 0,
                function: u32::MAX,
            });
            self.span = Some(Span {
                tid,
                function,
                first,
                first_seq: seq,
                next_seq: seq,
                start: self.clock,
                blocks: 0,
                insns: 0,
            });
        }
        let span = self.span.as_mut().expect("set above");
        span.next_seq = seq + 1;
        span.blocks += 1;
        span.insns += n_insns;
        let at = self.clock;
        self.clock += n_insns;
        // The calls this block made (and any of blocks never seen, which a
        // damaged trace may have), at its last instruction.
        let last = at + n_insns.saturating_sub(1);
        self.calls_upto(w, pid, Some(seq), last)
    }

    /// Writes the calls with `block_seq <= upto` (all that are left when
    /// `None`) at time `at`.
    fn calls_upto<W: Write + ?Sized>(
        &mut self,
        w: &mut Events<'_, W>,
        pid: u32,
        upto: Option<u64>,
        at: u64,
    ) -> Result<()> {
        let Some(calls) = self.calls.as_mut() else {
            return Ok(());
        };
        while let Some((batch, row)) = calls.current()? {
            let block_seq = u64_at(batch, col::BLOCK_SEQ, row).unwrap_or(0);
            if upto.is_some_and(|s| block_seq > s) {
                break;
            }
            let event = syscall_event(batch, row, pid, at);
            calls.advance();
            if !w.event(&event)? {
                break;
            }
        }
        Ok(())
    }

    fn close_span<W: Write + ?Sized>(&mut self, w: &mut Events<'_, W>, pid: u32) -> Result<()> {
        let Some(s) = self.span.take() else {
            return Ok(());
        };
        let mut e = String::with_capacity(200);
        let _ = write!(
            e,
            r#"{{"name":{},"cat":{},"ph":"X","ts":{},"dur":{},"pid":{pid},"tid":{},"args":{{"pc":"{:#x}","blocks":{},"insns":{},"first_seq":{}}}}}"#,
            Value::from(s.first.label()),
            Value::from(s.first.module.as_deref().unwrap_or("?")),
            micros(s.start),
            micros(s.insns),
            s.tid,
            s.first.pc,
            s.blocks,
            s.insns,
            s.first_seq
        );
        w.event(&e)?;
        Ok(())
    }

    /// Closes the vCPU's walk: its last span, and calls left over.
    fn finish<W: Write + ?Sized>(&mut self, w: &mut Events<'_, W>, pid: u32) -> Result<()> {
        self.close_span(w, pid)?;
        let at = self.clock;
        self.calls_upto(w, pid, None, at)
    }
}

fn u64_at(batch: &RecordBatch, name: &str, row: usize) -> Option<u64> {
    let c = batch
        .column_by_name(name)?
        .as_primitive_opt::<UInt64Type>()?;
    (!c.is_null(row)).then(|| c.value(row))
}

/// A system call as an instant event on its thread's track.
fn syscall_event(batch: &RecordBatch, row: usize, pid: u32, at: u64) -> String {
    let tid = batch
        .column_by_name(col::TID)
        .and_then(|c| c.as_primitive_opt::<UInt32Type>())
        .map_or(0, |c| c.value(row));
    let num = batch
        .column_by_name(col::NUM)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .map_or(0, |c| c.value(row));
    let name = batch
        .column_by_name(col::NAME)
        .and_then(|c| c.as_string_opt::<i32>())
        .and_then(|c| (!c.is_null(row)).then(|| c.value(row).to_string()))
        .unwrap_or_else(|| format!("syscall {num}"));
    let ret = batch
        .column_by_name(col::RET)
        .and_then(|c| c.as_primitive_opt::<Int64Type>())
        .and_then(|c| (!c.is_null(row)).then(|| c.value(row)));
    let errno = batch
        .column_by_name(col::ERRNO)
        .and_then(|c| c.as_primitive_opt::<Int32Type>())
        .and_then(|c| (!c.is_null(row)).then(|| c.value(row)));
    // Linux system calls take at most six arguments.
    let call_args: Vec<String> = col::ARGS[..6]
        .iter()
        .map(|a| format!("{:#x}", u64_at(batch, a, row).unwrap_or(0)))
        .collect();
    let event = json!({
        "name": name, "cat": "syscall", "ph": "i", "s": "t",
        "ts": Value::Null, "pid": pid, "tid": tid,
        "args": {
            "seq": u64_at(batch, col::SEQ, row),
            "block_seq": u64_at(batch, col::BLOCK_SEQ, row),
            "num": num, "args": call_args, "ret": ret, "errno": errno,
        },
    });
    // serde_json would print the time as a float: splice the exact text.
    event
        .to_string()
        .replacen("\"ts\":null", &format!("\"ts\":{}", micros(at)), 1)
}

/// Instructions (1 ns each) as the format's microseconds, exactly.
fn micros(insns: u64) -> String {
    format!("{}.{:03}", insns / 1000, insns % 1000)
}

/// The JSON being written: the header, events separated by commas, the
/// end; counts the events against the limit.
struct Events<'w, W: Write + ?Sized> {
    out: &'w mut W,
    max: u64,
    events: u64,
    any: bool,
    /// The limit was reached.
    cut: bool,
}

impl<'w, W: Write + ?Sized> Events<'w, W> {
    fn new(out: &'w mut W, max: u64) -> Self {
        Events {
            out,
            max,
            events: 0,
            any: false,
            cut: false,
        }
    }

    fn header(&mut self, trace: &Trace) -> Result<()> {
        let other = json!({
            "source": "qtrace export --chrome",
            "trace": trace.root().display().to_string(),
            "time": "1 ns = 1 guest instruction, counted per vCPU",
        });
        writeln!(
            self.out,
            "{{\"displayTimeUnit\":\"ns\",\"otherData\":{other},\"traceEvents\":["
        )?;
        Ok(())
    }

    fn raw(&mut self, text: &str) -> Result<()> {
        if self.any {
            self.out.write_all(b",\n")?;
        }
        self.any = true;
        self.out.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Metadata events do not count against the limit.
    fn metadata(&mut self, v: Value) -> Result<()> {
        self.raw(&v.to_string())
    }

    fn thread_name(
        &mut self,
        pid: u32,
        tid: u32,
        vcpu: u32,
        named: &mut HashSet<u32>,
    ) -> Result<()> {
        if !named.insert(tid) {
            return Ok(());
        }
        let who = if tid == pid { "main" } else { "thread" };
        self.metadata(json!({
            "name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
            "args": {"name": format!("{who} {tid} (vCPU {vcpu})")},
        }))?;
        // Tracks in thread id order: the main thread first, then the
        // others as they were created.
        self.metadata(json!({
            "name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
            "args": {"sort_index": tid},
        }))
    }

    /// Writes a counted event; false (and `cut` set) once the limit is
    /// reached.
    fn event(&mut self, text: &str) -> Result<bool> {
        if self.max > 0 && self.events >= self.max {
            self.cut = true;
            return Ok(false);
        }
        self.raw(text)?;
        self.events += 1;
        Ok(true)
    }

    fn end(&mut self) -> Result<()> {
        self.out.write_all(b"\n]}\n")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_time_is_exact_microseconds() {
        assert_eq!(micros(0), "0.000");
        assert_eq!(micros(1), "0.001");
        assert_eq!(micros(1234567), "1234.567");
    }
}
