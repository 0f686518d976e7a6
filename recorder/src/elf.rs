//! Function entry addresses from the guest program's ELF file, for `sym:`
//! triggers: QEMU's plugin API names the symbol an instruction is in, but not
//! where a function starts.
//!
//! It reads what QEMU itself reads for its symbol lookup (`load_symbols` in
//! linux-user): the defined `STT_FUNC` entries of `.symtab`, moved by the
//! load bias; `.dynsym` stands in for a stripped file. Only 64-bit
//! little-endian files (the guests qtrace supports). It must never panic on
//! a malformed file: every read is bounds-checked.

/// A function of the program, at its address in the guest as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub addr: u64,
}

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const STT_FUNC: u8 = 2;
const SHN_LORESERVE: u16 = 0xff00;

/// The functions of the ELF file at `path`, loaded so that its entry point
/// is at `entry` (the guest's `AT_ENTRY`).
pub fn functions(path: &str, entry: u64) -> Result<Vec<Function>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let (mut funcs, e_entry) = parse(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let bias = entry.wrapping_sub(e_entry);
    for f in &mut funcs {
        f.addr = f.addr.wrapping_add(bias);
    }
    Ok(funcs)
}

/// The functions at their link-time addresses, and the entry point's.
fn parse(b: &[u8]) -> Result<(Vec<Function>, u64), String> {
    if b.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if b.get(4) != Some(&2) || b.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let bad = || "truncated or malformed ELF file".to_string();
    let e_entry = u64_at(b, 0x18).ok_or_else(bad)?;
    let shoff = u64_at(b, 0x28).ok_or_else(bad)?;
    let shentsize = u16_at(b, 0x3a).ok_or_else(bad)? as u64;
    let shnum = u16_at(b, 0x3c).ok_or_else(bad)? as u64;

    // (offset, size, entry size, string table's section index) of a table.
    let section = |i: u64| -> Option<(u32, u64, u64, u64, u32)> {
        let sh = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(b, sh.saturating_add(4))?,
            u64_at(b, sh.saturating_add(0x18))?,
            u64_at(b, sh.saturating_add(0x20))?,
            u64_at(b, sh.saturating_add(0x38))?,
            u32_at(b, sh.saturating_add(0x28))?,
        ))
    };
    let find = |wanted: u32| (0..shnum).find_map(|i| section(i).filter(|s| s.0 == wanted));
    let Some((_, off, size, entsize, link)) = find(SHT_SYMTAB).or_else(|| find(SHT_DYNSYM)) else {
        return Err("no symbol table".into());
    };
    let (_, str_off, str_size, _, _) = section(link as u64).ok_or_else(bad)?;
    let strings = slice(b, str_off, str_size).ok_or_else(bad)?;
    if entsize < 24 {
        return Err(bad());
    }
    let mut funcs = Vec::new();
    for i in 0..size / entsize {
        let sym = off.checked_add(i * entsize).ok_or_else(bad)?;
        let name = u32_at(b, sym).ok_or_else(bad)? as usize;
        let info = slice(b, sym.saturating_add(4), 1).ok_or_else(bad)?[0];
        let shndx = u16_at(b, sym.saturating_add(6)).ok_or_else(bad)?;
        let value = u64_at(b, sym.saturating_add(8)).ok_or_else(bad)?;
        if info & 0xf != STT_FUNC || shndx == 0 || shndx >= SHN_LORESERVE {
            continue;
        }
        let Some(rest) = strings.get(name..) else {
            continue;
        };
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        funcs.push(Function {
            name: String::from_utf8_lossy(&rest[..end]).into_owned(),
            addr: value,
        });
    }
    Ok((funcs, e_entry))
}

fn slice(b: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    b.get(start..end)
}

fn u16_at(b: &[u8], off: u64) -> Option<u16> {
    Some(u16::from_le_bytes(slice(b, off, 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: u64) -> Option<u32> {
    Some(u32::from_le_bytes(slice(b, off, 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: u64) -> Option<u64> {
    Some(u64::from_le_bytes(slice(b, off, 8)?.try_into().ok()?))
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
    fn finds_this_test_binarys_own_functions() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let (funcs, e_entry) = parse(&bytes).unwrap();
        assert_ne!(e_entry, 0);
        let marker = funcs
            .iter()
            .find(|f| f.name == "qtrace_elf_test_marker")
            .unwrap_or_else(|| panic!("{} functions, no marker", funcs.len()));
        assert_ne!(marker.addr, 0);
        let call: extern "C" fn() -> u32 = std::hint::black_box(qtrace_elf_test_marker);
        assert_eq!(call(), 7);
        // Moved by the bias between the real and the link-time entry point.
        let moved = functions(exe.to_str().unwrap(), e_entry + 0x1000).unwrap();
        let m = moved.iter().find(|f| f.name == marker.name).unwrap();
        assert_eq!(m.addr, marker.addr + 0x1000);
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for n in [0, 3, 16, 64, 200, 4096] {
            let _ = parse(&exe[..n.min(exe.len())]);
        }
        assert!(parse(b"\x7fELF\x01\x01").unwrap_err().contains("64-bit"));
        assert!(parse(b"hello").unwrap_err().contains("not an ELF"));
        let mut garbage = exe[..64].to_vec();
        garbage[0x28..0x30].fill(0xff);
        assert!(parse(&garbage).is_err());
    }
}
