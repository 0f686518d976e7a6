//! Start and stop triggers (options `start=`, `stop=`, `windows=`): the
//! recorder records only inside windows, which open when a start trigger
//! fires and close when a stop trigger fires.
//!
//! Whether code records is decided when it is translated. Outside a window a
//! block gets only what detects a start: a callback on a trigger's
//! instruction, or an inline instruction counter with a conditional callback
//! (`icount:`); system calls are seen by the system call callback. Inside a
//! window a block gets the recorder's usual callbacks, and what detects a
//! stop. A trigger that fires asks QEMU to reset the plugin
//! (`qemu_plugin_reset`): once every vCPU has stopped, QEMU flushes all
//! translated code, unregisters every callback and calls [`on_reset`], which
//! registers them again and switches the mode, so that all code is
//! translated again the new way. Until then the old code runs on, and its
//! callbacks keep arriving: another trigger meanwhile is ignored, and a
//! block is recorded exactly when the code that runs records it, so that
//! `blocks` and `block_counts` always agree.
//!
//! Windows are global, decided by whichever vCPU fires a trigger first. On
//! that vCPU a window starts with the block in which the trigger fired
//! (`addr:`, `sym:`) or the block right after it (`icount:`, `syscall:`) and
//! ends with the block in which the stop trigger fired; other vCPUs join and
//! leave at their next block boundary once the switch is done. Each
//! window's run of `seq` per vCPU goes to the manifest.
//!
//! What this module must never do: add work per block inside a window other
//! than what detects a stop, or call QEMU's reset while holding a lock that
//! [`on_reset`] takes (QEMU calls it with its own plugin lock held).

use crate::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, OnceLock};

use qtrace_format::{TriggerHit, Window, WindowRange};

use crate::ffi::{self, Counter, GuestReader, PluginId, Register, Tb};
use crate::filter::{glob, number};
use crate::modules;
use crate::recorder::{self, Recorder};
use qtrace_format::elf;
use qtrace_format::syscall_names;

/// What fires a trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The instruction at this address is about to execute.
    Addr(u64),
    /// The first instruction of a function whose name matches this glob.
    Sym(String),
    /// A vCPU has executed this many instructions: since the program began
    /// (start), or since the window opened (stop).
    Icount(u64),
    /// A system call is entered.
    Syscall(SyscallId),
    /// The function whose entry opened the window returns (stop only).
    Ret,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallId {
    Num(i64),
    Name(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub kind: Kind,
    /// Fires at its `nth` hit since it was armed (`@N`; 1 without).
    pub nth: u64,
    /// The trigger as given, for the manifest.
    pub text: String,
}

/// The options `start=`, `stop=` and `windows=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerOptions {
    pub start: Vec<Trigger>,
    pub stop: Vec<Trigger>,
    /// Most windows to open (`u64::MAX`: no limit).
    pub windows: u64,
    /// `windows=` was given.
    windows_given: bool,
}

impl Default for TriggerOptions {
    fn default() -> Self {
        TriggerOptions {
            start: Vec::new(),
            stop: Vec::new(),
            windows: 1,
            windows_given: false,
        }
    }
}

const EXPECTED: &str = "expected addr:ADDRESS, sym:PATTERN, icount:N or syscall:NAME|NUMBER";

impl TriggerOptions {
    /// Whether any trigger was given (without, the whole run is recorded).
    pub fn is_active(&self) -> bool {
        !self.start.is_empty() || !self.stop.is_empty()
    }

    /// `start=` or `stop=`: triggers joined by `+`.
    pub fn parse_list(key: &str, value: &str) -> Result<Vec<Trigger>, String> {
        let stop = key == "stop";
        value
            .split('+')
            .map(|text| {
                let bad = |why: &str| format!("option `{key}={value}`: `{text}`: {why}");
                if text == "ret" {
                    return if stop {
                        Ok(Trigger {
                            kind: Kind::Ret,
                            nth: 1,
                            text: text.into(),
                        })
                    } else {
                        Err(bad("ret is a stop trigger"))
                    };
                }
                let Some((kind, arg)) = text.split_once(':') else {
                    return Err(bad(EXPECTED));
                };
                // `@N`: the N-th hit (not for icount, which is a count already).
                let (arg, nth) = match arg.rsplit_once('@') {
                    Some((a, n)) if kind != "icount" => {
                        let n = n
                            .parse::<u64>()
                            .ok()
                            .filter(|&n| n >= 1)
                            .ok_or_else(|| bad("@N needs a count of 1 or more"))?;
                        (a, n)
                    }
                    _ => (arg, 1),
                };
                let kind = match kind {
                    "addr" => Kind::Addr(
                        number(arg).ok_or_else(|| bad("not an address (0x... or decimal)"))?,
                    ),
                    "sym" if !arg.is_empty() => Kind::Sym(arg.to_string()),
                    "sym" => return Err(bad("an empty pattern")),
                    "icount" => Kind::Icount(
                        arg.parse::<u64>()
                            .ok()
                            .filter(|&n| n >= 1)
                            .ok_or_else(|| bad("expected an instruction count of 1 or more"))?,
                    ),
                    "syscall" if arg.is_empty() => return Err(bad("no system call")),
                    "syscall" => Kind::Syscall(match arg.parse::<i64>() {
                        Ok(n) if n >= 0 => SyscallId::Num(n),
                        Ok(_) => return Err(bad("a negative system call number")),
                        Err(_) => SyscallId::Name(arg.to_string()),
                    }),
                    _ => return Err(bad(EXPECTED)),
                };
                Ok(Trigger {
                    kind,
                    nth,
                    text: text.to_string(),
                })
            })
            .collect()
    }

