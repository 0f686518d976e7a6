//! Renders a recorded system call as strace writes it:
//! `openat(AT_FDCWD, 0x7ffd1000, O_RDONLY|O_CLOEXEC) = 3`.
//!
//! The trace holds each call's raw argument registers, its return value,
//! and for read- and write-like calls the bytes transferred (`data`, with
//! the recorder option `syscall_data=N`), but no other guest memory: path
//! names and structures show as their addresses. Arguments are decoded
//! "where simple": descriptors and counts in decimal, pointers in hex,
//! and the flag sets and constants of common calls by name. A call this
//! module does not know shows its six argument registers in hex.
//!
//! Constants are Linux's for x86_64, AArch64 and RISC-V, which share most
//! of them; where they differ (AArch64's `O_DIRECTORY` family, x86_64's
//! `MAP_32BIT` and `arch_prctl`) the guest architecture decides.

use qtrace_format::errno;

/// The guest architecture, where constants differ between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Riscv64,
    Other,
}

impl Arch {
    pub fn from_target(target: &str) -> Arch {
        match target {
            "x86_64" => Arch::X86_64,
            "aarch64" => Arch::Aarch64,
            "riscv64" => Arch::Riscv64,
            _ => Arch::Other,
        }
    }
}

/// How one argument is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arg {
    /// A file descriptor: a C `int`, in decimal.
    Fd,
    /// A directory descriptor of the `*at` calls: `AT_FDCWD` or a descriptor.
    Dirfd,
    /// A C `int`, in decimal.
    Int,
    /// A 64-bit signed value (offsets), in decimal.
    Long,
    /// A size or count, in decimal.
    UInt,
    /// A value best read in hex (flags this module does not name, requests).
    Hex,
    /// An address: `NULL` or hex.
    Ptr,
    /// The buffer a call writes out (`write`): `data` if recorded, else its
    /// address. Its length is the next argument.
    BufIn,
    /// The buffer a call fills (`read`): `data` if recorded, else its
    /// address. Its length is the return value.
    BufOut,
    /// A file mode, in octal.
    Mode,
    OpenFlags,
    Prot,
    MapFlags,
    Whence,
    AtFlags,
    /// `unlinkat`'s flags, where 0x200 is `AT_REMOVEDIR`.
    UnlinkFlags,
    Access,
    Signal,
    SigHow,
    Fcntl,
    Futex,
    ArchPrctl,
    Clock,
    Resource,
    /// `clone`'s flags, with the exit signal in the low byte.
    CloneFlags,
}

use Arg::*;

