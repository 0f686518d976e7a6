//! Offline symbol resolution: the name of the function at a guest address,
//! from the trace's `modules` table and the ELF files on disk.
//!
//! QEMU names only the main program's symbols (`block_dict.symbol`). For any
//! other address, [`Resolver::symbol`] finds the module that held it, turns
//! the address into the file's virtual address (minus the module's load
//! bias), and looks it up in the file's `.symtab`, then its `.dynsym`. A
//! stripped file's `.symtab` is looked for in a separate debug file: by
//! build id under each debug directory (`/usr/lib/debug/.build-id/ab/cdef….debug`),
//! beside the file (`PATH.debug`), or by its `.gnu_debuglink` name as GDB
//! looks for it.
//!
//! A file whose build id differs from the one recorded is not used (it is
//! not the file that ran), and the resolver says so in a note. A missing or
//! unreadable file, or a malformed one, leaves the symbol unknown: nothing
//! here panics or fails on bad input.
//!
//! Each file is read and parsed once, on the first address that falls in
//! it; a lookup is then two binary searches (module, then symbol).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};

use crate::elf::{contained, hex, regular_file};
use crate::schema::{Module, ModuleKind};

/// Where separate debug files are looked for by default, as GDB does.
pub const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// Symbols of the guest's modules, loaded as addresses ask for them.
pub struct Resolver {
    /// Modules ordered by `base`.
    modules: Vec<Module>,
    /// `max_end[i]`: the highest end of `modules[..=i]`, so that a lookup
    /// knows how far back an overlapping module can start.
    max_end: Vec<u64>,
    debug_dirs: Vec<PathBuf>,
    /// By module id: its symbols, or `None` when they cannot be had.
    loaded: HashMap<u32, Option<Arc<SymbolFile>>>,
    /// By (path, build id): files already read, shared by the modules that
    /// map the same file.
    files: HashMap<(String, Option<String>), Option<Arc<SymbolFile>>>,
    notes: Vec<String>,
}

