//! Writes coverage as a drcov file, version 2: the format DynamoRIO's
//! `drcov` tool writes and that Lighthouse, bncov and Cartographer read.
//!
//! The file is a text header and module table, then a binary table of
//! blocks:
//!
//! ```text
//! DRCOV VERSION: 2
//! DRCOV FLAVOR: drcov-64
//! Module Table: version 2, count 2
//! Columns: id, base, end, entry, checksum, timestamp, path
//! 0, 0x0000000000400000, 0x00000000004c5000, 0x0000000000401650, 0x00000000, 0x00000000, /bin/prog
//! 1, ...
//! BB Table: 1234 bbs
//! ```
//!
//! followed by one 8-byte little-endian entry per block: `u32` offset of the
//! block's start from its module's base, `u16` size in bytes, `u16` module
//! id. Readers split module rows on `", "` and take the last field as the
//! path, so the path is written last and as it is (only a line break in it
//! would end the row early; it is replaced).

use std::io::{self, Write};

/// A row of the module table.
pub struct DrcovModule<'a> {
    pub base: u64,
    /// One past the module's last byte.
    pub end: u64,
    /// Entry point, 0 when the module has none.
    pub entry: u64,
    pub path: &'a str,
}

/// An entry of the block table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrcovBlock {
    /// Offset of the block's first byte from its module's base.
    pub start: u32,
    pub size: u16,
    /// Row of the module table (ids are the rows' positions).
    pub module: u16,
}

/// `drcov-64` for 64-bit guests, `drcov` otherwise, as DynamoRIO names
/// its 64- and 32-bit builds; readers do not depend on it.
pub fn flavor(target: &str) -> &'static str {
    if target.contains("64") || target == "s390x" {
        "drcov-64"
    } else {
        "drcov"
    }
}

/// Writes the whole file. Module ids are the positions in `modules`.
pub fn write(
    w: &mut impl Write,
    flavor: &str,
    modules: &[DrcovModule],
    blocks: &[DrcovBlock],
) -> io::Result<()> {
    writeln!(w, "DRCOV VERSION: 2")?;
    writeln!(w, "DRCOV FLAVOR: {flavor}")?;
    writeln!(w, "Module Table: version 2, count {}", modules.len())?;
    writeln!(
        w,
        "Columns: id, base, end, entry, checksum, timestamp, path"
    )?;
    for (id, m) in modules.iter().enumerate() {
        let path = m.path.replace(['\n', '\r'], "?");
        writeln!(
            w,
            "{id}, {:#018x}, {:#018x}, {:#018x}, 0x00000000, 0x00000000, {path}",
            m.base, m.end, m.entry
        )?;
    }
    writeln!(w, "BB Table: {} bbs", blocks.len())?;
    for b in blocks {
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&b.start.to_le_bytes());
        entry[4..6].copy_from_slice(&b.size.to_le_bytes());
        entry[6..].copy_from_slice(&b.module.to_le_bytes());
        w.write_all(&entry)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_header_modules_and_binary_entries() {
        let modules = [
            DrcovModule {
                base: 0x400000,
                end: 0x4c5000,
                entry: 0x401650,
                path: "/bin/prog",
            },
            DrcovModule {
                base: 0x7fff_f7e7_0000,
                end: 0x7fff_f7e7_5000,
                entry: 0,
                path: "/lib/a\nb.so",
            },
        ];
        let blocks = [
            DrcovBlock {
                start: 0x1650,
                size: 12,
                module: 0,
            },
            DrcovBlock {
                start: 0x140,
                size: 65535,
                module: 1,
            },
        ];
        let mut out = Vec::new();
        write(&mut out, "drcov-64", &modules, &blocks).unwrap();
        let header = "DRCOV VERSION: 2\n\
            DRCOV FLAVOR: drcov-64\n\
            Module Table: version 2, count 2\n\
            Columns: id, base, end, entry, checksum, timestamp, path\n\
            0, 0x0000000000400000, 0x00000000004c5000, 0x0000000000401650, 0x00000000, 0x00000000, /bin/prog\n\
            1, 0x00007ffff7e70000, 0x00007ffff7e75000, 0x0000000000000000, 0x00000000, 0x00000000, /lib/a?b.so\n\
            BB Table: 2 bbs\n";
        assert_eq!(String::from_utf8_lossy(&out[..header.len()]), header);
        assert_eq!(
            &out[header.len()..],
            [0x50, 0x16, 0, 0, 12, 0, 0, 0, 0x40, 0x01, 0, 0, 0xff, 0xff, 1, 0]
        );
    }

    #[test]
    fn names_the_flavor_by_word_size() {
        assert_eq!(flavor("x86_64"), "drcov-64");
        assert_eq!(flavor("aarch64"), "drcov-64");
        assert_eq!(flavor("i386"), "drcov");
        assert_eq!(flavor("arm"), "drcov");
    }
}
