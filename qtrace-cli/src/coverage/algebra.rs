//! Set operations over the coverage of several traces, and the address
//! space their result is shown in.
//!
//! Blocks are matched across traces by [`BlockKey`] (module file name,
//! offset in the module, code bytes), never by block id or raw address: ids
//! are per trace, and addresses move with every load (ASLR, another
//! environment size, another loader). The result is shown in the first
//! trace's addresses; a block that only later traces executed is placed in
//! the first trace's module of the same name, or, when the first trace has
//! none, in the later trace's own module, appended to the module table.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use clap::ValueEnum;
use qtrace_format::Module;

use crate::places::{module_name, BlockKey, Places};

/// One trace's coverage.
pub struct Run {
    pub places: Places,
    /// By block id: the block's key (`None` for ids missing from the dictionary).
    pub keys: Vec<Option<BlockKey>>,
    /// By block id: executions, 0 for a block that never ran.
    pub execs: Vec<u64>,
}

impl Run {
    pub fn new(places: Places, execs: Vec<u64>) -> Run {
        let keys = places.keys();
        Run {
            places,
            keys,
            execs,
        }
    }

    /// (block id, key, executions) of every block that ran and has a key.
    fn covered(&self) -> impl Iterator<Item = (u32, &BlockKey, u64)> {
        self.execs
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .filter_map(|(id, &n)| Some((id as u32, self.keys.get(id)?.as_ref()?, n)))
    }
}

/// How the coverage of several traces combines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    /// Blocks that any of the traces executed.
    Union,
    /// Blocks that every trace executed.
    Intersect,
    /// Blocks the first trace executed and none of the others did.
    Diff,
}

/// A block of the result: the first trace (in command-line order) that
/// executed it stands for it; `execs` sums the executions of every trace
/// that counts towards the result (all that executed it for `union` and
/// `intersect`, the first alone for `diff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Covered {
    pub run: usize,
    pub id: u32,
    pub execs: u64,
}

/// The blocks of `runs` combined by `op`, one per distinct key.
pub fn combine(runs: &[Run], op: Op) -> Vec<Covered> {
    let Some((first, rest)) = runs.split_first() else {
        return Vec::new();
    };
    if op == Op::Union {
        let mut out: Vec<Covered> = Vec::new();
        let mut at: HashMap<&BlockKey, usize> = HashMap::new();
        for (r, run) in runs.iter().enumerate() {
            for (id, key, execs) in run.covered() {
                match at.entry(key) {
                    Entry::Occupied(e) => out[*e.get()].execs += execs,
                    Entry::Vacant(e) => {
                        e.insert(out.len());
                        out.push(Covered { run: r, id, execs });
                    }
                }
            }
        }
        return out;
    }
    let mut acc: HashMap<&BlockKey, Covered> = HashMap::new();
    for (id, key, execs) in first.covered() {
        acc.entry(key)
            .and_modify(|c| c.execs += execs)
            .or_insert(Covered { run: 0, id, execs });
    }
    for run in rest {
        let mut seen: HashMap<&BlockKey, u64> = HashMap::new();
        for (_, key, execs) in run.covered() {
            *seen.entry(key).or_default() += execs;
        }
        acc.retain(|key, c| match (op, seen.get(key)) {
            (Op::Intersect, Some(n)) => {
                c.execs += n;
                true
            }
            (Op::Intersect, None) => false,
            (_, found) => found.is_none(),
        });
    }
    acc.into_values().collect()
}

/// A module of the result's module table.
pub struct OutModule<'a> {
    /// The trace's row it comes from (its base is the result's base).
    pub module: &'a Module,
    /// Its file name, by which traces' modules are matched.
    pub name: String,
}

/// A block of the result, placed in the result's address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub block: Covered,
    /// Index into [`Space::modules`]; `None` outside every module.
    pub module: Option<usize>,
    /// Where the block starts in the result's addresses.
    pub addr: u64,
    /// `addr` minus the trace's own address of the block: add it to the
    /// trace's instruction addresses to move them too.
    pub shift: u64,
}

/// The result's address space: the first trace's modules, then those that
/// only later traces had, by file name.
pub struct Space<'a> {
    pub modules: Vec<OutModule<'a>>,
    by_name: HashMap<String, usize>,
}

impl<'a> Space<'a> {
    /// Places every block of `covered`, ordered by address (then by trace
    /// and id, for blocks that share an address).
    pub fn place(runs: &'a [Run], covered: &[Covered]) -> (Space<'a>, Vec<Placed>) {
        let mut space = Space {
            modules: Vec::new(),
            by_name: HashMap::new(),
        };
        if let Some(first) = runs.first() {
            for m in &first.places.modules {
                space.push(m);
            }
        }
        let mut placed: Vec<Placed> = covered
            .iter()
            .filter_map(|&c| space.place_one(runs, c))
            .collect();
        placed.sort_by_key(|p| (p.addr, p.block.run, p.block.id));
        (space, placed)
    }

