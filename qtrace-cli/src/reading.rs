//! How the commands that read a trace open it: strictly (a missing or
//! damaged part is an error naming it) or, with `--skip-corrupt`, leaving
//! such parts out with one warning each on stderr.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use qtrace_format::Trace;

#[derive(clap::Args, Clone, Copy, Debug, Default)]
pub struct ReadArgs {
    /// Go on without parts that are missing or fail their checksum, with a
    /// warning on stderr for each (the results then leave their rows out).
    #[arg(long, global = true)]
    pub skip_corrupt: bool,
    /// Threads that read in parallel (default: one per core; the
    /// RAYON_NUM_THREADS environment variable also sets it).
    #[arg(short = 'j', long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

impl ReadArgs {
    /// Sizes rayon's pool, before anything reads.
    pub fn set_threads(&self) -> Result<()> {
        if let Some(n) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(usize::from(n))
                .build_global()
                .map_err(|e| anyhow::anyhow!("cannot start {n} threads: {e}"))?;
        }
        Ok(())
    }

    pub fn open(&self, dir: &Path) -> Result<Trace> {
        let trace = Trace::open(dir)?;
        Ok(if self.skip_corrupt {
            // Not eprintln!, which panics when stderr is closed.
            trace.skip_corrupt(|skipped| {
                let _ = writeln!(std::io::stderr(), "warning: skipping {skipped}");
            })
        } else {
            trace
        })
    }
}
