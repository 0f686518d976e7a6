//! The tables of `qtrace coverage`: covered blocks, and totals per function
//! and per module.
//!
//! Instructions and bytes are counted once per address, in the result's
//! address space: QEMU may translate overlapping blocks (a jump into the
//! middle of one starts another), and summing their sizes would count the
//! shared bytes twice. Executions are block executions, summed.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use qtrace_format::symbols::Resolver;
use qtrace_format::BlockInfo;
use serde_json::{json, Value};

use super::algebra::{Placed, Run, Space};
use crate::output::Format;
use crate::rows::{hex, num, text, Rows};

/// What the tables read, with a symbol resolver per trace made on first
/// use.
pub struct Report<'a> {
    runs: &'a [Run],
    space: &'a Space<'a>,
    placed: &'a [Placed],
    debug_dirs: Vec<PathBuf>,
    resolvers: Vec<Option<Resolver>>,
    /// Bold table headers (the output is a terminal).
    pub colour: bool,
}

/// Totals of a group of blocks.
#[derive(Default)]
struct Tally {
    blocks: u64,
    execs: u64,
    /// Lowest address of the group's blocks.
    first: Option<u64>,
    /// Distinct instruction addresses and their lengths in bytes.
    insns: HashMap<u64, usize>,
}

impl Tally {
    fn add(&mut self, p: &Placed, b: &BlockInfo) {
        self.blocks += 1;
        self.execs += p.block.execs;
        self.first = Some(self.first.map_or(p.addr, |f| f.min(p.addr)));
        for i in &b.insns {
            let len = self.insns.entry(i.addr.wrapping_add(p.shift)).or_default();
            *len = (*len).max(i.bytes.len());
        }
    }

    fn bytes(&self) -> u64 {
        self.insns.values().map(|&n| n as u64).sum()
    }
}

impl<'a> Report<'a> {
    pub fn new(
        runs: &'a [Run],
        space: &'a Space<'a>,
        placed: &'a [Placed],
        debug_dirs: Vec<PathBuf>,
    ) -> Report<'a> {
        Report {
            runs,
            space,
            placed,
            debug_dirs,
            resolvers: runs.iter().map(|_| None).collect(),
            colour: false,
        }
    }

    /// What symbol resolution had to leave out, and why.
    pub fn take_notes(&mut self) -> Vec<String> {
        self.resolvers
            .iter_mut()
            .flatten()
            .flat_map(Resolver::take_notes)
            .collect()
    }

    fn block(&self, p: &Placed) -> Option<&'a BlockInfo> {
        self.runs[p.block.run].places.block(p.block.id)
    }

    /// The block's function: QEMU's name for it, else the one its module's
    /// file gives.
    fn symbol(&mut self, p: &Placed, b: &BlockInfo) -> Option<String> {
        if let Some(s) = &b.symbol {
            return Some(s.clone());
        }
        let run = p.block.run;
        let dirs = &self.debug_dirs;
        let places = &self.runs[run].places;
        self.resolvers[run]
            .get_or_insert_with(|| {
                Resolver::new(places.modules.clone()).with_debug_dirs(dirs.clone())
            })
            .symbol(b.pc)
    }

    fn module_name(&self, m: Option<usize>) -> Value {
        m.map_or(Value::Null, |i| json!(self.space.modules[i].name))
    }

    /// One row per covered block, by address.
    pub fn blocks(&mut self, w: &mut impl Write, format: Format) -> Result<()> {
        let mut out = Rows::new(
            w,
            format,
            &[
                text("address"),
                text("module"),
                text("offset"),
                num("size"),
                num("n_insns"),
                num("execs"),
                text("symbol"),
            ],
        )?
        .with_colour(self.colour);
        for p in self.placed {
            let Some(b) = self.block(p) else { continue };
            let offset = p.module.map_or(Value::Null, |i| {
                hex(p.addr.wrapping_sub(self.space.modules[i].module.base))
            });
            let symbol = self.symbol(p, b);
            out.push(vec![
                hex(p.addr),
                self.module_name(p.module),
                offset,
                json!(b.size),
                json!(b.insns.len()),
                json!(p.block.execs),
                json!(symbol),
            ])?;
        }
        out.finish()?;
        Ok(())
    }

    /// Totals per function, by module (in the module table's order) and
    /// then by the function's lowest covered address.
    pub fn symbols(&mut self, w: &mut impl Write, format: Format) -> Result<()> {
        let mut groups: HashMap<(Option<usize>, Option<String>), Tally> = HashMap::new();
        for p in self.placed {
            let Some(b) = self.block(p) else { continue };
            let symbol = self.symbol(p, b);
            groups.entry((p.module, symbol)).or_default().add(p, b);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        // Code outside modules last.
        groups.sort_by_key(|((m, s), t)| (m.is_none(), *m, t.first, s.clone()));
        let mut out = Rows::new(
            w,
            format,
            &[
                text("module"),
                text("symbol"),
                text("address"),
                num("blocks"),
                num("insns"),
                num("bytes"),
                num("execs"),
            ],
        )?
        .with_colour(self.colour);
        for ((m, symbol), t) in groups {
            out.push(vec![
                self.module_name(m),
                json!(symbol),
                t.first.map_or(Value::Null, hex),
                json!(t.blocks),
                json!(t.insns.len()),
                json!(t.bytes()),
                json!(t.execs),
            ])?;
        }
        out.finish()?;
        Ok(())
    }

    /// Totals per module, every module of the table (in its order) and then
    /// the code outside modules, if any ran; with the share of the module's
    /// executable bytes covered.
    pub fn modules(&mut self, w: &mut impl Write, format: Format) -> Result<()> {
        let mut tallies: BTreeMap<usize, Tally> = BTreeMap::new();
        let mut outside = Tally::default();
        for p in self.placed {
            let Some(b) = self.block(p) else { continue };
            match p.module {
                Some(m) => tallies.entry(m).or_default().add(p, b),
                None => outside.add(p, b),
            }
        }
        let mut out = Rows::new(
            w,
            format,
            &[
                text("module"),
                text("base"),
                num("blocks"),
                num("insns"),
                num("bytes"),
                num("execs"),
                num("text_bytes"),
                num("covered_pct"),
                text("path"),
            ],
        )?
        .with_colour(self.colour);
        let empty = Tally::default();
        for (i, m) in self.space.modules.iter().enumerate() {
            let t = tallies.get(&i).unwrap_or(&empty);
            let text_bytes = m.module.text.map(|(s, e)| e.saturating_sub(s));
            let pct = text_bytes
                .filter(|&n| n > 0)
                .map(|n| (t.bytes() as f64 * 10000.0 / n as f64).round() / 100.0);
            out.push(vec![
                json!(m.name),
                hex(m.module.base),
                json!(t.blocks),
                json!(t.insns.len()),
                json!(t.bytes()),
                json!(t.execs),
                json!(text_bytes),
                json!(pct),
                json!(m.module.path),
            ])?;
        }
        if outside.blocks > 0 {
            out.push(vec![
                Value::Null,
                Value::Null,
                json!(outside.blocks),
                json!(outside.insns.len()),
                json!(outside.bytes()),
                json!(outside.execs),
                Value::Null,
                Value::Null,
                Value::Null,
            ])?;
        }
        out.finish()?;
        Ok(())
    }
}
