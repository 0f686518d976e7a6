//! The guest's modules (option `modules=`, on by default): every file mapped
//! into the guest, with its build id, load bias, text range, and the points
//! of the trace where it was mapped and unmapped; written as the `modules`
//! table at exit.
//!
//! Where they come from:
//! - the program, its ELF interpreter (`PT_INTERP`, e.g.
//!   `ld-linux-x86-64.so.2`) and the vDSO: QEMU maps them before the guest
//!   runs, with no guest system call. The plugin API's
//!   `qemu_plugin_path_to_binary` and friends would say where, but QEMU
//!   10.0.2's linux-user does not export them (see `ffi::main_binary`). So
//!   at the guest's first system call the recorder reads the guest's
//!   auxiliary vector from its stack, as the guest's own loader does:
//!   `AT_EXECFN` names the program, `AT_ENTRY` is its entry (so its load
//!   bias is `AT_ENTRY` minus its `e_entry`), `AT_BASE` is where QEMU loaded
//!   the interpreter (`load_elf_binary` in QEMU's `linux-user/elfload.c`),
//!   `AT_SYSINFO_EHDR` the vDSO;
//! - every other file: the guest's own `mmap` calls, seen at entry and
//!   return. The file behind a descriptor is the one `/proc/self/fd/N`
//!   names (in linux-user, guest descriptors are QEMU's own), and the path
//!   the guest gave `open`/`openat` is kept beside it. `munmap`, and a
//!   `MAP_FIXED` mapping over it, take a module's pages away; the call that
//!   takes its last page unloads it.
//!
//! QEMU's API is called only from vCPU callbacks (the first system call),
//! never at install. Files are read with a few small reads (headers and
//! notes), once per file, so that the recorder allocates little while the
//! guest runs. Nothing here is on the hot path: it runs at system calls,
//! and takes its lock only for the few calls it follows.
//!
//! Not followed: `mremap` of a file mapping.

use crate::lock;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use qtrace_format::elf::{ElfInfo, PROT_EXEC};
use qtrace_format::manifest::PartEntry;
use qtrace_format::schema::{modules_batch, Module, ModuleKind, Segment, TracePoint};
use qtrace_format::writer::write_table;
use qtrace_format::Table;

use crate::ffi::{self, GuestReader};
use qtrace_format::syscall_names;

/// Guest pages, as the kernel rounds `mmap` and `munmap` lengths (4 KiB on
/// x86_64, aarch64 and riscv64 under linux-user).
const PAGE: u64 = 4096;
/// `mmap` flags, the same on x86_64, aarch64 and riscv64 (the guests whose
/// system calls the recorder names).
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
/// Longest path read from guest memory.
const PATH_MAX: usize = 4096;

/// The modules of the guest, followed through its system calls.
pub struct Modules {
    enabled: bool,
    names: syscall_names::Table,
    /// The program and its interpreter were looked at (first system call).
    started: AtomicBool,
    tracker: Mutex<Tracker>,
    /// What was last written, and where.
    written: Mutex<(PathBuf, Vec<Module>)>,
}

/// A file, as the kernel knows it (device and inode).
type FileKey = (u64, u64);

#[derive(Default)]
struct Tracker {
    /// Every module so far, by id.
    modules: Vec<Tracked>,
    /// Paths the guest opened, by descriptor.
    fds: HashMap<i64, String>,
    /// The call each vCPU is in, if it matters here.
    pending: HashMap<u32, Pending>,
    /// ELF facts by file (`None`: not ELF, or unreadable).
    elves: HashMap<FileKey, Option<Arc<ElfInfo>>>,
    /// What could not be followed, said once at exit.
    warnings: Vec<String>,
}

struct Tracked {
    row: Module,
    file: Option<FileKey>,
    elf: Option<Arc<ElfInfo>>,
    /// Address ranges still mapped from the file; empty once unloaded.
    live: Vec<(u64, u64)>,
}

/// A file mapping being made: what was known at the call's entry.
struct MappedFile {
    fd: i64,
    /// The file, as `/proc/self/fd/N` names it.
    path: String,
    key: FileKey,
}

