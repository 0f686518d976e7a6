//! The only module that touches QEMU's plugin API: generated bindings, and a
//! safe wrapper on top of them.
//!
//! Every `extern "C"` function QEMU calls is a trampoline that runs the
//! recorder's code under `catch_unwind`: a panic that crossed into QEMU would
//! abort it and lose the whole trace. Handles to translated blocks and
//! instructions borrow the translation callback's lifetime, so they cannot be
//! kept past it.
//!
//! This module must never be called from a writer thread: QEMU's API is only
//! valid on vCPU threads and inside its callbacks.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

#[allow(
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    dead_code,
    clippy::all
)]
mod sys {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

/// The plugin API version the recorder was built against; QEMU refuses to
/// load a plugin whose version it does not support.
#[no_mangle]
pub static qemu_plugin_version: c_int = sys::QEMU_PLUGIN_VERSION as c_int;

/// This plugin's handle, as QEMU gave it at install.
pub type PluginId = sys::qemu_plugin_id_t;

/// What QEMU says about itself at install.
#[derive(Clone, Debug)]
pub struct Info {
    pub target: String,
    pub system_emulation: bool,
}

/// The recorder as QEMU sees it: callbacks with no state of their own, so
/// that each trampoline is a direct call, with no indirection on the hot path.
pub trait Plugin: 'static {
    /// Called once at load. An error refuses the load; its text goes to stderr.
    fn install(id: PluginId, info: Info, args: Vec<String>) -> Result<(), String>;
    /// A block was translated: inspect and instrument it.
    fn on_translate(tb: &Tb<'_>);
    /// An instrumented block is about to execute on `vcpu`. This is the hot
    /// path and runs without `catch_unwind`, whose frame costs more than the
    /// work: it must not panic, and must run anything that could (its slow
    /// path) inside [`guard`].
    fn on_exec(vcpu: u32, data: u64);
    /// An instruction instrumented with [`Insn::on_mem`] accessed memory
    /// at `vaddr`. Hot, and unguarded like [`Plugin::on_exec`].
    fn on_mem(vcpu: u32, info: MemInfo, vaddr: u64, data: u64);
    /// A block instrumented with [`Tb::on_exec_regs`] or
    /// [`Tb::on_exec_regs_if`] is about to execute on `vcpu`: the one
    /// callback where its registers can be read. Runs under [`guard`].
    fn on_regs(vcpu: u32, data: u64);
    /// `vcpu` is about to make system call `num` with arguments `args`.
    /// Not hot: runs under [`guard`].
    fn on_syscall(vcpu: u32, num: i64, args: [u64; 8]);
    /// System call `num` of `vcpu` returned `ret`. Not hot: runs under [`guard`].
    fn on_syscall_ret(vcpu: u32, num: i64, ret: i64);
    /// A vCPU (in linux-user: a guest thread) is going away.
    fn on_vcpu_exit(vcpu: u32);
    /// A callback registered with [`Insn::on_trigger`] or
    /// [`Tb::on_trigger_at_least`] fired on `vcpu`. Not hot: runs under [`guard`].
    fn on_trigger(vcpu: u32, data: u64);
    /// The reset asked for with [`reset`] is done: QEMU has unregistered
    /// every callback and flushed every translated block. Runs while every
    /// vCPU is stopped, under [`guard`].
    fn on_reset();
    /// The guest is exiting.
    fn on_exit();
}

/// Entry point QEMU calls when the plugin loads.
///
/// # Safety
/// As QEMU calls it: `info` points to a live `qemu_info_t` and `argv` holds
/// `argc` valid C strings.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: sys::qemu_plugin_id_t,
    info: *const sys::qemu_info_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    let result = catch_unwind(|| {
        // SAFETY: QEMU passes a valid info block for the duration of this call.
        let info = unsafe { read_info(info) };
        // SAFETY: QEMU passes `argc` valid C strings in `argv`.
        let args = unsafe { read_args(argc, argv) };
        crate::recorder::Recorder::install(id, info, args)
    });
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(msg)) => {
            warn!("qtrace: {msg}");
            -1
        }
        Err(panic) => {
            warn!("qtrace: internal error at install: {}", panic_text(&panic));
            -1
        }
    }
}