/// The arguments of the calls decoded here, by name.
fn signature(name: &str) -> Option<&'static [Arg]> {
    Some(match name {
        "read" => &[Fd, BufOut, UInt],
        "write" => &[Fd, BufIn, UInt],
        "pread64" => &[Fd, BufOut, UInt, Long],
        "pwrite64" => &[Fd, BufIn, UInt, Long],
        "readv" | "writev" => &[Fd, Ptr, Int],
        "preadv" | "pwritev" => &[Fd, Ptr, Int, Long],
        "sendto" => &[Fd, BufIn, UInt, Hex, Ptr, Int],
        "recvfrom" => &[Fd, BufOut, UInt, Hex, Ptr, Ptr],
        "getrandom" => &[BufOut, UInt, Hex],
        "open" => &[Ptr, OpenFlags, Mode],
        "openat" => &[Dirfd, Ptr, OpenFlags, Mode],
        "creat" => &[Ptr, Mode],
        "close" | "fsync" | "fdatasync" | "fchdir" | "dup" => &[Fd],
        "dup2" => &[Fd, Fd],
        "dup3" => &[Fd, Fd, OpenFlags],
        "pipe" => &[Ptr],
        "pipe2" => &[Ptr, OpenFlags],
        "lseek" => &[Fd, Long, Whence],
        "ftruncate" => &[Fd, Long],
        "fcntl" => &[Fd, Fcntl, Hex],
        "ioctl" => &[Fd, Hex, Hex],
        "mmap" => &[Ptr, UInt, Prot, MapFlags, Fd, Hex],
        "munmap" => &[Ptr, UInt],
        "mprotect" => &[Ptr, UInt, Prot],
        "mremap" => &[Ptr, UInt, UInt, Hex, Ptr],
        "madvise" => &[Ptr, UInt, Int],
        "brk" => &[Ptr],
        "fstat" | "fstatfs" => &[Fd, Ptr],
        "statfs" => &[Ptr, Ptr],
        "stat" | "lstat" => &[Ptr, Ptr],
        "newfstatat" => &[Dirfd, Ptr, Ptr, AtFlags],
        "statx" => &[Dirfd, Ptr, AtFlags, Hex, Ptr],
        "access" => &[Ptr, Access],
        "faccessat" => &[Dirfd, Ptr, Access],
        "faccessat2" => &[Dirfd, Ptr, Access, AtFlags],
        "readlink" => &[Ptr, Ptr, UInt],
        "readlinkat" => &[Dirfd, Ptr, Ptr, UInt],
        "getdents64" => &[Fd, Ptr, UInt],
        "getcwd" => &[Ptr, UInt],
        "chdir" | "unlink" | "rmdir" | "uname" | "sysinfo" | "set_tid_address" => &[Ptr],
        "unlinkat" => &[Dirfd, Ptr, UnlinkFlags],
        "mkdir" | "chmod" => &[Ptr, Mode],
        "mkdirat" | "fchmodat" => &[Dirfd, Ptr, Mode],
        "fchmod" => &[Fd, Mode],
        "umask" => &[Mode],
        "exit" | "exit_group" => &[Int],
        "kill" | "tkill" => &[Int, Signal],
        "tgkill" => &[Int, Int, Signal],
        "rt_sigaction" => &[Signal, Ptr, Ptr, UInt],
        "rt_sigprocmask" => &[SigHow, Ptr, Ptr, UInt],
        "sigaltstack" | "nanosleep" | "gettimeofday" => &[Ptr, Ptr],
        "rt_sigreturn" | "getpid" | "getppid" | "gettid" | "getuid" | "geteuid" | "getgid"
        | "getegid" | "sched_yield" | "fork" | "vfork" | "pause" | "setsid" => &[],
        "set_robust_list" => &[Ptr, UInt],
        "rseq" => &[Ptr, UInt, Hex, Hex],
        "arch_prctl" => &[ArchPrctl, Hex],
        "prlimit64" => &[Int, Resource, Ptr, Ptr],
        "getrlimit" | "setrlimit" => &[Resource, Ptr],
        "futex" => &[Ptr, Futex, Int, Ptr, Ptr, Int],
        "wait4" => &[Int, Ptr, Hex, Ptr],
        "execve" => &[Ptr, Ptr, Ptr],
        "execveat" => &[Dirfd, Ptr, Ptr, Ptr, AtFlags],
        "clone" => &[CloneFlags, Ptr, Ptr, Ptr, Ptr],
        "clone3" => &[Ptr, UInt],
        "clock_gettime" | "clock_getres" => &[Clock, Ptr],
        "clock_nanosleep" => &[Clock, Hex, Ptr, Ptr],
        "sched_getaffinity" | "sched_setaffinity" => &[Int, UInt, Ptr],
        "poll" => &[Ptr, UInt, Int],
        "ppoll" => &[Ptr, UInt, Ptr, Ptr, UInt],
        "socket" => &[Int, Int, Int],
        "connect" | "bind" => &[Fd, Ptr, Int],
        "membarrier" => &[Int, Hex, Int],
        _ => return None,
    })
}

/// What to render: one row of `syscalls`.
pub struct Call<'a> {
    pub name: Option<&'a str>,
    pub num: i64,
    pub args: [u64; 6],
    pub ret: Option<i64>,
    pub data: Option<&'a [u8]>,
}

/// `name(args) = result`; `string_limit` caps the bytes of a buffer shown.
pub fn render(arch: Arch, call: &Call, string_limit: usize) -> String {
    let name = call
        .name
        .map_or_else(|| format!("syscall_{}", call.num), str::to_string);
    let sig = call.name.and_then(signature);
    let mut shown: Vec<String> = match sig {
        Some(kinds) => kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| arg(arch, kind, i, call, string_limit))
            .collect(),
        None => call.args.iter().map(|&a| format!("{a:#x}")).collect(),
    };
    // strace shows `open`'s mode only when the call may create the file.
    if matches!(call.name, Some("open" | "openat")) {
        let flags = call.args[shown.len() - 2];
        if flags & (O_CREAT | O_TMPFILE) == 0 {
            shown.pop();
        }
    }
    format!("{name}({}) = {}", shown.join(", "), result(call))
}

