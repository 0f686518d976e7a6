//! Finds what `qtrace record` runs: the guest program (through `PATH`), its
//! architecture (from its ELF header), the QEMU for that architecture and the
//! recorder plugin.
//!
//! Nothing here runs anything; every failure is an error that says what was
//! looked for, where, and how to get it.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The QEMU release that `make setup` provisions.
const QEMU_DIR_NAME: &str = "qemu-10.0.2";
/// The file name of the recorder plugin that `cargo build` produces.
const RECORDER_FILE: &str = "libqtrace_recorder.so";

/// A guest architecture that qtrace records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Riscv64,
}

impl Arch {
    /// The name QEMU uses, as in `qemu-x86_64`.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        }
    }
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

/// The architecture of an ELF file from its first bytes, or why it has none
/// that qtrace records.
pub fn arch_from_elf_header(header: &[u8]) -> Result<Arch, String> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    let machine_bytes = [header[18], header[19]];
    let machine = match header[5] {
        1 => u16::from_le_bytes(machine_bytes),
        2 => u16::from_be_bytes(machine_bytes),
        other => return Err(format!("ELF header has an unknown byte order ({other})")),
    };
    let arch = match machine {
        EM_X86_64 => Arch::X86_64,
        EM_AARCH64 => Arch::Aarch64,
        EM_RISCV => Arch::Riscv64,
        other => {
            let name = machine_name(other)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            return Err(format!(
                "ELF machine {other}{name} is not supported; qtrace records x86_64, \
                 aarch64 and riscv64 programs"
            ));
        }
    };
    // The same e_machine covers x32 and riscv32, which the 64-bit QEMUs do not run.
    if header[4] != 2 {
        return Err(format!(
            "a 32-bit {} ELF; qtrace records 64-bit programs only",
            arch.qemu_name()
        ));
    }
    Ok(arch)
}

/// Names for the machines people are likely to hand us by mistake, so that
/// the error says "i386" rather than only "3".
fn machine_name(machine: u16) -> Option<&'static str> {
    Some(match machine {
        2 => "sparc",
        3 => "i386",
        8 => "mips",
        20 => "ppc",
        21 => "ppc64",
        22 => "s390",
        40 => "arm",
        43 => "sparc64",
        258 => "loongarch",
        _ => return None,
    })
}

