//! `qtrace diff --first`: where two runs first part, per vCPU.
//!
//! Each vCPU's block stream of A is compared with the same vCPU index's
//! stream of B (thread ids differ between runs; in linux-user a vCPU index
//! is a thread's rank in start order, so pairing by index pairs the
//! threads). Both streams are cut by A's row groups, whose `seq` ranges
//! the footers give: a chunk is one row group of A and the parts of B's
//! row groups that overlap its range. Chunks are compared in parallel, in
//! waves of twice as many chunks as threads, in `seq` order: the first
//! wave that holds a difference ends the search, and within a wave a
//! chunk that starts after a difference already found is not read. Block
//! ids become [`KeySpace`] indices as they are read, so comparing is
//! comparing `u32`s, and memory is a few row groups per thread. vCPUs
//! are searched in parallel as well.
//!
//! Then the point is described: the last common blocks, the first block of
//! each side with its instructions, and what the traces recorded that
//! explains it ([`super::explain`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Result;
use qtrace_format::block_stream::{clip, BlockRun, Blocks, Group};
use qtrace_format::Table;
use rayon::prelude::*;
use serde_json::{json, Value};

use super::explain::{self, Explanation};
use super::{Args, KeySpace, Side};
use crate::output::{self, Format};
use crate::rows::{self, Rows};

/// A `seq` of A that no row of A holds (a gap left by dropped or skipped
/// parts): not compared.
const GAP: u32 = u32::MAX - 2;

/// What the search read, for `--stats`.
#[derive(Default)]
struct Stats {
    groups_a: AtomicU64,
    groups_b: AtomicU64,
    read_a: AtomicU64,
    read_b: AtomicU64,
    chunks: AtomicU64,
    chunks_skipped: AtomicU64,
    rows: AtomicU64,
}

/// A row group placed on its vCPU's `seq` axis.
#[derive(Clone)]
struct Placed<'a> {
    seqs: Range<u64>,
    group: &'a Group,
}

/// Where a vCPU's two streams part.
pub(super) struct Found {
    pub vcpu: u32,
    /// The first `seq` at which they differ, or where the shorter ends;
    /// `None` when they are the same.
    pub seq: Option<u64>,
    pub events_a: u64,
    pub events_b: u64,
}

pub(super) fn run(args: &Args, a: &mut Side, b: &mut Side, keys: &KeySpace) -> Result<()> {
    let started = Instant::now();
    let (ba, bb) = rayon::join(
        || Blocks::open(&a.trace.parts(Table::Blocks)?),
        || Blocks::open(&b.trace.parts(Table::Blocks)?),
    );
    let (ba, bb) = (ba?, bb?);
    let stats = Stats::default();
    let vcpus: BTreeSet<u32> = ba
        .groups()
        .iter()
        .chain(bb.groups())
        .map(|g| g.vcpu.unwrap_or(0))
        .collect();
    // vCPUs in parallel too: each search is itself parallel, but a short
    // stream does not fill a wave.
    let found: Vec<Found> = vcpus
        .par_iter()
        .map(|&v| search(&ba, &bb, v, keys, &stats))
        .collect::<Result<_>>()?;
    let searched = started.elapsed();
    let mut reports = Vec::new();
    for f in &found {
        reports.push(describe(args, f, a, b, &ba, &bb)?);
    }
    if args.stats {
        let n = |x: &AtomicU64| x.load(Ordering::Relaxed);
        eprintln!(
            "stats: {} vCPU(s), {} chunks compared, {} skipped after a difference; \
             row groups read: A {} of {}, B {} of {}; {} rows compared; \
             search {:.3} s, with context {:.3} s, {} threads",
            vcpus.len(),
            n(&stats.chunks),
            n(&stats.chunks_skipped),
            n(&stats.read_a),
            n(&stats.groups_a),
            n(&stats.read_b),
            n(&stats.groups_b),
            n(&stats.rows),
            searched.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            rayon::current_num_threads(),
        );
    }
    print(args.format, &reports)
}

