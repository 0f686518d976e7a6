//! Execution counts compared block by block: what ran only in A, only in
//! B, and what ran a different number of times, ranked by the size of the
//! change and summed per block, symbol or module.
//!
//! Counts per block come from `block_counts` (exact, one row per vCPU and
//! block) when both traces have it, else from the `blocks` events, counted
//! in parallel into a vector per block id: memory follows the number of
//! distinct blocks, never the number of events.

use std::collections::BTreeMap;

use anyhow::Result;
use qtrace_format::{Table, Trace};
use serde_json::{json, Value};

use super::{Args, By, KeySpace, Show, Side, Source, Weight};
use crate::output;
use crate::rows::{self, Rows};

/// Executions per block id of one trace, every vCPU.
fn counts(trace: &Trace, source: Source) -> Result<Vec<u64>> {
    let counts = crate::counts::load(trace, source, None)?;
    let len = counts.ids_upto();
    Ok(counts.split_at(len).0)
}

/// One block key's counts in both traces, with a block id of each side
/// that has it (for its address, size and symbol).
#[derive(Clone, Debug, Default)]
struct Pair {
    execs_a: u64,
    execs_b: u64,
    id_a: Option<u32>,
    id_b: Option<u32>,
    n_insns: u64,
}

impl Pair {
    fn status(&self) -> &'static str {
        match (self.execs_a, self.execs_b) {
            (_, 0) => "only-a",
            (0, _) => "only-b",
            _ => "changed",
        }
    }
}

/// What a listed row adds up: one block, or a symbol's or module's blocks.
#[derive(Clone, Debug, Default)]
struct Sum {
    execs_a: u64,
    execs_b: u64,
    insns_a: u64,
    insns_b: u64,
    only_a: u64,
    only_b: u64,
    changed: u64,
}

impl Sum {
    fn add(&mut self, p: &Pair) {
        self.execs_a += p.execs_a;
        self.execs_b += p.execs_b;
        self.insns_a += p.execs_a.saturating_mul(p.n_insns);
        self.insns_b += p.execs_b.saturating_mul(p.n_insns);
        match p.status() {
            _ if p.execs_a == p.execs_b => {}
            "only-a" => self.only_a += 1,
            "only-b" => self.only_b += 1,
            _ => self.changed += 1,
        }
    }

    fn status(&self) -> &'static str {
        match (self.execs_a, self.execs_b) {
            (_, 0) => "only-a",
            (0, _) => "only-b",
            _ => "changed",
        }
    }

    fn delta(&self) -> i128 {
        i128::from(self.execs_b) - i128::from(self.execs_a)
    }

    fn insns_delta(&self) -> i128 {
        i128::from(self.insns_b) - i128::from(self.insns_a)
    }

    fn weight(&self, w: Weight) -> u128 {
        match w {
            Weight::Execs => self.delta().unsigned_abs(),
            Weight::Insns => self.insns_delta().unsigned_abs(),
        }
    }
}

