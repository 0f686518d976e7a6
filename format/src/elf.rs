//! What qtrace reads of an ELF file: its loadable segments, entry point,
//! interpreter and GNU build id, from the program headers alone.
//!
//! The recorder reads these while the guest runs, for each file the guest
//! maps: only the headers and the note segments are read (a few small
//! reads), never the whole file. The symbol resolver ([`crate::symbols`])
//! uses the same facts offline to turn addresses into file addresses.
//!
//! Nothing here panics on a malformed file: every function returns an error
//! that says what is wrong, and a panic inside the ELF parser is caught and
//! returned as an error too.

use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::read::ReadCache;
use object::{FileKind, ReadRef};

/// `p_flags` bits of a segment, and the bits of `segments[].prot` in the
/// `modules` table (Linux's `PROT_*`, the same on every architecture).
pub const PROT_READ: u8 = 1;
pub const PROT_WRITE: u8 = 2;
pub const PROT_EXEC: u8 = 4;

/// A `PT_LOAD` segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    pub vaddr: u64,
    pub memsz: u64,
    pub offset: u64,
    pub filesz: u64,
    /// [`PROT_READ`], [`PROT_WRITE`], [`PROT_EXEC`] as the segment asks.
    pub prot: u8,
}

/// What the recorder and the resolver need of an ELF file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfInfo {
    /// `ET_DYN` (a shared object or a position-independent executable).
    pub dynamic: bool,
    /// `e_entry`, as the file says (before any load bias).
    pub entry: u64,
    /// `PT_INTERP`: the program interpreter the file asks for.
    pub interp: Option<String>,
    /// The `NT_GNU_BUILD_ID` note's bytes.
    pub build_id: Option<Vec<u8>>,
    pub loads: Vec<LoadSegment>,
}

impl ElfInfo {
    /// Reads the headers and notes of the ELF file at `path` (a few small
    /// reads, not the whole file).
    pub fn read(path: &Path) -> Result<ElfInfo, String> {
        regular_file(path)?;
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let cache = ReadCache::new(file);
        contained(|| parse(&cache)).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The same from a file's bytes in memory.
    pub fn parse(data: &[u8]) -> Result<ElfInfo, String> {
        contained(|| parse(data))
    }

    /// The build id as lower-case hex, as `readelf -n` prints it.
    pub fn build_id_hex(&self) -> Option<String> {
        self.build_id.as_deref().map(hex)
    }

    /// The load bias (run-time address minus the file's virtual address)
    /// that maps file offset `offset` at address `addr` with protection
    /// `prot`, as a loader maps each `PT_LOAD` segment: from the segment
    /// that holds that offset. A page of the file can hold the end of one
    /// segment and the start of the next, each mapped at its own address:
    /// the segment whose protection is `prot` is taken first. Wrapping: a
    /// file mapped below its virtual addresses has a "negative" bias.
    pub fn bias_for(&self, addr: u64, offset: u64, prot: u8) -> Option<u64> {
        let holds = |s: &&LoadSegment| s.offset & !0xfff <= offset && offset < s.offset + s.filesz;
        let s = self
            .loads
            .iter()
            .filter(holds)
            .find(|s| s.prot == prot)
            .or_else(|| self.loads.iter().find(holds))?;
        // The loader keeps `vaddr - offset` from the file: the address of
        // offset O is bias + vaddr + (O - offset).
        Some(
            addr.wrapping_sub(offset)
                .wrapping_sub(s.vaddr.wrapping_sub(s.offset)),
        )
    }

    /// The executable segments' span once loaded with `bias`: from the
    /// lowest start to the highest end of their file contents (as QEMU
    /// computes `start_code` and `end_code`).
    pub fn text_range(&self, bias: u64) -> Option<(u64, u64)> {
        let exec = self.loads.iter().filter(|s| s.prot & PROT_EXEC != 0);
        let start = exec.clone().map(|s| s.vaddr).min()?;
        let end = exec.map(|s| s.vaddr + s.filesz).max()?;
        Some((bias.wrapping_add(start), bias.wrapping_add(end)))
    }

    /// The span of all loadable segments once loaded with `bias`, in whole
    /// pages of `page` bytes.
    pub fn load_span(&self, bias: u64, page: u64) -> Option<(u64, u64)> {
        let start = self.loads.iter().map(|s| s.vaddr).min()?;
        let end = self.loads.iter().map(|s| s.vaddr + s.memsz).max()?;
        Some((
            bias.wrapping_add(start) & !(page - 1),
            bias.wrapping_add(end).wrapping_add(page - 1) & !(page - 1),
        ))
    }

    /// The file offset of virtual address `vaddr`, if a `PT_LOAD` segment
    /// holds it in the file.
    pub fn offset_of(&self, vaddr: u64) -> Option<u64> {
        self.loads
            .iter()
            .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.filesz)
            .map(|s| vaddr - s.vaddr + s.offset)
    }
}