/// A vCPU's row groups with their `seq` ranges. The recorder's footers
/// give them; a group whose statistics do not (a file written by another
/// tool) is read once to place it.
fn placed<'a>(blocks: &'a Blocks, vcpu: u32, stats: &Stats, of_a: bool) -> Result<Vec<Placed<'a>>> {
    let mine: Vec<&Group> = blocks
        .groups()
        .iter()
        .filter(|g| g.vcpu.unwrap_or(0) == vcpu && g.rows > 0)
        .collect();
    let total = if of_a {
        &stats.groups_a
    } else {
        &stats.groups_b
    };
    total.fetch_add(mine.len() as u64, Ordering::Relaxed);
    mine.into_par_iter()
        .map(|group| {
            let seqs = match &group.seqs {
                Some(s) => s.clone(),
                None => {
                    let mut lo = u64::MAX;
                    let mut hi = 0;
                    blocks.read(group, &mut |run| {
                        lo = lo.min(run.first_seq);
                        hi = hi.max(run.first_seq + run.ids.len() as u64);
                        Ok(())
                    })?;
                    lo.min(hi)..hi
                }
            };
            Ok(Placed { seqs, group })
        })
        .collect()
}

/// Finds the first `seq` at which vCPU `vcpu`'s streams differ.
fn search(a: &Blocks, b: &Blocks, vcpu: u32, keys: &KeySpace, stats: &Stats) -> Result<Found> {
    let ga = placed(a, vcpu, stats, true)?;
    let mut gb = placed(b, vcpu, stats, false)?;
    gb.sort_by_key(|p| p.seqs.start);
    let end = |g: &[Placed]| g.iter().map(|p| p.seqs.end).max().unwrap_or(0);
    let (events_a, events_b) = (end(&ga), end(&gb));
    let common = events_a.min(events_b);
    let mut chunks: Vec<Placed> = ga
        .iter()
        .filter_map(|p| {
            let seqs = p.seqs.start..p.seqs.end.min(common);
            (seqs.start < seqs.end).then_some(Placed {
                seqs,
                group: p.group,
            })
        })
        .collect();
    chunks.sort_by_key(|p| p.seqs.start);
    let wave = 2 * rayon::current_num_threads().max(1);
    let best = AtomicU64::new(u64::MAX);
    let mut first = None;
    for chunk_wave in chunks.chunks(wave) {
        chunk_wave.par_iter().try_for_each(|chunk| -> Result<()> {
            if chunk.seqs.start > best.load(Ordering::Relaxed) {
                stats.chunks_skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            if let Some(s) = compare(a, b, chunk, &gb, keys, stats)? {
                best.fetch_min(s, Ordering::Relaxed);
            }
            Ok(())
        })?;
        let s = best.load(Ordering::Relaxed);
        if s != u64::MAX {
            first = Some(s);
            break;
        }
    }
    // Equal as far as both go: they part where the shorter one ends.
    let seq = first.or((events_a != events_b).then_some(common));
    Ok(Found {
        vcpu,
        seq,
        events_a,
        events_b,
    })
}

/// The first `seq` of the chunk at which A and B run different blocks.
fn compare(
    a: &Blocks,
    b: &Blocks,
    chunk: &Placed,
    gb: &[Placed],
    keys: &KeySpace,
    stats: &Stats,
) -> Result<Option<u64>> {
    stats.chunks.fetch_add(1, Ordering::Relaxed);
    let range = &chunk.seqs;
    let mut mine = vec![GAP; (range.end - range.start) as usize];
    stats.read_a.fetch_add(1, Ordering::Relaxed);
    a.read(chunk.group, &mut |run| {
        if let Some(run) = clip(run, range) {
            let at = (run.first_seq - range.start) as usize;
            for (k, &id) in mine[at..at + run.ids.len()].iter_mut().zip(run.ids) {
                *k = keys.of_a(id);
            }
        }
        Ok(())
    })?;
    let mut first: Option<u64> = None;
    let mut compared = 0u64;
    // B's row groups that overlap the chunk, in seq order.
    let from = gb.partition_point(|p| p.seqs.end <= range.start);
    for p in gb[from..].iter().take_while(|p| p.seqs.start < range.end) {
        if first.is_some() {
            break;
        }
        stats.read_b.fetch_add(1, Ordering::Relaxed);
        b.read(p.group, &mut |run: BlockRun| {
            if first.is_some() {
                return Ok(());
            }
            let Some(run) = clip(run, range) else {
                return Ok(());
            };
            let at = (run.first_seq - range.start) as usize;
            let theirs = &mine[at..at + run.ids.len()];
            compared += run.ids.len() as u64;
            let differs = theirs
                .iter()
                .zip(run.ids)
                .position(|(&ka, &id)| ka != keys.of_b(id) && ka != GAP);
            if let Some(i) = differs {
                first = Some(run.first_seq + i as u64);
            }
            Ok(())
        })?;
    }
    stats.rows.fetch_add(compared, Ordering::Relaxed);
    Ok(first)
}

/// One block execution: its `seq`, thread and block id.
#[derive(Clone, Copy)]
struct Exec {
    seq: u64,
    tid: u32,
    id: u32,
}

/// The executions of `vcpu` in `seqs`, in order.
fn execs(blocks: &Blocks, vcpu: u32, seqs: Range<u64>) -> Result<Vec<Exec>> {
    let mut out = Vec::new();
    for g in blocks
        .groups()
        .iter()
        .filter(|g| g.vcpu.unwrap_or(0) == vcpu && g.may_overlap(&seqs))
    {
        blocks.read(g, &mut |run| {
            if let Some(run) = clip(run, &seqs) {
                out.extend(run.ids.iter().enumerate().map(|(i, &id)| Exec {
                    seq: run.first_seq + i as u64,
                    tid: run.tid,
                    id,
                }));
            }
            Ok(())
        })?;
    }
    out.sort_by_key(|e| e.seq);
    Ok(out)
}

/// What is printed for one vCPU.
struct Report {
    json: Value,
    /// The table's lines.
    text: Vec<String>,
    /// The CSV row.
    flat: Vec<Value>,
}

/// A block as the report shows it, from one side.
fn block_json(side: &mut Side, e: &Exec, disas: bool) -> Value {
    let symbol = side.symbol(e.id);
    let place = side.place(e.id);
    let Some(b) = side.block(e.id) else {
        return json!({ "seq": e.seq, "tid": e.tid, "block_id": e.id, "address": null,
                       "symbol": null, "place": null });
    };
    let mut v = json!({
        "seq": e.seq,
        "tid": e.tid,
        "address": rows::hex(b.pc),
        "symbol": symbol,
        "place": place,
        "n_insns": b.insns.len(),
    });
    if disas {
        v["insns"] = b
            .insns
            .iter()
            .map(|i| json!({ "addr": rows::hex(i.addr), "bytes": rows::hex_bytes(&i.bytes), "disas": i.disas }))
            .collect();
    }
    v
}

fn describe(
    args: &Args,
    f: &Found,
    a: &mut Side,
    b: &mut Side,
    ba: &Blocks,
    bb: &Blocks,
) -> Result<Report> {
    let mut json = json!({
        "vcpu": f.vcpu,
        "diverges": f.seq.is_some(),
        "seq": f.seq,
        "events_a": f.events_a,
        "events_b": f.events_b,
    });
    let Some(d) = f.seq else {
        let text = vec![format!(
            "vCPU {}: no divergence: the same {} blocks in A and B",
            f.vcpu, f.events_a
        )];
        json["how"] = json!("same");
        let mut flat = vec![json!(f.vcpu), Value::Null, json!("same")];
        flat.extend(std::iter::repeat_n(Value::Null, 7));
        return Ok(Report { json, text, flat });
    };
    let from = d.saturating_sub(args.context as u64);
    let ea = execs(ba, f.vcpu, from..d + 1)?;
    let eb = execs(bb, f.vcpu, from..d + 1)?;
    let common: Vec<Value> = ea
        .iter()
        .filter(|e| e.seq < d)
        .map(|e| {
            let mut v = block_json(a, e, false);
            if let Some(o) = eb.iter().find(|o| o.seq == e.seq) {
                v["tid_b"] = json!(o.tid);
                v["address_b"] = b.block(o.id).map_or(Value::Null, |blk| rows::hex(blk.pc));
            }
            v
        })
        .collect();
    let at_a = ea
        .iter()
        .find(|e| e.seq == d)
        .map(|e| block_json(a, e, true));
    let at_b = eb
        .iter()
        .find(|e| e.seq == d)
        .map(|e| block_json(b, e, true));
    let how = match (&at_a, &at_b) {
        (Some(_), Some(_)) => "blocks differ",
        (None, _) => "A ends",
        (_, None) => "B ends",
    };
    let last = ea.iter().rfind(|e| e.seq < d).map(|e| e.id);
    let explanation = explain::explain(a, b, f.vcpu, d, last)?;
    json["how"] = json!(how);
    json["tid_a"] = ea.last().map_or(Value::Null, |e| json!(e.tid));
    json["tid_b"] = eb.last().map_or(Value::Null, |e| json!(e.tid));
    json["common"] = Value::Array(common.clone());
    json["a"] = at_a.clone().unwrap_or(Value::Null);
    json["b"] = at_b.clone().unwrap_or(Value::Null);
    json["explained_by"] = explanation.to_json();
    // The same explanation as the table prints it, for readers that show
    // it rather than take it apart (the interface's Diff view).
    json["explanation"] = json!(explanation.lines());

    let text = text_report(f, d, how, &json, &common, &explanation);
    let last_common = common.last();
    let field = |v: Option<&Value>, k: &str| v.map_or(Value::Null, |v| v[k].clone());
    let flat = vec![
        json!(f.vcpu),
        json!(d),
        json!(how),
        field(last_common, "address"),
        field(last_common, "symbol"),
        field(at_a.as_ref(), "address"),
        field(at_a.as_ref(), "symbol"),
        field(at_b.as_ref(), "address"),
        field(at_b.as_ref(), "symbol"),
    ];
    let mut flat = flat;
    flat.push(json!(explanation.summary()));
    Ok(Report { json, text, flat })
}

fn text_report(
    f: &Found,
    d: u64,
    how: &str,
    json: &Value,
    common: &[Value],
    why: &Explanation,
) -> Vec<String> {
    let s = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    let mut lines = vec![format!(
        "vCPU {} (thread {} in A, {} in B): the runs part at seq {d} ({how}; A has {} blocks, B {})",
        f.vcpu,
        s(&json["tid_a"]),
        s(&json["tid_b"]),
        f.events_a,
        f.events_b
    )];
    if !common.is_empty() {
        lines.push("  last common blocks:".into());
        for c in common {
            let mut l = format!(
                "    seq {:>8}  {:>18}  {:<24}  {}",
                s(&c["seq"]),
                s(&c["address"]),
                s(&c["symbol"]),
                s(&c["place"])
            );
            if c["address_b"] != c["address"] && !c["address_b"].is_null() {
                let _ = write!(l, "  (B: {})", s(&c["address_b"]));
            }
            lines.push(l);
        }
    }
    for (label, v) in [("A", &json["a"]), ("B", &json["b"])] {
        if v.is_null() {
            lines.push(format!("  first in {label}: (its stream ends)"));
            continue;
        }
        lines.push(format!(
            "  first in {label}: seq {}  {}  {}  {}",
            s(&v["seq"]),
            s(&v["address"]),
            s(&v["symbol"]),
            s(&v["place"])
        ));
        for i in v["insns"].as_array().into_iter().flatten() {
            lines.push(format!("      {}  {}", s(&i["addr"]), s(&i["disas"])));
        }
    }
    lines.push("  explained by:".into());
    lines.extend(why.lines().into_iter().map(|l| format!("    {l}")));
    lines
}

fn print(format: Format, reports: &[Report]) -> Result<()> {
    let mut out = output::stdout();
    match format {
        Format::Table => {
            for (i, r) in reports.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                for l in &r.text {
                    writeln!(out, "{l}")?;
                }
            }
            out.flush()?;
        }
        Format::Json => {
            let all = Value::Array(reports.iter().map(|r| r.json.clone()).collect());
            output::write_json(&mut out, &all)?;
            out.flush()?;
        }
        Format::Jsonl => {
            for r in reports {
                serde_json::to_writer(&mut out, &r.json)?;
                writeln!(out)?;
            }
            out.flush()?;
        }
        Format::Csv => {
            let mut rows = Rows::new(
                out,
                Format::Csv,
                &[
                    rows::num("vcpu"),
                    rows::num("seq"),
                    rows::text("how"),
                    rows::text("last_common_address"),
                    rows::text("last_common_symbol"),
                    rows::text("address_a"),
                    rows::text("symbol_a"),
                    rows::text("address_b"),
                    rows::text("symbol_b"),
                    rows::text("explained_by"),
                ],
            )?
            .with_colour(crate::progress::colour());
            for r in reports {
                rows.push(r.flat.clone())?;
            }
            rows.finish()?;
        }
    }
    Ok(())
}