/// The result: `3`, `0x7f0000000000` (calls returning addresses),
/// `-1 ENOENT (No such file or directory)`, or `?` (never returned).
pub fn result(call: &Call) -> String {
    let Some(ret) = call.ret else {
        return "?".to_string();
    };
    if let Some(e) = errno_of(ret) {
        return match (errno::name(e), errno::message(e)) {
            (Some(name), Some(msg)) => format!("-1 {name} ({msg})"),
            _ => format!("-1 (errno {e})"),
        };
    }
    match call.name {
        Some("mmap" | "mremap" | "brk" | "shmat") => format!("{ret:#x}"),
        _ => ret.to_string(),
    }
}

/// The error number of a return value: Linux returns -1..-4095 for errors.
pub fn errno_of(ret: i64) -> Option<i32> {
    (-4095..=-1).contains(&ret).then(|| (-ret) as i32)
}

fn arg(arch: Arch, kind: Arg, i: usize, call: &Call, limit: usize) -> String {
    let v = call.args[i];
    match kind {
        Fd | Int => (v as i32).to_string(),
        Dirfd if v as i32 == AT_FDCWD => "AT_FDCWD".to_string(),
        Dirfd => (v as i32).to_string(),
        Long => (v as i64).to_string(),
        UInt => v.to_string(),
        Hex => format!("{v:#x}"),
        Ptr => pointer(v),
        BufIn => match call.data {
            // What was written: up to the length argument.
            Some(d) => quoted(d, call.args.get(i + 1).copied().unwrap_or(0), limit),
            None => pointer(v),
        },
        BufOut => match (call.data, call.ret) {
            // What was read: up to the return value.
            (Some(d), Some(r)) if r >= 0 => quoted(d, r as u64, limit),
            _ => pointer(v),
        },
        Mode => mode(v as u32),
        OpenFlags => open_flags(arch, v),
        Prot => flags(v, &prot_names(arch), "PROT_NONE"),
        MapFlags => map_flags(arch, v),
        Whence => constant(v, WHENCE),
        AtFlags => flags(v, AT_FLAGS, "0"),
        UnlinkFlags => flags(v, &[(0x200, "AT_REMOVEDIR")], "0"),
        Access => flags(v, ACCESS, "F_OK"),
        Signal => signal(v),
        SigHow => constant(v, SIG_HOW),
        Fcntl => constant(v, FCNTL),
        Futex => futex_op(v),
        ArchPrctl if arch == Arch::X86_64 => constant(v, ARCH_PRCTL),
        ArchPrctl => format!("{v:#x}"),
        Clock => constant(v, CLOCKS),
        Resource => constant(v, RESOURCES),
        CloneFlags => clone_flags(v),
    }
}

fn pointer(v: u64) -> String {
    if v == 0 {
        "NULL".to_string()
    } else {
        format!("{v:#x}")
    }
}

/// A file mode as C's `%#03o` writes it (strace's way): `0644`, `000`.
fn mode(v: u32) -> String {
    let octal = format!("{v:o}");
    if octal.len() < 3 {
        format!("{octal:0>3}")
    } else {
        format!("0{octal}")
    }
}

/// A buffer as a C string literal, as strace writes it: at most `limit`
/// bytes, then `...` when the call transferred more than is shown
/// (`transferred` bytes, of which the trace may hold fewer).
pub fn quoted(data: &[u8], transferred: u64, limit: usize) -> String {
    let shown = &data[..data.len().min(limit)];
    let mut s = String::with_capacity(shown.len() + 2);
    s.push('"');
    for (i, &b) in shown.iter().enumerate() {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            0x0b => s.push_str("\\v"),
            0x0c => s.push_str("\\f"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                // Octal, as short as it can be unless a digit follows, which
                // would read as part of it.
                let next_is_digit = shown.get(i + 1).is_some_and(u8::is_ascii_digit);
                if next_is_digit {
                    s.push_str(&format!("\\{b:03o}"));
                } else {
                    s.push_str(&format!("\\{b:o}"));
                }
            }
        }
    }
    s.push('"');
    if (shown.len() as u64) < transferred {
        s.push_str("...");
    }
    s
}

