//! `manifest.json`: what a trace holds and how the run ended. Written when
//! recording starts (`complete: false`, no `end`), rewritten atomically as
//! parts are sealed (each listed with its rows, sequence numbers and
//! checksum), and a last time when the run ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::layout::MANIFEST;
use crate::schema::RegSpec;
use crate::{Error, Result};

/// Name written in every manifest's `format` field.
pub const FORMAT_NAME: &str = "qtrace";
/// Bumped whenever a reader of the previous version could misread a trace.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Version of the recorder that wrote the trace.
    pub recorder_version: String,
    /// Version of the QEMU that ran the guest, where the recorder could tell.
    pub qemu_version: Option<String>,
    /// Guest architecture, as QEMU names it (`x86_64`, `aarch64`, ...).
    pub target: String,
    /// `linux-user` or `system`.
    pub mode: String,
    /// QEMU's command line, guest program and arguments included.
    pub command_line: Vec<String>,
    /// The plugin options as given.
    pub options: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    /// True once the recorder has written every table and sealed every part
    /// at the guest's exit. False means the run was cut short: what is sealed
    /// is readable, but later events are missing.
    pub complete: bool,
    /// Distinct translated blocks (rows of `block_dict`).
    pub distinct_blocks: u64,
    pub vcpus: Vec<VcpuTotals>,
    /// Every guest thread, in order of vCPU and start: in linux-user each
    /// thread runs on a vCPU index of its own, which a later thread may reuse.
    pub threads: Vec<ThreadTotals>,
    /// The recording windows, in order, when the recorder ran with start or
    /// stop triggers (options `start=`, `stop=`); empty without them.
    pub windows: Vec<Window>,
    /// The registers of the `regs` table, in column order (option `regs=`):
    /// its schema is `schema::regs_schema(&regs)`. Empty until the end, and
    /// without `regs`.
    pub regs: Vec<RegSpec>,
    /// The guest process recorded (in linux-user, QEMU's process id).
    pub pid: u32,
    /// For a trace of a forked child: the process it was forked from.
    pub parent_pid: Option<u32>,
    /// How the run ended; null while it runs and when it never finished
    /// (QEMU killed by SIGKILL, or the machine stopped). `qtrace record`,
    /// seeing QEMU die of a signal with `end` null, writes `how: killed`
    /// with the signal.
    pub end: Option<RunEnd>,
    /// Last time the manifest was rewritten (RFC 3339, UTC).
    pub updated_at: Option<String>,
    /// Every sealed part file, in the order they were sealed. A part on
    /// disk that is not listed was sealed after the last rewrite.
    pub parts: Vec<PartEntry>,
    /// Rows dropped by `backpressure=drop` when the writers fell behind.
    pub dropped: Vec<Dropped>,
    /// Forked children: each records into `processes/pid=N/`, a trace of its own.
    pub children: Vec<ChildProcess>,
    /// What went wrong while recording (write errors, lost events), one line each.
    pub errors: Vec<String>,
}

/// One sealed part file, as it was written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PartEntry {
    /// The file, relative to the trace's root, `/`-separated.
    pub path: String,
    pub table: String,
    /// The vCPU partition, for per-vCPU tables.
    pub vcpu: Option<u32>,
    /// The part's index in its partition (`part-000003.parquet` is 3).
    pub index: u32,
    pub rows: u64,
    /// `seq` of the part's first and last rows, for tables that have one.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Size of the file.
    pub bytes: u64,
    /// XXH3-64 of the file's bytes, 16 hex digits.
    pub xxh3: String,
}

/// How a run ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunEnd {
    /// `exit` (exit_group), `signal` (killed by a signal it did not
    /// handle), `crash` (a fault: SIGSEGV, SIGBUS, SIGILL, SIGFPE, abort),
    /// `exec` (replaced by execve), `killed` (QEMU killed before the
    /// recorder could finish: written by `qtrace record`).
    pub how: String,
    /// The exit status, for `exit`.
    pub exit_code: Option<i32>,
    /// The signal, for `signal` and `crash`, where known.
    pub signal: Option<i32>,
    /// Its name (`SIGINT`).
    pub signal_name: Option<String>,
    /// The guest thread that ended the run, where known.
    pub tid: Option<u32>,
}

impl RunEnd {
    /// The end of a run killed by `signal` before the recorder could say
    /// (SIGKILL): what `qtrace record` writes, having seen QEMU die.
    pub fn killed(signal: i32) -> RunEnd {
        RunEnd {
            how: "killed".into(),
            signal: Some(signal),
            signal_name: signal_name(signal),
            ..Default::default()
        }
    }

    /// In words: `exited with status 0`, `killed by SIGINT`, ...
    pub fn describe(&self) -> String {
        let sig = || match (&self.signal_name, self.signal) {
            (Some(name), _) => name.clone(),
            (None, Some(n)) => format!("signal {n}"),
            (None, None) => "a fault".into(),
        };
        match self.how.as_str() {
            "exit" => format!("exited with status {}", self.exit_code.unwrap_or(0)),
            "signal" => format!("killed by {}", sig()),
            "crash" => format!("crashed ({})", sig()),
            "exec" => "replaced by execve".into(),
            "killed" => format!("QEMU killed by {} before the recorder could finish", sig()),
            other => other.to_string(),
        }
    }
}

/// `SIGINT` for 2 (Linux's numbering, that of x86_64, AArch64 and RISC-V).
pub fn signal_name(sig: i32) -> Option<String> {
    let name = match sig {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        4 => "ILL",
        5 => "TRAP",
        6 => "ABRT",
        7 => "BUS",
        8 => "FPE",
        9 => "KILL",
        10 => "USR1",
        11 => "SEGV",
        12 => "USR2",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        16 => "STKFLT",
        24 => "XCPU",
        25 => "XFSZ",
        26 => "VTALRM",
        27 => "PROF",
        29 => "IO",
        30 => "PWR",
        31 => "SYS",
        _ => return None,
    };
    Some(format!("SIG{name}"))
}

