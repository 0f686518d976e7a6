//! The plugin's options (`-plugin librecorder.so,out=run.parquet,zstd=3`),
//! parsed and checked at install: a wrong option refuses the load with a
//! message that names it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::filter::Filter;
use crate::triggers::TriggerOptions;

/// Every option, with its meaning, as printed when one is wrong.
pub const HELP: &str = "\
options: out=DIR (required: the trace directory, created; must not exist or be empty)
         zstd=1..22 (compression level, default 1)
         writers=1..16 (background writer threads, default 1)
         buffer=N (32-bit words per vCPU buffer, 1024..16777216, default 262144,
                   or 1048576 with mem=: a block takes 1 word, an access 3 to 7)
         max_memory=N[K|M|G] (bytes a vCPU may have handed to the writers and not yet written, default 64M)
         backpressure=wait|drop (when the writers fall behind: vCPUs wait (default, nothing lost),
                   or whole buffers are dropped and counted in the manifest)
         part_secs=S (seal a part file after S seconds, 0.05..3600, default 1)
         part_rows=N (seal a part file after N rows, default 67108864)
         disas=on|off (record disassembly and symbols of blocks, default on)
         mem=off|addr|values (record memory accesses: not, addresses only, or with values; default off)
         mem_rw=r|w|rw (which accesses: loads, stores or both; default rw)
         syscalls=on|off (record system calls, default on)
         modules=on|off (record the files mapped into the guest, with build ids, default on)
         ranges=START-END+... (record only blocks starting in these address ranges, END excluded)
         syms=PATTERN+... (record only blocks in symbols matching these globs; with ranges=, either)
         syscall_data=N (record up to N bytes of what read/write-like system calls transfer, default 0)
         regs=NAME+... (GDB names or globs of registers to record, e.g. rdi+rsi or x*)
         regs_at=syscalls|blocks|both (read them at each system call's entry, at block entry, or both; default syscalls)
         regs_every=N (with regs_at=blocks or both: read them at every N-th block of each vCPU, default 1)
         start=TRIGGER+... (record from when one fires: addr:ADDRESS, sym:PATTERN (function entry), icount:N, syscall:NAME|NUMBER; @K after addr, sym or syscall: the K-th hit)
         stop=TRIGGER+... (stop recording when one fires: the same, with icount:N counted from the window's start, or ret (the return of the function whose entry opened the window))
         windows=N|all (most windows start= opens, each until a stop, default 1)";

/// What of each memory access is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemMode {
    Off,
    Addr,
    Values,
}

/// Where the registers of `regs=` are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegsAt {
    Syscalls,
    Blocks,
    Both,
}

impl RegsAt {
    pub fn blocks(self) -> bool {
        self != RegsAt::Syscalls
    }

    pub fn syscalls(self) -> bool {
        self != RegsAt::Blocks
    }
}

/// Which memory accesses are recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemRw {
    Loads,
    Stores,
    Both,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub out: PathBuf,
    pub zstd: i32,
    pub writers: usize,
    pub buffer: usize,
    /// Bytes per vCPU handed over and not yet written.
    pub max_memory: u64,
    /// Drop buffers rather than wait when the writers fall behind.
    pub drop: bool,
    pub part_age: Duration,
    pub part_rows: u64,
    pub disas: bool,
    pub mem: MemMode,
    pub mem_rw: MemRw,
    pub syscalls: bool,
    /// Follow the files mapped into the guest (the `modules` table).
    pub modules: bool,
    /// Which blocks are recorded.
    pub filter: Filter,
    /// GDB names (globs) of the registers to record.
    pub regs: Vec<String>,
    /// Where they are read.
    pub regs_at: RegsAt,
    /// With `regs_at` blocks: read at every `regs_every`-th block of a vCPU.
    pub regs_every: u64,
    /// Most bytes of a system call's buffer to record; 0: none.
    pub syscall_data: usize,
    /// When recording starts and stops.
    pub triggers: TriggerOptions,
    /// The options exactly as given, for the manifest.
    pub given: BTreeMap<String, String>,
}