pub(super) fn run(args: &Args, a: &mut Side, b: &mut Side, keys: &KeySpace) -> Result<()> {
    // Both from the same source: counters where both traces have them.
    let source = match args.source {
        Source::Auto
            if a.trace.parts(Table::BlockCounts)?.is_empty()
                || b.trace.parts(Table::BlockCounts)?.is_empty() =>
        {
            Source::Events
        }
        Source::Auto => Source::Counts,
        other => other,
    };
    let (ca, cb) = rayon::join(|| counts(&a.trace, source), || counts(&b.trace, source));
    let (ca, cb) = (ca?, cb?);
    let pairs = pair_up(keys, a, b, &ca, &cb);
    let shown = |status: &str| match args.show {
        Show::All => true,
        Show::OnlyA => status == "only-a",
        Show::OnlyB => status == "only-b",
        Show::Changed => status == "changed",
    };
    let out = output::stdout();
    match args.by {
        By::Block => {
            let mut rows: Vec<(u32, Sum)> = pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.execs_a != p.execs_b)
                .map(|(k, p)| {
                    let mut s = Sum::default();
                    s.add(p);
                    (k as u32, s)
                })
                .filter(|(_, s)| shown(s.status()))
                .collect();
            // Ties in key order (module, offset, code): the same listing on
            // every run.
            rows.sort_by(|(ka, x), (kb, y)| {
                y.weight(args.rank)
                    .cmp(&x.weight(args.rank))
                    .then_with(|| keys.keys[*ka as usize].cmp(&keys.keys[*kb as usize]))
            });
            truncate(&mut rows, args.limit);
            let mut out = Rows::new(
                out,
                args.format,
                &[
                    rows::text("status"),
                    rows::num("delta"),
                    rows::num("execs_a"),
                    rows::num("execs_b"),
                    rows::num("insns_delta"),
                    rows::num("n_insns"),
                    rows::text("address_a"),
                    rows::text("address_b"),
                    rows::text("module"),
                    rows::text("offset"),
                    rows::text("symbol"),
                ],
            )?
            .with_colour(crate::progress::colour());
            for (k, s) in rows {
                let p = &pairs[k as usize];
                let key = &keys.keys[k as usize];
                let symbol = p
                    .id_a
                    .and_then(|id| a.symbol(id))
                    .or_else(|| p.id_b.and_then(|id| b.symbol(id)));
                let addr = |side: &Side, id: Option<u32>| {
                    id.and_then(|id| side.block(id))
                        .map_or(Value::Null, |blk| rows::hex(blk.pc))
                };
                out.push(vec![
                    json!(s.status()),
                    num(s.delta()),
                    json!(s.execs_a),
                    json!(s.execs_b),
                    num(s.insns_delta()),
                    json!(p.n_insns),
                    addr(a, p.id_a),
                    addr(b, p.id_b),
                    text_or_null(&key.module),
                    rows::hex(key.offset),
                    symbol.map_or(Value::Null, Value::from),
                ])?;
            }
            out.finish()?;
        }
        By::Symbol | By::Module => {
            // Per (module, symbol), or per module with the symbol empty.
            let mut groups: BTreeMap<(String, String), Sum> = BTreeMap::new();
            for (k, p) in pairs.iter().enumerate() {
                if p.execs_a == 0 && p.execs_b == 0 {
                    continue;
                }
                let module = keys.keys[k].module.clone();
                let symbol = if args.by == By::Symbol {
                    p.id_a
                        .and_then(|id| a.symbol(id))
                        .or_else(|| p.id_b.and_then(|id| b.symbol(id)))
                        .unwrap_or_default()
                } else {
                    String::new()
                };
                groups.entry((module, symbol)).or_default().add(p);
            }
            let mut rows: Vec<((String, String), Sum)> = groups
                .into_iter()
                .filter(|(_, s)| s.execs_a != s.execs_b || s.only_a + s.only_b > 0)
                .filter(|(_, s)| shown(s.status()))
                .collect();
            rows.sort_by(|(ka, x), (kb, y)| {
                y.weight(args.rank)
                    .cmp(&x.weight(args.rank))
                    .then_with(|| ka.cmp(kb))
            });
            truncate(&mut rows, args.limit);
            let mut columns = vec![
                rows::text("status"),
                rows::num("delta"),
                rows::num("execs_a"),
                rows::num("execs_b"),
                rows::num("insns_delta"),
                rows::num("blocks_only_a"),
                rows::num("blocks_only_b"),
                rows::num("blocks_changed"),
                rows::text("module"),
            ];
            if args.by == By::Symbol {
                columns.push(rows::text("symbol"));
            }
            let mut out =
                Rows::new(out, args.format, &columns)?.with_colour(crate::progress::colour());
            for ((module, symbol), s) in rows {
                let mut cells = vec![
                    json!(s.status()),
                    num(s.delta()),
                    json!(s.execs_a),
                    json!(s.execs_b),
                    num(s.insns_delta()),
                    json!(s.only_a),
                    json!(s.only_b),
                    json!(s.changed),
                    text_or_null(&module),
                ];
                if args.by == By::Symbol {
                    cells.push(text_or_null(&symbol));
                }
                out.push(cells)?;
            }
            out.finish()?;
        }
    }
    Ok(())
}

/// Counts of both traces per block key. A block missing from its trace's
/// dictionary has no key and is left out (it cannot be matched).
fn pair_up(keys: &KeySpace, a: &Side, b: &Side, ca: &[u64], cb: &[u64]) -> Vec<Pair> {
    let mut pairs = vec![Pair::default(); keys.keys.len()];
    let n_insns = |side: &Side, id: u32| side.block(id).map_or(0, |blk| blk.insns.len() as u64);
    for (id, &n) in ca.iter().enumerate().filter(|(_, &n)| n > 0) {
        let k = keys.of_a(id as u32);
        if let Some(p) = pairs.get_mut(k as usize) {
            p.execs_a += n;
            p.id_a.get_or_insert(id as u32);
            p.n_insns = n_insns(a, id as u32);
        }
    }
    for (id, &n) in cb.iter().enumerate().filter(|(_, &n)| n > 0) {
        let k = keys.of_b(id as u32);
        if let Some(p) = pairs.get_mut(k as usize) {
            p.execs_b += n;
            p.id_b.get_or_insert(id as u32);
            p.n_insns = n_insns(b, id as u32);
        }
    }
    pairs
}

fn truncate<T>(rows: &mut Vec<T>, limit: usize) {
    if limit > 0 {
        rows.truncate(limit);
    }
}

/// A signed count as JSON (an `i64` when it fits, as it always does for
/// real traces).
fn num(v: i128) -> Value {
    i64::try_from(v).map_or_else(|_| json!(v.to_string()), |v| json!(v))
}

fn text_or_null(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        json!(s)
    }
}
