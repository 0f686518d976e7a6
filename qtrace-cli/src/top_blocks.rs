//! `qtrace top-blocks`: the most executed translated blocks of a trace.
//!
//! Execution counts come from `block_counts` (exact counters written at the
//! guest's exit) or, when a recording did not finish or the user asks, by
//! counting the `blocks` events in parallel. Both give the same numbers on a
//! complete trace with no lost events; tests hold them to that.
//!
//! Symbols QEMU did not know (anything outside the main program) are
//! resolved offline through the trace's `modules` table and the ELF files on
//! disk (`qtrace_format::symbols`), for the listed blocks only.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use arrow_array::{Array, StringArray, UInt32Array, UInt64Array};
use clap::ValueEnum;
use qtrace_format::schema::{self, col};
use qtrace_format::symbols::{Resolver, DEFAULT_DEBUG_DIR};
use qtrace_format::{scan, BlockInfo, InsnInfo, Table, Trace};
use serde_json::json;

use crate::counts::{self, Counts, Source};
use crate::output::{self, Align, Format, TextTable};
use crate::reading::ReadArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// How many blocks to list; 0 lists them all.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    limit: usize,
    /// Count only the executions of this vCPU.
    #[arg(long, value_name = "V")]
    vcpu: Option<u32>,
    /// Rank by block executions, or by instructions executed (executions
    /// times the block's instructions).
    #[arg(long, value_enum, default_value_t = By::Execs)]
    by: By,
    /// Show each block's instructions.
    #[arg(long)]
    disas: bool,
    /// How to print: aligned columns, CSV or a JSON array.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Where execution counts come from: `counts` reads the exact counters
    /// (`block_counts`), `events` counts the `blocks` table, `auto` takes
    /// counters when the trace has them.
    #[arg(long, value_enum, default_value_t = Source::Auto)]
    source: Source,
    /// Where to look for the separate debug files of stripped modules, by
    /// build id (`DIR/.build-id/ab/cdef....debug`) and by path; repeatable.
    /// Beside the module (`PATH.debug`) is always tried.
    #[arg(long = "debug-dir", value_name = "DIR", default_value = DEFAULT_DEBUG_DIR)]
    debug_dirs: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum By {
    Execs,
    Insns,
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let trace = read.open(&args.dir)?;
    let counts = counts::load(&trace, args.source, args.vcpu)?;
    if let Some(v) = args.vcpu {
        if counts.is_empty() {
            crate::reading::check_vcpu(&trace, v, &[])?;
        }
    }
    let mut dict = if args.disas {
        trace
            .block_dict()?
            .into_iter()
            .map(|b| (b.id, Meta::from(b)))
            .collect()
    } else {
        block_meta(&trace)?
    };
    let ranked = rank(counts, &dict, args.by, args.limit);
    name_unknown_symbols(&trace, &ranked, &mut dict, args.debug_dirs)?;
    let mut out = output::stdout();
    match args.format {
        Format::Table => write_table(&mut out, &ranked, &dict, args.disas)?,
        Format::Csv => write_csv(&mut out, &ranked, &dict, args.disas)?,
        Format::Json => output::write_json(&mut out, &to_json(&ranked, &dict, args.disas))?,
        Format::Jsonl => output::write_json_lines(&mut out, &to_json(&ranked, &dict, args.disas))?,
    }
    out.flush()?;
    Ok(())
}

/// Fills in the symbols QEMU did not know, of the listed blocks and (with
/// `--disas`) of their instructions, from the trace's modules. What could
/// not be resolved, and why, is said on stderr.
fn name_unknown_symbols(
    trace: &Trace,
    ranked: &[Ranked],
    dict: &mut HashMap<u32, Meta>,
    debug_dirs: Vec<PathBuf>,
) -> Result<()> {
    let unknown = |m: &Meta| m.symbol.is_none() || m.insns.iter().any(|i| i.symbol.is_none());
    if !ranked
        .iter()
        .any(|r| dict.get(&r.block_id).is_some_and(unknown))
    {
        return Ok(());
    }
    let modules = match trace.modules() {
        Ok(m) => m,
        Err(e) => {
            // The counts stand without symbols.
            eprintln!("note: no symbols from the modules table: {e}");
            return Ok(());
        }
    };
    let mut resolver = Resolver::new(modules).with_debug_dirs(debug_dirs);
    if resolver.is_empty() {
        return Ok(());
    }
    for r in ranked {
        let Some(m) = dict.get_mut(&r.block_id) else {
            continue;
        };
        if m.symbol.is_none() {
            m.symbol = resolver.symbol(m.pc);
        }
        for i in m.insns.iter_mut().filter(|i| i.symbol.is_none()) {
            i.symbol = resolver.symbol(i.addr);
        }
    }
    for note in resolver.take_notes() {
        eprintln!("note: {note}");
    }
    Ok(())
}