/// Rows of one table and vCPU dropped because the writers were behind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dropped {
    pub table: String,
    pub vcpu: u32,
    pub rows: u64,
    /// Each dropped run of `seq`: `[first_seq, rows]`.
    pub ranges: Vec<(u64, u64)>,
}

/// A child process forked by the guest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildProcess {
    pub pid: u32,
    /// Its trace, relative to this trace's root.
    pub path: String,
    /// The vCPU and thread that forked it, and `seq` in `blocks` of the
    /// block that made the call.
    pub vcpu: u32,
    pub tid: u32,
    pub block_seq: u64,
}

/// One recording window: what opened and closed it, and the rows of
/// `blocks` it holds on each vCPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Window {
    /// 0, 1, 2... in the order the windows opened.
    pub index: u32,
    pub start: TriggerHit,
    pub stop: TriggerHit,
    /// The window's run of `seq` in `blocks/vcpu=N`, for every vCPU that
    /// recorded blocks in it, ordered by `vcpu`.
    pub vcpus: Vec<WindowRange>,
}

/// A trigger that fired.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TriggerHit {
    /// The trigger as given in the option (`sym:fnv1a*`, `addr:0x401234`,
    /// `icount:1000`, `syscall:write`, `ret`), or `begin` for a window open
    /// from the start (no `start=` option) and `exit` for one still open
    /// when the guest exited.
    pub trigger: String,
    /// The vCPU on which it fired (null for `begin` and `exit`).
    pub vcpu: Option<u32>,
    /// The guest thread on which it fired.
    pub tid: Option<u32>,
    /// The address of the instruction that fired it (`addr`, `sym`, `ret`).
    pub pc: Option<u64>,
}

/// A window's rows on one vCPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowRange {
    pub vcpu: u32,
    /// `seq` of the window's first row in `blocks/vcpu=N`.
    pub first_seq: u64,
    /// Rows of `blocks/vcpu=N` in the window, from `first_seq` on.
    pub block_events: u64,
}

/// One guest thread's run on its vCPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ThreadTotals {
    /// The guest's thread id (in linux-user, its Linux thread id; the main
    /// thread's is the process id).
    pub tid: u32,
    pub vcpu: u32,
    /// `seq` of the thread's first row in `blocks/vcpu=N`.
    pub first_seq: u64,
    /// Rows of `blocks/vcpu=N` the thread executed, from `first_seq` on.
    pub block_events: u64,
}

/// Totals of one vCPU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VcpuTotals {
    pub vcpu: u32,
    /// Block executions, from the inline counters.
    pub blocks: u64,
    /// Instructions executed, from the inline counters.
    pub insns: u64,
    /// Rows written to `blocks` (equal to `blocks` when nothing was lost).
    pub block_events: u64,
    /// Part files sealed in `blocks/vcpu=N`.
    pub parts: u32,
    /// Rows written to `mem` (memory accesses), when recorded.
    pub mem_accesses: u64,
    /// Rows written to `syscalls` (system calls), when recorded.
    pub syscalls: u64,
    /// Rows written to `regs` (registers read), when recorded.
    pub regs_rows: u64,
}

impl Manifest {
    pub fn new() -> Self {
        Manifest {
            format: FORMAT_NAME.to_string(),
            format_version: FORMAT_VERSION,
            started_at: now_rfc3339(),
            ..Default::default()
        }
    }

    /// Reads `root/manifest.json`.
    pub fn read(root: &Path) -> Result<Manifest> {
        let path = root.join(MANIFEST);
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| Error::corrupt(&path, format!("not a qtrace manifest: {e}")))?;
        if m.format != FORMAT_NAME {
            return Err(Error::corrupt(&path, "not a qtrace manifest"));
        }
        if m.format_version > FORMAT_VERSION {
            return Err(Error::corrupt(
                &path,
                format!(
                    "format version {} is newer than this qtrace reads ({FORMAT_VERSION})",
                    m.format_version
                ),
            ));
        }
        Ok(m)
    }

    /// Writes `root/manifest.json` atomically: a reader sees the old or the
    /// new manifest, never half of one.
    pub fn write(&self, root: &Path) -> Result<()> {
        let path = root.join(MANIFEST);
        let tmp = root.join(format!(".{MANIFEST}.tmp"));
        let mut text = serde_json::to_vec_pretty(self).expect("manifest serialises");
        text.push(b'\n');
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            std::io::Write::write_all(&mut f, &text)?;
            f.sync_data()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// How the run ended, in words (`never finished` while `end` is null).
    pub fn ending(&self) -> String {
        self.end
            .as_ref()
            .map_or_else(|| "never finished".to_string(), RunEnd::describe)
    }

    /// Lists a sealed part, replacing an earlier entry for the same file (a
    /// small table rewritten whole).
    pub fn add_part(&mut self, part: PartEntry) {
        match self.parts.iter_mut().find(|p| p.path == part.path) {
            Some(p) => *p = part,
            None => self.parts.push(part),
        }
    }
}

/// The current time in RFC 3339, UTC, to the millisecond.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Manifest::new();
        m.target = "x86_64".into();
        m.vcpus.push(VcpuTotals {
            vcpu: 0,
            blocks: 3,
            ..Default::default()
        });
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);

        std::fs::write(dir.path().join(MANIFEST), b"{\"a\": 1}").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json"), "{err}");
    }
}
