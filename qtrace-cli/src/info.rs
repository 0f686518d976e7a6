//! `qtrace info`: what a trace holds, from its manifest, the footers of its
//! Parquet files, and its `modules` table.
//!
//! It must stay cheap on traces of any size: of the tables that grow with
//! the run it reads footers only, never a data page; `modules` has a row per
//! mapped file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::ValueEnum;
use qtrace_format::manifest::RunEnd;
use qtrace_format::schema::TracePoint;
use qtrace_format::{Manifest, Module, Table, Trace, TriggerHit};
use rayon::prelude::*;
use serde_json::json;

use crate::output::{self, Align, TextTable};
use crate::reading::ReadArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// How to print: `table` for reading, `json` for one JSON object.
    #[arg(long, value_enum, default_value_t = InfoFormat::Table)]
    format: InfoFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum InfoFormat {
    Table,
    Json,
}

/// Sizes of one table, summed over its sealed parts.
pub struct TableStats {
    pub table: Table,
    pub parts: usize,
    pub rows: u64,
    pub bytes: u64,
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let trace = read.open(&args.dir)?;
    let tables = Table::ALL
        .iter()
        .map(|&table| trace_table_stats(&trace, table))
        .collect::<Result<Vec<_>>>()?;
    let modules = trace.modules()?;
    let mut out = output::stdout();
    match args.format {
        InfoFormat::Table => {
            write_table(&mut out, &args.dir, trace.manifest(), &tables)?;
            write_modules(&mut out, &modules)?;
        }
        InfoFormat::Json => output::write_json(
            &mut out,
            &to_json(&args.dir, trace.manifest(), &tables, &modules),
        )?,
    }
    out.flush()?;
    Ok(())
}

/// Parts, rows and bytes of a table, from the footers of its sealed parts.
pub fn table_stats(root: &Path, table: Table) -> Result<TableStats> {
    trace_table_stats(&Trace::open(root)?, table)
}

/// The same, of a trace opened (the parts it reads, checked against the
/// manifest).
fn trace_table_stats(trace: &Trace, table: Table) -> Result<TableStats> {
    let parts = trace.parts(table)?;
    let sizes = parts
        .par_iter()
        .map(qtrace_format::reader::part_size)
        .collect::<Result<Vec<(u64, u64)>, _>>()?;
    Ok(TableStats {
        table,
        parts: parts.len(),
        rows: sizes.iter().map(|s| s.0).sum(),
        bytes: sizes.iter().map(|s| s.1).sum(),
    })
}

fn status(m: &Manifest) -> &'static str {
    if m.complete {
        "complete"
    } else {
        "incomplete: recording did not finish"
    }
}