/// What the listing needs of a `block_dict` row.
struct Meta {
    pc: u64,
    n_insns: u32,
    symbol: Option<String>,
    insns: Vec<InsnInfo>,
}

impl From<BlockInfo> for Meta {
    fn from(b: BlockInfo) -> Meta {
        Meta {
            pc: b.pc,
            n_insns: b.insns.len() as u32,
            symbol: b.symbol,
            insns: b.insns,
        }
    }
}

/// `block_dict` without the code and instructions, which only `--disas`
/// needs and which are most of the table's bytes.
fn block_meta(trace: &Trace) -> Result<HashMap<u32, Meta>> {
    let parts = trace.parts(Table::BlockDict)?;
    let rows = scan(
        &parts,
        &[col::BLOCK_ID, col::PC, col::N_INSNS, col::SYMBOL],
        Vec::new,
        |mut acc, batch, _| {
            let id: &UInt32Array = schema::column(batch, col::BLOCK_ID)?;
            let pc: &UInt64Array = schema::column(batch, col::PC)?;
            let n: &UInt32Array = schema::column(batch, col::N_INSNS)?;
            let symbol: &StringArray = schema::column(batch, col::SYMBOL)?;
            for i in 0..batch.num_rows() {
                let meta = Meta {
                    pc: pc.value(i),
                    n_insns: n.value(i),
                    symbol: (!symbol.is_null(i)).then(|| symbol.value(i).to_string()),
                    insns: Vec::new(),
                };
                acc.push((id.value(i), meta));
            }
            Ok(acc)
        },
        |mut a, b| {
            a.extend(b);
            a
        },
    )?;
    Ok(rows.into_iter().collect())
}

/// One listed block.
struct Ranked {
    rank: usize,
    block_id: u32,
    execs: u64,
    /// `None` when the block is missing from `block_dict`.
    insns: Option<u64>,
    /// Percent of the metric's total over all counted blocks.
    share: f64,
}

fn rank(counts: Counts, dict: &HashMap<u32, Meta>, by: By, limit: usize) -> Vec<Ranked> {
    let mut rows: Vec<Ranked> = counts
        .into_nonzero()
        .map(|(id, execs)| Ranked {
            rank: 0,
            block_id: id,
            execs,
            insns: dict
                .get(&id)
                .map(|m| execs.saturating_mul(u64::from(m.n_insns))),
            share: 0.0,
        })
        .collect();
    let metric = |r: &Ranked| match by {
        By::Execs => r.execs,
        By::Insns => r.insns.unwrap_or(0),
    };
    let total: u64 = rows.iter().map(metric).sum();
    // Ties go to the lower address, and blocks of unknown address after all
    // known ones, so the listing is the same on every run.
    let address = |r: &Ranked| dict.get(&r.block_id).map_or((1, 0), |m| (0, m.pc));
    rows.sort_by(|a, b| {
        metric(b)
            .cmp(&metric(a))
            .then_with(|| address(a).cmp(&address(b)))
            .then_with(|| a.block_id.cmp(&b.block_id))
    });
    if limit > 0 {
        rows.truncate(limit);
    }
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
        r.share = if total == 0 {
            0.0
        } else {
            metric(r) as f64 * 100.0 / total as f64
        };
    }
    rows
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_table(
    w: &mut impl Write,
    rows: &[Ranked],
    dict: &HashMap<u32, Meta>,
    disas: bool,
) -> Result<()> {
    let mut t = TextTable::new(&[
        ("rank", Align::Right),
        ("address", Align::Left),
        ("symbol", Align::Left),
        ("execs", Align::Right),
        ("insns", Align::Right),
        ("share", Align::Right),
        ("n_insns", Align::Right),
        ("block_id", Align::Right),
    ]);
    for r in rows {
        let meta = dict.get(&r.block_id);
        let cells = vec![
            r.rank.to_string(),
            meta.map_or_else(
                || format!("block {}", r.block_id),
                |m| format!("{:#x}", m.pc),
            ),
            meta.and_then(|m| m.symbol.clone()).unwrap_or_default(),
            r.execs.to_string(),
            r.insns.map(|n| n.to_string()).unwrap_or_default(),
            format!("{:.2}%", r.share),
            meta.map(|m| m.n_insns.to_string()).unwrap_or_default(),
            r.block_id.to_string(),
        ];
        let details = match meta {
            Some(m) if disas => disas_lines(&m.insns, m.symbol.as_deref()),
            None if disas => vec!["      (block missing from block_dict)".to_string()],
            _ => Vec::new(),
        };
        t.push_with_details(cells, details);
    }
    t.write(w)?;
    Ok(())
}