impl Resolver {
    /// A resolver over a trace's modules, with the default debug directory.
    pub fn new(mut modules: Vec<Module>) -> Resolver {
        modules.sort_by_key(|m| (m.base, m.id));
        let mut max_end = Vec::with_capacity(modules.len());
        let mut end = 0u64;
        for m in &modules {
            end = end.max(m.base.saturating_add(m.size));
            max_end.push(end);
        }
        Resolver {
            modules,
            max_end,
            debug_dirs: vec![PathBuf::from(DEFAULT_DEBUG_DIR)],
            loaded: HashMap::new(),
            files: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// Looks for separate debug files under these directories instead.
    pub fn with_debug_dirs(mut self, dirs: Vec<PathBuf>) -> Resolver {
        self.debug_dirs = dirs;
        self
    }

    /// Whether the trace has modules to resolve through.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The modules whose span holds `addr` (more than one when a range was
    /// reused after an unmap), in order of base.
    pub fn modules_at(&self, addr: u64) -> impl Iterator<Item = &Module> {
        let upto = self.modules.partition_point(|m| m.base <= addr);
        let from = self.max_end[..upto].partition_point(|&end| end <= addr);
        self.modules[from..upto]
            .iter()
            .filter(move |m| m.contains(addr))
    }

    /// The name of the function at guest address `addr`, if a module that
    /// held it has a symbol there. When several modules held the address
    /// over the run and they disagree, the answer is unknown.
    pub fn symbol(&mut self, addr: u64) -> Option<String> {
        let candidates: Vec<(u32, Option<u64>)> =
            self.modules_at(addr).map(|m| (m.id, m.bias)).collect();
        let mut found: Option<String> = None;
        for (id, bias) in candidates {
            let Some(bias) = bias else { continue };
            let Some(file) = self.file_of(id) else {
                continue;
            };
            let Some(name) = file.symbols.lookup(addr.wrapping_sub(bias)) else {
                continue;
            };
            match &found {
                Some(f) if f != name => return None,
                Some(_) => {}
                None => found = Some(name.to_string()),
            }
        }
        found
    }

    /// What the resolver had to leave out, and why (a file missing, or not
    /// the one that ran), once per file; emptied by the call.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn file_of(&mut self, id: u32) -> Option<Arc<SymbolFile>> {
        if let Some(f) = self.loaded.get(&id) {
            return f.clone();
        }
        let m = self.modules.iter().find(|m| m.id == id)?;
        if m.kind == ModuleKind::Vdso {
            // QEMU's vDSO is no file on disk.
            self.loaded.insert(id, None);
            return None;
        }
        let key = (m.path.clone(), m.build_id.clone());
        let file = match self.files.get(&key) {
            Some(f) => f.clone(),
            None => {
                let f = match SymbolFile::load(Path::new(&m.path), &self.debug_dirs) {
                    Ok(f) => match check_build_id(m.build_id.as_deref(), f.build_id.as_deref()) {
                        Ok(()) => Some(Arc::new(f)),
                        Err(why) => {
                            self.notes
                                .push(format!("{}: {why}; its symbols are not used", m.path));
                            None
                        }
                    },
                    Err(why) => {
                        self.notes
                            .push(format!("{why}; no symbols for addresses in it"));
                        None
                    }
                };
                self.files.insert(key, f.clone());
                f
            }
        };
        self.loaded.insert(id, file.clone());
        file
    }
}

fn check_build_id(recorded: Option<&str>, on_disk: Option<&str>) -> Result<(), String> {
    match (recorded, on_disk) {
        (Some(r), Some(d)) if r == d => Ok(()),
        (None, None) => Ok(()),
        (Some(r), Some(d)) => Err(format!(
            "build id on disk {d} differs from the recorded {r}"
        )),
        (Some(r), None) => Err(format!(
            "the file on disk has no build id, the recorded one had {r}"
        )),
        (None, Some(d)) => Err(format!(
            "the file on disk has build id {d}, the recorded one had none"
        )),
    }
}

/// The symbols of one ELF file (with those of its debug file, if stripped).
pub struct SymbolFile {
    /// The build id of the file itself, hex.
    pub build_id: Option<String>,
    /// Where the `.symtab` came from: the file, a debug file, or nowhere.
    pub symtab_from: Option<PathBuf>,
    symbols: Symbols,
}

impl SymbolFile {
    /// Reads and parses `path`, and its debug file when it is stripped.
    pub fn load(path: &Path, debug_dirs: &[PathBuf]) -> Result<SymbolFile, String> {
        regular_file(path)?;
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        contained(|| {
            let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
            let build_id = file.build_id().ok().flatten().map(hex);
            let mut entries = Vec::new();
            let mut symtab_from = None;
            if has_symtab(&file) {
                collect(file.symbols(), &mut entries);
                symtab_from = Some(path.to_path_buf());
            } else if let Some((debug_path, debug)) =
                find_debug_file(path, &file, build_id.as_deref(), debug_dirs)
            {
                if let Ok(debug) = object::File::parse(&*debug) {
                    collect(debug.symbols(), &mut entries);
                    symtab_from = Some(debug_path);
                }
            }
            collect(file.dynamic_symbols(), &mut entries);
            Ok(SymbolFile {
                build_id,
                symtab_from,
                symbols: Symbols::new(entries),
            })
        })
        .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The function at the file's virtual address `vaddr`.
    pub fn lookup(&self, vaddr: u64) -> Option<&str> {
        self.symbols.lookup(vaddr)
    }
}

fn has_symtab(file: &object::File<'_>) -> bool {
    file.section_by_name(".symtab")
        .is_some_and(|s| s.size() > 0)
}

/// The separate debug file of a stripped `path`, read, as GDB finds it:
/// by build id under the debug directories, then beside the file
/// (`PATH.debug`), then by `.gnu_debuglink`. One whose build id differs
/// from the file's is not it.
fn find_debug_file(
    path: &Path,
    file: &object::File<'_>,
    build_id: Option<&str>,
    debug_dirs: &[PathBuf],
) -> Option<(PathBuf, Vec<u8>)> {
    let mut candidates = Vec::new();
    if let Some(id) = build_id.filter(|id| id.len() > 2) {
        for d in debug_dirs {
            candidates.push(
                d.join(".build-id")
                    .join(&id[..2])
                    .join(format!("{}.debug", &id[2..])),
            );
        }
    }
    let mut beside = path.as_os_str().to_owned();
    beside.push(".debug");
    candidates.push(PathBuf::from(beside));
    if let Ok(Some((link, _crc))) = file.gnu_debuglink() {
        let link = String::from_utf8_lossy(link).into_owned();
        if let Some(dir) = path.parent() {
            candidates.push(dir.join(&link));
            candidates.push(dir.join(".debug").join(&link));
            for d in debug_dirs {
                let rel = dir.strip_prefix("/").unwrap_or(dir);
                candidates.push(d.join(rel).join(&link));
            }
        }
    }
    for c in candidates {
        if c == path || regular_file(&c).is_err() {
            continue;
        }
        let Ok(data) = std::fs::read(&c) else {
            continue;
        };
        let matches = contained(|| {
            let debug = object::File::parse(&*data).map_err(|e| e.to_string())?;
            let id = debug.build_id().ok().flatten().map(hex);
            Ok(has_symtab(&debug) && (build_id.is_none() || id.as_deref() == build_id))
        });
        if matches == Ok(true) {
            return Some((c, data));
        }
    }
    None
}

/// One function symbol: `[start, end)`; `end == start` for a symbol of
/// unknown size, which then names only its own address.
#[derive(Clone, Debug)]
struct Entry {
    start: u64,
    end: u64,
    /// Lower is better, among symbols at the same address.
    rank: u8,
    name: Box<str>,
}

fn collect<'data, 'file>(
    symbols: impl Iterator<Item = object::Symbol<'data, 'file, &'data [u8]>>,
    out: &mut Vec<Entry>,
) where
    'data: 'file,
{
    for s in symbols {
        if s.kind() != SymbolKind::Text || s.is_undefined() || s.address() == 0 {
            continue;
        }
        let Ok(name) = s.name() else { continue };
        if name.is_empty() {
            continue;
        }
        let rank = u8::from(s.size() == 0) * 4 + u8::from(s.is_weak()) * 2 + u8::from(s.is_local());
        out.push(Entry {
            start: s.address(),
            end: s.address().saturating_add(s.size()),
            rank,
            name: name.into(),
        });
    }
}

/// Function symbols ordered by address, one per address.
struct Symbols {
    entries: Vec<Entry>,
}

/// How many symbols before the nearest one a lookup tries, for a symbol
/// that starts earlier and still holds the address (nested or overlapping).
const LOOK_BACK: usize = 8;

impl Symbols {
    fn new(mut entries: Vec<Entry>) -> Symbols {
        entries.sort_by(|a, b| (a.start, a.rank, &a.name).cmp(&(b.start, b.rank, &b.name)));
        entries.dedup_by(|later, first| later.start == first.start);
        Symbols { entries }
    }

