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

/// Fails, listing the trace's vCPUs, when it has no vCPU `vcpu`: one the
/// manifest lists or that has `blocks` parts, or one of `more` (a table's
/// own parts). A vCPU the trace knows with no rows in some table is no
/// mistake; one it never heard of is.
pub fn check_vcpu(trace: &Trace, vcpu: u32, more: &[qtrace_format::PartPath]) -> Result<()> {
    let mut known = vcpus(trace)?;
    known.extend(more.iter().filter_map(|p| p.vcpu));
    known.sort_unstable();
    known.dedup();
    if known.contains(&vcpu) {
        return Ok(());
    }
    let list: Vec<String> = known.iter().map(u32::to_string).collect();
    anyhow::bail!(
        "{}: no vCPU {vcpu} in this trace (vCPUs: {})",
        trace.root().display(),
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    )
}

/// The trace's vCPU indices, in order: the manifest's and those with
/// `blocks` parts (a trace cut short has no totals).
pub fn vcpus(trace: &Trace) -> Result<Vec<u32>> {
    let mut known: Vec<u32> = trace.manifest().vcpus.iter().map(|v| v.vcpu).collect();
    known.extend(
        trace
            .parts(qtrace_format::Table::Blocks)?
            .iter()
            .filter_map(|p| p.vcpu),
    );
    known.sort_unstable();
    known.dedup();
    Ok(known)
}