/// Instructions under a block's row: address, bytes, disassembly, with the
/// bytes padded so the disassembly lines up within the block, and the
/// instruction's symbol where it is not the block's (`<name>`).
fn disas_lines(insns: &[InsnInfo], block_symbol: Option<&str>) -> Vec<String> {
    let bytes: Vec<String> = insns
        .iter()
        .map(|i| {
            i.bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let width = bytes.iter().map(String::len).max().unwrap_or(0);
    insns
        .iter()
        .zip(&bytes)
        .map(|(i, b)| {
            let mut line = format!("      {:#x}  {b:width$}  {}", i.addr, i.disas);
            if let Some(s) = i.symbol.as_deref().filter(|&s| Some(s) != block_symbol) {
                line.push_str(&format!("  <{s}>"));
            }
            line.trim_end().to_string()
        })
        .collect()
}

fn write_csv(
    w: &mut impl Write,
    rows: &[Ranked],
    dict: &HashMap<u32, Meta>,
    disas: bool,
) -> Result<()> {
    let mut header = vec![
        "rank", "address", "symbol", "execs", "insns", "share", "n_insns", "block_id",
    ];
    if disas {
        header.push("disas");
    }
    output::write_csv_record(w, &header)?;
    for r in rows {
        let meta = dict.get(&r.block_id);
        let mut fields = vec![
            r.rank.to_string(),
            meta.map(|m| format!("{:#x}", m.pc)).unwrap_or_default(),
            meta.and_then(|m| m.symbol.clone()).unwrap_or_default(),
            r.execs.to_string(),
            r.insns.map(|n| n.to_string()).unwrap_or_default(),
            format!("{:.4}", r.share),
            meta.map(|m| m.n_insns.to_string()).unwrap_or_default(),
            r.block_id.to_string(),
        ];
        if disas {
            let text = meta.map(|m| {
                m.insns
                    .iter()
                    .map(|i| i.disas.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            });
            fields.push(text.unwrap_or_default());
        }
        output::write_csv_record(w, &fields)?;
    }
    Ok(())
}

fn to_json(rows: &[Ranked], dict: &HashMap<u32, Meta>, disas: bool) -> serde_json::Value {
    let rows = rows
        .iter()
        .map(|r| {
            let meta = dict.get(&r.block_id);
            // Addresses are strings: 64-bit addresses do not survive JSON
            // readers that hold numbers as doubles.
            let mut o = json!({
                "rank": r.rank,
                "address": meta.map(|m| format!("{:#x}", m.pc)),
                "symbol": meta.and_then(|m| m.symbol.clone()),
                "execs": r.execs,
                "insns": r.insns,
                "share": (r.share * 10_000.0).round() / 10_000.0,
                "n_insns": meta.map(|m| m.n_insns),
                "block_id": r.block_id,
            });
            if disas {
                let insns: Option<Vec<serde_json::Value>> = meta.map(|m| {
                    m.insns
                        .iter()
                        .map(|i| {
                            json!({
                                "addr": format!("{:#x}", i.addr),
                                "bytes": hex(&i.bytes),
                                "disas": i.disas,
                                "symbol": i.symbol,
                            })
                        })
                        .collect()
                });
                o["disas"] = json!(insns);
            }
            o
        })
        .collect();
    serde_json::Value::Array(rows)
}
