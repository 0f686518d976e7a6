//! The Diff view's data: two traces' blocks matched by module, offset and
//! code (not by address, which moves between runs), with their execution
//! counts side by side.

use std::collections::HashMap;

use crate::data::{HotBlock, Summary};

/// A block of either trace, with its executions in each.
#[derive(Clone, Debug)]
pub struct DiffRow {
    pub symbol: String,
    pub module: String,
    /// Its address in A, else in B.
    pub pc: u64,
    pub execs_a: u64,
    pub execs_b: u64,
}

impl DiffRow {
    pub fn change(&self) -> i128 {
        i128::from(self.execs_b) - i128::from(self.execs_a)
    }
}

/// The comparison of two traces.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Blocks whose counts differ, the largest change first.
    pub rows: Vec<DiffRow>,
    pub only_a: usize,
    pub only_b: usize,
    pub same: usize,
}

/// How a block is known in both traces: its module's file name, its
/// offset in it (its address outside modules) and its code.
type Key = (String, u64, Vec<u8>);

fn keyed<'a>(
    s: &'a Summary,
    module_base: &dyn Fn(u64) -> Option<u64>,
) -> HashMap<Key, &'a HotBlock> {
    s.hot
        .iter()
        .map(|h| {
            let code = s
                .dict
                .get(&h.id)
                .map(|b| b.code.clone())
                .unwrap_or_default();
            let offset = module_base(h.pc).map_or(h.pc, |base| h.pc - base);
            ((h.module.clone(), offset, code), h)
        })
        .collect()
}

/// Compares A with B; `base_a`/`base_b` give the base of the module
/// holding an address in each trace.
pub fn compare(
    a: &Summary,
    b: &Summary,
    base_a: &dyn Fn(u64) -> Option<u64>,
    base_b: &dyn Fn(u64) -> Option<u64>,
) -> Comparison {
    let ka = keyed(a, base_a);
    let kb = keyed(b, base_b);
    let mut c = Comparison::default();
    for (key, ha) in &ka {
        let execs_b = kb.get(key).map_or(0, |hb| hb.execs);
        if execs_b == 0 {
            c.only_a += 1;
        }
        if execs_b == ha.execs {
            c.same += 1;
            continue;
        }
        c.rows.push(DiffRow {
            symbol: ha.symbol.clone(),
            module: ha.module.clone(),
            pc: ha.pc,
            execs_a: ha.execs,
            execs_b,
        });
    }
    for (key, hb) in &kb {
        if !ka.contains_key(key) {
            c.only_b += 1;
            c.rows.push(DiffRow {
                symbol: hb.symbol.clone(),
                module: hb.module.clone(),
                pc: hb.pc,
                execs_a: 0,
                execs_b: hb.execs,
            });
        }
    }
    c.rows.sort_by(|x, y| {
        y.change()
            .abs()
            .cmp(&x.change().abs())
            .then(x.pc.cmp(&y.pc))
    });
    c
}