    /// `windows=N|all`.
    pub fn parse_windows(&mut self, value: &str) -> Result<(), String> {
        self.windows = match value {
            "all" => u64::MAX,
            _ => value
                .parse::<u64>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| {
                    format!(
                        "option `windows={value}`: expected a number of windows (1 or more) or all"
                    )
                })?,
        };
        self.windows_given = true;
        Ok(())
    }

    /// What the options mean together; one line naming the option if not sound.
    pub fn check(&self) -> Result<(), String> {
        let has = |list: &[Trigger], f: fn(&Kind) -> bool| list.iter().any(|t| f(&t.kind));
        if has(&self.stop, |k| matches!(k, Kind::Ret))
            && (self.start.is_empty()
                || has(&self.start, |k| !matches!(k, Kind::Addr(_) | Kind::Sym(_))))
        {
            return Err(
                "option `stop=ret`: needs start= triggers that are all function entries (addr: or sym:)"
                    .into(),
            );
        }
        if self.windows_given && self.windows != 1 {
            if self.start.is_empty() || self.stop.is_empty() {
                return Err(format!(
                    "option `windows={}`: more than one window needs both start= and stop=",
                    self.windows_text()
                ));
            }
            if !has(&self.start, |k| !matches!(k, Kind::Icount(_))) {
                return Err(format!(
                    "option `windows={}`: start=icount: opens one window only",
                    self.windows_text()
                ));
            }
        }
        for list in [&self.start, &self.stop] {
            if list
                .iter()
                .filter(|t| matches!(t.kind, Kind::Icount(_)))
                .count()
                > 1
            {
                return Err("options `start=`, `stop=`: one icount: trigger each at most".into());
            }
        }
        Ok(())
    }

    fn windows_text(&self) -> String {
        if self.windows == u64::MAX {
            "all".into()
        } else {
            self.windows.to_string()
        }
    }
}

/// Translated code records (inside a window).
const OPEN: u64 = 0;
/// Translated code watches for a start trigger.
const WATCHING: u64 = 1;
/// No window may open any more: translated code has nothing of ours.
const DONE: u64 = 2;

/// The mode translated code is in (low byte), and, while a switch to the
/// other mode is asked for and not done, the vCPU that asked plus one (the
/// bits above). One atomic, so that both are read together.
static SWITCH: AtomicU64 = AtomicU64::new(OPEN);

fn mode() -> u64 {
    SWITCH.load(SeqCst) & 0xff
}

/// The vCPU whose trigger started a switch that is not done yet.
fn switching() -> Option<u32> {
    match SWITCH.load(SeqCst) >> 8 {
        0 => None,
        v => Some((v - 1) as u32),
    }
}

/// Starts a switch from `from` asked by `vcpu`; false if another is under way
/// or the mode is not `from`.
fn begin_switch(from: u64, vcpu: u32) -> bool {
    let asked = from | ((vcpu as u64 + 1) << 8);
    SWITCH.compare_exchange(from, asked, SeqCst, SeqCst).is_ok()
}

/// Held while a vCPU's block lane changes where QEMU does not stop the vCPU
/// for a reset (its thread exits and the lane is retired; it hands its
/// buffer over in a system call), so that [`on_reset`] never reads a lane
/// while it changes.
static EXITS: Mutex<()> = Mutex::new(());

/// The return address and stack pointer read at the entry of the function
/// that opened the window (`stop=ret`), and who entered it: 0 when none.
static RET_ADDR: AtomicU64 = AtomicU64::new(0);
static RET_SP: AtomicU64 = AtomicU64::new(0);
static RET_WHO: AtomicU64 = AtomicU64::new(0);

/// `start=icount:` has fired: it never fires again.
static ICOUNT_SPENT: AtomicBool = AtomicBool::new(false);

static TRIGGERS: OnceLock<Triggers> = OnceLock::new();

/// A trigger as armed, with its hits since then.
struct Armed {
    trigger: Trigger,
    hits: AtomicU64,
    /// The system call number of a `syscall:` trigger.
    num: Option<i64>,
}

impl Armed {
    /// Counts a hit; whether the trigger fires (at the `nth` hit or later).
    fn hit(&self) -> bool {
        self.hits.fetch_add(1, SeqCst) + 1 >= self.trigger.nth
    }
}

