//! `qtrace record`: runs a program under QEMU with the recorder plugin and
//! reports what was recorded.
//!
//! The recorder does the recording and validates its own options; this
//! module only finds the pieces, builds QEMU's command line, and must never
//! delete a directory that is not a trace.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{bail, Context, Result};
use qtrace_format::layout::MANIFEST;
use qtrace_format::manifest::{signal_name, RunEnd};
use qtrace_format::{Manifest, Table};

use crate::{info, locate};

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory to write.
    #[arg(short, long, value_name = "DIR", default_value = "run.parquet")]
    output: PathBuf,
    /// Replace DIR if it already holds a trace (or is empty).
    #[arg(long)]
    force: bool,
    /// Run QEMU and the guest with an empty environment, like `env -i`, which
    /// makes block counts repeatable from run to run.
    #[arg(long)]
    clean_env: bool,
    /// A recorder option, passed to the plugin as it is (`-O zstd=9`).
    #[arg(short = 'O', long = "option", value_name = "KEY=VALUE")]
    options: Vec<String>,
    /// An argument for QEMU itself, before the program (`--qemu-arg=-cpu
    /// --qemu-arg=max`); for example another plugin to run alongside.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<OsString>,
    /// The program to record, then its arguments: everything after PROGRAM
    /// is the program's, even what looks like a qtrace option.
    #[arg(
        value_name = "PROGRAM",
        required = true,
        trailing_var_arg = true,
        num_args = 1..
    )]
    command: Vec<OsString>,
}

pub fn run(args: Args) -> Result<u8> {
    for option in &args.options {
        check_option(option)?;
    }
    let program = locate::resolve_program(&args.command[0])?;
    let arch = locate::guest_arch(&program)?;
    let qemu = locate::qemu(arch)?;
    let recorder = locate::recorder()?;
    // Only now that everything else is known to be there, so that a failed
    // start never costs the user an earlier trace.
    let out = prepare_out_dir(&args.output, args.force)?;

    let plugin = plugin_arg(&recorder, &out, &args.options)?;
    let mut cmd = Command::new(&qemu);
    cmd.args(&args.qemu_args)
        .arg("-plugin")
        .arg(plugin)
        .arg(&program)
        .args(&args.command[1..]);
    if args.clean_env {
        cmd.env_clear();
    }

    forward_signals();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", qemu.display()))?;
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    let status = child
        .wait()
        .with_context(|| format!("waiting for {}", qemu.display()))?;
    CHILD.store(0, Ordering::SeqCst);

    if let Some(signal) = status.signal() {
        note_signal(&out, signal);
    }
    eprintln!("qtrace: {}", summary(&args.output, &out));
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    })
}

/// Plugin options are one comma-separated `key=value` list, so a value
/// cannot hold a comma.
fn check_option(option: &str) -> Result<()> {
    let Some((key, _)) = option.split_once('=') else {
        bail!("-O {option}: expected KEY=VALUE");
    };
    if key.is_empty() {
        bail!("-O {option}: expected KEY=VALUE");
    }
    if option.contains(',') {
        bail!("-O {option}: QEMU plugin options cannot contain a comma");
    }
    if key == "out" {
        bail!("-O {option}: give the trace directory with -o");
    }
    Ok(())
}

/// `-plugin`'s argument: `<recorder>,out=<DIR>[,KEY=VALUE...]`.
fn plugin_arg(recorder: &Path, out: &Path, options: &[String]) -> Result<OsString> {
    for path in [recorder, out] {
        if path.as_os_str().as_encoded_bytes().contains(&b',') {
            bail!(
                "{}: QEMU plugin options cannot carry a path with a comma",
                path.display()
            );
        }
    }
    let mut arg = OsString::from(recorder);
    arg.push(",out=");
    arg.push(out);
    for option in options {
        arg.push(",");
        arg.push(option);
    }
    Ok(arg)
}

