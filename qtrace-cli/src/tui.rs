//! `qtrace tui`: the interactive interface, which is its own program
//! (`qtrace-tui`, built beside `qtrace`), so that the command line does not
//! carry a terminal UI's dependencies.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    trace: PathBuf,
    /// A second trace to compare with the first (the Diff view).
    other: Option<PathBuf>,
}

/// Replaces this process with `qtrace-tui`; returns only on failure.
pub fn run(args: Args) -> Result<u8> {
    let exe = std::env::current_exe().context("cannot tell where qtrace is")?;
    let tui = exe.with_file_name("qtrace-tui");
    if !tui.is_file() {
        anyhow::bail!(
            "{} is missing: `cargo build --release` builds it beside qtrace",
            tui.display()
        );
    }
    let mut cmd = Command::new(&tui);
    cmd.arg(&args.trace).args(&args.other);
    let e = cmd.exec();
    Err(e).with_context(|| format!("cannot run {}", tui.display()))
}