enum Pending {
    Open {
        path: String,
    },
    Close {
        fd: i64,
    },
    Dup {
        old: i64,
    },
    Mmap {
        len: u64,
        prot: u8,
        fixed: bool,
        offset: u64,
        file: Option<MappedFile>,
        at: TracePoint,
    },
    Munmap {
        addr: u64,
        len: u64,
        at: TracePoint,
    },
}

impl Modules {
    /// `enabled` false: no table, no work at system calls. Guests whose
    /// system calls the recorder cannot name (`names` empty) have no
    /// modules either: their `mmap` could not be told from other calls.
    pub fn new(enabled: bool, names: syscall_names::Table) -> Modules {
        Modules {
            enabled: enabled && !names.is_empty(),
            names,
            started: AtomicBool::new(false),
            tracker: Mutex::new(Tracker::default()),
            written: Mutex::new((PathBuf::new(), Vec::new())),
        }
    }

    /// A system call's entry on `vcpu`, made by its block execution `block_seq`.
    pub fn on_syscall(&self, vcpu: u32, num: i64, args: &[u64; 8], block_seq: u64) {
        if !self.enabled {
            return;
        }
        if !self.started.swap(true, Ordering::Relaxed) {
            let mut warnings = Vec::new();
            let loaded = loaded_by_qemu(&mut warnings);
            let mut t = lock(&self.tracker);
            t.warnings.extend(warnings);
            for m in loaded {
                t.add(m);
            }
        }
        let at = TracePoint { vcpu, block_seq };
        let fd = |a: u64| a as i32 as i64;
        let pending = match syscall_names::name(self.names, num) {
            Some("open") => read_path(args[0]).map(|path| Pending::Open { path }),
            Some("openat" | "openat2") => read_path(args[1]).map(|path| Pending::Open { path }),
            Some("close") => Some(Pending::Close { fd: fd(args[0]) }),
            Some("dup" | "dup2" | "dup3") => Some(Pending::Dup { old: fd(args[0]) }),
            Some("mmap") => {
                let flags = args[3];
                let file = if flags & MAP_ANONYMOUS != 0 || fd(args[4]) < 0 {
                    None
                } else {
                    mapped_file(fd(args[4]))
                };
                Some(Pending::Mmap {
                    len: args[1],
                    prot: args[2] as u8 & 7,
                    fixed: flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0,
                    offset: args[5],
                    file,
                    at,
                })
            }
            Some("munmap") => Some(Pending::Munmap {
                addr: args[0],
                len: args[1],
                at,
            }),
            _ => None,
        };
        if let Some(p) = pending {
            lock(&self.tracker).pending.insert(vcpu, p);
        }
    }

    /// A system call of `vcpu` returned `ret`.
    pub fn on_syscall_ret(&self, vcpu: u32, num: i64, ret: i64) {
        if !self.enabled || !is_interesting(syscall_names::name(self.names, num)) {
            return;
        }
        let mut t = lock(&self.tracker);
        let Some(p) = t.pending.remove(&vcpu) else {
            return;
        };
        if (-4095..0).contains(&ret) {
            return;
        }
        match p {
            Pending::Open { path } => {
                t.fds.insert(ret, path);
            }
            Pending::Close { fd } => {
                t.fds.remove(&fd);
            }
            Pending::Dup { old } => {
                if let Some(path) = t.fds.get(&old).cloned() {
                    t.fds.insert(ret, path);
                }
            }
            Pending::Mmap {
                len,
                prot,
                fixed,
                offset,
                file,
                at,
            } => {
                let addr = ret as u64;
                let range = (addr, addr.saturating_add(round_up(len)));
                if fixed {
                    // What was mapped there is gone.
                    t.unmap(range, at);
                }
                if let Some(file) = file {
                    let segment = Segment {
                        addr,
                        size: range.1 - range.0,
                        file_offset: offset,
                        prot,
                    };
                    t.map_file(file, segment, fixed, at);
                }
            }
            Pending::Munmap { addr, len, at } => {
                if ret == 0 {
                    t.unmap((addr, addr.saturating_add(round_up(len))), at);
                }
            }
        }
    }