    fn lookup(&self, vaddr: u64) -> Option<&str> {
        let upto = self.entries.partition_point(|e| e.start <= vaddr);
        self.entries[upto.saturating_sub(LOOK_BACK)..upto]
            .iter()
            .rev()
            .find(|e| vaddr < e.end || (e.end == e.start && vaddr == e.start))
            .map(|e| &*e.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(start: u64, size: u64, rank: u8, name: &str) -> Entry {
        Entry {
            start,
            end: start + size,
            rank,
            name: name.into(),
        }
    }

    #[test]
    fn lookup_needs_the_symbol_to_hold_the_address() {
        let s = Symbols::new(vec![
            entry(0x1000, 0x40, 0, "f"),
            entry(0x1000, 0x40, 3, "f_alias_local"),
            entry(0x1100, 0x10, 0, "g"),
            entry(0x1200, 0, 4, "label"),
            entry(0x1300, 0x100, 0, "outer"),
            entry(0x1320, 0x10, 1, "inner"),
        ]);
        assert_eq!(s.lookup(0x1000), Some("f"));
        assert_eq!(s.lookup(0x103f), Some("f"));
        assert_eq!(s.lookup(0x1040), None, "a gap between functions");
        assert_eq!(s.lookup(0x10ff), None);
        assert_eq!(s.lookup(0x1100), Some("g"));
        assert_eq!(s.lookup(0x1200), Some("label"));
        assert_eq!(s.lookup(0x1201), None);
        assert_eq!(s.lookup(0x1325), Some("inner"));
        assert_eq!(s.lookup(0x1340), Some("outer"));
        assert_eq!(s.lookup(0xfff), None);
        assert_eq!(Symbols::new(vec![]).lookup(0), None);
    }

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
            text: None,
            entry: None,
            segments: vec![],
            loaded: None,
            unloaded: None,
        }
    }