impl Options {
    /// Parses `key=value` arguments. The error names the offending option.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Options, String> {
        let mut out = None;
        let mut o = Options {
            out: PathBuf::new(),
            zstd: 1,
            writers: 1,
            buffer: 1 << 18,
            max_memory: 64 << 20,
            drop: false,
            part_age: Duration::from_secs(1),
            part_rows: 64 << 20,
            disas: true,
            mem: MemMode::Off,
            mem_rw: MemRw::Both,
            syscalls: true,
            modules: true,
            filter: Filter::default(),
            regs: Vec::new(),
            regs_at: RegsAt::Syscalls,
            regs_every: 1,
            syscall_data: 0,
            triggers: TriggerOptions::default(),
            given: BTreeMap::new(),
        };
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| format!("option `{arg}` is not key=value\n{HELP}"))?;
            if o.given.insert(key.to_string(), value.to_string()).is_some() {
                return Err(format!("option `{key}` given twice"));
            }
            match key {
                "out" if value.is_empty() => return Err("option `out` is empty".into()),
                "out" => out = Some(PathBuf::from(value)),
                "zstd" => o.zstd = int(key, value, 1, 22)? as i32,
                "writers" => o.writers = int(key, value, 1, 16)? as usize,
                "buffer" => o.buffer = int(key, value, 1024, 1 << 24)? as usize,
                "max_memory" => o.max_memory = bytes(key, value, 1 << 20, 1 << 40)?,
                "backpressure" => {
                    o.drop = match value {
                        "wait" => false,
                        "drop" => true,
                        _ => return Err(format!("backpressure={value}: expected wait or drop")),
                    }
                }
                "part_rows" => o.part_rows = int(key, value, 1024, u32::MAX as u64)?,
                "part_secs" => {
                    let secs: f64 = value
                        .parse()
                        .ok()
                        .filter(|s| (0.05..=3600.0).contains(s))
                        .ok_or_else(|| {
                            format!("option `part_secs={value}`: expected seconds in 0.05..3600")
                        })?;
                    o.part_age = Duration::from_secs_f64(secs);
                }
                "disas" => o.disas = boolean(key, value)?,
                "syscalls" => o.syscalls = boolean(key, value)?,
                "modules" => o.modules = boolean(key, value)?,
                "ranges" => o.filter.ranges = Filter::parse_ranges(value)?,
                "syms" => o.filter.syms = Filter::parse_syms(value)?,
                "syscall_data" => o.syscall_data = int(key, value, 0, 1 << 20)? as usize,
                "start" | "stop" => {
                    let list = TriggerOptions::parse_list(key, value)?;
                    match key {
                        "start" => o.triggers.start = list,
                        _ => o.triggers.stop = list,
                    }
                }
                "windows" => o.triggers.parse_windows(value)?,
                "regs" => {
                    o.regs = value.split('+').map(str::to_string).collect();
                    if o.regs.iter().any(String::is_empty) {
                        return Err(format!("option `regs={value}`: an empty register name"));
                    }
                }
                "regs_at" => {
                    o.regs_at = match value {
                        "syscalls" => RegsAt::Syscalls,
                        "blocks" => RegsAt::Blocks,
                        "both" => RegsAt::Both,
                        _ => {
                            return Err(format!(
                                "option `regs_at={value}`: expected syscalls, blocks or both"
                            ))
                        }
                    }
                }
                "regs_every" => o.regs_every = int(key, value, 1, u32::MAX as u64)?,
                "mem" => {
                    o.mem = match value {
                        "off" => MemMode::Off,
                        "addr" => MemMode::Addr,
                        "values" => MemMode::Values,
                        _ => {
                            return Err(format!(
                                "option `mem={value}`: expected off, addr or values"
                            ))
                        }
                    }
                }
                "mem_rw" => {
                    o.mem_rw = match value {
                        "r" => MemRw::Loads,
                        "w" => MemRw::Stores,
                        "rw" => MemRw::Both,
                        _ => return Err(format!("option `mem_rw={value}`: expected r, w or rw")),
                    }
                }
                _ => return Err(format!("unknown option `{key}`\n{HELP}")),
            }
        }
        if o.mem != MemMode::Off && !o.given.contains_key("buffer") {
            // Accesses fill buffers several times faster than blocks.
            o.buffer = 1 << 20;
        }
        o.out = out.ok_or_else(|| format!("option `out` is required\n{HELP}"))?;
        o.triggers.check()?;
        o.check_regs()?;
        Ok(o)
    }

    /// `regs_at` and `regs_every` only make sense together with `regs`, and
    /// registers at system calls only with the calls recorded.
    fn check_regs(&self) -> Result<(), String> {
        let given = |key: &str| self.given.get(key).map(|v| format!("{key}={v}"));
        if self.regs.is_empty() {
            if let Some(o) = given("regs_at").or_else(|| given("regs_every")) {
                return Err(format!(
                    "option `{o}` needs `regs=` (the registers to read)"
                ));
            }
            return Ok(());
        }
        if let (Some(o), false) = (given("regs_every"), self.regs_at.blocks()) {
            return Err(format!(
                "option `{o}` samples blocks: it needs `regs_at=blocks` or `regs_at=both`"
            ));
        }
        if self.regs_at.syscalls() && !self.syscalls {
            return Err(format!(
                "option `regs_at={}` reads registers at system calls, which `syscalls=off` \
                 leaves out: use `regs_at=blocks`",
                self.given.get("regs_at").map_or("syscalls", String::as_str)
            ));
        }
        Ok(())
    }
}