struct Triggers {
    id: PluginId,
    /// The system call callbacks are registered (to register them again).
    syscall_cbs: bool,
    target: String,
    start: Vec<Armed>,
    stop: Vec<Armed>,
    /// `stop=ret`: start triggers read the return address.
    wants_ret: bool,
    /// `start=icount:N`: its index in `start`, N, and the instructions each
    /// vCPU executed since the program began.
    start_icount: Option<(usize, u64, Counter)>,
    /// `stop=icount:N`: its index in `stop`, N, and the instructions each
    /// vCPU executed since the window opened.
    stop_icount: Option<(usize, u64, Counter)>,
    /// Addresses of `addr:` and `sym:` triggers: known at install without
    /// `sym:` triggers, else found when the guest's first block executes.
    sites: OnceLock<Sites>,
    book: Mutex<Book>,
}

/// An address at which a trigger fires.
struct Site {
    addr: u64,
    stop: bool,
    /// Index in `start` or `stop`.
    trigger: usize,
}

struct Sites {
    list: Vec<Site>,
    by_addr: BTreeMap<u64, Vec<usize>>,
}

/// The windows so far.
struct Book {
    windows: Vec<Window>,
    current: Option<Current>,
    /// Windows that may still open.
    left: u64,
}

/// The window open (or opening).
struct Current {
    start: TriggerHit,
    /// The stop trigger that fired, while the window closes.
    stop: Option<TriggerHit>,
    /// The vCPU whose trigger opened it, and its first `seq` in it.
    opener: Option<(u32, u64)>,
    /// Instructions of the opening block (for `stop=icount:`).
    opener_insns: u64,
    /// Each vCPU's first `seq` in the window, once the switch is done.
    first: Option<Vec<u64>>,
}

impl Current {
    /// The window, closed when every vCPU's next `seq` is `end[vcpu]`.
    fn close(self, index: usize, end: &[u64], stop: TriggerHit) -> Window {
        let vcpus = end
            .iter()
            .enumerate()
            .filter_map(|(v, &end)| {
                let first = match (self.opener, &self.first) {
                    (Some((o, first)), _) if o as usize == v => first,
                    // A vCPU index new since the window opened starts at 0.
                    (_, Some(first)) => first.get(v).copied().unwrap_or(0),
                    // The switch never happened: only the opener recorded.
                    (_, None) => end,
                };
                (end > first).then_some(WindowRange {
                    vcpu: v as u32,
                    first_seq: first,
                    block_events: end - first,
                })
            })
            .collect();
        Window {
            index: index as u32,
            start: self.start,
            stop,
            vcpus,
        }
    }
}

fn named(trigger: &str) -> TriggerHit {
    TriggerHit {
        trigger: trigger.into(),
        ..Default::default()
    }
}

/// Whether the system call callbacks are needed for the triggers.
pub(crate) fn needs_syscalls(opts: &TriggerOptions) -> bool {
    opts.start
        .iter()
        .chain(&opts.stop)
        .any(|t| matches!(t.kind, Kind::Syscall(_)))
}

/// Arms the triggers at install. An error (an unknown system call name)
/// refuses the load.
pub(crate) fn install(
    opts: &TriggerOptions,
    id: PluginId,
    target: &str,
    syscall_cbs: bool,
) -> Result<(), String> {
    if !opts.is_active() {
        return Ok(());
    }
    let names = syscall_names::for_target(target);
    let arm = |key: &str, list: &[Trigger]| -> Result<Vec<Armed>, String> {
        list.iter()
            .map(|t| {
                let num = match &t.kind {
                    Kind::Syscall(SyscallId::Num(n)) => Some(*n),
                    Kind::Syscall(SyscallId::Name(name)) => Some(
                        names
                            .iter()
                            .find(|(_, n)| n == name)
                            .map(|&(num, _)| num)
                            .ok_or_else(|| {
                                format!(
                                    "option `{key}`: `{}`: {target} has no system call named `{name}` (give its number)",
                                    t.text
                                )
                            })?,
                    ),
                    _ => None,
                };
                Ok(Armed {
                    trigger: t.clone(),
                    hits: AtomicU64::new(0),
                    num,
                })
            })
            .collect()
    };
    let start = arm("start", &opts.start)?;
    let stop = arm("stop", &opts.stop)?;
    let wants_ret = stop.iter().any(|a| a.trigger.kind == Kind::Ret);
    if wants_ret && ret_registers_of(target).is_none() {
        return Err(format!("option `stop=ret`: not supported on {target}"));
    }
    let needs_elf = start
        .iter()
        .chain(&stop)
        .any(|a| matches!(a.trigger.kind, Kind::Sym(_)));
    if needs_elf && ret_registers_of(target).is_none() {
        return Err(format!(
            "options `start=`, `stop=`: sym: triggers are not supported on {target}"
        ));
    }
    let icount = |list: &[Armed]| {
        list.iter()
            .enumerate()
            .find_map(|(i, a)| match a.trigger.kind {
                Kind::Icount(n) => Some((i, n, Counter::allocate())),
                _ => None,
            })
    };
    let open_from_start = opts.start.is_empty();
    let triggers = Triggers {
        id,
        syscall_cbs,
        target: target.to_string(),
        start_icount: icount(&start),
        stop_icount: icount(&stop),
        start,
        stop,
        wants_ret,
        sites: OnceLock::new(),
        book: Mutex::new(Book {
            windows: Vec::new(),
            current: open_from_start.then(|| Current {
                start: named("begin"),
                stop: None,
                opener: None,
                opener_insns: 0,
                first: Some(Vec::new()),
            }),
            left: opts.windows - u64::from(open_from_start),
        }),
    };
    if !needs_elf {
        let sites = triggers.find_sites(None)?;
        let _ = triggers.sites.set(sites);
    }
    TRIGGERS
        .set(triggers)
        .map_err(|_| "the recorder is loaded twice".to_string())?;
    SWITCH.store(if open_from_start { OPEN } else { WATCHING }, SeqCst);
    Ok(())
}