/// A function of a program, at its address in the guest as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub addr: u64,
}

/// The functions of the ELF file at `path` (the defined `STT_FUNC` entries
/// of `.symtab`, or of `.dynsym` for a stripped file: what QEMU's own
/// symbol lookup reads), moved so that the file's entry point is at
/// `entry` (the guest's `AT_ENTRY`). For `sym:` triggers.
pub fn functions(path: &Path, entry: u64) -> Result<Vec<Function>, String> {
    use object::{Object, ObjectSection, ObjectSymbol, SymbolKind};
    regular_file(path)?;
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    contained(|| {
        let file = object::File::parse(&*data).map_err(|e| e.to_string())?;
        let bias = entry.wrapping_sub(file.entry());
        let has_symtab = file
            .section_by_name(".symtab")
            .is_some_and(|s| s.size() > 0);
        let symbols: Vec<_> = if has_symtab {
            file.symbols().collect()
        } else {
            file.dynamic_symbols().collect()
        };
        Ok(symbols
            .into_iter()
            .filter(|s| s.kind() == SymbolKind::Text && s.is_definition())
            .filter_map(|s| {
                Some(Function {
                    name: s.name().ok()?.to_string(),
                    addr: s.address().wrapping_add(bias),
                })
            })
            .collect())
    })
    .map_err(|e| format!("{}: {e}", path.display()))
}

/// Fails unless `path` is a regular file: opening a FIFO would block, and
/// reading a device (`/dev/zero`) would not end.
pub(crate) fn regular_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(format!("{}: not a regular file", path.display()))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs an ELF parse, turning a panic of the parser into an error.
pub(crate) fn contained<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err("malformed ELF file".to_string()))
}

fn parse<'data, R: ReadRef<'data>>(data: R) -> Result<ElfInfo, String> {
    let parsed = match FileKind::parse(data).map_err(|e| e.to_string())? {
        FileKind::Elf32 => parse_as::<elf::FileHeader32<object::Endianness>, R>(data),
        FileKind::Elf64 => parse_as::<elf::FileHeader64<object::Endianness>, R>(data),
        _ => return Err("not an ELF file".to_string()),
    };
    parsed.map_err(|e| e.to_string())
}