/// A size in bytes, with an optional K, M or G suffix (powers of 1024).
fn bytes(key: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    let (digits, shift) = match value.as_bytes().last() {
        Some(b'K' | b'k') => (&value[..value.len() - 1], 10),
        Some(b'M' | b'm') => (&value[..value.len() - 1], 20),
        Some(b'G' | b'g') => (&value[..value.len() - 1], 30),
        _ => (value, 0),
    };
    let n = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{key}={value}: expected a size such as 64M"))?;
    if n < min || n > max {
        return Err(format!("{key}={value}: expected {min} to {max} bytes"));
    }
    Ok(n)
}

fn int(key: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| format!("option `{key}={value}`: expected an integer in {min}..{max}"))
}

fn boolean(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("option `{key}={value}`: expected on or off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        let o = Options::parse(&["out=/tmp/t.parquet", "zstd=9", "disas=off"]).unwrap();
        assert_eq!(o.out, PathBuf::from("/tmp/t.parquet"));
        assert_eq!((o.zstd, o.writers, o.disas), (9, 1, false));
        assert!(o.syscalls);
        assert!(!Options::parse(&["out=x", "syscalls=off"]).unwrap().syscalls);
        assert!(o.modules);
        assert!(!Options::parse(&["out=x", "modules=off"]).unwrap().modules);
        assert_eq!(o.given.len(), 3);
        assert_eq!((o.max_memory, o.drop), (64 << 20, false));
        let o = Options::parse(&["out=x", "max_memory=16M", "backpressure=drop"]).unwrap();
        assert_eq!((o.max_memory, o.drop), (16 << 20, true));
    }

    #[test]
    fn registers_where_and_how_often() {
        let o = Options::parse(&["out=x", "regs=rax+r1*"]).unwrap();
        assert_eq!(
            (o.regs.len(), o.regs_at, o.regs_every),
            (2, RegsAt::Syscalls, 1)
        );
        let o = Options::parse(&["out=x", "regs=sp", "regs_at=both", "regs_every=64"]).unwrap();
        assert_eq!((o.regs_at, o.regs_every), (RegsAt::Both, 64));
        let o = Options::parse(&["out=x", "regs=pc", "regs_at=blocks", "syscalls=off"]).unwrap();
        assert!(o.regs_at.blocks() && !o.regs_at.syscalls());
    }

    #[test]
    fn errors_name_the_option() {
        for (args, needle) in [
            (vec!["zstd=3"], "`out` is required"),
            (vec!["out=x", "zstd=99"], "zstd=99"),
            (vec!["out=x", "colour=red"], "unknown option `colour`"),
            (vec!["out=x", "verbose"], "`verbose` is not key=value"),
            (vec!["out=x", "out=y"], "`out` given twice"),
            (vec!["out=x", "disas=maybe"], "disas=maybe"),
            (vec!["out=x", "part_secs=0"], "part_secs=0"),
            (vec!["out=x", "mem=all"], "mem=all"),
            (vec!["out=x", "mem_rw=x"], "mem_rw=x"),
            (vec!["out=x", "syscalls=maybe"], "syscalls=maybe"),
            (vec!["out=x", "modules=1"], "modules=1"),
            (vec!["out=x", "start=addr:0xzz"], "start=addr:0xzz"),
            (vec!["out=x", "stop=ret"], "stop=ret"),
            (vec!["out=x", "windows=0"], "windows=0"),
            (vec!["out=x", "max_memory=12Q"], "max_memory=12Q"),
            (vec!["out=x", "max_memory=1K"], "max_memory=1K"),
            (vec!["out=x", "backpressure=spill"], "backpressure=spill"),
            (vec!["out=x", "regs=rax", "regs_at=insns"], "regs_at=insns"),
            (
                vec!["out=x", "regs=rax", "regs_at=blocks", "regs_every=0"],
                "regs_every=0",
            ),
            (
                vec!["out=x", "regs_at=blocks"],
                "`regs_at=blocks` needs `regs=`",
            ),
            (
                vec!["out=x", "regs=rax", "regs_every=8"],
                "needs `regs_at=blocks`",
            ),
            (vec!["out=x", "regs=rax", "syscalls=off"], "`syscalls=off`"),
            (
                vec!["out=x", "regs=rax+", "regs_at=blocks"],
                "an empty register name",
            ),
        ] {
            let err = Options::parse(&args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