    /// Holds the tracker's lock (across a fork: see `recorder::before_fork`).
    pub fn hold(&'static self) -> Box<dyn std::any::Any> {
        Box::new(lock(&self.tracker))
    }

    /// Writes the `modules` table (nothing with `modules=off`), replacing
    /// the one written before if any; what the manifest says of it. At the
    /// end, or before an exec: what could not be followed is said then.
    pub fn write(&self, root: &Path, zstd: i32) -> Result<Option<PartEntry>, String> {
        for w in &lock(&self.tracker).warnings {
            warn!("qtrace: modules: {w}");
        }
        self.write_rows(root, zstd, true)
    }

    /// The same while recording (from the keeper), if anything changed
    /// since the last write into `root`.
    pub fn write_if_changed(&self, root: &Path, zstd: i32) -> Result<Option<PartEntry>, String> {
        self.write_rows(root, zstd, false)
    }

    fn write_rows(
        &self,
        root: &Path,
        zstd: i32,
        always: bool,
    ) -> Result<Option<PartEntry>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let rows: Vec<Module> = lock(&self.tracker)
            .modules
            .iter()
            .map(|m| m.row.clone())
            .collect();
        let mut written = lock(&self.written);
        if !always && written.0 == root && written.1 == rows {
            return Ok(None);
        }
        let part = write_table(root, Table::Modules, 0, &modules_batch(&rows), zstd)
            .map_err(|e| e.to_string())?;
        *written = (root.to_path_buf(), rows);
        Ok(Some(part))
    }
}

fn is_interesting(name: Option<&str>) -> bool {
    matches!(
        name,
        Some("open" | "openat" | "openat2" | "close" | "dup" | "dup2" | "dup3" | "mmap" | "munmap")
    )
}

impl Tracker {
    fn add(&mut self, mut m: Tracked) {
        m.row.id = self.modules.len() as u32;
        self.modules.push(m);
    }

    /// The guest mapped `segment` of a file.
    fn map_file(&mut self, file: MappedFile, segment: Segment, fixed: bool, at: TracePoint) {
        let end = segment.addr + segment.size;
        // A fixed mapping inside (or next to) a module of the same file is
        // the loader placing that module's next segment; anything else
        // starts a module.
        let joins = fixed.then(|| {
            self.modules.iter().rposition(|m| {
                !m.live.is_empty()
                    && m.file == Some(file.key)
                    && segment.addr <= m.row.base + m.row.size
                    && end >= m.row.base
            })
        });
        let i = match joins.flatten() {
            Some(i) => i,
            None => {
                let elf = self.elf(&file);
                let guest_path = self.fds.get(&file.fd).cloned();
                self.add(Tracked {
                    row: Module {
                        id: 0,
                        kind: ModuleKind::Mmap,
                        path: file.path,
                        guest_path,
                        build_id: elf.as_ref().and_then(|e| e.build_id_hex()),
                        base: segment.addr,
                        size: segment.size,
                        bias: None,
                        text: None,
                        entry: None,
                        segments: Vec::new(),
                        loaded: Some(at),
                        unloaded: None,
                    },
                    file: Some(file.key),
                    elf,
                    live: Vec::new(),
                });
                self.modules.len() - 1
            }
        };
        let m = &mut self.modules[i];
        let row = &mut m.row;
        let new_end = end.max(row.base + row.size);
        row.base = row.base.min(segment.addr);
        row.size = new_end - row.base;
        row.segments.push(segment);
        add_range(&mut m.live, (segment.addr, end));
        if row.bias.is_none() {
            row.bias = m
                .elf
                .as_ref()
                .and_then(|e| e.bias_for(segment.addr, segment.file_offset, segment.prot));
        }
        row.text = match (&m.elf, row.bias) {
            (Some(elf), Some(bias)) => elf.text_range(bias),
            // Not ELF: its executable mappings.
            _ => exec_span(&row.segments),
        };
    }

    /// The guest's memory in `range` no longer holds what it held.
    fn unmap(&mut self, range: (u64, u64), at: TracePoint) {
        for m in &mut self.modules {
            if m.live.is_empty() {
                continue;
            }
            remove_range(&mut m.live, range);
            if m.live.is_empty() {
                m.row.unloaded = Some(at);
            }
        }
    }

