//! `qtrace coverage`: which code a run executed, as a drcov file for
//! Lighthouse and its kin, as address lists, or summed per function or
//! module; and the union, intersection or difference of several runs.
//!
//! A block is covered if it executed at least once. Executions come from
//! `block_counts` (exact counters written at exit) or, for a trace without
//! them (a run cut short) or on request, from counting the `blocks` events
//! in parallel. Either way memory follows the number of distinct blocks,
//! never the number of events: one counter per block id.
//!
//! Traces are combined by block key (module name, offset, code; see
//! [`algebra`]), so runs loaded at different addresses line up, and the
//! result is shown in the first trace's addresses.

mod algebra;
mod drcov;
mod report;

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use qtrace_format::symbols::DEFAULT_DEBUG_DIR;
use qtrace_format::Trace;

use crate::counts::{self, Source};
use crate::output::{self, Format};
use crate::places::Places;
use crate::reading::ReadArgs;
use algebra::{Op, Placed, Run, Space};

#[derive(clap::Args)]
pub struct Args {
    /// Trace directories (as written by `qtrace record -o`); with more than
    /// one, `--op` combines them.
    #[arg(required = true, value_name = "TRACE")]
    traces: Vec<PathBuf>,
    /// How several traces combine: blocks any of them executed (`union`),
    /// that all executed (`intersect`), or that the first executed and no
    /// other did (`diff`). Blocks match by module file name, offset in the
    /// module and code bytes, so traces loaded at different addresses
    /// combine.
    #[arg(long, value_enum, default_value_t = Op::Union)]
    op: Op,
    /// What to write: a drcov (version 2) file, the covered addresses one
    /// per line, the covered blocks, or totals per function or per module.
    #[arg(long = "as", value_name = "KIND", value_enum, default_value_t = Kind::Modules)]
    kind: Kind,
    /// With `--as addrs`: every executed instruction's address rather
    /// than each block's first.
    #[arg(long)]
    insns: bool,
    /// Write here instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// How tables print (`--as blocks|symbols|modules`): aligned columns,
    /// CSV, a JSON array or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Where executions come from: `counts` reads the exact counters
    /// (`block_counts`), `events` counts the `blocks` table, `auto` takes
    /// counters when the trace has them.
    #[arg(long, value_enum, default_value_t = Source::Auto)]
    source: Source,
    /// Where to look for the separate debug files of stripped modules (for
    /// `--as symbols|blocks`), by build id and by path; repeatable.
    #[arg(long = "debug-dir", value_name = "DIR", default_value = DEFAULT_DEBUG_DIR)]
    debug_dirs: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// drcov version 2, binary block table (Lighthouse, bncov, Cartographer).
    Drcov,
    /// Sorted unique hex addresses, one per line.
    Addrs,
    /// One row per covered block.
    Blocks,
    /// Totals per function.
    Symbols,
    /// Totals per module.
    Modules,
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    if args.insns && args.kind != Kind::Addrs {
        bail!("--insns goes with --as addrs");
    }
    let mut runs = Vec::with_capacity(args.traces.len());
    let mut target: Option<(String, &PathBuf)> = None;
    for dir in &args.traces {
        let trace = read.open(dir)?;
        let t = &trace.manifest().target;
        match &target {
            Some((first, first_dir)) if first != t => bail!(
                "{} is a {t} trace, {} a {first} one: traces of different guests do not combine",
                dir.display(),
                first_dir.display()
            ),
            Some(_) => {}
            None => target = Some((t.clone(), dir)),
        }
        runs.push(load(&trace, args.source)?);
    }
    let covered = algebra::combine(&runs, args.op);
    let (space, placed) = Space::place(&runs, &covered);