/// How a block being translated is instrumented.
pub(crate) struct Plan {
    mode: u64,
    /// Outside a window: a start trigger's instruction is in the block.
    start_here: bool,
}

impl Plan {
    /// The block gets the recorder's callbacks and counter.
    pub(crate) fn records(&self) -> bool {
        self.mode == OPEN
    }

    /// The recorder must give the block an id (to record it, or for a start
    /// trigger to record it when it fires).
    pub(crate) fn needs_block_id(&self) -> bool {
        self.records() || self.start_here
    }
}

/// Decides, at translation, how `tb` is instrumented.
pub(crate) fn plan(tb: &Tb<'_>) -> Plan {
    let Some(t) = TRIGGERS.get() else {
        return Plan {
            mode: OPEN,
            start_here: false,
        };
    };
    let mode = mode();
    let start_here = mode == WATCHING
        && match t.sites.get() {
            Some(sites) => sites.in_block(tb).any(|(_, s)| !sites.list[s].stop),
            // The guest's first block, translated before the addresses are known.
            None => true,
        };
    Plan { mode, start_here }
}

/// Adds to `tb` what detects the triggers of its mode; `block` is its id
/// when the recorder gave it one. Called last, after the recorder's own
/// callbacks: callbacks run in the order they were registered.
pub(crate) fn instrument(tb: &Tb<'_>, plan: &Plan, block: Option<u32>) {
    let Some(t) = TRIGGERS.get() else { return };
    let n_insns = tb.n_insns() as u64;
    if let Some((i, n, total)) = &t.start_icount {
        // Counted inside windows too (it counts from the program's start),
        // until it has fired.
        if plan.mode != DONE && !ICOUNT_SPENT.load(SeqCst) {
            tb.add_inline(total, n_insns);
            if plan.mode == WATCHING {
                tb.on_trigger_at_least::<Recorder>(total, *n, pack(ICOUNT_START, *i, 0, None));
            }
        }
    }
    let Some(sites) = t.sites.get() else {
        // The guest's first block: its first execution finds the trigger
        // addresses (`RESOLVE`), then each instruction checks whether it is
        // one (`LATE`), since the block was translated before they were known.
        let addrs: Vec<u64> = tb.insns().map(|i| i.vaddr()).collect();
        let _ = FIRST_BLOCK.set(addrs);
        if plan.mode != DONE {
            tb.on_trigger::<Recorder>(pack(RESOLVE, 0, 0, None), true);
            for (i, insn) in tb.insns().enumerate() {
                insn.on_trigger::<Recorder>(pack(LATE, i, n_insns, block), t.wants_ret);
            }
        }
        return;
    };
    match plan.mode {
        WATCHING if plan.start_here => {
            for insn in tb.insns() {
                for &s in sites.at(insn.vaddr()) {
                    if !sites.list[s].stop {
                        let data = pack(SITE, s, n_insns, block);
                        insn.on_trigger::<Recorder>(data, t.wants_ret);
                    }
                }
            }
        }
        OPEN => {
            let ret = RET_ADDR.load(SeqCst);
            let any_stop = sites.in_block(tb).any(|(_, s)| sites.list[s].stop);
            if any_stop || ret != 0 {
                for insn in tb.insns() {
                    let pc = insn.vaddr();
                    for &s in sites.at(pc) {
                        if sites.list[s].stop {
                            insn.on_trigger::<Recorder>(pack(SITE, s, 0, None), false);
                        }
                    }
                    if pc == ret {
                        insn.on_trigger::<Recorder>(pack(RET, 0, 0, None), true);
                    }
                }
            }
        }
        _ => {}
    }
    if let (OPEN, Some((i, n, in_window))) = (plan.mode, &t.stop_icount) {
        tb.add_inline(in_window, n_insns);
        tb.on_trigger_at_least::<Recorder>(in_window, *n, pack(ICOUNT_STOP, *i, 0, None));
    }
}

// What a trigger callback's data says: which kind of trigger (bits 56..64),
// the index of its site, trigger or instruction (42..56), the instructions
// of its block (32..42) and the block's id (0..32, all ones for none).
const SITE: u64 = 1;
const ICOUNT_START: u64 = 2;
const ICOUNT_STOP: u64 = 3;
const RET: u64 = 4;
const RESOLVE: u64 = 5;
const LATE: u64 = 6;
const MAX_SITES: usize = (1 << 14) - 1;
const NO_BLOCK: u64 = u32::MAX as u64;

