//! A recording session: one guest process's trace directory, its writer
//! threads and its manifest. The process that loaded the recorder has the
//! first; a forked child starts its own, in `processes/pid=N/` of the same
//! trace (its parent's threads did not survive the fork).
//!
//! Each session keeps a little disk space in reserve (`.qtrace-reserve`),
//! given back when a write fails, so that the open parts and the manifest
//! can still be sealed on a full disk; and a keeper thread that writes what
//! the block dictionary gained every second, so that a run killed with
//! SIGKILL keeps the addresses of the blocks its sealed parts name.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qtrace_format::manifest::ThreadTotals;
use qtrace_format::writer::PartLimits;
use qtrace_format::Manifest;

use crate::ledger::Ledger;
use crate::sink::{Sink, SinkConfig};

/// Space kept in reserve in each trace directory.
const RESERVE: &str = ".qtrace-reserve";
const RESERVE_BYTES: i64 = 1 << 20;
/// Where the recorder's messages also go: stderr belongs to the guest,
/// which may close it.
pub const LOG: &str = "recorder.log";
/// How often the keeper writes the new blocks of the dictionary.
const KEEP_EVERY: Duration = Duration::from_secs(1);

pub struct Session {
    pub root: PathBuf,
    pub pid: u32,
    pub sink: Sink,
    pub ledger: Arc<Ledger>,
    /// Every guest thread that has finished, with its totals.
    pub threads: Mutex<Vec<ThreadTotals>>,
    /// Events of vCPUs beyond `ffi::MAX_VCPUS`, which have no lane.
    pub lost_no_lane: AtomicU64,
    /// Rows of `block_dict` written, and the index of its next part.
    pub dict: Mutex<(usize, u32)>,
    /// Set at the end: the keeper stops.
    pub finished: AtomicBool,
}

/// How a session writes: the sink's settings but for its directory.
#[derive(Clone)]
pub struct Settings {
    pub buffer: usize,
    pub writers: usize,
    pub max_memory: u64,
    pub zstd: i32,
    pub limits: PartLimits,
}

static CURRENT: AtomicPtr<Session> = AtomicPtr::new(std::ptr::null_mut());

/// The session of this process, once started.
pub fn current() -> Option<&'static Session> {
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: sessions are leaked when started and never freed.
    unsafe { p.as_ref() }
}

/// Starts recording into `root` (created): the manifest is written at once,
/// the writers and the keeper (which calls `keep` every second) started.
pub fn start(
    root: &Path,
    manifest: Manifest,
    settings: &Settings,
    keep: fn(&'static Session),
) -> Result<&'static Session, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    reserve(root);
    let ledger = Arc::new(Ledger::new(root, manifest));
    ledger.write_now()?;
    let sink = Sink::start(&SinkConfig {
        root: root.to_path_buf(),
        buffer: settings.buffer,
        writers: settings.writers,
        max_memory: settings.max_memory,
        zstd: settings.zstd,
        limits: settings.limits,
        ledger: ledger.clone(),
    })
    .map_err(|e| format!("cannot start the writer threads: {e}"))?;
    let session: &'static Session = Box::leak(Box::new(Session {
        root: root.to_path_buf(),
        pid: std::process::id(),
        sink,
        ledger,
        threads: Mutex::new(Vec::new()),
        lost_no_lane: AtomicU64::new(0),
        dict: Mutex::new((0, 0)),
        finished: AtomicBool::new(false),
    }));
    CURRENT.store(session as *const Session as *mut Session, Ordering::Release);
    std::thread::Builder::new()
        .name("qtrace-keeper".into())
        .spawn(move || {
            crate::signals::block_in_this_thread();
            while !session.finished.load(Ordering::Relaxed) {
                std::thread::sleep(KEEP_EVERY);
                if session.finished.load(Ordering::Relaxed) || session.sink.stopped() {
                    break;
                }
                keep(session);
                if let Err(e) = session.ledger.tick() {
                    session.sink.fail(&e);
                }
            }
        })
        .map_err(|e| format!("cannot start the keeper thread: {e}"))?;
    Ok(session)
}

/// Sets space aside in `root` (best effort).
fn reserve(root: &Path) {
    let path = root.join(RESERVE);
    if let Ok(f) = std::fs::File::create(&path) {
        use std::os::fd::AsRawFd as _;
        // SAFETY: a valid open descriptor; posix_fallocate only sizes the file.
        unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, RESERVE_BYTES) };
    }
}

/// Gives the reserved space back: after a write error, and at the end.
pub fn release_reserve(root: &Path) {
    let _ = std::fs::remove_file(root.join(RESERVE));
}

/// Appends a message to the current session's log (opened and closed each
/// time: a guest may close descriptors it did not open).
pub fn log(line: &str) {
    let Some(s) = current() else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.root.join(LOG))
    {
        let _ = writeln!(f, "{line}");
    }
}