/// The guest architecture of the program at `path`.
pub fn guest_arch(path: &Path) -> Result<Arch> {
    let mut header = Vec::with_capacity(20);
    File::open(path)
        .and_then(|f| f.take(20).read_to_end(&mut header))
        .with_context(|| path.display().to_string())?;
    arch_from_elf_header(&header).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

/// The file a program name stands for: a name without a slash is looked up
/// in `PATH`, as a shell would, because QEMU itself only opens paths.
pub fn resolve_program(program: &OsStr) -> Result<PathBuf> {
    resolve_program_in(program, std::env::var_os("PATH").as_deref())
}

fn resolve_program_in(program: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf> {
    let as_path = Path::new(program);
    if program.as_encoded_bytes().contains(&b'/') {
        let meta = std::fs::metadata(as_path).with_context(|| as_path.display().to_string())?;
        if !meta.is_file() {
            bail!("{}: not a file", as_path.display());
        }
        return Ok(as_path.to_path_buf());
    }
    if program.is_empty() {
        bail!("the program name is empty");
    }
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        // POSIX: an empty PATH entry means the current directory.
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    bail!("{}: not found in PATH", as_path.display())
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The QEMU that runs guests of `arch`.
pub fn qemu(arch: Arch) -> Result<PathBuf> {
    let dir = qemu_dir(
        std::env::var_os("QTRACE_QEMU_DIR"),
        std::env::var_os("QTRACE_CACHE"),
        std::env::var_os("HOME"),
    )?;
    let bin = dir.join("bin").join(format!("qemu-{}", arch.qemu_name()));
    if !is_executable_file(&bin) {
        bail!(
            "no QEMU for {} at {}: run `make setup` (or scripts/setup.sh) to build it, \
             or point QTRACE_QEMU_DIR at a QEMU built with plugin support",
            arch.qemu_name(),
            bin.display()
        );
    }
    Ok(bin)
}

/// Where QEMU is installed, by the same rules as `scripts/env.sh`, so that
/// the scripts and the tool always agree.
fn qemu_dir(
    qemu_dir: Option<OsString>,
    cache: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(qemu_dir) {
        return Ok(dir);
    }
    let cache = match (set(cache), set(home)) {
        (Some(cache), _) => cache,
        (None, Some(home)) => home.join(".cache").join("qtrace"),
        (None, None) => {
            bail!("cannot find QEMU: neither QTRACE_QEMU_DIR, QTRACE_CACHE nor HOME is set")
        }
    };
    Ok(cache.join(QEMU_DIR_NAME))
}

/// The recorder plugin: `$QTRACE_RECORDER`, else the one built beside this
/// executable (cargo puts both in `target/<profile>/`).
pub fn recorder() -> Result<PathBuf> {
    let path = match std::env::var_os("QTRACE_RECORDER").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().context("cannot tell where qtrace is installed")?;
            exe.parent().unwrap_or(Path::new(".")).join(RECORDER_FILE)
        }
    };
    if !path.is_file() {
        bail!(
            "no recorder plugin at {}: build it with `cargo build --release`, \
             or set QTRACE_RECORDER to its path",
            path.display()
        );
    }
    // QEMU wants an absolute plugin path; a relative one would be resolved
    // against whatever directory the guest runs in.
    std::path::absolute(&path).with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 20 bytes of an ELF header: class, byte order, machine.
    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = class;
        h[5] = data;
        h[6] = 1;
        let m = if data == 2 {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h[18..20].copy_from_slice(&m);
        h
    }

    #[test]
    fn recognises_the_three_guest_architectures() {
        assert_eq!(arch_from_elf_header(&header(2, 1, 62)), Ok(Arch::X86_64));
        assert_eq!(arch_from_elf_header(&header(2, 1, 183)), Ok(Arch::Aarch64));
        assert_eq!(arch_from_elf_header(&header(2, 1, 243)), Ok(Arch::Riscv64));
    }

    #[test]
    fn reads_the_machine_in_the_files_byte_order() {
        assert_eq!(arch_from_elf_header(&header(2, 2, 183)), Ok(Arch::Aarch64));
    }

    #[test]
    fn names_unsupported_machines() {
        let err = arch_from_elf_header(&header(1, 1, 3)).unwrap_err();
        assert!(err.contains("machine 3 (i386)"), "{err}");
        let err = arch_from_elf_header(&header(2, 1, 9999)).unwrap_err();
        assert!(err.contains("machine 9999 is not supported"), "{err}");
    }

    #[test]
    fn rejects_32_bit_elves_of_64_bit_machines() {
        let err = arch_from_elf_header(&header(1, 1, 243)).unwrap_err();
        assert!(err.contains("32-bit riscv64"), "{err}");
    }

    #[test]
    fn rejects_what_is_not_elf() {
        assert!(arch_from_elf_header(b"#!/bin/sh\necho hello\n").is_err());
        assert!(arch_from_elf_header(b"\x7fELF").is_err());
        assert!(arch_from_elf_header(b"").is_err());
    }

    #[test]
    fn guest_arch_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.sh");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = format!("{:#}", guest_arch(&script).unwrap_err());
        assert!(err.contains("script.sh: not an ELF executable"), "{err}");

        let elf = dir.path().join("prog");
        std::fs::write(&elf, header(2, 1, 183)).unwrap();
        assert_eq!(guest_arch(&elf).unwrap(), Arch::Aarch64);

        let err = format!("{:#}", guest_arch(&dir.path().join("missing")).unwrap_err());
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn looks_programs_up_in_path_only_without_a_slash() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let prog = bin.join("prog");
        std::fs::write(&prog, header(2, 1, 62)).unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        let not_exec = bin.join("data");
        std::fs::write(&not_exec, "").unwrap();

        let path_var = std::env::join_paths([Path::new("/nonexistent"), &bin]).unwrap();
        let found = resolve_program_in(OsStr::new("prog"), Some(&path_var)).unwrap();
        assert_eq!(found, prog);
        let err = resolve_program_in(OsStr::new("data"), Some(&path_var)).unwrap_err();
        assert!(err.to_string().contains("data: not found in PATH"), "{err}");
        let err = resolve_program_in(OsStr::new("prog"), None).unwrap_err();
        assert!(err.to_string().contains("not found in PATH"), "{err}");

        // With a slash the path is taken as it is, whatever PATH says.
        let direct = resolve_program_in(prog.as_os_str(), None).unwrap();
        assert_eq!(direct, prog);
        let err = resolve_program_in(bin.join("nope").as_os_str(), None).unwrap_err();
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
    }

    #[test]
    fn qemu_dir_follows_the_scripts_rules() {
        let os = |s: &str| Some(OsString::from(s));
        assert_eq!(
            qemu_dir(os("/q"), os("/c"), os("/h")).unwrap(),
            PathBuf::from("/q")
        );
        assert_eq!(
            qemu_dir(None, os("/c"), os("/h")).unwrap(),
            PathBuf::from("/c/qemu-10.0.2")
        );
        assert_eq!(
            qemu_dir(os(""), None, os("/h")).unwrap(),
            PathBuf::from("/h/.cache/qtrace/qemu-10.0.2")
        );
        assert!(qemu_dir(None, None, None).is_err());
    }
}