fn write_table(w: &mut impl Write, dir: &Path, m: &Manifest, tables: &[TableStats]) -> Result<()> {
    let options = if m.options.is_empty() {
        "-".to_string()
    } else {
        m.options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let fields = [
        ("trace", dir.display().to_string()),
        ("status", status(m).to_string()),
        (
            "target",
            format!("{} ({})", or_dash(&m.target), or_dash(&m.mode)),
        ),
        ("qemu", m.qemu_version.as_deref().unwrap_or("-").to_string()),
        ("recorder", or_dash(&m.recorder_version).to_string()),
        (
            "command",
            or_dash(&output::shell_join(&m.command_line)).to_string(),
        ),
        ("options", options),
        ("started", or_dash(&m.started_at).to_string()),
        ("ended", m.ended_at.as_deref().unwrap_or("-").to_string()),
        ("how it ended", end_text(m.end.as_ref(), m.complete)),
        ("pid", pid_text(m)),
        ("distinct blocks", m.distinct_blocks.to_string()),
        ("parts listed", m.parts.len().to_string()),
        ("dropped rows", dropped_text(m)),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in &fields {
        writeln!(w, "{key:width$}  {value}")?;
    }

    writeln!(w)?;
    let mut vcpus = TextTable::new(&[
        ("vcpu", Align::Right),
        ("blocks", Align::Right),
        ("insns", Align::Right),
        ("block_events", Align::Right),
        ("parts", Align::Right),
        ("syscalls", Align::Right),
        ("mem_accesses", Align::Right),
    ]);
    for v in &m.vcpus {
        vcpus.push(vec![
            v.vcpu.to_string(),
            v.blocks.to_string(),
            v.insns.to_string(),
            v.block_events.to_string(),
            v.parts.to_string(),
            v.syscalls.to_string(),
            v.mem_accesses.to_string(),
        ]);
    }
    if m.vcpus.is_empty() {
        writeln!(
            w,
            "no per-vCPU totals (they are written when recording ends)"
        )?;
    } else {
        vcpus.write(w)?;
    }
    if m.complete {
        // The manifest says equal counts mean nothing was lost: say so when
        // they differ, because events-based analyses will then undercount.
        for v in m.vcpus.iter().filter(|v| v.block_events != v.blocks) {
            writeln!(
                w,
                "note: vCPU {}: {} block executions but {} rows in `blocks`",
                v.vcpu, v.blocks, v.block_events
            )?;
        }
    }

    for e in &m.errors {
        writeln!(w, "recorder error: {e}")?;
    }

    if !m.threads.is_empty() {
        // In linux-user a vCPU index passes from thread to thread: say which
        // thread had which run of `seq`.
        writeln!(w)?;
        let mut threads = TextTable::new(&[
            ("tid", Align::Right),
            ("vcpu", Align::Right),
            ("first_seq", Align::Right),
            ("block_events", Align::Right),
        ]);
        for t in &m.threads {
            threads.push(vec![
                t.tid.to_string(),
                t.vcpu.to_string(),
                t.first_seq.to_string(),
                t.block_events.to_string(),
            ]);
        }
        threads.write(w)?;
    }

    if !m.windows.is_empty() {
        writeln!(w)?;
        write_windows(w, m)?;
    }

    if !m.children.is_empty() {
        // Each child's trace is a trace of its own: `qtrace info` on its path.
        writeln!(w)?;
        let mut t = TextTable::new(&[
            ("child pid", Align::Right),
            ("vcpu", Align::Right),
            ("tid", Align::Right),
            ("block_seq", Align::Right),
            ("trace", Align::Left),
        ]);
        for c in &m.children {
            t.push(vec![
                c.pid.to_string(),
                c.vcpu.to_string(),
                c.tid.to_string(),
                c.block_seq.to_string(),
                dir.join(&c.path).display().to_string(),
            ]);
        }
        t.write(w)?;
    }

    writeln!(w)?;
    let mut t = TextTable::new(&[
        ("table", Align::Left),
        ("parts", Align::Right),
        ("rows", Align::Right),
        ("bytes", Align::Right),
    ]);
    for s in tables {
        t.push(vec![
            s.table.name().to_string(),
            s.parts.to_string(),
            s.rows.to_string(),
            s.bytes.to_string(),
        ]);
    }
    t.write(w)?;
    Ok(())
}

/// The modules, in the order they were mapped: where, which file (and its
/// build id), and between which points of the trace.
fn write_modules(w: &mut impl Write, modules: &[Module]) -> Result<()> {
    if modules.is_empty() {
        return Ok(());
    }
    writeln!(w)?;
    let mut t = TextTable::new(&[
        ("module", Align::Right),
        ("kind", Align::Left),
        ("base", Align::Left),
        ("end", Align::Left),
        ("mapped", Align::Left),
        ("unmapped", Align::Left),
        ("build_id", Align::Left),
        ("path", Align::Left),
    ]);
    for m in modules {
        t.push(vec![
            m.id.to_string(),
            m.kind.name().to_string(),
            format!("{:#x}", m.base),
            format!("{:#x}", m.base.saturating_add(m.size)),
            m.loaded.map_or_else(|| "start".to_string(), point),
            m.unloaded.map_or_else(|| "-".to_string(), point),
            m.build_id.clone().unwrap_or_else(|| "-".to_string()),
            m.path.clone(),
        ]);
    }
    t.write(w)?;
    Ok(())
}

/// A point of the trace as `vcpu:block_seq`.
fn point(p: TracePoint) -> String {
    format!("{}:{}", p.vcpu, p.block_seq)
}

/// Windows listed in full in the table; `--format json` lists them all.
const WINDOWS_SHOWN: usize = 20;

/// Recording windows (start/stop triggers): one row per window and vCPU
/// that recorded in it, with its run of `seq`.
fn write_windows(w: &mut impl Write, m: &Manifest) -> Result<()> {
    let mut t = TextTable::new(&[
        ("window", Align::Right),
        ("start", Align::Left),
        ("stop", Align::Left),
        ("vcpu", Align::Right),
        ("first_seq", Align::Right),
        ("block_events", Align::Right),
    ]);
    for win in m.windows.iter().take(WINDOWS_SHOWN) {
        let (start, stop) = (hit_text(&win.start), hit_text(&win.stop));
        if win.vcpus.is_empty() {
            let none = || "-".to_string();
            t.push(vec![
                win.index.to_string(),
                start.clone(),
                stop.clone(),
                none(),
                none(),
                "0".into(),
            ]);
        }
        for r in &win.vcpus {
            t.push(vec![
                win.index.to_string(),
                start.clone(),
                stop.clone(),
                r.vcpu.to_string(),
                r.first_seq.to_string(),
                r.block_events.to_string(),
            ]);
        }
    }
    t.write(w)?;
    if m.windows.len() > WINDOWS_SHOWN {
        writeln!(
            w,
            "... and {} more windows (--format json lists them all)",
            m.windows.len() - WINDOWS_SHOWN
        )?;
    }
    Ok(())
}

/// `sym:fnv1a (vcpu 0, 0x401930)`, or the trigger alone.
fn hit_text(h: &TriggerHit) -> String {
    let mut at = Vec::new();
    if let Some(v) = h.vcpu {
        at.push(format!("vcpu {v}"));
    }
    if let Some(pc) = h.pc {
        at.push(format!("{pc:#x}"));
    }
    if at.is_empty() {
        h.trigger.clone()
    } else {
        format!("{} ({})", h.trigger, at.join(", "))
    }
}

/// How the run ended, from the manifest's `end`: `exit 0`, `signal SIGINT
/// (2)`, `crash SIGSEGV (11)`, `exec`, or why there is no end.
pub fn end_text(end: Option<&RunEnd>, complete: bool) -> String {
    match end {
        None if complete => "-".to_string(),
        None => "never finished (killed, or still recording)".to_string(),
        Some(end) => match end.tid {
            Some(tid) => format!("{}, thread {tid}", end.describe()),
            None => end.describe(),
        },
    }
}

fn pid_text(m: &Manifest) -> String {
    match (m.pid, m.parent_pid) {
        (0, _) => "-".to_string(),
        (pid, Some(parent)) => format!("{pid} (forked from {parent})"),
        (pid, None) => pid.to_string(),
    }
}

fn dropped_text(m: &Manifest) -> String {
    if m.dropped.is_empty() {
        return "0".to_string();
    }
    let total = m.dropped.iter().fold(0u64, |a, d| a.saturating_add(d.rows));
    let each = m
        .dropped
        .iter()
        .map(|d| format!("{} vCPU {}: {}", d.table, d.vcpu, d.rows))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{total} ({each})")
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

fn to_json(
    dir: &Path,
    m: &Manifest,
    tables: &[TableStats],
    modules: &[Module],
) -> serde_json::Value {
    let tables: serde_json::Map<String, serde_json::Value> = tables
        .iter()
        .map(|s| {
            (
                s.table.name().to_string(),
                json!({ "parts": s.parts, "rows": s.rows, "bytes": s.bytes }),
            )
        })
        .collect();
    json!({
        "path": dir.display().to_string(),
        "format_version": m.format_version,
        "recorder_version": m.recorder_version,
        "qemu_version": m.qemu_version,
        "target": m.target,
        "mode": m.mode,
        "command_line": m.command_line,
        "options": m.options,
        "started_at": m.started_at,
        "ended_at": m.ended_at,
        "complete": m.complete,
        "status": status(m),
        "end": m.end,
        "pid": m.pid,
        "parent_pid": m.parent_pid,
        "updated_at": m.updated_at,
        "parts_listed": m.parts.len(),
        "dropped": m.dropped,
        "errors": m.errors,
        "children": m.children,
        "distinct_blocks": m.distinct_blocks,
        "vcpus": m.vcpus.iter().map(|v| json!({
            "vcpu": v.vcpu,
            "blocks": v.blocks,
            "insns": v.insns,
            "block_events": v.block_events,
            "parts": v.parts,
            "syscalls": v.syscalls,
            "mem_accesses": v.mem_accesses,
        })).collect::<Vec<_>>(),
        "threads": m.threads,
        "modules": modules.iter().map(module_json).collect::<Vec<_>>(),
        "windows": m.windows,
        "tables": tables,
    })
}

/// A module as JSON; addresses as hex strings, like `top-blocks`.
fn module_json(m: &Module) -> serde_json::Value {
    let hex = |a: u64| format!("{a:#x}");
    let at = |p: Option<TracePoint>| p.map(|p| json!({ "vcpu": p.vcpu, "block_seq": p.block_seq }));
    json!({
        "module_id": m.id,
        "kind": m.kind.name(),
        "path": m.path,
        "guest_path": m.guest_path,
        "build_id": m.build_id,
        "base": hex(m.base),
        "size": m.size,
        "bias": m.bias.map(hex),
        "text_start": m.text.map(|t| hex(t.0)),
        "text_end": m.text.map(|t| hex(t.1)),
        "entry": m.entry.map(hex),
        "loaded": at(m.loaded),
        "unloaded": at(m.unloaded),
    })
}