fn parse_as<'data, Elf: FileHeader<Endian = object::Endianness>, R: ReadRef<'data>>(
    data: R,
) -> object::read::Result<ElfInfo> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let mut info = ElfInfo {
        dynamic: header.e_type(endian) == elf::ET_DYN,
        entry: header.e_entry(endian).into(),
        ..Default::default()
    };
    for ph in header.program_headers(endian, data)? {
        match ph.p_type(endian) {
            elf::PT_LOAD => {
                let flags = ph.p_flags(endian);
                let mut prot = 0;
                if flags.contains(elf::PF_R) {
                    prot |= PROT_READ;
                }
                if flags.contains(elf::PF_W) {
                    prot |= PROT_WRITE;
                }
                if flags.contains(elf::PF_X) {
                    prot |= PROT_EXEC;
                }
                info.loads.push(LoadSegment {
                    vaddr: ph.p_vaddr(endian).into(),
                    memsz: ph.p_memsz(endian).into(),
                    offset: ph.p_offset(endian).into(),
                    filesz: ph.p_filesz(endian).into(),
                    prot,
                });
            }
            elf::PT_INTERP => {
                if let Some(interp) = ph.interpreter(endian, data)? {
                    info.interp = Some(String::from_utf8_lossy(interp).into_owned());
                }
            }
            elf::PT_NOTE if info.build_id.is_none() => {
                if let Some(mut notes) = ph.notes(endian, data)? {
                    while let Some(note) = notes.next()? {
                        if note.name() == elf::ELF_NOTE_GNU
                            && note.n_type(endian) == elf::NT_GNU_BUILD_ID
                        {
                            info.build_id = Some(note.desc().to_vec());
                            break;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[no_mangle]
    #[inline(never)]
    pub extern "C" fn qtrace_elf_test_marker() -> u32 {
        7
    }

    #[test]
    fn finds_this_test_binarys_own_functions_moved_by_the_bias() {
        let exe = std::env::current_exe().unwrap();
        let call: extern "C" fn() -> u32 = std::hint::black_box(qtrace_elf_test_marker);
        assert_eq!(call(), 7);
        let e_entry = {
            use object::Object;
            let data = std::fs::read(&exe).unwrap();
            object::File::parse(&*data).unwrap().entry()
        };
        let at = |entry| {
            let funcs = functions(&exe, entry).unwrap();
            funcs
                .iter()
                .find(|f| f.name == "qtrace_elf_test_marker")
                .unwrap_or_else(|| panic!("{} functions, no marker", funcs.len()))
                .addr
        };
        let linked = at(e_entry);
        assert_ne!(linked, 0);
        assert_eq!(at(e_entry + 0x1000), linked + 0x1000);
    }

    #[test]
    fn functions_of_a_malformed_file_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for n in [0, 3, 16, 64, 200, 4096] {
            let path = dir.path().join(format!("cut{n}"));
            std::fs::write(&path, &exe[..n.min(exe.len())]).unwrap();
            assert!(functions(&path, 0).is_err(), "{n} bytes");
        }
        assert!(functions(Path::new("/dev/zero"), 0).is_err());
    }

    fn seg(vaddr: u64, offset: u64, filesz: u64, prot: u8) -> LoadSegment {
        LoadSegment {
            vaddr,
            memsz: filesz,
            offset,
            filesz,
            prot,
        }
    }

    /// A shared object laid out as GNU ld does with `-z separate-code`.
    fn dso() -> ElfInfo {
        ElfInfo {
            dynamic: true,
            loads: vec![
                seg(0, 0, 0x5a0, PROT_READ),
                seg(0x1000, 0x1000, 0x175, PROT_READ | PROT_EXEC),
                seg(0x2000, 0x2000, 0xd4, PROT_READ),
                seg(0x3df8, 0x2df8, 0x230, PROT_READ | PROT_WRITE),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn bias_from_any_mapping_of_the_file() {
        let d = dso();
        let base = 0x7f00_0000_0000;
        // The loader's first mapping (offset 0), its text and its data.
        let (r, rx, rw) = (PROT_READ, PROT_READ | PROT_EXEC, PROT_READ | PROT_WRITE);
        assert_eq!(d.bias_for(base, 0, r), Some(base));
        assert_eq!(d.bias_for(base + 0x1000, 0x1000, rx), Some(base));
        // File page 0x2000 holds read-only data and the start of the data
        // segment, each mapped on its own: the protection tells which.
        assert_eq!(d.bias_for(base + 0x2000, 0x2000, r), Some(base));
        assert_eq!(d.bias_for(base + 0x3000, 0x2000, rw), Some(base));
        assert_eq!(d.bias_for(base, 0x9000, r), None);
        assert_eq!(d.text_range(base), Some((base + 0x1000, base + 0x1175)));
        assert_eq!(d.load_span(base, 0x1000), Some((base, base + 0x5000)));
        assert_eq!(d.offset_of(0x1100), Some(0x1100));
        assert_eq!(d.offset_of(0x3e00), Some(0x2e00));
        assert_eq!(d.offset_of(0x4100), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\x7fELF", b"\x7fELF\x02\x01\x01", &[0xff; 64]] {
            assert!(ElfInfo::parse(bytes).is_err());
        }
        // A valid header whose program headers point past the end.
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // 64-bit
        h[5] = 1; // little-endian
        h[6] = 1;
        h[16] = 3; // ET_DYN
        h[32..40].copy_from_slice(&0x1000_0000u64.to_le_bytes()); // e_phoff
        h[54] = 56; // e_phentsize
        h[56] = 9; // e_phnum
        assert!(ElfInfo::parse(&h).is_err());
    }

    #[test]
    fn devices_and_directories_are_not_read() {
        for p in ["/dev/zero", "/dev/null", "/"] {
            let e = ElfInfo::read(Path::new(p)).unwrap_err();
            assert!(e.contains("not a regular file"), "{e}");
        }
    }

    #[test]
    fn reads_this_test_binary() {
        let me = std::env::current_exe().unwrap();
        let info = ElfInfo::read(&me).unwrap();
        assert!(!info.loads.is_empty());
        assert!(info.loads.iter().any(|s| s.prot & PROT_EXEC != 0));
    }
}