    fn push(&mut self, m: &'a Module) -> usize {
        let name = module_name(m);
        let i = self.modules.len();
        self.by_name.entry(name.clone()).or_insert(i);
        self.modules.push(OutModule { module: m, name });
        i
    }

    fn place_one(&mut self, runs: &'a [Run], c: Covered) -> Option<Placed> {
        let places = &runs[c.run].places;
        let pc = places.block(c.id)?.pc;
        let Some(mi) = places.module_index(c.id) else {
            return Some(Placed {
                block: c,
                module: None,
                addr: pc,
                shift: 0,
            });
        };
        let m = &places.modules[mi];
        let out = if c.run == 0 {
            // The first trace's modules are the table's first rows, in order.
            mi
        } else {
            match self.by_name.get(&module_name(m)) {
                Some(&i) => i,
                None => self.push(m),
            }
        };
        let addr = self.modules[out].module.base.wrapping_add(pc - m.base);
        Some(Placed {
            block: c,
            module: Some(out),
            addr,
            shift: addr.wrapping_sub(pc),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtrace_format::{BlockInfo, ModuleKind};

    fn module(id: u32, path: &str, base: u64) -> Module {
        Module {
            id,
            kind: ModuleKind::Mmap,
            path: path.into(),
            guest_path: None,
            build_id: None,
            base,
            size: 0x10000,
            bias: Some(base),
            text: Some((base, base + 0x10000)),
            entry: None,
            segments: Vec::new(),
            loaded: None,
            unloaded: None,
        }
    }

    fn block(id: u32, pc: u64, code: &[u8]) -> BlockInfo {
        BlockInfo {
            id,
            pc,
            size: code.len() as u32,
            code: code.to_vec(),
            ..BlockInfo::default()
        }
    }

    /// A trace with `libc.so.6` at `base`, blocks at offsets 0x10, 0x20 and
    /// 0x30 executed as `execs` says.
    fn run(base: u64, execs: [u64; 3]) -> Run {
        let dict = (0..3)
            .map(|i| block(i, base + 0x10 * (u64::from(i) + 1), &[0x90, i as u8]))
            .collect();
        Run::new(
            Places::new(dict, vec![module(0, "/lib/libc.so.6", base)]),
            execs.to_vec(),
        )
    }

    fn offsets(runs: &[Run], op: Op) -> Vec<(u64, u64)> {
        let (_, placed) = Space::place(runs, &combine(runs, op));
        placed
            .iter()
            .map(|p| (p.addr - 0x7000_0000, p.block.execs))
            .collect()
    }

    #[test]
    fn combines_by_key_across_load_addresses() {
        let runs = [run(0x7000_0000, [1, 2, 0]), run(0x5000_0000, [0, 5, 7])];
        assert_eq!(offsets(&runs, Op::Union), [(0x10, 1), (0x20, 7), (0x30, 7)]);
        assert_eq!(offsets(&runs, Op::Intersect), [(0x20, 7)]);
        assert_eq!(offsets(&runs, Op::Diff), [(0x10, 1)]);
        let swapped = [run(0x5000_0000, [0, 5, 7]), run(0x7000_0000, [1, 2, 0])];
        let (_, placed) = Space::place(&swapped, &combine(&swapped, Op::Diff));
        assert_eq!(placed.len(), 1);
        assert_eq!(placed[0].addr, 0x5000_0030);
    }

    #[test]
    fn different_code_at_the_same_offset_is_another_block() {
        let a = run(0x7000_0000, [1, 1, 1]);
        let mut b = run(0x7000_0000, [1, 1, 1]);
        b.keys[2].as_mut().unwrap().code ^= 1;
        let runs = [a, b];
        assert_eq!(combine(&runs, Op::Intersect).len(), 2);
        assert_eq!(combine(&runs, Op::Union).len(), 4);
    }

    #[test]
    fn modules_only_later_traces_had_are_appended() {
        let a = run(0x7000_0000, [1, 0, 0]);
        let b = Run::new(
            Places::new(
                vec![block(0, 0x9000_0040, &[0xc3])],
                vec![module(0, "/lib/libm.so.6", 0x9000_0000)],
            ),
            vec![3],
        );
        let runs = [a, b];
        let (space, placed) = Space::place(&runs, &combine(&runs, Op::Union));
        let names: Vec<&str> = space.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["libc.so.6", "libm.so.6"]);
        assert_eq!(placed[1].module, Some(1));
        assert_eq!(placed[1].addr, 0x9000_0040);
    }

    #[test]
    fn code_outside_modules_keeps_its_address() {
        let runs = [Run::new(
            Places::new(vec![block(0, 0x1234, &[0x90])], Vec::new()),
            vec![1],
        )];
        let (_, placed) = Space::place(&runs, &combine(&runs, Op::Union));
        assert_eq!(placed[0].module, None);
        assert_eq!(placed[0].addr, 0x1234);
    }
}
