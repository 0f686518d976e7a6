//! `qtrace-tui TRACE [OTHER]`: the interactive interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Browse a qtrace trace in the terminal; with two, compare them.
#[derive(Parser)]
#[command(name = "qtrace-tui", version)]
struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    trace: PathBuf,
    /// A second trace to compare with the first (the Diff view).
    other: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match qtrace_tui::run(&args.trace, args.other.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