    fn elf(&mut self, file: &MappedFile) -> Option<Arc<ElfInfo>> {
        self.elves
            .entry(file.key)
            .or_insert_with(|| {
                // Through the descriptor: the file that is being mapped, even
                // if its path has changed since.
                let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.fd));
                ElfInfo::read(&by_fd).ok().map(Arc::new)
            })
            .clone()
    }
}

/// The span of the executable segments of a non-ELF mapping.
fn exec_span(segments: &[Segment]) -> Option<(u64, u64)> {
    let exec = segments.iter().filter(|s| s.prot & PROT_EXEC != 0);
    let start = exec.clone().map(|s| s.addr).min()?;
    let end = exec.map(|s| s.addr + s.size).max()?;
    Some((start, end))
}

fn round_up(len: u64) -> u64 {
    len.saturating_add(PAGE - 1) & !(PAGE - 1)
}

/// Adds `r` to a set of disjoint ranges.
fn add_range(set: &mut Vec<(u64, u64)>, r: (u64, u64)) {
    if r.0 >= r.1 {
        return;
    }
    let (mut lo, mut hi) = r;
    set.retain(|&(a, b)| {
        if b < lo || a > hi {
            true
        } else {
            lo = lo.min(a);
            hi = hi.max(b);
            false
        }
    });
    set.push((lo, hi));
    set.sort_unstable();
}

/// Removes `r` from a set of disjoint ranges.
fn remove_range(set: &mut Vec<(u64, u64)>, r: (u64, u64)) {
    let mut out = Vec::with_capacity(set.len() + 1);
    for &(a, b) in set.iter() {
        if b <= r.0 || a >= r.1 {
            out.push((a, b));
            continue;
        }
        if a < r.0 {
            out.push((a, r.0));
        }
        if b > r.1 {
            out.push((r.1, b));
        }
    }
    *set = out;
}

/// The file behind guest descriptor `fd`, if it is a regular file.
fn mapped_file(fd: i64) -> Option<MappedFile> {
    let link = format!("/proc/self/fd/{fd}");
    let meta = fs::metadata(&link).ok()?;
    if !meta.is_file() {
        return None;
    }
    let path = fs::read_link(&link).ok()?;
    Some(MappedFile {
        fd,
        path: path.to_string_lossy().into_owned(),
        key: (meta.dev(), meta.ino()),
    })
}

/// A NUL-terminated path in guest memory, read a page at a time (a read
/// across into an unmapped page would fail).
pub(crate) fn read_path(addr: u64) -> Option<String> {
    let mut reader = GuestReader::new();
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < PATH_MAX {
        let chunk = (PAGE - at % PAGE) as usize;
        let bytes = reader.read_memory(at, chunk)?;
        if let Some(nul) = bytes.iter().position(|&b| b == 0) {
            out.extend_from_slice(&bytes[..nul]);
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&bytes);
        at += chunk as u64;
    }
    None
}

/// Auxiliary vector entries (Linux's `AT_*`).
const AT_NULL: u64 = 0;
const AT_PHDR: u64 = 3;
const AT_PHENT: u64 = 4;
const AT_PHNUM: u64 = 5;
const AT_PAGESZ: u64 = 6;
const AT_BASE: u64 = 7;
const AT_FLAGS: u64 = 8;
pub(crate) const AT_ENTRY: u64 = 9;
pub(crate) const AT_EXECFN: u64 = 31;
const AT_SYSINFO_EHDR: u64 = 33;
/// Size of a 64-bit ELF program header (`AT_PHENT`).
const PHENT_64: u64 = 56;
/// How far above the stack pointer the auxiliary vector is looked for.
const AUXV_SEARCH: u64 = 1 << 20;