fn pack(kind: u64, index: usize, n_insns: u64, block: Option<u32>) -> u64 {
    let block = block.map_or(NO_BLOCK, u64::from);
    (kind << 56) | ((index as u64 & 0x3fff) << 42) | (n_insns.min(0x3ff) << 32) | block
}

/// The addresses of the instructions of the guest's first block.
static FIRST_BLOCK: OnceLock<Vec<u64>> = OnceLock::new();

/// A trigger's callback fired on `vcpu`.
pub(crate) fn on_hit(vcpu: u32, data: u64) {
    let Some(t) = TRIGGERS.get() else { return };
    let index = ((data >> 42) & 0x3fff) as usize;
    let block = (data & NO_BLOCK != NO_BLOCK).then_some(data as u32);
    let n_insns = (data >> 32) & 0x3ff;
    match data >> 56 {
        SITE => {
            if let Some(sites) = t.sites.get() {
                site_hit(t, sites, vcpu, index, block, n_insns);
            }
        }
        LATE => {
            let (Some(sites), Some(&pc)) =
                (t.sites.get(), FIRST_BLOCK.get().and_then(|a| a.get(index)))
            else {
                return;
            };
            for &s in sites.at(pc) {
                site_hit(t, sites, vcpu, s, block, n_insns);
            }
        }
        ICOUNT_START => {
            start_hit(t, vcpu, index, None, None, 0);
        }
        ICOUNT_STOP => stop_hit(t, vcpu, index, None),
        RET => ret_hit(t, vcpu),
        RESOLVE => {
            t.sites_from_guest();
        }
        _ => {}
    }
}

fn site_hit(t: &Triggers, sites: &Sites, vcpu: u32, s: usize, block: Option<u32>, n_insns: u64) {
    let Some(site) = sites.list.get(s) else {
        return;
    };
    if site.stop {
        stop_hit(t, vcpu, site.trigger, Some(site.addr));
    } else {
        start_hit(t, vcpu, site.trigger, Some(site.addr), block, n_insns);
    }
}

/// A start trigger fired: opens a window from the block it fired in
/// (`block`, recorded here since its own code does not record) or, without
/// one, from this vCPU's next block. Whether it opened one.
fn start_hit(
    t: &Triggers,
    vcpu: u32,
    index: usize,
    pc: Option<u64>,
    block: Option<u32>,
    n_insns: u64,
) -> bool {
    if SWITCH.load(SeqCst) != WATCHING {
        return false;
    }
    let Some(armed) = t.start.get(index) else {
        return false;
    };
    if !armed.hit() || !begin_switch(WATCHING, vcpu) {
        return false;
    }
    if matches!(armed.trigger.kind, Kind::Icount(_)) {
        ICOUNT_SPENT.store(true, SeqCst);
    }
    if t.wants_ret {
        set_return_target(t, vcpu);
    }
    let first = recorder::block_events(vcpu);
    if let Some(id) = block {
        recorder::record_block(vcpu, id);
    }
    {
        let mut book = lock(&t.book);
        book.left = book.left.saturating_sub(1);
        book.current = Some(Current {
            start: hit(&armed.trigger, vcpu, pc),
            stop: None,
            opener: Some((vcpu, first)),
            opener_insns: n_insns,
            first: None,
        });
    }
    ffi::reset::<Recorder>(t.id);
    true
}

/// A stop trigger fired: the window closes after this block.
fn stop_hit(t: &Triggers, vcpu: u32, index: usize, pc: Option<u64>) {
    if SWITCH.load(SeqCst) != OPEN {
        return;
    }
    let Some(armed) = t.stop.get(index) else {
        return;
    };
    if !armed.hit() || !begin_switch(OPEN, vcpu) {
        return;
    }
    if let Some(current) = lock(&t.book).current.as_mut() {
        current.stop = Some(hit(&armed.trigger, vcpu, pc));
    }
    ffi::reset::<Recorder>(t.id);
}

/// The return address of the function that opened the window is about to
/// execute: it is that function's return if it is the same thread with its
/// stack pointer back where it was at the entry (not a deeper, recursive call).
fn ret_hit(t: &Triggers, vcpu: u32) {
    if SWITCH.load(SeqCst) != OPEN {
        return;
    }
    let who = RET_WHO.load(SeqCst);
    if who as u32 != vcpu || (who >> 32) as u32 != recorder::current_tid() {
        return;
    }
    let Some(sp) = ret_registers(&t.target).and_then(|r| read_u64(&mut GuestReader::new(), &r.sp))
    else {
        return;
    };
    if sp < RET_SP.load(SeqCst) {
        return;
    }
    if let Some(index) = t.stop.iter().position(|a| a.trigger.kind == Kind::Ret) {
        stop_hit(t, vcpu, index, Some(RET_ADDR.load(SeqCst)));
    }
}

fn hit(trigger: &Trigger, vcpu: u32, pc: Option<u64>) -> TriggerHit {
    TriggerHit {
        trigger: trigger.text.clone(),
        vcpu: Some(vcpu),
        tid: Some(recorder::current_tid()),
        pc,
    }
}

