//! `qtrace diff A B`: how two runs of a program differ.
//!
//! Two questions, two modes:
//!
//! - by default, which blocks ran only in A, only in B, or a different
//!   number of times, ranked by the size of the change and grouped by
//!   block, symbol or module ([`counts`]);
//! - with `--first`, where each vCPU's execution first parts between the
//!   two runs, the blocks around that point, and what recorded data
//!   explains it ([`first`], [`explain`]).
//!
//! Block ids and addresses are per run, so blocks are matched through
//! [`places::BlockKey`] (module file name, offset in the module, code
//! hash): [`KeySpace`] gives every block of either trace a common index,
//! built once from the two dictionaries, so that comparing block streams
//! is comparing `u32`s.

mod counts;
mod explain;
mod first;
mod pruned;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use qtrace_format::symbols::{Resolver, DEFAULT_DEBUG_DIR};
use qtrace_format::{BlockInfo, Trace};

use crate::counts::Source;
use crate::output::Format;
use crate::places::{self, BlockKey, Places};
use crate::reading::ReadArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The first trace (as written by `qtrace record -o`).
    a: PathBuf,
    /// The second trace.
    b: PathBuf,
    /// Find where the two runs first part, per vCPU, with the blocks
    /// around it and what the traces recorded that explains it, instead of
    /// comparing execution counts. vCPUs are paired by index (in
    /// linux-user, the order threads started), since thread ids differ
    /// between runs.
    #[arg(long)]
    first: bool,
    /// With `--first`: how many common blocks to show before the point.
    #[arg(long, value_name = "N", default_value_t = 5)]
    context: usize,
    /// Compare counts per block, or summed per symbol or per module.
    #[arg(long, value_enum, default_value_t = By::Block)]
    by: By,
    /// Rank changes by executions, or by instructions executed
    /// (executions times the block's instructions).
    #[arg(long, value_enum, default_value_t = Weight::Execs)]
    rank: Weight,
    /// Which differences to list.
    #[arg(long, value_enum, default_value_t = Show::All)]
    show: Show,
    /// How many rows to list; 0 lists them all.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    limit: usize,
    /// Where execution counts come from: `counts` reads the exact counters
    /// (`block_counts`), `events` counts the `blocks` table, `auto` takes
    /// counters when both traces have them.
    #[arg(long, value_enum, default_value_t = Source::Auto)]
    source: Source,
    /// How to print.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Say on stderr what the search read: row groups compared and
    /// skipped, rows compared, time.
    #[arg(long)]
    stats: bool,
    /// Where to look for the separate debug files of stripped modules (see
    /// `top-blocks --debug-dir`); repeatable.
    #[arg(long = "debug-dir", value_name = "DIR", default_value = DEFAULT_DEBUG_DIR)]
    debug_dirs: Vec<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum By {
    Block,
    Symbol,
    Module,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Weight {
    Execs,
    Insns,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Show {
    /// Everything that differs.
    All,
    /// What ran only in A.
    OnlyA,
    /// What ran only in B.
    OnlyB,
    /// What ran in both, a different number of times.
    Changed,
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    let (a, b) = open_pair(&args.a, &args.b, read)?;
    let mut a = Side::new("A", a, &args.debug_dirs)?;
    let mut b = Side::new("B", b, &args.debug_dirs)?;
    let keys = KeySpace::new(&a.places, &b.places);
    let result = if args.first {
        first::run(&args, &mut a, &mut b, &keys)
    } else {
        counts::run(&args, &mut a, &mut b, &keys)
    };
    for side in [&mut a, &mut b] {
        for note in side.take_notes() {
            eprintln!("note: {}: {note}", side.label);
        }
    }
    result
}

/// Opens both traces; they must be of the same guest architecture.
fn open_pair(a: &Path, b: &Path, read: &ReadArgs) -> Result<(Trace, Trace)> {
    let ta = read.open(a).context("trace A")?;
    let tb = read.open(b).context("trace B")?;
    let (ga, gb) = (&ta.manifest().target, &tb.manifest().target);
    if ga != gb {
        bail!(
            "{} is a trace of {ga} and {} of {gb}: traces of different architectures do not compare",
            a.display(),
            b.display()
        );
    }
    Ok((ta, tb))
}

/// One of the two traces, with its blocks placed in their modules.
pub(crate) struct Side {
    /// `A` or `B`, as messages name it.
    pub label: &'static str,
    pub trace: Trace,
    pub places: Places,
    debug_dirs: Vec<PathBuf>,
    /// Made on the first symbol QEMU did not know.
    resolver: Option<Resolver>,
    resolved: HashMap<u64, Option<String>>,
}

impl Side {
    fn new(label: &'static str, trace: Trace, debug_dirs: &[PathBuf]) -> Result<Side> {
        let places =
            Places::load(&trace).with_context(|| format!("trace {label}: block places"))?;
        Ok(Side {
            label,
            trace,
            places,
            debug_dirs: debug_dirs.to_vec(),
            resolver: None,
            resolved: HashMap::new(),
        })
    }

    pub fn block(&self, id: u32) -> Option<&BlockInfo> {
        self.places.block(id)
    }

    /// The block's symbol: QEMU's, else resolved offline through the
    /// trace's modules.
    pub fn symbol(&mut self, id: u32) -> Option<String> {
        let b = self.places.block(id)?;
        if let Some(s) = &b.symbol {
            return Some(s.clone());
        }
        let pc = b.pc;
        self.symbol_at(pc)
    }

    /// The symbol at a guest address, resolved offline.
    pub fn symbol_at(&mut self, addr: u64) -> Option<String> {
        if let Some(s) = self.resolved.get(&addr) {
            return s.clone();
        }
        let places = &self.places;
        let dirs = &self.debug_dirs;
        let resolver = self.resolver.get_or_insert_with(|| {
            Resolver::new(places.modules.clone()).with_debug_dirs(dirs.clone())
        });
        let s = resolver.symbol(addr);
        self.resolved.insert(addr, s.clone());
        s
    }

    /// `module+0xoffset`, or the bare address outside modules.
    pub fn place(&self, id: u32) -> Option<String> {
        let off = self.places.offset(id)?;
        Some(match self.places.module(id) {
            Some(m) => format!("{}+{off:#x}", places::module_name(m)),
            None => format!("{off:#x}"),
        })
    }

    fn take_notes(&mut self) -> Vec<String> {
        self.resolver
            .as_mut()
            .map(Resolver::take_notes)
            .unwrap_or_default()
    }
}

/// A block id of A that has no key (missing from `block_dict`): it equals
/// nothing, not even B's missing blocks.
pub(crate) const NO_KEY_A: u32 = u32::MAX;
/// The same for B.
pub(crate) const NO_KEY_B: u32 = u32::MAX - 1;

/// Every block key of either trace, numbered, and each trace's block ids
/// mapped to those numbers.
pub(crate) struct KeySpace {
    pub keys: Vec<BlockKey>,
    /// By block id of A: its key's index, or [`NO_KEY_A`].
    pub a: Vec<u32>,
    /// By block id of B: its key's index, or [`NO_KEY_B`].
    pub b: Vec<u32>,
}

impl KeySpace {
    pub fn new(a: &Places, b: &Places) -> KeySpace {
        let mut index: HashMap<BlockKey, u32> = HashMap::new();
        let mut keys = Vec::new();
        let mut map = |places: &Places, none: u32| -> Vec<u32> {
            places
                .keys()
                .into_iter()
                .map(|k| match k {
                    None => none,
                    Some(k) => *index.entry(k.clone()).or_insert_with(|| {
                        keys.push(k);
                        (keys.len() - 1) as u32
                    }),
                })
                .collect()
        };
        let a = map(a, NO_KEY_A);
        let b = map(b, NO_KEY_B);
        KeySpace { keys, a, b }
    }

    /// The key index of A's block `id`.
    #[inline]
    pub fn of_a(&self, id: u32) -> u32 {
        self.a.get(id as usize).copied().unwrap_or(NO_KEY_A)
    }

    /// The key index of B's block `id`.
    #[inline]
    pub fn of_b(&self, id: u32) -> u32 {
        self.b.get(id as usize).copied().unwrap_or(NO_KEY_B)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtrace_format::BlockInfo;

    fn block(id: u32, pc: u64, code: &[u8]) -> BlockInfo {
        BlockInfo {
            id,
            pc,
            size: code.len() as u32,
            code: code.to_vec(),
            ..BlockInfo::default()
        }
    }

    #[test]
    fn key_space_matches_blocks_by_key_not_id() {
        let a = Places::new(vec![block(0, 0x10, &[1]), block(1, 0x20, &[2])], Vec::new());
        let b = Places::new(
            vec![
                block(0, 0x20, &[2]),
                block(1, 0x30, &[3]),
                block(2, 0x10, &[9]),
            ],
            Vec::new(),
        );
        let k = KeySpace::new(&a, &b);
        assert_eq!(k.keys.len(), 4);
        assert_eq!(k.of_a(1), k.of_b(0));
        assert_ne!(k.of_a(0), k.of_b(2), "same address, other code");
        assert_eq!(k.of_a(7), NO_KEY_A);
        assert_ne!(k.of_a(7), k.of_b(7));
    }
}