/// What QEMU mapped before the guest ran: the program, its interpreter and
/// the vDSO, as the guest's auxiliary vector places them. Only on a vCPU
/// thread, at the guest's first system call.
fn loaded_by_qemu(warnings: &mut Vec<String>) -> Vec<Tracked> {
    let auxv = match auxiliary_vector() {
        Ok(a) => a,
        Err(e) => {
            warnings.push(format!(
                "no auxiliary vector ({e}): the program and its interpreter are not listed"
            ));
            return Vec::new();
        }
    };
    let at = |t: u64| auxv.iter().find(|(k, _)| *k == t).map(|&(_, v)| v);
    let page = at(AT_PAGESZ)
        .filter(|p| p.is_power_of_two())
        .unwrap_or(PAGE);
    let api = ffi::main_binary();
    let mut out = Vec::new();

    // The program: its path as QEMU got it (`AT_EXECFN`), and its bias from
    // where the guest enters it (`AT_ENTRY`, the program's own entry point).
    let given = api
        .as_ref()
        .map(|a| a.path.clone())
        .or_else(|| at(AT_EXECFN).and_then(read_path));
    let Some(given) = given else {
        warnings.push("the program's path is unknown (no AT_EXECFN)".into());
        return out;
    };
    // The guest has made no system call yet, so no `chdir`: a relative
    // path is relative to where QEMU started.
    let path = fs::canonicalize(&given).unwrap_or_else(|_| PathBuf::from(&given));
    let elf = match ElfInfo::read(&path) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            warnings.push(format!("the program: {e}"));
            return out;
        }
    };
    let Some(entry) = at(AT_ENTRY) else {
        warnings.push("no AT_ENTRY in the auxiliary vector".into());
        return out;
    };
    let bias = entry.wrapping_sub(elf.entry);
    let mut text = elf.text_range(bias);
    if let Some(api) = &api {
        // QEMU's own word for the program's text, where it gives it.
        if text != Some((api.start_code, api.end_code)) {
            warnings.push(format!(
                "QEMU places the program's text at {:#x}..{:#x}, its ELF file at {:?}",
                api.start_code, api.end_code, text
            ));
        }
        text = Some((api.start_code, api.end_code));
    }
    let interp_name = elf.interp.clone();
    out.push(loaded(
        ModuleKind::Main,
        path.to_string_lossy().into_owned(),
        Some(given),
        Some(elf),
        file_key(&path),
        bias,
        text,
        Some(entry),
        page,
    ));

    // The interpreter: `AT_BASE` is where its lowest page was loaded.
    if let (Some(name), Some(base)) = (interp_name, at(AT_BASE).filter(|&b| b != 0)) {
        let path = interp_path(&name);
        match ElfInfo::read(&path) {
            Ok(elf) => {
                let lowest = elf.loads.iter().map(|s| s.vaddr).min().unwrap_or(0) & !(page - 1);
                let bias = base.wrapping_sub(lowest);
                let entry = elf.entry.wrapping_add(bias);
                if api.as_ref().is_some_and(|a| a.entry != entry) {
                    warnings.push(format!(
                        "QEMU enters the interpreter at another address than {entry:#x}"
                    ));
                }
                let text = elf.text_range(bias);
                out.push(loaded(
                    ModuleKind::Interp,
                    path.to_string_lossy().into_owned(),
                    Some(name),
                    Some(Arc::new(elf)),
                    file_key(&path),
                    bias,
                    text,
                    Some(entry),
                    page,
                ));
            }
            Err(e) => warnings.push(format!("the interpreter {name}: {e}")),
        }
    }

    // The vDSO: an ELF image in guest memory, read from there.
    if let Some(ehdr) = at(AT_SYSINFO_EHDR).filter(|&a| a != 0) {
        match vdso_image(ehdr, page) {
            Some(elf) => {
                let lowest = elf.loads.iter().map(|s| s.vaddr).min().unwrap_or(0) & !(page - 1);
                let bias = ehdr.wrapping_sub(lowest);
                let text = elf.text_range(bias);
                out.push(loaded(
                    ModuleKind::Vdso,
                    "[vdso]".into(),
                    None,
                    Some(Arc::new(elf)),
                    None,
                    bias,
                    text,
                    None,
                    page,
                ));
            }
            None => warnings.push(format!("the vDSO at {ehdr:#x} is not readable")),
        }
    }
    out
}