/// At a system call's entry on `vcpu`: fires the `syscall:` triggers, and
/// says whether the call is recorded (`None`: it is outside every window) and
/// whether it opened a window (`Some(true)`; its `block_seq` is then the
/// window's first block, which follows it).
pub(crate) fn syscall(vcpu: u32, num: i64) -> Option<bool> {
    let Some(t) = TRIGGERS.get() else {
        return Some(false);
    };
    let mut opened = false;
    if mode() == WATCHING {
        if let Some(i) = t.start.iter().position(|a| a.num == Some(num)) {
            opened = start_hit(t, vcpu, i, None, None, 0);
        }
    }
    // The code now running on this vCPU decides, except for the vCPU whose
    // trigger asked for a switch: it is already in the new mode.
    let s = SWITCH.load(SeqCst);
    let open = s & 0xff == OPEN;
    let recording = if s >> 8 == vcpu as u64 + 1 {
        !open
    } else {
        open
    };
    if !recording {
        return None;
    }
    if open {
        if let Some(i) = t.stop.iter().position(|a| a.num == Some(num)) {
            stop_hit(t, vcpu, i, None);
        }
    }
    Some(opened)
}

/// QEMU finished a reset that a trigger asked for: every vCPU is stopped, the
/// translated code is gone and no callback is registered. Registers them
/// again, notes where each vCPU's rows of the window start or end, and
/// switches the mode that new code is translated in.
pub(crate) fn on_reset() {
    let Some(t) = TRIGGERS.get() else { return };
    ffi::register::<Recorder>(t.id, t.syscall_cbs);
    let Some(asker) = switching() else {
        return;
    };
    let _exits = lock(&EXITS);
    let nvcpus = ffi::num_vcpus();
    let events: Vec<u64> = (0..nvcpus).map(recorder::block_events_stopped).collect();
    let mut book = lock(&t.book);
    let next = if mode() == OPEN {
        if let Some(mut current) = book.current.take() {
            let stop = current.stop.take().unwrap_or_else(|| named("exit"));
            let index = book.windows.len();
            book.windows.push(current.close(index, &events, stop));
        }
        for a in &t.start {
            a.hits.store(0, SeqCst);
        }
        RET_ADDR.store(0, SeqCst);
        let spent = ICOUNT_SPENT.load(SeqCst);
        let can_start = t
            .start
            .iter()
            .any(|a| !(spent && matches!(a.trigger.kind, Kind::Icount(_))));
        if book.left > 0 && can_start {
            WATCHING
        } else {
            DONE
        }
    } else {
        let mut opener_insns = 0;
        if let Some(current) = book.current.as_mut() {
            current.first = Some(events);
            opener_insns = current.opener_insns;
        }
        if let Some((_, _, in_window)) = &t.stop_icount {
            for vcpu in 0..nvcpus {
                in_window.set(vcpu, if vcpu == asker { opener_insns } else { 0 });
            }
        }
        for a in &t.stop {
            a.hits.store(0, SeqCst);
        }
        OPEN
    };
    SWITCH.store(next, SeqCst);
}

/// Held by the recorder while a vCPU's thread exits (see [`EXITS`]).
pub(crate) fn hold_exits() -> Option<MutexGuard<'static, ()>> {
    TRIGGERS.get().map(|_| lock(&EXITS))
}

/// The windows for the manifest, at the guest's exit: a window still open
/// closes here.
pub(crate) fn windows_at_exit() -> Vec<Window> {
    let Some(t) = TRIGGERS.get() else {
        return Vec::new();
    };
    let events: Vec<u64> = (0..ffi::num_vcpus())
        .map(recorder::block_events_stopped)
        .collect();
    let mut book = lock(&t.book);
    if let Some(mut current) = book.current.take() {
        let stop = current.stop.take().unwrap_or_else(|| named("exit"));
        let index = book.windows.len();
        book.windows.push(current.close(index, &events, stop));
    }
    book.windows.clone()
}

impl Triggers {
    /// Finds the addresses of `sym:` triggers from the guest's own ELF file,
    /// at the first execution of its first block: the program's path and
    /// where it was loaded are in the auxiliary vector on the guest's initial
    /// stack (QEMU 10.0's linux-user does not export
    /// `qemu_plugin_path_to_binary`). A pattern that names no function ends
    /// the run before the guest's first instruction.
    fn sites_from_guest(&self) {
        if self.sites.get().is_some() {
            return;
        }
        let found = guest_program().and_then(|(path, entry)| {
            let funcs = elf::functions(std::path::Path::new(&path), entry)?;
            self.find_sites(Some((path, funcs)))
        });
        match found {
            Ok(sites) => {
                let _ = self.sites.set(sites);
            }
            Err(msg) => {
                warn!("qtrace: {msg}");
                recorder::discard_trace();
                ffi::exit_now(1)
            }
        }
    }