/// # Safety
/// `info` must be null or point to a live `qemu_info_t`.
unsafe fn read_info(info: *const sys::qemu_info_t) -> Info {
    // SAFETY: per the function's contract.
    let Some(info) = (unsafe { info.as_ref() }) else {
        return Info {
            target: String::new(),
            system_emulation: false,
        };
    };
    Info {
        // SAFETY: target_name is a static C string owned by QEMU.
        target: unsafe { c_string(info.target_name) }.unwrap_or_default(),
        system_emulation: info.system_emulation,
    }
}

/// # Safety
/// `argv` must hold `argc` valid C strings.
unsafe fn read_args(argc: c_int, argv: *mut *mut c_char) -> Vec<String> {
    (0..argc.max(0) as usize)
        // SAFETY: per the function's contract.
        .filter_map(|i| unsafe { c_string(*argv.add(i)) })
        .collect()
}

/// # Safety
/// `p` must be null or a valid NUL-terminated string.
unsafe fn c_string(p: *const c_char) -> Option<String> {
    // SAFETY: per the function's contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Registers the translation, vCPU-exit and exit callbacks of `P`, and with
/// `syscalls` its system call callbacks.
pub fn register<P: Plugin>(id: PluginId, syscalls: bool) {
    // SAFETY: the trampolines match the callback types QEMU expects and live
    // as long as the plugin.
    unsafe {
        if syscalls {
            sys::qemu_plugin_register_vcpu_syscall_cb(id, Some(syscall_trampoline::<P>));
            sys::qemu_plugin_register_vcpu_syscall_ret_cb(id, Some(syscall_ret_trampoline::<P>));
        }
        sys::qemu_plugin_register_vcpu_tb_trans_cb(id, Some(translate_trampoline::<P>));
        sys::qemu_plugin_register_vcpu_exit_cb(id, Some(vcpu_exit_trampoline::<P>));
        sys::qemu_plugin_register_atexit_cb(id, Some(exit_trampoline::<P>), std::ptr::null_mut());
    }
}

/// Asks QEMU to unregister every callback of the plugin and flush all
/// translated code, then to call `P::on_reset`. Asynchronous: QEMU does it
/// once every vCPU has stopped, and until then the callbacks keep arriving.
/// A second request before `P::on_reset` has run is ignored by QEMU.
pub fn reset<P: Plugin>(id: PluginId) {
    // SAFETY: the trampoline matches the callback type and lives as long as
    // the plugin; QEMU accepts the request from any thread.
    unsafe { sys::qemu_plugin_reset(id, Some(reset_trampoline::<P>)) }
}

/// Ends the process now with `code`, running nothing else: for a recorder
/// that cannot go on, from inside a callback where QEMU holds its locks.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Number of vCPUs QEMU has seen so far (in linux-user: the highest thread
/// index plus one).
pub fn num_vcpus() -> u32 {
    // SAFETY: no preconditions.
    unsafe { sys::qemu_plugin_num_vcpus() }.max(0) as u32
}

/// What QEMU says of the program it loaded (linux-user only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MainBinary {
    /// The program's path as QEMU was given it.
    pub path: String,
    /// The lowest and highest-plus-one addresses of its executable segments.
    pub start_code: u64,
    pub end_code: u64,
    /// Where the guest starts: the program's entry, or its interpreter's
    /// when it has one (QEMU replaces the one with the other).
    pub entry: u64,
}

