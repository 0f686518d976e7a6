//! Runs `qtrace` (the program beside this one) for what the command line
//! already computes: the interface then shows exactly what `qtrace diff`
//! and `qtrace syscalls` say, from one implementation.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// `qtrace ARGS...`'s stdout; its one-line error otherwise.
pub fn qtrace<S: AsRef<OsStr>>(args: &[S]) -> Result<Vec<u8>> {
    let exe = std::env::current_exe()
        .context("cannot tell where qtrace-tui is")?
        .with_file_name("qtrace");
    let out = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("{}", err.trim().trim_start_matches("error: "));
    }
    Ok(out.stdout)
}