/// `A|B|0x40`: the names of the bits set, then what is left in hex.
fn flags(v: u64, names: &[(u64, &str)], zero: &str) -> String {
    if v == 0 {
        return zero.to_string();
    }
    let mut parts = Vec::new();
    let mut rest = v;
    for &(bit, name) in names {
        if bit != 0 && rest & bit == bit {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// The name of a constant, or the number in decimal.
fn constant(v: u64, names: &[(u64, &str)]) -> String {
    names
        .iter()
        .find(|&&(n, _)| n == v)
        .map_or_else(|| (v as i64).to_string(), |&(_, name)| name.to_string())
}

const AT_FDCWD: i32 = -100;
const O_CREAT: u64 = 0o100;
/// `__O_TMPFILE` (`O_TMPFILE` also sets `O_DIRECTORY`).
const O_TMPFILE: u64 = 0o20000000;

fn open_flags(arch: Arch, v: u64) -> String {
    let mode = match v & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    // AArch64 takes these four from 32-bit ARM; the others use the generic
    // values.
    let (directory, nofollow, direct, largefile) = if arch == Arch::Aarch64 {
        (0o40000, 0o100000, 0o200000, 0o400000)
    } else {
        (0o200000, 0o400000, 0o40000, 0o100000)
    };
    let names = [
        (O_CREAT, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        // O_SYNC is __O_SYNC with O_DSYNC: name it before O_DSYNC.
        (0o4010000, "O_SYNC"),
        (0o10000, "O_DSYNC"),
        (0o20000, "O_ASYNC"),
        (direct, "O_DIRECT"),
        (largefile, "O_LARGEFILE"),
        (O_TMPFILE | directory, "O_TMPFILE"),
        (directory, "O_DIRECTORY"),
        (nofollow, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
    ];
    let rest = flags(v & !3, &names, "");
    if rest.is_empty() {
        mode.to_string()
    } else {
        format!("{mode}|{rest}")
    }
}

fn prot_names(arch: Arch) -> Vec<(u64, &'static str)> {
    let mut names = vec![
        (1, "PROT_READ"),
        (2, "PROT_WRITE"),
        (4, "PROT_EXEC"),
        (0x8, "PROT_SEM"),
        (0x0100_0000, "PROT_GROWSDOWN"),
        (0x0200_0000, "PROT_GROWSUP"),
    ];
    if arch == Arch::Aarch64 {
        names.extend([(0x10, "PROT_BTI"), (0x20, "PROT_MTE")]);
    }
    names
}

fn map_flags(arch: Arch, v: u64) -> String {
    let kind = match v & 0xf {
        1 => "MAP_SHARED",
        2 => "MAP_PRIVATE",
        3 => "MAP_SHARED_VALIDATE",
        _ => "",
    };
    let mut names = vec![
        (0x10, "MAP_FIXED"),
        (0x20, "MAP_ANONYMOUS"),
        (0x100, "MAP_GROWSDOWN"),
        (0x800, "MAP_DENYWRITE"),
        (0x1000, "MAP_EXECUTABLE"),
        (0x2000, "MAP_LOCKED"),
        (0x4000, "MAP_NORESERVE"),
        (0x8000, "MAP_POPULATE"),
        (0x10000, "MAP_NONBLOCK"),
        (0x20000, "MAP_STACK"),
        (0x40000, "MAP_HUGETLB"),
        (0x80000, "MAP_SYNC"),
        (0x100000, "MAP_FIXED_NOREPLACE"),
        (0x4000000, "MAP_UNINITIALIZED"),
    ];
    if arch == Arch::X86_64 {
        names.push((0x40, "MAP_32BIT"));
    }
    let rest_bits = if kind.is_empty() { v } else { v & !0xf };
    let rest = flags(rest_bits, &names, "");
    match (kind, rest.as_str()) {
        ("", "") => "0".to_string(),
        (k, "") => k.to_string(),
        ("", r) => r.to_string(),
        (k, r) => format!("{k}|{r}"),
    }
}

fn signal(v: u64) -> String {
    let n = v as i32;
    match n {
        1..=31 => SIGNALS[n as usize - 1].to_string(),
        32..=64 => format!("SIGRT_{}", n - 32),
        _ => n.to_string(),
    }
}

fn clone_flags(v: u64) -> String {
    let flags = flags(v & !0xff, CLONE_FLAGS, "");
    let exit_signal = (v & 0xff != 0).then(|| signal(v & 0xff));
    match (flags.is_empty(), exit_signal) {
        (true, None) => "0".to_string(),
        (true, Some(s)) => s,
        (false, None) => flags,
        (false, Some(s)) => format!("{flags}|{s}"),
    }
}

fn futex_op(v: u64) -> String {
    const PRIVATE: u64 = 128;
    const CLOCK_REALTIME: u64 = 256;
    let mut s = constant(v & 0x7f, FUTEX_OPS);
    if v & PRIVATE != 0 {
        s.push_str("_PRIVATE");
    }
    if v & CLOCK_REALTIME != 0 {
        s.push_str("|FUTEX_CLOCK_REALTIME");
    }
    let rest = v & !(0x7f | PRIVATE | CLOCK_REALTIME);
    if rest != 0 {
        s.push_str(&format!("|{rest:#x}"));
    }
    s
}

const SIGNALS: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

const WHENCE: &[(u64, &str)] = &[
    (0, "SEEK_SET"),
    (1, "SEEK_CUR"),
    (2, "SEEK_END"),
    (3, "SEEK_DATA"),
    (4, "SEEK_HOLE"),
];

const AT_FLAGS: &[(u64, &str)] = &[
    (0x100, "AT_SYMLINK_NOFOLLOW"),
    (0x400, "AT_SYMLINK_FOLLOW"),
    (0x800, "AT_NO_AUTOMOUNT"),
    (0x1000, "AT_EMPTY_PATH"),
    (0x2000, "AT_STATX_FORCE_SYNC"),
    (0x4000, "AT_STATX_DONT_SYNC"),
    (0x8000, "AT_RECURSIVE"),
];

const ACCESS: &[(u64, &str)] = &[(4, "R_OK"), (2, "W_OK"), (1, "X_OK")];

const SIG_HOW: &[(u64, &str)] = &[(0, "SIG_BLOCK"), (1, "SIG_UNBLOCK"), (2, "SIG_SETMASK")];

const FCNTL: &[(u64, &str)] = &[
    (0, "F_DUPFD"),
    (1, "F_GETFD"),
    (2, "F_SETFD"),
    (3, "F_GETFL"),
    (4, "F_SETFL"),
    (5, "F_GETLK"),
    (6, "F_SETLK"),
    (7, "F_SETLKW"),
    (8, "F_SETOWN"),
    (9, "F_GETOWN"),
    (10, "F_SETSIG"),
    (11, "F_GETSIG"),
    (36, "F_OFD_GETLK"),
    (37, "F_OFD_SETLK"),
    (38, "F_OFD_SETLKW"),
    (1030, "F_DUPFD_CLOEXEC"),
    (1031, "F_SETPIPE_SZ"),
    (1032, "F_GETPIPE_SZ"),
    (1033, "F_ADD_SEALS"),
    (1034, "F_GET_SEALS"),
];

const FUTEX_OPS: &[(u64, &str)] = &[
    (0, "FUTEX_WAIT"),
    (1, "FUTEX_WAKE"),
    (2, "FUTEX_FD"),
    (3, "FUTEX_REQUEUE"),
    (4, "FUTEX_CMP_REQUEUE"),
    (5, "FUTEX_WAKE_OP"),
    (6, "FUTEX_LOCK_PI"),
    (7, "FUTEX_UNLOCK_PI"),
    (8, "FUTEX_TRYLOCK_PI"),
    (9, "FUTEX_WAIT_BITSET"),
    (10, "FUTEX_WAKE_BITSET"),
    (11, "FUTEX_WAIT_REQUEUE_PI"),
    (12, "FUTEX_CMP_REQUEUE_PI"),
    (13, "FUTEX_LOCK_PI2"),
];

const CLONE_FLAGS: &[(u64, &str)] = &[
    (0x100, "CLONE_VM"),
    (0x200, "CLONE_FS"),
    (0x400, "CLONE_FILES"),
    (0x800, "CLONE_SIGHAND"),
    (0x1000, "CLONE_PIDFD"),
    (0x2000, "CLONE_PTRACE"),
    (0x4000, "CLONE_VFORK"),
    (0x8000, "CLONE_PARENT"),
    (0x10000, "CLONE_THREAD"),
    (0x20000, "CLONE_NEWNS"),
    (0x40000, "CLONE_SYSVSEM"),
    (0x80000, "CLONE_SETTLS"),
    (0x100000, "CLONE_PARENT_SETTID"),
    (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x400000, "CLONE_DETACHED"),
    (0x800000, "CLONE_UNTRACED"),
    (0x1000000, "CLONE_CHILD_SETTID"),
    (0x2000000, "CLONE_NEWCGROUP"),
    (0x4000000, "CLONE_NEWUTS"),
    (0x8000000, "CLONE_NEWIPC"),
    (0x10000000, "CLONE_NEWUSER"),
    (0x20000000, "CLONE_NEWPID"),
    (0x40000000, "CLONE_NEWNET"),
    (0x80000000, "CLONE_IO"),
];

const ARCH_PRCTL: &[(u64, &str)] = &[
    (0x1001, "ARCH_SET_GS"),
    (0x1002, "ARCH_SET_FS"),
    (0x1003, "ARCH_GET_FS"),
    (0x1004, "ARCH_GET_GS"),
    (0x1011, "ARCH_GET_CPUID"),
    (0x1012, "ARCH_SET_CPUID"),
];

const CLOCKS: &[(u64, &str)] = &[
    (0, "CLOCK_REALTIME"),
    (1, "CLOCK_MONOTONIC"),
    (2, "CLOCK_PROCESS_CPUTIME_ID"),
    (3, "CLOCK_THREAD_CPUTIME_ID"),
    (4, "CLOCK_MONOTONIC_RAW"),
    (5, "CLOCK_REALTIME_COARSE"),
    (6, "CLOCK_MONOTONIC_COARSE"),
    (7, "CLOCK_BOOTTIME"),
    (8, "CLOCK_REALTIME_ALARM"),
    (9, "CLOCK_BOOTTIME_ALARM"),
    (11, "CLOCK_TAI"),
];

const RESOURCES: &[(u64, &str)] = &[
    (0, "RLIMIT_CPU"),
    (1, "RLIMIT_FSIZE"),
    (2, "RLIMIT_DATA"),
    (3, "RLIMIT_STACK"),
    (4, "RLIMIT_CORE"),
    (5, "RLIMIT_RSS"),
    (6, "RLIMIT_NPROC"),
    (7, "RLIMIT_NOFILE"),
    (8, "RLIMIT_MEMLOCK"),
    (9, "RLIMIT_AS"),
    (10, "RLIMIT_LOCKS"),
    (11, "RLIMIT_SIGPENDING"),
    (12, "RLIMIT_MSGQUEUE"),
    (13, "RLIMIT_NICE"),
    (14, "RLIMIT_RTPRIO"),
    (15, "RLIMIT_RTTIME"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(name: &'a str, args: &[u64], ret: Option<i64>, data: Option<&'a [u8]>) -> Call<'a> {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        Call {
            name: Some(name),
            num: 0,
            args: a,
            ret,
            data,
        }
    }

    fn r(arch: Arch, c: &Call) -> String {
        render(arch, c, 32)
    }

    #[test]
    fn open_flags_and_at_fdcwd() {
        let fdcwd = (-100i64) as u64;
        let c = call("openat", &[fdcwd, 0x4a1000, 0o2000000, 0], Some(3), None);
        assert_eq!(
            r(Arch::X86_64, &c),
            "openat(AT_FDCWD, 0x4a1000, O_RDONLY|O_CLOEXEC) = 3"
        );
        let c = call("openat", &[5, 0x10, 0o1101, 0o644], Some(-2), None);
        assert_eq!(
            r(Arch::X86_64, &c),
            "openat(5, 0x10, O_WRONLY|O_CREAT|O_TRUNC, 0644) = -1 ENOENT (No such file or directory)"
        );
        // AArch64's O_DIRECTORY is the generic O_DIRECT.
        let c = call("openat", &[fdcwd, 0x10, 0o40000, 0], Some(3), None);
        assert_eq!(
            r(Arch::Aarch64, &c),
            "openat(AT_FDCWD, 0x10, O_RDONLY|O_DIRECTORY) = 3"
        );
        assert_eq!(
            r(Arch::Riscv64, &c),
            "openat(AT_FDCWD, 0x10, O_RDONLY|O_DIRECT) = 3"
        );
    }

    #[test]
    fn mmap_and_results() {
        let c = call(
            "mmap",
            &[0, 8192, 3, 0x22, u64::MAX, 0],
            Some(0x7f00_0000_0000),
            None,
        );
        assert_eq!(
            r(Arch::X86_64, &c),
            "mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0) = 0x7f0000000000"
        );
        let c = call("mprotect", &[0x1000, 4096, 0], Some(0), None);
        assert_eq!(r(Arch::X86_64, &c), "mprotect(0x1000, 4096, PROT_NONE) = 0");
        let c = call("exit_group", &[0], None, None);
        assert_eq!(r(Arch::X86_64, &c), "exit_group(0) = ?");
        let c = call("rseq", &[0x10, 32, 0, 0x53053053], Some(-38), None);
        assert_eq!(
            r(Arch::X86_64, &c),
            "rseq(0x10, 32, 0x0, 0x53053053) = -1 ENOSYS (Function not implemented)"
        );
        let c = Call {
            name: None,
            num: 999,
            args: [1, 2, 3, 4, 5, 6],
            ret: Some(-5000),
            data: None,
        };
        assert_eq!(
            r(Arch::Other, &c),
            "syscall_999(0x1, 0x2, 0x3, 0x4, 0x5, 0x6) = -5000"
        );
    }

    #[test]
    fn buffers_as_c_strings() {
        let c = call("write", &[1, 0x1000, 6], Some(6), Some(b"hi\n\0\x1b1"));
        assert_eq!(r(Arch::X86_64, &c), "write(1, \"hi\\n\\0\\0331\", 6) = 6");
        // More written than recorded: `...`.
        let c = call("write", &[1, 0x1000, 100], Some(100), Some(b"ab"));
        assert_eq!(r(Arch::X86_64, &c), "write(1, \"ab\"..., 100) = 100");
        // Without data, or a read that failed: the address.
        let c = call("read", &[3, 0x1000, 100], Some(-11), Some(b""));
        assert_eq!(
            r(Arch::X86_64, &c),
            "read(3, 0x1000, 100) = -1 EAGAIN (Resource temporarily unavailable)"
        );
        let c = call("read", &[3, 0x1000, 100], Some(2), Some(b"\"\\"));
        assert_eq!(r(Arch::X86_64, &c), "read(3, \"\\\"\\\\\", 100) = 2");
        assert_eq!(
            quoted(&[b'x'; 40], 40, 32),
            format!("\"{}\"...", "x".repeat(32))
        );
    }

    #[test]
    fn constants() {
        assert_eq!(
            clone_flags(0x3d0f00),
            "CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|\
             CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID"
        );
        assert_eq!(
            clone_flags(0x1200011),
            "CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD"
        );
        assert_eq!(mode(0), "000");
        assert_eq!(mode(0o7), "007");
        assert_eq!(mode(0o644), "0644");
        assert_eq!(mode(0o4755), "04755");
        assert_eq!(signal(11), "SIGSEGV");
        assert_eq!(signal(31), "SIGSYS");
        assert_eq!(signal(33), "SIGRT_1");
        assert_eq!(
            futex_op(128 | 9 | 256),
            "FUTEX_WAIT_BITSET_PRIVATE|FUTEX_CLOCK_REALTIME"
        );
        let c = call("arch_prctl", &[0x1002, 0x4000], Some(0), None);
        assert_eq!(r(Arch::X86_64, &c), "arch_prctl(ARCH_SET_FS, 0x4000) = 0");
        let c = call("lseek", &[3, (-4i64) as u64, 2], Some(10), None);
        assert_eq!(r(Arch::X86_64, &c), "lseek(3, -4, SEEK_END) = 10");
        assert_eq!(
            flags(0x1100, AT_FLAGS, "0"),
            "AT_SYMLINK_NOFOLLOW|AT_EMPTY_PATH"
        );
        assert_eq!(flags(0x10001, AT_FLAGS, "0"), "0x10001");
        assert_eq!(map_flags(Arch::X86_64, 0x42), "MAP_PRIVATE|MAP_32BIT");
        assert_eq!(map_flags(Arch::Aarch64, 0x42), "MAP_PRIVATE|0x40");
    }
}