/// The guest's auxiliary vector, as (type, value) pairs up to `AT_NULL`.
///
/// QEMU writes it on the guest's stack above `argv` and `envp`, where the
/// guest's first system call still finds it above the stack pointer. It is
/// recognised by the entries QEMU writes first, in this order, whatever the
/// guest: `AT_PHDR`, `AT_PHENT` (56 for a 64-bit program), `AT_PHNUM`,
/// `AT_PAGESZ`, `AT_BASE`, `AT_FLAGS`, `AT_ENTRY`.
pub(crate) fn auxiliary_vector() -> Result<Vec<(u64, u64)>, String> {
    let sp = stack_pointer().ok_or("the stack pointer is not readable")?;
    let mut reader = GuestReader::new();
    let start = sp & !7;
    let mut words: Vec<u64> = Vec::new();
    let mut next = start;
    let mut searched = 0;
    loop {
        if next - start >= AUXV_SEARCH {
            return Err("not found near the stack pointer".into());
        }
        let chunk = PAGE - next % PAGE;
        let Some(bytes) = reader.read_memory(next, chunk as usize) else {
            return Err("not found on the stack".into());
        };
        words.extend(
            bytes
                .chunks_exact(8)
                .map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())),
        );
        next += chunk;
        let head = [
            AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY,
        ];
        let found = (searched..words.len().saturating_sub(2 * head.len())).find(|&i| {
            head.iter().enumerate().all(|(k, &t)| words[i + 2 * k] == t) && words[i + 3] == PHENT_64
        });
        match found {
            Some(i) => {
                let pairs: Vec<(u64, u64)> = words[i..]
                    .chunks_exact(2)
                    .map(|p| (p[0], p[1]))
                    .take_while(|&(t, _)| t != AT_NULL)
                    .collect();
                // Complete only if its `AT_NULL` has been read.
                if (pairs.len() + 1) * 2 <= words.len() - i {
                    return Ok(pairs);
                }
            }
            None => searched = words.len().saturating_sub(2 * head.len()),
        }
    }
}