    /// The trigger addresses: `addr:` as given, `sym:` the entries of the
    /// matching `functions` of the program at `path`.
    fn find_sites(&self, functions: Option<(String, Vec<elf::Function>)>) -> Result<Sites, String> {
        let mut list = Vec::new();
        for (stop, armed) in [(false, &self.start), (true, &self.stop)] {
            let key = if stop { "stop" } else { "start" };
            for (trigger, a) in armed.iter().enumerate() {
                let addrs = match (&a.trigger.kind, &functions) {
                    (Kind::Addr(addr), _) => vec![*addr],
                    (Kind::Sym(pattern), Some((path, funcs))) => {
                        let mut addrs: Vec<u64> = funcs
                            .iter()
                            .filter(|f| glob(pattern.as_bytes(), f.name.as_bytes()))
                            .map(|f| f.addr)
                            .collect();
                        addrs.sort_unstable();
                        addrs.dedup();
                        if addrs.is_empty() {
                            return Err(format!(
                                "option `{key}`: `{}`: no function of {path} matches `{pattern}`",
                                a.trigger.text
                            ));
                        }
                        addrs
                    }
                    _ => continue,
                };
                list.extend(addrs.into_iter().map(|addr| Site {
                    addr,
                    stop,
                    trigger,
                }));
            }
        }
        if list.len() > MAX_SITES {
            return Err(format!(
                "options `start=`, `stop=`: {} trigger addresses (at most {MAX_SITES})",
                list.len()
            ));
        }
        let mut by_addr: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, s) in list.iter().enumerate() {
            by_addr.entry(s.addr).or_default().push(i);
        }
        Ok(Sites { list, by_addr })
    }
}

/// The guest program's path and entry point, from the auxiliary vector on
/// its stack (see `modules::auxiliary_vector`). Only in a callback, with
/// registers, on the guest's first block.
fn guest_program() -> Result<(String, u64), String> {
    let cannot =
        |what: &str| format!("options `start=`, `stop=`: sym: triggers cannot find {what}");
    let auxv =
        modules::auxiliary_vector().map_err(|e| cannot(&format!("the auxiliary vector ({e})")))?;
    let at = |t: u64| auxv.iter().find(|(k, _)| *k == t).map(|&(_, v)| v);
    let (Some(entry), Some(execfn)) = (at(modules::AT_ENTRY), at(modules::AT_EXECFN)) else {
        return Err(cannot("the program in the auxiliary vector"));
    };
    let path = modules::read_path(execfn).ok_or_else(|| cannot("the program's file name"))?;
    Ok((path, entry))
}

impl Sites {
    /// Sites at the addresses of `tb`'s instructions (from its first to its last).
    fn in_block<'a>(&'a self, tb: &Tb<'_>) -> impl Iterator<Item = (u64, usize)> + 'a {
        let lo = tb.vaddr();
        let hi = tb
            .n_insns()
            .checked_sub(1)
            .and_then(|last| tb.insn(last))
            .map_or(lo, |i| i.vaddr());
        self.by_addr
            .range(lo..=hi.max(lo))
            .flat_map(|(&a, sites)| sites.iter().map(move |&s| (a, s)))
    }

    fn at(&self, addr: u64) -> &[usize] {
        self.by_addr.get(&addr).map_or(&[], Vec::as_slice)
    }
}

/// The registers that give the stack pointer and return address at a
/// function's entry: GDB names, the return address's register (`None`: it is
/// on the stack, at the stack pointer).
fn ret_registers_of(target: &str) -> Option<(&'static str, Option<&'static str>)> {
    match target {
        "x86_64" => Some(("rsp", None)),
        "aarch64" => Some(("sp", Some("x30"))),
        "riscv64" => Some(("sp", Some("ra"))),
        _ => None,
    }
}

struct RetRegisters {
    sp: Register,
    ra: Option<Register>,
}

/// Found at the first use (QEMU lists registers only on a vCPU thread).
static RET_REGISTERS: OnceLock<Option<RetRegisters>> = OnceLock::new();

fn ret_registers(target: &str) -> Option<&'static RetRegisters> {
    RET_REGISTERS
        .get_or_init(|| {
            let (sp, ra) = ret_registers_of(target)?;
            let mut all = ffi::registers();
            let mut take = |name: &str| {
                let i = all.iter().position(|r| r.name == name)?;
                Some(all.swap_remove(i))
            };
            let found = RetRegisters {
                sp: take(sp)?,
                ra: match ra {
                    Some(ra) => Some(take(ra)?),
                    None => None,
                },
            };
            Some(found)
        })
        .as_ref()
}

fn read_u64(reader: &mut GuestReader, reg: &Register) -> Option<u64> {
    le_u64(reader.read(reg)?)
}

