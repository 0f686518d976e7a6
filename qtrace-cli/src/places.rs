//! Where each block of a trace lives: the module that held its code and the
//! offset from that module's base, and the key that identifies the block
//! across traces (`diff`, coverage algebra).
//!
//! Block ids are per trace, and raw addresses move between runs (ASLR, a
//! different loader), so two traces' blocks are matched by module name,
//! offset in the module and code bytes. Code outside any module (JIT code,
//! a trace recorded with `modules=off`) is matched by address and code.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use qtrace_format::symbols::Resolver;
use qtrace_format::{BlockInfo, Module, Trace};
use twox_hash::XxHash3_64;

/// A block's identity across traces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// The module's file name (`libc.so.6`), empty outside modules.
    pub module: String,
    /// Offset of the block's first byte from the module's base, or its
    /// address outside modules.
    pub offset: u64,
    /// XXH3-64 of the block's code bytes.
    pub code: u64,
}

/// The blocks of one trace with their modules, by block id.
pub struct Places {
    pub dict: Vec<BlockInfo>,
    pub modules: Vec<Module>,
    /// By block id: index into `modules` of the module holding the block.
    module_of: Vec<Option<usize>>,
    /// By block id: the block's dict row (ids are dense, but a damaged or
    /// partial dictionary may leave holes).
    index: HashMap<u32, usize>,
}

impl Places {
    /// Reads `block_dict` and `modules` and places every block.
    pub fn load(trace: &Trace) -> Result<Places> {
        let dict = trace.block_dict()?;
        let modules = trace.modules()?;
        Ok(Places::new(dict, modules))
    }

    pub fn new(dict: Vec<BlockInfo>, modules: Vec<Module>) -> Places {
        let resolver = Resolver::new(modules.clone());
        let by_id: HashMap<u32, usize> =
            modules.iter().enumerate().map(|(i, m)| (m.id, i)).collect();
        let module_of = dict
            .iter()
            .map(|b| {
                // Of the modules that ever spanned the address, prefer one
                // whose text holds it, then the first mapped.
                let mut best: Option<&Module> = None;
                for m in resolver.modules_at(b.pc) {
                    let in_text = |m: &Module| m.text.is_some_and(|(s, e)| s <= b.pc && b.pc < e);
                    let better = match best {
                        None => true,
                        Some(cur) => in_text(m) && !in_text(cur),
                    };
                    if better {
                        best = Some(m);
                    }
                }
                best.and_then(|m| by_id.get(&m.id).copied())
            })
            .collect();
        let index = dict.iter().enumerate().map(|(i, b)| (b.id, i)).collect();
        Places {
            dict,
            modules,
            module_of,
            index,
        }
    }

    /// The dict row of a block id.
    pub fn block(&self, id: u32) -> Option<&BlockInfo> {
        self.index.get(&id).map(|&i| &self.dict[i])
    }

    /// The module holding a block, by block id.
    pub fn module(&self, id: u32) -> Option<&Module> {
        let i = *self.index.get(&id)?;
        self.module_of[i].map(|m| &self.modules[m])
    }

    /// The index into `modules` of the module holding a block, by block id.
    pub fn module_index(&self, id: u32) -> Option<usize> {
        self.module_of[*self.index.get(&id)?]
    }

    /// The block's offset from its module's base (its address outside
    /// modules).
    pub fn offset(&self, id: u32) -> Option<u64> {
        let b = self.block(id)?;
        Some(match self.module(id) {
            Some(m) => b.pc - m.base,
            None => b.pc,
        })
    }

    /// The block's identity across traces.
    pub fn key(&self, id: u32) -> Option<BlockKey> {
        let b = self.block(id)?;
        Some(BlockKey {
            module: self.module(id).map(module_name).unwrap_or_default(),
            offset: self.offset(id)?,
            code: XxHash3_64::oneshot(&b.code),
        })
    }

    /// Keys of every block, indexed by block id (`None` for ids the
    /// dictionary lacks).
    pub fn keys(&self) -> Vec<Option<BlockKey>> {
        let len = self
            .dict
            .iter()
            .map(|b| b.id as usize + 1)
            .max()
            .unwrap_or(0);
        let mut keys = vec![None; len];
        for b in &self.dict {
            keys[b.id as usize] = self.key(b.id);
        }
        keys
    }
}

/// How a module is named in keys and listings: its file name.
pub fn module_name(m: &Module) -> String {
    Path::new(&m.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| m.path.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtrace_format::ModuleKind;

    fn module(id: u32, path: &str, base: u64, size: u64) -> Module {
        Module {
            id,
            kind: ModuleKind::Mmap,
            path: path.into(),
            guest_path: None,
            build_id: None,
            base,
            size,
            bias: Some(base),
            text: Some((base + 0x1000, base + size)),
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

    #[test]
    fn same_code_at_the_same_offset_matches_across_load_addresses() {
        let a = Places::new(
            vec![block(0, 0x7000_1234, &[0x90, 0xc3])],
            vec![module(0, "/lib/libc.so.6", 0x7000_0000, 0x10000)],
        );
        let b = Places::new(
            vec![
                block(7, 0x5000_1234, &[0x90, 0xc3]),
                block(8, 0x5000_1234, &[0xc3]),
            ],
            vec![module(3, "/other/libc.so.6", 0x5000_0000, 0x10000)],
        );
        assert_eq!(a.key(0), b.key(7));
        assert_ne!(a.key(0), b.key(8));
        assert_eq!(a.offset(0), Some(0x1234));
        assert_eq!(a.key(0).unwrap().module, "libc.so.6");
    }

    #[test]
    fn code_outside_modules_is_keyed_by_address() {
        let p = Places::new(vec![block(0, 0x1000, &[0x90])], Vec::new());
        assert!(p.module(0).is_none());
        assert_eq!(p.key(0).unwrap().offset, 0x1000);
        assert_eq!(p.keys().len(), 1);
        assert!(p.key(1).is_none());
    }
}