/// The guest's stack pointer, read in a system call's callback.
fn stack_pointer() -> Option<u64> {
    let reg = ffi::registers()
        .into_iter()
        .find(|r| r.name == "rsp" || r.name == "sp")?;
    let mut reader = GuestReader::new();
    let bytes = reader.read(&reg)?;
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The vDSO's ELF headers and notes, read from guest memory.
fn vdso_image(ehdr: u64, page: u64) -> Option<ElfInfo> {
    let mut reader = GuestReader::new();
    let first = reader.read_memory(ehdr, page as usize)?;
    let elf = ElfInfo::parse(&first).ok();
    // Its notes may lie past the first page: read all of the file part.
    let len = elf
        .as_ref()
        .and_then(|e| e.loads.iter().map(|s| s.offset + s.filesz).max())
        .unwrap_or(page)
        .min(64 * page);
    if len <= page {
        return elf.or_else(|| ElfInfo::parse(&first).ok());
    }
    let all = reader.read_memory(ehdr, len as usize)?;
    ElfInfo::parse(&all).ok().or(elf)
}

fn file_key(path: &Path) -> Option<FileKey> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A module QEMU loaded: its row, from its ELF segments placed with `bias`.
#[allow(clippy::too_many_arguments)]
fn loaded(
    kind: ModuleKind,
    path: String,
    guest_path: Option<String>,
    elf: Option<Arc<ElfInfo>>,
    file: Option<FileKey>,
    bias: u64,
    text: Option<(u64, u64)>,
    entry: Option<u64>,
    page: u64,
) -> Tracked {
    let (base, end) = elf
        .as_ref()
        .and_then(|e| e.load_span(bias, page))
        .or(text)
        .unwrap_or((0, 0));
    let segments = elf
        .iter()
        .flat_map(|e| &e.loads)
        .filter(|s| s.filesz > 0)
        .map(|s| {
            let start = bias.wrapping_add(s.vaddr) & !(page - 1);
            let end = bias.wrapping_add(s.vaddr + s.filesz).wrapping_add(page - 1) & !(page - 1);
            Segment {
                addr: start,
                size: end - start,
                file_offset: s.offset & !(page - 1),
                prot: s.prot,
            }
        })
        .collect();
    Tracked {
        row: Module {
            id: 0,
            kind,
            path,
            guest_path,
            build_id: elf.as_ref().and_then(|e| e.build_id_hex()),
            base,
            size: end - base,
            bias: Some(bias),
            text,
            entry,
            segments,
            loaded: None,
            unloaded: None,
        },
        file,
        elf,
        live: if end > base {
            vec![(base, end)]
        } else {
            Vec::new()
        },
    }
}

/// Where QEMU finds the interpreter `name`: under its `-L` prefix
/// (`QEMU_LD_PREFIX`) when the file is there, else at `name`.
fn interp_path(name: &str) -> PathBuf {
    let prefix = ld_prefix();
    let under = prefix.map(|p| p.join(name.trim_start_matches('/')));
    let path = match under {
        Some(p) if p.exists() => p,
        _ => PathBuf::from(name),
    };
    fs::canonicalize(&path).unwrap_or(path)
}

/// QEMU's `-L` argument, or else `QEMU_LD_PREFIX`.
fn ld_prefix() -> Option<PathBuf> {
    let cmdline = fs::read("/proc/self/cmdline").unwrap_or_default();
    let args: Vec<&[u8]> = cmdline.split(|&c| c == 0).collect();
    let from_args = args
        .windows(2)
        .find(|w| w[0] == b"-L")
        .map(|w| PathBuf::from(String::from_utf8_lossy(w[1]).into_owned()));
    from_args.or_else(|| std::env::var_os("QEMU_LD_PREFIX").map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_add_and_remove() {
        let mut s = Vec::new();
        add_range(&mut s, (0x1000, 0x3000));
        add_range(&mut s, (0x5000, 0x6000));
        add_range(&mut s, (0x3000, 0x4000));
        assert_eq!(s, vec![(0x1000, 0x4000), (0x5000, 0x6000)]);
        remove_range(&mut s, (0x2000, 0x5800));
        assert_eq!(s, vec![(0x1000, 0x2000), (0x5800, 0x6000)]);
        remove_range(&mut s, (0, 0x10000));
        assert!(s.is_empty());
    }

    fn file(key: FileKey) -> MappedFile {
        MappedFile {
            fd: -1,
            path: "/lib/x.so".into(),
            key,
        }
    }

    fn seg(addr: u64, size: u64, file_offset: u64, prot: u8) -> Segment {
        Segment {
            addr,
            size,
            file_offset,
            prot,
        }
    }

    #[test]
    fn a_loader_maps_then_unmaps_a_library() {
        let mut t = Tracker::default();
        let at = |block_seq| TracePoint { vcpu: 0, block_seq };
        // The whole span first, then segments over it, then zeroed pages.
        t.map_file(file((1, 2)), seg(0x10000, 0x5000, 0, 1), false, at(1));
        t.map_file(file((1, 2)), seg(0x11000, 0x1000, 0x1000, 5), true, at(2));
        t.unmap((0x14000, 0x15000), at(3));
        // Another file elsewhere, and the same file mapped again.
        t.map_file(file((1, 3)), seg(0x20000, 0x1000, 0, 1), false, at(4));
        t.map_file(file((1, 2)), seg(0x30000, 0x1000, 0, 1), false, at(5));
        assert_eq!(t.modules.len(), 3);
        let m = &t.modules[0];
        assert_eq!((m.row.base, m.row.size), (0x10000, 0x5000));
        assert_eq!(m.row.segments.len(), 2);
        assert_eq!(m.row.text, Some((0x11000, 0x12000)), "its exec mapping");
        assert_eq!(m.row.loaded, Some(at(1)));
        t.unmap((0x10000, 0x14000), at(6));
        assert_eq!(t.modules[0].row.unloaded, Some(at(6)));
        assert_eq!(t.modules[1].row.unloaded, None);
        assert_eq!(t.modules[2].row.unloaded, None);
        assert_eq!(
            t.modules.iter().map(|m| m.row.id).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }
}
