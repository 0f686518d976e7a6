//! What to call each block of a trace: its function's symbol and its
//! module, by block id, worked out once per distinct block (never per
//! execution).
//!
//! A block's symbol is QEMU's (`block_dict.symbol`, the main program's
//! symbols), else the one the offline resolver finds through the `modules`
//! table and the ELF files on disk. Blocks that have neither are named by
//! their module and offset, or by their address outside any module.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{Array, StringArray, UInt32Array, UInt64Array};
use qtrace_format::schema::{self, col};
use qtrace_format::symbols::Resolver;
use qtrace_format::{scan, Table, Trace};

use crate::places::{module_name, Places};

/// One distinct block, as exports name it.
#[derive(Clone, Debug)]
pub struct BlockName {
    pub pc: u64,
    pub n_insns: u32,
    /// The function's symbol, where known.
    pub symbol: Option<Arc<str>>,
    /// The module's file name, where the block lies in one.
    pub module: Option<Arc<str>>,
    /// Offset from the module's base (the address outside modules).
    pub offset: u64,
    /// Blocks with the same function key belong to the same function (same
    /// symbol and module; without a symbol, the same module).
    pub function: u32,
}

/// What makes two blocks the same function: (symbol, module).
type FunctionKey = (Option<Arc<str>>, Option<Arc<str>>);

/// Every block's name, by block id.
pub struct BlockNames {
    /// Ids are dense from 0, so a vector holds them; a map holds any id far
    /// beyond (a damaged dictionary's), rather than letting it size the
    /// vector.
    by_id: Vec<Option<BlockName>>,
    sparse: HashMap<u32, BlockName>,
}

impl BlockNames {
    /// Names the blocks of `trace`: reads `block_dict` without its code and
    /// instructions, `modules`, and resolves the symbols QEMU did not know.
    /// What the resolver could not do is said on stderr.
    pub fn load(trace: &Trace, debug_dirs: Vec<PathBuf>) -> Result<BlockNames> {
        let dict = dict_meta(trace)?;
        let modules = trace.modules()?;
        let places = Places::new(
            dict.iter()
                .map(|m| qtrace_format::BlockInfo {
                    id: m.0,
                    pc: m.1,
                    ..Default::default()
                })
                .collect(),
            modules.clone(),
        );
        let mut resolver = Resolver::new(modules).with_debug_dirs(debug_dirs);
        let mut interned: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        let mut intern = |s: String| -> Arc<str> {
            let key: Arc<str> = s.into();
            interned.entry(key.clone()).or_insert(key).clone()
        };
        let mut functions: HashMap<FunctionKey, u32> = HashMap::new();
        let dense = dict.len() * 2 + 1024;
        let len = dict
            .iter()
            .map(|m| m.0 as usize + 1)
            .filter(|&n| n <= dense)
            .max()
            .unwrap_or(0);
        let mut by_id = vec![None; len];
        let mut sparse = HashMap::new();
        for (id, pc, n_insns, symbol) in dict {
            let symbol = symbol.or_else(|| resolver.symbol(pc)).map(&mut intern);
            let module = places.module(id).map(|m| intern(module_name(m)));
            let offset = places.offset(id).unwrap_or(pc);
            let next = functions.len() as u32;
            let function = *functions
                .entry((symbol.clone(), module.clone()))
                .or_insert(next);
            let name = BlockName {
                pc,
                n_insns,
                symbol,
                module,
                offset,
                function,
            };
            match by_id.get_mut(id as usize) {
                Some(slot) => *slot = Some(name),
                None => {
                    sparse.insert(id, name);
                }
            }
        }
        for note in resolver.take_notes() {
            eprintln!("note: {note}");
        }
        Ok(BlockNames { by_id, sparse })
    }

    pub fn get(&self, id: u32) -> Option<&BlockName> {
        match self.by_id.get(id as usize) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&id),
        }
    }
}

impl BlockName {
    /// The name of the code: its symbol, else `module+0xoffset`, else its
    /// address.
    pub fn label(&self) -> String {
        match (&self.symbol, &self.module) {
            (Some(s), _) => s.to_string(),
            (None, Some(m)) => format!("{m}+{:#x}", self.offset),
            (None, None) => format!("{:#x}", self.pc),
        }
    }
}

/// (block id, pc, n_insns, symbol) of every `block_dict` row: the columns
/// naming needs, not the code and instructions that are most of its bytes.
type Meta = (u32, u64, u32, Option<String>);

fn dict_meta(trace: &Trace) -> Result<Vec<Meta>> {
    let parts = trace.parts(Table::BlockDict)?;
    let rows = scan(
        &parts,
        &[col::BLOCK_ID, col::PC, col::N_INSNS, col::SYMBOL],
        Vec::new,
        |mut acc: Vec<Meta>, batch, _| {
            let id: &UInt32Array = schema::column(batch, col::BLOCK_ID)?;
            let pc: &UInt64Array = schema::column(batch, col::PC)?;
            let n: &UInt32Array = schema::column(batch, col::N_INSNS)?;
            let symbol: &StringArray = schema::column(batch, col::SYMBOL)?;
            for i in 0..batch.num_rows() {
                let s = (!symbol.is_null(i)).then(|| symbol.value(i).to_string());
                acc.push((id.value(i), pc.value(i), n.value(i), s));
            }
            Ok(acc)
        },
        |mut a, b| {
            a.extend(b);
            a
        },
    )?;
    Ok(rows)
}