    #[test]
    fn modules_at_finds_overlapping_modules() {
        let r = Resolver::new(vec![
            module(0, "/a", 0x1000, 0x10000),
            module(1, "/b", 0x3000, 0x1000),
            module(2, "/c", 0x20000, 0x1000),
        ]);
        let ids = |addr| r.modules_at(addr).map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(0x3500), vec![0, 1]);
        assert_eq!(ids(0x5000), vec![0]);
        assert_eq!(ids(0x11000), Vec::<u32>::new());
        assert_eq!(ids(0x20fff), vec![2]);
        assert_eq!(ids(0), Vec::<u32>::new());
    }

    #[test]
    fn missing_and_garbage_files_leave_symbols_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.so");
        std::fs::write(&garbage, b"\x7fELF\x02\x01\x01 not really").unwrap();
        let mut r = Resolver::new(vec![
            module(0, "/nonexistent/lib.so", 0x1000, 0x1000),
            module(1, garbage.to_str().unwrap(), 0x4000, 0x1000),
        ]);
        assert_eq!(r.symbol(0x1100), None);
        assert_eq!(r.symbol(0x4100), None);
        assert_eq!(r.symbol(0x9000), None);
        let notes = r.take_notes();
        assert_eq!(notes.len(), 2, "{notes:?}");
        // Each file is tried once.
        assert_eq!(r.symbol(0x1100), None);
        assert!(r.take_notes().is_empty());
    }

    /// A function of this test binary with a name the resolver must find.
    #[no_mangle]
    #[inline(never)]
    pub extern "C" fn qtrace_symbols_test_marker(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3)
    }

    /// This test binary as a module: where its first page is mapped, from
    /// /proc/self/maps.
    fn this_binary() -> Module {
        let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let first = maps
            .lines()
            .find(|l| l.ends_with(exe.to_str().unwrap()))
            .unwrap();
        let f: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(u64::from_str_radix(f[2], 16).unwrap(), 0, "{first}");
        let base = u64::from_str_radix(f[0].split('-').next().unwrap(), 16).unwrap();
        let info = crate::elf::ElfInfo::read(&exe).unwrap();
        let lowest = info.loads.iter().map(|s| s.vaddr).min().unwrap();
        let mut m = module(0, exe.to_str().unwrap(), base, 1 << 40);
        m.bias = Some(base - lowest);
        m.build_id = info.build_id_hex();
        m
    }

    #[test]
    fn finds_a_function_of_this_binary() {
        let addr = qtrace_symbols_test_marker as *const () as u64;
        assert_eq!(qtrace_symbols_test_marker(2), 6);
        let mut r = Resolver::new(vec![this_binary()]);
        assert_eq!(
            r.symbol(addr).as_deref(),
            Some("qtrace_symbols_test_marker")
        );
        assert_eq!(
            r.symbol(addr + 1).as_deref(),
            Some("qtrace_symbols_test_marker")
        );
        assert!(r.take_notes().is_empty());
        // Recorded with another build id: not this file.
        let mut m = this_binary();
        m.build_id = Some("00".into());
        let mut r = Resolver::new(vec![m]);
        assert_eq!(r.symbol(addr), None);
        let notes = r.take_notes();
        assert!(
            notes.len() == 1 && notes[0].contains("differs"),
            "{notes:?}"
        );
    }

    #[test]
    fn build_ids_must_agree() {
        assert!(check_build_id(Some("ab"), Some("ab")).is_ok());
        assert!(check_build_id(None, None).is_ok());
        assert!(check_build_id(Some("ab"), Some("cd")).is_err());
        assert!(check_build_id(Some("ab"), None).is_err());
        assert!(check_build_id(None, Some("ab")).is_err());
    }
}