/// The program QEMU loaded, from `qemu_plugin_path_to_binary`,
/// `_start_code`, `_end_code` and `_entry_code`; `None` when this QEMU does
/// not export them (QEMU 10.0.2's linux-user builds leave them out: its
/// build tests a configuration symbol that is never set, so QEMU's own
/// `libdrcov.so` does not load either) and in system emulation.
///
/// They are looked up at run time rather than linked, since a plugin that
/// names a function QEMU lacks is refused at load. Only on a vCPU thread,
/// inside a vCPU callback: QEMU reads them from the current vCPU's task.
pub fn main_binary() -> Option<MainBinary> {
    type PathFn = unsafe extern "C" fn() -> *const c_char;
    type AddrFn = unsafe extern "C" fn() -> u64;
    let find = |name: &CStr| {
        // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the
        // process's global symbols, which include QEMU's exported API.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    let path = find(c"qemu_plugin_path_to_binary")?;
    let start = find(c"qemu_plugin_start_code")?;
    let end = find(c"qemu_plugin_end_code")?;
    let entry = find(c"qemu_plugin_entry_code")?;
    // SAFETY: these symbols are QEMU's API functions, whose types
    // qemu-plugin.h gives as `const char *(void)` and `uint64_t (void)`.
    let (path, start, end, entry) = unsafe {
        (
            std::mem::transmute::<*mut c_void, PathFn>(path),
            std::mem::transmute::<*mut c_void, AddrFn>(start),
            std::mem::transmute::<*mut c_void, AddrFn>(end),
            std::mem::transmute::<*mut c_void, AddrFn>(entry),
        )
    };
    // SAFETY: called on a vCPU thread (see above); QEMU returns a string it
    // allocated with g_strdup (or null), which is ours to free.
    let path = unsafe {
        let p = path();
        let s = c_string(p);
        if !p.is_null() {
            g_free(p as *mut c_void);
        }
        s?
    };
    // SAFETY: as above; no other preconditions.
    let (start_code, end_code, entry) = unsafe { (start(), end(), entry()) };
    Some(MainBinary {
        path,
        start_code,
        end_code,
        entry,
    })
}

static REPORTED_PANIC: AtomicBool = AtomicBool::new(false);

/// Runs a callback body; a panic is reported once on stderr and stops there.
#[inline(always)]
pub fn guard(what: &str, f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        if !REPORTED_PANIC.swap(true, Ordering::Relaxed) {
            warn!("qtrace: internal error in {what}: {}", panic_text(&panic));
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("panic")
}

extern "C" fn translate_trampoline<P: Plugin>(_id: PluginId, tb: *mut sys::qemu_plugin_tb) {
    guard("translation", || {
        let tb = Tb {
            raw: tb,
            _life: PhantomData,
        };
        P::on_translate(&tb)
    })
}

extern "C" fn exec_trampoline<P: Plugin>(vcpu: c_uint, data: *mut c_void) {
    // Unguarded on purpose: see `Plugin::on_exec`.
    P::on_exec(vcpu, data as u64)
}

extern "C" fn mem_trampoline<P: Plugin>(
    vcpu: c_uint,
    info: sys::qemu_plugin_meminfo_t,
    vaddr: u64,
    data: *mut c_void,
) {
    // Unguarded on purpose: see `Plugin::on_mem`.
    P::on_mem(vcpu, MemInfo(info), vaddr, data as u64)
}

extern "C" fn regs_trampoline<P: Plugin>(vcpu: c_uint, data: *mut c_void) {
    guard("register read", || P::on_regs(vcpu, data as u64))
}

#[allow(clippy::too_many_arguments)]
extern "C" fn syscall_trampoline<P: Plugin>(
    _id: PluginId,
    vcpu: c_uint,
    num: i64,
    a1: u64,
    a2: u64,
    a3: u64,
    a4: u64,
    a5: u64,
    a6: u64,
    a7: u64,
    a8: u64,
) {
    guard("system call", || {
        P::on_syscall(vcpu, num, [a1, a2, a3, a4, a5, a6, a7, a8])
    })
}

extern "C" fn syscall_ret_trampoline<P: Plugin>(_id: PluginId, vcpu: c_uint, num: i64, ret: i64) {
    guard("system call return", || P::on_syscall_ret(vcpu, num, ret))
}

extern "C" fn vcpu_exit_trampoline<P: Plugin>(_id: PluginId, vcpu: c_uint) {
    guard("vcpu exit", || P::on_vcpu_exit(vcpu))
}

extern "C" fn trigger_trampoline<P: Plugin>(vcpu: c_uint, data: *mut c_void) {
    guard("trigger", || P::on_trigger(vcpu, data as u64))
}

extern "C" fn reset_trampoline<P: Plugin>(_id: PluginId) {
    guard("reset", P::on_reset)
}

extern "C" fn exit_trampoline<P: Plugin>(_id: PluginId, _data: *mut c_void) {
    guard("exit", P::on_exit)
}

/// A block being translated; valid only inside the translation callback.
pub struct Tb<'a> {
    raw: *mut sys::qemu_plugin_tb,
    _life: PhantomData<&'a ()>,
}

impl<'a> Tb<'a> {
    pub fn vaddr(&self) -> u64 {
        // SAFETY: `raw` is live for 'a.
        unsafe { sys::qemu_plugin_tb_vaddr(self.raw) }
    }

    pub fn n_insns(&self) -> usize {
        // SAFETY: `raw` is live for 'a.
        unsafe { sys::qemu_plugin_tb_n_insns(self.raw) }
    }

    pub fn insn(&self, idx: usize) -> Option<Insn<'a>> {
        if idx >= self.n_insns() {
            return None;
        }
        // SAFETY: `raw` is live and idx is in range.
        let raw = unsafe { sys::qemu_plugin_tb_get_insn(self.raw, idx) };
        (!raw.is_null()).then_some(Insn {
            raw,
            _life: PhantomData,
        })
    }

    pub fn insns(&self) -> impl Iterator<Item = Insn<'a>> + '_ {
        (0..self.n_insns()).filter_map(|i| self.insn(i))
    }

    /// Calls `P::on_exec(vcpu, data)` each time this block executes.
    pub fn on_exec<P: Plugin>(&self, data: u64) {
        // SAFETY: `raw` is live; the trampoline matches the callback type;
        // `data` is passed back as is and never dereferenced.
        unsafe {
            sys::qemu_plugin_register_vcpu_tb_exec_cb(
                self.raw,
                Some(exec_trampoline::<P>),
                sys::qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                data as *mut c_void,
            )
        }
    }

    /// Calls `P::on_regs(vcpu, data)` each time this block executes, with
    /// the vCPU's registers readable (QEMU stores the guest registers it
    /// holds in host registers before the call).
    pub fn on_exec_regs<P: Plugin>(&self, data: u64) {
        // SAFETY: `raw` is live; the trampoline matches the callback type;
        // `data` is passed back as is and never dereferenced.
        unsafe {
            sys::qemu_plugin_register_vcpu_tb_exec_cb(
                self.raw,
                Some(regs_trampoline::<P>),
                sys::qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS,
                data as *mut c_void,
            )
        }
    }

    /// Like [`Tb::on_exec_regs`], but only when this vCPU's `counter` is at
    /// least `at_least` when the block starts: QEMU emits the comparison
    /// inline, and the call only on the branch taken.
    pub fn on_exec_regs_if<P: Plugin>(&self, counter: &Counter, at_least: u64, data: u64) {
        // SAFETY: `raw` is live; the trampoline matches the callback type;
        // the counter's scoreboard lives as long as the plugin; `data` is
        // passed back as is and never dereferenced.
        unsafe {
            sys::qemu_plugin_register_vcpu_tb_exec_cond_cb(
                self.raw,
                Some(regs_trampoline::<P>),
                sys::qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS,
                sys::qemu_plugin_cond::QEMU_PLUGIN_COND_GE,
                counter.entry(),
                at_least,
                data as *mut c_void,
            )
        }
    }

    /// Adds one to this vCPU's `counter` each time the block executes, with
    /// code QEMU emits inline (no call).
    pub fn count_inline(&self, counter: &Counter) {
        // SAFETY: `raw` is live; the counter's scoreboard lives as long as the plugin.
        unsafe {
            sys::qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(
                self.raw,
                sys::qemu_plugin_op::QEMU_PLUGIN_INLINE_ADD_U64,
                counter.entry(),
                1,
            )
        }
    }

    /// Calls `P::on_trigger(vcpu, data)` each time the block starts; with
    /// `read_regs`, the callback may read registers.
    pub fn on_trigger<P: Plugin>(&self, data: u64, read_regs: bool) {
        // SAFETY: `raw` is live; the trampoline matches the callback type;
        // `data` is passed back as is and never dereferenced.
        unsafe {
            sys::qemu_plugin_register_vcpu_tb_exec_cb(
                self.raw,
                Some(trigger_trampoline::<P>),
                cb_flags(read_regs),
                data as *mut c_void,
            )
        }
    }

    /// Adds `n` to this vCPU's `counter` each time the block executes
    /// (inline, like [`Tb::count_inline`]).
    pub fn add_inline(&self, counter: &Counter, n: u64) {
        // SAFETY: as in `count_inline`.
        unsafe {
            sys::qemu_plugin_register_vcpu_tb_exec_inline_per_vcpu(
                self.raw,
                sys::qemu_plugin_op::QEMU_PLUGIN_INLINE_ADD_U64,
                counter.entry(),
                n,
            )
        }
    }

    /// Calls `P::on_trigger(vcpu, data)` each time the block starts while
    /// this vCPU's `counter` is at least `n`. Callbacks and inline operations
    /// of a block run in the order they were registered.
    pub fn on_trigger_at_least<P: Plugin>(&self, counter: &Counter, n: u64, data: u64) {
        // SAFETY: `raw` is live; the trampoline matches the callback type;
        // the counter's scoreboard lives as long as the plugin; `data` is
        // passed back as is.
        unsafe {
            sys::qemu_plugin_register_vcpu_tb_exec_cond_cb(
                self.raw,
                Some(trigger_trampoline::<P>),
                sys::qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                sys::qemu_plugin_cond::QEMU_PLUGIN_COND_GE,
                counter.entry(),
                n,
                data as *mut c_void,
            )
        }
    }
}