    if args.kind == Kind::Drcov && args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("a drcov file is binary: give -o FILE, or redirect stdout");
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(output::stdout()),
    };
    match args.kind {
        Kind::Drcov => {
            let target = target.map(|(t, _)| t).unwrap_or_default();
            write_drcov(&mut out, &target, &runs, &space, &placed)?
        }
        Kind::Addrs => write_addrs(&mut out, &runs, &placed, args.insns)?,
        Kind::Blocks | Kind::Symbols | Kind::Modules => {
            let mut r = report::Report::new(&runs, &space, &placed, args.debug_dirs);
            r.colour = args.output.is_none() && crate::progress::colour();
            match args.kind {
                Kind::Blocks => r.blocks(&mut out, args.format)?,
                Kind::Symbols => r.symbols(&mut out, args.format)?,
                _ => r.modules(&mut out, args.format)?,
            }
            for note in r.take_notes() {
                eprintln!("note: {note}");
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// One trace's blocks and their executions.
fn load(trace: &Trace, source: Source) -> Result<Run> {
    let places = Places::load(trace)?;
    // Ids are dense from 0, so the dictionary's highest id sizes the
    // counters; an id beyond it cannot be placed anyway.
    let n = places
        .dict
        .iter()
        .map(|b| b.id as usize + 1)
        .max()
        .unwrap_or(0);
    let (execs, unknown) = counts::load(trace, source, None)?.split_at(n);
    let run = Run::new(places, execs);
    let missing = unknown
        + run
            .execs
            .iter()
            .zip(&run.keys)
            .filter(|(&n, key)| n > 0 && key.is_none())
            .count() as u64;
    if missing > 0 {
        eprintln!(
            "note: {}: {missing} executed block ids are missing from block_dict; left out",
            trace.root().display()
        );
    }
    Ok(run)
}

fn write_drcov(
    w: &mut impl Write,
    target: &str,
    runs: &[Run],
    space: &Space,
    placed: &[Placed],
) -> Result<()> {
    if space.modules.len() > usize::from(u16::MAX) + 1 {
        bail!(
            "{} modules: more than drcov's 16-bit module ids can number",
            space.modules.len()
        );
    }
    let modules: Vec<drcov::DrcovModule> = space
        .modules
        .iter()
        .map(|m| drcov::DrcovModule {
            base: m.module.base,
            end: m.module.base.saturating_add(m.module.size),
            entry: m.module.entry.unwrap_or(0),
            path: &m.module.path,
        })
        .collect();
    let mut blocks = Vec::with_capacity(placed.len());
    let (mut outside, mut far) = (0u64, 0u64);
    for p in placed {
        let Some(mi) = p.module else {
            outside += 1;
            continue;
        };
        let Ok(start) = u32::try_from(p.addr.wrapping_sub(space.modules[mi].module.base)) else {
            far += 1;
            continue;
        };
        let size = runs[p.block.run]
            .places
            .block(p.block.id)
            .map_or(0, |b| b.size);
        blocks.push(drcov::DrcovBlock {
            start,
            // drcov's sizes are 16-bit; no guest block comes near.
            size: u16::try_from(size).unwrap_or(u16::MAX),
            module: mi as u16,
        });
    }
    if outside > 0 {
        eprintln!(
            "note: {outside} covered blocks lie outside every module \
             (code made at run time, or a trace without modules); left out of the drcov file"
        );
    }
    if far > 0 {
        eprintln!(
            "note: {far} covered blocks lie 4 GiB or more past their module's base; \
             left out of the drcov file"
        );
    }
    drcov::write(w, drcov::flavor(target), &modules, &blocks)?;
    Ok(())
}

/// Sorted unique addresses of the covered blocks, or of their instructions.
fn write_addrs(w: &mut impl Write, runs: &[Run], placed: &[Placed], insns: bool) -> Result<()> {
    let mut addrs: Vec<u64> = if insns {
        placed
            .iter()
            .filter_map(|p| Some((p, runs[p.block.run].places.block(p.block.id)?)))
            .flat_map(|(p, b)| b.insns.iter().map(|i| i.addr.wrapping_add(p.shift)))
            .collect()
    } else {
        placed.iter().map(|p| p.addr).collect()
    };
    addrs.sort_unstable();
    addrs.dedup();
    for a in addrs {
        writeln!(w, "{a:#x}")?;
    }
    Ok(())
}
