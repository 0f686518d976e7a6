//! Disassembly of x86-64 guest code with one capstone handle kept open.
//!
//! QEMU's `qemu_plugin_insn_disas` opens a capstone handle, disassembles one
//! instruction and closes the handle: opening one builds capstone's tables
//! each time, about 8 µs an instruction, which on a short run costs more than
//! translating. This disassembler calls the capstone QEMU itself is linked
//! with (found with `dlsym`), with the options QEMU's `cap_disas_start` sets
//! for x86 and the text QEMU's `cap_disas_plugin` prints ("mnemonic op_str"),
//! so the text is the same; the first instructions are checked against QEMU's
//! own text, and any difference (or no capstone 4 in the process) turns it
//! off for good.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

/// How many instructions are disassembled both ways before trusting ours.
const CHECKED: u32 = 256;

// capstone 4's ABI (capstone.h).
type Csh = usize;
const CS_ARCH_X86: c_int = 3;
const CS_MODE_64: c_int = 1 << 3;
const CS_OPT_SYNTAX: c_int = 1;
const CS_OPT_SKIPDATA: c_int = 5;
const CS_OPT_ON: usize = 3;
const CS_OPT_SYNTAX_ATT: usize = 2;
const CS_ERR_OK: c_int = 0;

#[repr(C)]
struct CsInsn {
    id: c_uint,
    address: u64,
    size: u16,
    bytes: [u8; 16],
    mnemonic: [c_char; 32],
    op_str: [c_char; 160],
    detail: *mut c_void,
}

type CsVersion = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_uint;
type CsOpen = unsafe extern "C" fn(c_int, c_int, *mut Csh) -> c_int;
type CsOption = unsafe extern "C" fn(Csh, c_int, usize) -> c_int;
type CsMalloc = unsafe extern "C" fn(Csh) -> *mut CsInsn;
type CsDisasmIter =
    unsafe extern "C" fn(Csh, *mut *const u8, *mut usize, *mut u64, *mut CsInsn) -> bool;

struct Capstone {
    handle: Csh,
    insn: *mut CsInsn,
    disasm_iter: CsDisasmIter,
}

/// Disassembles guest instructions, or says to ask QEMU.
pub struct Disassembler {
    cs: Option<Capstone>,
    checked: u32,
}

// SAFETY: the handle and its instruction buffer are only used through
// `&mut self`, by one thread at a time; capstone handles are not tied to a
// thread.
unsafe impl Send for Disassembler {}

impl Disassembler {
    /// A disassembler for `target` guests (`qemu-TARGET`); only x86_64
    /// linux-user guests, whose code is always 64-bit, get one of their own.
    pub fn new(target: &str, system_emulation: bool) -> Disassembler {
        let cs = (target == "x86_64" && !system_emulation)
            .then(Capstone::open)
            .flatten();
        Disassembler { cs, checked: 0 }
    }

    /// The text of the instruction at `addr` whose bytes are `code`, as QEMU
    /// gives it; `qemu` is QEMU's own disassembly, asked for when ours is off
    /// or still being checked.
    pub fn disas(&mut self, addr: u64, code: &[u8], qemu: impl FnOnce() -> String) -> String {
        let Some(cs) = &self.cs else { return qemu() };
        let ours = cs.disas(addr, code);
        if self.checked >= CHECKED {
            return ours;
        }
        self.checked += 1;
        let theirs = qemu();
        if ours != theirs {
            self.cs = None;
        }
        theirs
    }
}

impl Capstone {
    fn open() -> Option<Capstone> {
        // SAFETY: the symbols, if present, are capstone's C API with these
        // signatures; the version check below makes sure the ABI is 4's.
        unsafe {
            let version: CsVersion = std::mem::transmute(symbol(c"cs_version")?);
            let open: CsOpen = std::mem::transmute(symbol(c"cs_open")?);
            let option: CsOption = std::mem::transmute(symbol(c"cs_option")?);
            let malloc: CsMalloc = std::mem::transmute(symbol(c"cs_malloc")?);
            let disasm_iter: CsDisasmIter = std::mem::transmute(symbol(c"cs_disasm_iter")?);
            let (mut major, mut minor) = (0, 0);
            version(&mut major, &mut minor);
            if major != 4 {
                return None;
            }
            let mut handle: Csh = 0;
            if open(CS_ARCH_X86, CS_MODE_64, &mut handle) != CS_ERR_OK {
                return None;
            }
            // As QEMU's cap_disas_start: errors ignored, as there.
            option(handle, CS_OPT_SKIPDATA, CS_OPT_ON);
            option(handle, CS_OPT_SYNTAX, CS_OPT_SYNTAX_ATT);
            let insn = malloc(handle);
            if insn.is_null() {
                return None;
            }
            Some(Capstone {
                handle,
                insn,
                disasm_iter,
            })
        }
    }

    fn disas(&self, addr: u64, code: &[u8]) -> String {
        let mut p = code.as_ptr();
        let mut size = code.len();
        let mut addr = addr;
        // SAFETY: `p` and `size` describe `code`; `insn` came from
        // `cs_malloc` on this handle; capstone NUL-terminates both strings
        // within their arrays.
        unsafe {
            if !(self.disasm_iter)(self.handle, &mut p, &mut size, &mut addr, self.insn) {
                return String::new();
            }
            let insn = &*self.insn;
            let mnemonic = CStr::from_ptr(insn.mnemonic.as_ptr()).to_string_lossy();
            let op_str = CStr::from_ptr(insn.op_str.as_ptr()).to_string_lossy();
            format!("{mnemonic} {op_str}")
        }
    }
}

/// A symbol of the process (QEMU and the libraries it links).
fn symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: `name` is a valid C string; RTLD_DEFAULT searches the global scope.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}