fn le_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// At the entry of the function that opens a window: where it returns to.
fn set_return_target(t: &Triggers, vcpu: u32) {
    let mut reader = GuestReader::new();
    let target = ret_registers(&t.target).and_then(|regs| {
        let sp = read_u64(&mut reader, &regs.sp)?;
        let ra = match &regs.ra {
            Some(ra) => read_u64(&mut reader, ra)?,
            None => le_u64(&reader.read_memory(sp, 8)?)?,
        };
        Some((sp, ra))
    });
    match target {
        Some((sp, ra)) => {
            RET_SP.store(sp, SeqCst);
            RET_WHO.store(
                (u64::from(recorder::current_tid()) << 32) | u64::from(vcpu),
                SeqCst,
            );
            RET_ADDR.store(ra, SeqCst);
        }
        None => {
            RET_ADDR.store(0, SeqCst);
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, SeqCst) {
                warn!("qtrace: stop=ret: cannot read the return address; the window lasts until another stop trigger or the exit");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<TriggerOptions, String> {
        let mut o = TriggerOptions::default();
        for a in args {
            let (k, v) = a.split_once('=').unwrap();
            match k {
                "start" => o.start = TriggerOptions::parse_list(k, v)?,
                "stop" => o.stop = TriggerOptions::parse_list(k, v)?,
                "windows" => o.parse_windows(v)?,
                _ => unreachable!(),
            }
        }
        o.check()?;
        Ok(o)
    }

    #[test]
    fn triggers_parse() {
        let o = parse(&[
            "start=sym:fnv1a*+addr:0x401000@3+syscall:write+syscall:60",
            "stop=ret+icount:1000",
            "windows=all",
        ])
        .unwrap_err();
        // ret needs every start trigger to be a function entry.
        assert!(o.contains("stop=ret"), "{o}");
        let o = parse(&[
            "start=sym:fnv1a*+addr:0x401000@3+syscall:write+syscall:60",
            "stop=icount:1000+sym:main",
            "windows=all",
        ])
        .unwrap();
        assert_eq!(o.windows, u64::MAX);
        assert_eq!(o.start[0].kind, Kind::Sym("fnv1a*".into()));
        assert_eq!(
            (&o.start[1].kind, o.start[1].nth),
            (&Kind::Addr(0x401000), 3)
        );
        assert_eq!(
            o.start[2].kind,
            Kind::Syscall(SyscallId::Name("write".into()))
        );
        assert_eq!(o.start[3].kind, Kind::Syscall(SyscallId::Num(60)));
        assert_eq!(o.stop[0].kind, Kind::Icount(1000));
        assert_eq!(o.start[1].text, "addr:0x401000@3");
        let o = parse(&["start=sym:f", "stop=ret", "windows=3"]).unwrap();
        assert_eq!((o.windows, &o.stop[0].kind), (3, &Kind::Ret));
        assert!(parse(&["start=icount:5"]).unwrap().is_active());
        assert!(!TriggerOptions::default().is_active());
    }

    #[test]
    fn bad_triggers_name_the_option_in_one_line() {
        for (args, needle) in [
            (&["start=addr:zz"][..], "start=addr:zz"),
            (&["start=nope:1"], "expected addr:"),
            (&["start=icount:0"], "icount:0"),
            (&["start=icount:-5"], "icount:-5"),
            (&["start=icount:10@2"], "icount:10@2"),
            (&["start=sym:"], "empty pattern"),
            (&["start=sym:f@0"], "@N"),
            (&["start=syscall:"], "no system call"),
            (&["start=syscall:-1"], "negative"),
            (&["start=ret"], "stop trigger"),
            (&["start=addr:1++addr:2"], "start=addr:1++addr:2"),
            (&["stop=ret"], "stop=ret"),
            (&["start=syscall:write", "stop=ret"], "stop=ret"),
            (&["start=sym:f", "windows=0"], "windows=0"),
            (&["start=sym:f", "windows=many"], "windows=many"),
            (&["start=sym:f", "windows=2"], "windows=2"),
            (&["start=icount:5", "stop=icount:5", "windows=2"], "icount"),
            (&["stop=icount:5+icount:6"], "one icount"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn data_packs_and_unpacks() {
        let d = pack(SITE, 12345, 511, Some(77));
        assert_eq!(d >> 56, SITE);
        assert_eq!(((d >> 42) & 0x3fff) as usize, 12345);
        assert_eq!((d >> 32) & 0x3ff, 511);
        assert_eq!(d as u32, 77);
        let d = pack(RET, 0, 0, None);
        assert_eq!(d & NO_BLOCK, NO_BLOCK);
    }

    #[test]
    fn a_window_closes_with_each_vcpus_rows() {
        let c = Current {
            start: named("sym:f"),
            stop: None,
            opener: Some((1, 40)),
            opener_insns: 3,
            first: Some(vec![10, 41, 7]),
        };
        let w = c.close(2, &[15, 50, 7, 4], named("ret"));
        assert_eq!(w.index, 2);
        let ranges: Vec<(u32, u64, u64)> = w
            .vcpus
            .iter()
            .map(|r| (r.vcpu, r.first_seq, r.block_events))
            .collect();
        // vCPU 1 opened it at 40; vCPU 2 recorded nothing; vCPU 3 is new.
        assert_eq!(ranges, vec![(0, 10, 5), (1, 40, 10), (3, 0, 4)]);
        // Closed before the switch was done: only the opener's rows.
        let c = Current {
            start: named("sym:f"),
            stop: None,
            opener: Some((1, 40)),
            opener_insns: 3,
            first: None,
        };
        let w = c.close(0, &[15, 50], named("exit"));
        assert_eq!(w.vcpus.len(), 1);
        assert_eq!((w.vcpus[0].vcpu, w.vcpus[0].first_seq), (1, 40));
    }
}