/// An instruction of a block being translated.
pub struct Insn<'a> {
    raw: *mut sys::qemu_plugin_insn,
    _life: PhantomData<&'a ()>,
}

impl Insn<'_> {
    pub fn vaddr(&self) -> u64 {
        // SAFETY: `raw` is live for the translation.
        unsafe { sys::qemu_plugin_insn_vaddr(self.raw) }
    }

    /// The instruction's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        // SAFETY: `raw` is live for the translation.
        let size = unsafe { sys::qemu_plugin_insn_size(self.raw) };
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` has room for `size` bytes.
        let got = unsafe { sys::qemu_plugin_insn_data(self.raw, buf.as_mut_ptr().cast(), size) };
        buf.truncate(got);
        buf
    }

    /// Disassembly, as QEMU's capstone gives it (empty without capstone).
    pub fn disas(&self) -> String {
        // SAFETY: `raw` is live; the result is a g_malloc'd string we own.
        let p = unsafe { sys::qemu_plugin_insn_disas(self.raw) };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: `p` is a valid C string until freed below.
        let s = unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
        // SAFETY: `p` was allocated by glib and is freed once.
        unsafe { g_free(p.cast()) };
        s
    }

    /// Calls `P::on_mem(vcpu, info, vaddr, data)` at each of this
    /// instruction's memory accesses of the kinds `loads` and `stores` select.
    pub fn on_mem<P: Plugin>(&self, loads: bool, stores: bool, data: u64) {
        use sys::qemu_plugin_mem_rw as Rw;
        let rw = match (loads, stores) {
            (true, true) => Rw::QEMU_PLUGIN_MEM_RW,
            (true, false) => Rw::QEMU_PLUGIN_MEM_R,
            (false, true) => Rw::QEMU_PLUGIN_MEM_W,
            (false, false) => return,
        };
        // SAFETY: `raw` is live; the trampoline matches the callback type;
        // `data` is passed back as is and never dereferenced.
        unsafe {
            sys::qemu_plugin_register_vcpu_mem_cb(
                self.raw,
                Some(mem_trampoline::<P>),
                sys::qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                rw,
                data as *mut c_void,
            )
        }
    }

    /// Calls `P::on_trigger(vcpu, data)` each time this instruction is about
    /// to execute; with `read_regs`, the callback may read registers.
    pub fn on_trigger<P: Plugin>(&self, data: u64, read_regs: bool) {
        // SAFETY: `raw` is live; the trampoline matches the callback type;
        // `data` is passed back as is and never dereferenced.
        unsafe {
            sys::qemu_plugin_register_vcpu_insn_exec_cb(
                self.raw,
                Some(trigger_trampoline::<P>),
                cb_flags(read_regs),
                data as *mut c_void,
            )
        }
    }

    /// The symbol QEMU knows at this address (the guest's ELF symbols).
    pub fn symbol(&self) -> Option<String> {
        // SAFETY: `raw` is live; the result is a string owned by QEMU.
        unsafe { c_string(sys::qemu_plugin_insn_symbol(self.raw)) }
    }
}

fn cb_flags(read_regs: bool) -> sys::qemu_plugin_cb_flags {
    if read_regs {
        sys::qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS
    } else {
        sys::qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS
    }
}

/// A memory access, as QEMU describes it; valid during the memory callback.
#[derive(Clone, Copy)]
pub struct MemInfo(sys::qemu_plugin_meminfo_t);

impl MemInfo {
    /// QEMU's own description, as it is (see `stream::decode`).
    #[inline(always)]
    pub fn raw(self) -> u32 {
        self.0
    }

    /// Bytes accessed.
    #[inline(always)]
    pub fn size(self) -> u8 {
        // SAFETY: `qemu_plugin_meminfo_t` is a plain value; no preconditions.
        1u8 << unsafe { sys::qemu_plugin_mem_size_shift(self.0) }.min(7)
    }

    #[inline(always)]
    pub fn is_store(self) -> bool {
        // SAFETY: as in `size`.
        unsafe { sys::qemu_plugin_mem_is_store(self.0) }
    }

    #[inline(always)]
    pub fn is_sign_extended(self) -> bool {
        // SAFETY: as in `size`.
        unsafe { sys::qemu_plugin_mem_is_sign_extended(self.0) }
    }

    #[inline(always)]
    pub fn is_big_endian(self) -> bool {
        // SAFETY: as in `size`.
        unsafe { sys::qemu_plugin_mem_is_big_endian(self.0) }
    }

    /// The value loaded or stored: (low 64 bits, high 64 bits), for an
    /// access of `1 << size_shift` bytes (from `stream::decode`).
    ///
    /// Branch-free: the union's first 16 bytes are read whatever its type,
    /// and the bytes beyond the access's size masked off. (A `match` on
    /// the type compiles to a jump table whose target changes with every
    /// access size: a mispredicted jump per access.)
    #[inline(always)]
    pub fn value(self, size_shift: u32) -> (u64, u64) {
        // SAFETY: only valid inside the memory callback, where a `MemInfo`
        // exists (it is made by the trampoline and passed by value there).
        let v = unsafe { sys::qemu_plugin_mem_get_value(self.0) };
        // SAFETY: the union holds only integers, for which any bits are a
        // value; QEMU writes the member of the access's size (at offset 0),
        // and what lies beyond it is masked off below.
        let (lo, hi) = unsafe { (v.data.u128_.low, v.data.u128_.high) };
        let bits = 8u32 << size_shift.min(3);
        let mask = u64::MAX >> (64 - bits);
        (lo & mask, if size_shift == 4 { hi } else { 0 })
    }
}

extern "C" {
    // glib, which QEMU links, so these resolve at load like the API.
    fn g_free(p: *mut c_void);
    fn g_array_free(array: *mut sys::GArray, free_segment: c_int) -> *mut c_char;
    fn g_byte_array_new() -> *mut sys::GByteArray;
    fn g_byte_array_free(array: *mut sys::GByteArray, free_segment: c_int) -> *mut u8;
    fn g_byte_array_set_size(array: *mut sys::GByteArray, length: c_uint) -> *mut sys::GByteArray;
}

/// A guest register QEMU can read, by its GDB name (`rax`, `x0`, `sp`...).
pub struct Register {
    pub name: String,
    handle: *mut sys::qemu_plugin_register,
}

// SAFETY: the handle is an opaque register number that QEMU never
// dereferences as a pointer; it is valid on every vCPU of the guest.
unsafe impl Send for Register {}
// SAFETY: as above; it is only read.
unsafe impl Sync for Register {}

/// The registers of the current vCPU. Only inside a vCPU callback (QEMU
/// asserts that one runs on this thread).
pub fn registers() -> Vec<Register> {
    // SAFETY: called on a vCPU thread (see above); QEMU returns a GArray of
    // descriptors whose strings it owns, and the array is ours to free.
    unsafe {
        let array = sys::qemu_plugin_get_registers();
        if array.is_null() {
            return Vec::new();
        }
        let descriptors = std::slice::from_raw_parts(
            (*array).data as *const sys::qemu_plugin_reg_descriptor,
            (*array).len as usize,
        );
        let regs = descriptors
            .iter()
            .filter_map(|d| {
                Some(Register {
                    name: c_string(d.name)?,
                    handle: d.handle,
                })
            })
            .collect();
        g_array_free(array, 1);
        regs
    }
}

/// Reads guest registers and memory into a buffer it keeps; one per vCPU.
pub struct GuestReader {
    buf: *mut sys::GByteArray,
}

// SAFETY: the buffer is glib memory owned by this reader alone.
unsafe impl Send for GuestReader {}

impl GuestReader {
    pub fn new() -> GuestReader {
        // SAFETY: no preconditions.
        GuestReader {
            buf: unsafe { g_byte_array_new() },
        }
    }

    /// `len` bytes of guest memory at `addr`. Only inside a vCPU callback.
    pub fn read_memory(&mut self, addr: u64, len: usize) -> Option<Vec<u8>> {
        if self.buf.is_null() || len == 0 {
            return None;
        }
        // SAFETY: `buf` is a live GByteArray that QEMU resizes to `len`; the
        // caller runs on a vCPU thread.
        unsafe {
            if !sys::qemu_plugin_read_memory_vaddr(addr, self.buf, len) {
                return None;
            }
            let b = &*self.buf;
            Some(std::slice::from_raw_parts(b.data, (b.len as usize).min(len)).to_vec())
        }
    }

    /// The register's bytes, in the guest's byte order, as GDB gives them,
    /// until the next read. Only inside a vCPU callback of the vCPU to read
    /// (a syscall callback, or [`Plugin::on_regs`]).
    pub fn read(&mut self, reg: &Register) -> Option<&[u8]> {
        if self.buf.is_null() {
            return None;
        }
        // SAFETY: `buf` is a live GByteArray; the handle came from QEMU; the
        // caller runs on the vCPU's thread. QEMU appends the value to `buf`,
        // which is emptied first.
        unsafe {
            g_byte_array_set_size(self.buf, 0);
            let n = sys::qemu_plugin_read_register(reg.handle, self.buf);
            if n <= 0 {
                return None;
            }
            let b = &*self.buf;
            Some(std::slice::from_raw_parts(b.data, b.len as usize))
        }
    }
}

impl Default for GuestReader {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for GuestReader {
    fn drop(&mut self) {
        if !self.buf.is_null() {
            // SAFETY: allocated by g_byte_array_new, freed once.
            unsafe { g_byte_array_free(self.buf, 1) };
        }
    }
}

/// A per-vCPU 64-bit counter in a QEMU scoreboard, incremented inline.
pub struct Counter {
    score: *mut sys::qemu_plugin_scoreboard,
}

// SAFETY: the scoreboard is owned by QEMU and lives until freed at exit; it is
// only read through QEMU's API, which takes care of its own synchronisation.
unsafe impl Send for Counter {}
// SAFETY: the handle is only read; each access through it names one vCPU's
// slot, and is made on that vCPU's thread or while it is stopped (see `add`).
unsafe impl Sync for Counter {}

impl Counter {
    /// A new counter, zero on every vCPU.
    pub fn allocate() -> Counter {
        // SAFETY: no preconditions; QEMU zero-fills the new scoreboard.
        let score = unsafe { sys::qemu_plugin_scoreboard_new(std::mem::size_of::<u64>()) };
        Counter { score }
    }

    fn entry(&self) -> sys::qemu_plugin_u64 {
        sys::qemu_plugin_u64 {
            score: self.score,
            offset: 0,
        }
    }

    /// This counter's value on `vcpu`.
    pub fn get(&self, vcpu: u32) -> u64 {
        if vcpu >= num_vcpus() {
            return 0;
        }
        // SAFETY: the scoreboard is live and vcpu is below num_vcpus.
        unsafe { sys::qemu_plugin_u64_get(self.entry(), vcpu) }
    }

    /// Adds `n` to this counter on `vcpu`: from `vcpu`'s own thread, or
    /// while it is stopped.
    pub fn add(&self, vcpu: u32, n: u64) {
        if vcpu < num_vcpus() {
            // SAFETY: as in `get`.
            unsafe { sys::qemu_plugin_u64_add(self.entry(), vcpu, n) }
        }
    }

    /// Sets this counter on `vcpu`, under the same conditions as `add`.
    pub fn set(&self, vcpu: u32, value: u64) {
        if vcpu < num_vcpus() {
            // SAFETY: as in `get`.
            unsafe { sys::qemu_plugin_u64_set(self.entry(), vcpu, value) }
        }
    }
}

/// Most vCPUs (in linux-user: guest threads alive at once) the recorder
/// follows; events of vCPUs beyond are counted as lost.
pub const MAX_VCPUS: usize = 4096;

/// What a vCPU's slot in a [`PerVcpu`] holds before the vCPU first uses it.
pub trait VcpuSlot {
    const EMPTY: Self;
}

/// State owned by each vCPU, stored inline and reached by vCPU index with no
/// load but its own and no lock: QEMU runs the callbacks of a vCPU on that
/// vCPU's thread only, one at a time, so a vCPU's state is never touched by
/// two threads at once.
pub struct PerVcpu<T> {
    slots: [UnsafeCell<T>; MAX_VCPUS],
}

// SAFETY: a slot is only reached from its own vCPU's thread, or at exit when
// no vCPU runs (see `get` and `for_each_at_exit`); `T: Send` lets it be
// reached from whichever thread runs that vCPU.
unsafe impl<T: Send> Sync for PerVcpu<T> {}

impl<T: VcpuSlot> PerVcpu<T> {
    pub const fn new() -> Self {
        PerVcpu {
            slots: [const { UnsafeCell::new(T::EMPTY) }; MAX_VCPUS],
        }
    }
}

impl<T> PerVcpu<T> {
    /// `vcpu`'s state; `None` if `vcpu` is beyond [`MAX_VCPUS`]. Must only be
    /// called from a callback QEMU runs for `vcpu`, and the reference must
    /// not outlive that callback.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub fn get(&self, vcpu: u32) -> Option<&mut T> {
        let slot = self.slots.get(vcpu as usize)?;
        // SAFETY: only `vcpu`'s own thread reaches this slot here, one
        // callback at a time (see the type's doc), so this is the only
        // reference.
        Some(unsafe { &mut *slot.get() })
    }

    /// `vcpu`'s state, read from another thread. Only while `vcpu` runs no
    /// callback: in [`Plugin::on_reset`] (QEMU has stopped every vCPU; a
    /// thread that exits meanwhile must be held off by the caller), or at exit.
    pub fn get_stopped(&self, vcpu: u32) -> Option<&T> {
        let slot = self.slots.get(vcpu as usize)?;
        // SAFETY: per the contract above, no callback of `vcpu` writes the
        // slot while the reference lives; QEMU's stop (a mutex handshake)
        // orders its earlier writes before this read.
        Some(unsafe { &*slot.get() })
    }

    /// Runs `f` on every vCPU's state. Only for the exit callback: QEMU has
    /// then stopped instrumented code on every vCPU (it unregisters the
    /// callbacks and flushes all translated code before calling it).
    pub fn for_each_at_exit(&self, mut f: impl FnMut(u32, &mut T)) {
        for (vcpu, slot) in self.slots.iter().enumerate() {
            // SAFETY: as in `get`; no vCPU runs instrumented code now.
            f(vcpu as u32, unsafe { &mut *slot.get() });
        }
    }
}

impl<T: VcpuSlot> Default for PerVcpu<T> {
    fn default() -> Self {
        Self::new()
    }
}