/// Makes way for the trace at `dir` and returns its absolute path (the guest
/// may change directory, and the recorder writes from inside it).
fn prepare_out_dir(dir: &Path, force: bool) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).with_context(|| dir.display().to_string())?;
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(abs),
        Err(e) => return Err(e).with_context(|| dir.display().to_string()),
    };
    if !force {
        bail!(
            "{}: already exists (--force replaces an earlier trace)",
            dir.display()
        );
    }
    let is_trace = meta.is_dir() && dir.join(MANIFEST).is_file();
    let is_empty_dir = meta.is_dir()
        && std::fs::read_dir(dir)
            .with_context(|| dir.display().to_string())?
            .next()
            .is_none();
    if !(is_trace || is_empty_dir) {
        bail!(
            "{}: exists and is not a qtrace trace; not replacing it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok(abs)
}

/// QEMU died of `signal`: where the recorder could not say so (SIGKILL),
/// or could not tell which signal (a fault), the manifest is completed.
fn note_signal(dir: &Path, signal: i32) {
    let Ok(mut m) = Manifest::read(dir) else {
        return;
    };
    match &mut m.end {
        None => m.end = Some(RunEnd::killed(signal)),
        Some(end) if end.how == "crash" && end.signal.is_none() => {
            end.signal = Some(signal);
            end.signal_name = signal_name(signal);
        }
        Some(_) => return,
    }
    if let Err(e) = m.write(dir) {
        eprintln!("qtrace: {e}");
    }
}

/// One line on what the run left, from the manifest the recorder wrote.
fn summary(shown: &Path, dir: &Path) -> String {
    match Manifest::read(dir) {
        Ok(m) => {
            let mut events: u64 = m.vcpus.iter().map(|v| v.block_events).sum();
            if !m.complete {
                // The manifest's totals are written at the end, so a run cut
                // short has none: count what the sealed parts hold instead.
                if let Ok(stats) = info::table_stats(dir, Table::Blocks) {
                    events = stats.rows;
                }
            }
            let state = match (m.complete, &m.end) {
                (true, _) => "complete".to_string(),
                (false, None) => "incomplete: recording did not finish".to_string(),
                (false, Some(end)) if end.how == "killed" => {
                    "incomplete: recording did not finish".to_string()
                }
                (false, Some(_)) => match m.errors.first() {
                    Some(e) => format!("incomplete: {e}"),
                    None => "incomplete".to_string(),
                },
            };
            format!(
                "trace in {} ({events} block events, {} distinct blocks, {state}; {})",
                shown.display(),
                m.distinct_blocks,
                m.ending()
            )
        }
        Err(qtrace_format::Error::Io { error, .. })
            if error.kind() == std::io::ErrorKind::NotFound =>
        {
            format!("no trace written in {}", shown.display())
        }
        Err(e) => format!("no readable trace in {} ({e})", shown.display()),
    }
}

/// QEMU's pid while it runs, for the signal handler; 0 when there is none.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe, and pid is our own child.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Lets qtrace outlive QEMU on Ctrl-C or `kill`, so that it can still say
/// what was recorded; the signal is passed on to QEMU. A handler, unlike
/// `SIG_IGN`, is reset by exec, so QEMU itself still gets the default action.
fn forward_signals() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; `forward` only does
        // async-signal-safe work.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = forward as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_must_be_key_value_without_commas() {
        assert!(check_option("zstd=9").is_ok());
        assert!(check_option("empty=").is_ok());
        for bad in ["zstd", "=9", "a=1,b=2", "out=/tmp/x"] {
            assert!(check_option(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn builds_the_plugin_argument() {
        let arg = plugin_arg(
            Path::new("/r/lib.so"),
            Path::new("/t/run.parquet"),
            &["zstd=9".into(), "writers=2".into()],
        )
        .unwrap();
        assert_eq!(arg, "/r/lib.so,out=/t/run.parquet,zstd=9,writers=2");
        assert!(plugin_arg(Path::new("/r/lib.so"), Path::new("/t/a,b"), &[]).is_err());
    }

    #[test]
    fn replaces_only_traces_and_empty_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("new");
        assert_eq!(prepare_out_dir(&missing, false).unwrap(), missing);

        let trace = tmp.path().join("trace");
        std::fs::create_dir(&trace).unwrap();
        std::fs::write(trace.join(MANIFEST), "{}").unwrap();
        assert!(prepare_out_dir(&trace, false).is_err());
        prepare_out_dir(&trace, true).unwrap();
        assert!(!trace.exists());

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        prepare_out_dir(&empty, true).unwrap();
        assert!(!empty.exists());

        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("precious.txt"), "keep").unwrap();
        let err = prepare_out_dir(&other, true).unwrap_err().to_string();
        assert!(err.contains("not a qtrace trace"), "{err}");
        assert!(other.join("precious.txt").exists());

        let file = tmp.path().join("file");
        std::fs::write(&file, "keep").unwrap();
        assert!(prepare_out_dir(&file, true).is_err());
        assert!(file.exists());
    }
}
