//! Executions per block of a trace, the numbers most commands start from:
//! from `block_counts` (the recorder's exact counters, written at the
//! guest's exit) or by counting the `blocks` events in parallel. Both give
//! the same numbers on a complete trace with no lost events; tests hold
//! them to that.

use std::collections::HashMap;

use anyhow::Result;
use clap::ValueEnum;
use qtrace_format::block_stream::Blocks;
use qtrace_format::{PartPath, Table, Trace};

use crate::progress::Progress;

/// Where execution counts come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// The counters when the trace has them, else the events.
    Auto,
    /// The exact counters (`block_counts`).
    Counts,
    /// Counting the `blocks` events.
    Events,
}

/// Executions per block id, of one vCPU (`vcpu`) or all.
pub fn load(trace: &Trace, source: Source, vcpu: Option<u32>) -> Result<Counts> {
    match source {
        Source::Counts => from_counts(trace, vcpu),
        Source::Events => from_events(trace, vcpu),
        Source::Auto if trace.parts(Table::BlockCounts)?.is_empty() => from_events(trace, vcpu),
        Source::Auto => from_counts(trace, vcpu),
    }
}

/// Executions per block id. Ids are allocated densely from 0, so most land
/// in a vector; a map takes any huge id a damaged file might hold rather
/// than letting it size the vector.
#[derive(Default)]
pub struct Counts {
    dense: Vec<u64>,
    sparse: HashMap<u32, u64>,
}

/// Ids below this are counted in the vector (8 bytes each, per scan task).
const DENSE_IDS: u32 = 1 << 22;

impl Counts {
    /// Counts with room for ids `0..n` (a trace's distinct blocks), so
    /// that counting known ids never grows the vector.
    fn with_ids(n: u64) -> Counts {
        Counts {
            dense: vec![0; n.min(u64::from(DENSE_IDS)) as usize],
            sparse: HashMap::new(),
        }
    }

    /// One execution of each id. The common case (an id the vector holds)
    /// is one bounds check and an increment.
    fn add_all(&mut self, ids: &[u32]) {
        for &id in ids {
            match self.dense.get_mut(id as usize) {
                Some(n) => *n += 1,
                None => self.add(id, 1),
            }
        }
    }

    fn add(&mut self, id: u32, n: u64) {
        if id < DENSE_IDS {
            let i = id as usize;
            if i >= self.dense.len() {
                self.dense.resize(i + 1, 0);
            }
            self.dense[i] += n;
        } else {
            *self.sparse.entry(id).or_default() += n;
        }
    }

    fn merge(mut self, mut other: Counts) -> Counts {
        if other.dense.len() > self.dense.len() {
            std::mem::swap(&mut self, &mut other);
        }
        for (a, b) in self.dense.iter_mut().zip(&other.dense) {
            *a += b;
        }
        for (id, n) in other.sparse {
            *self.sparse.entry(id).or_default() += n;
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.dense.iter().all(|&n| n == 0) && self.sparse.values().all(|&n| n == 0)
    }

    /// (block id, executions) of every block that executed.
    pub fn into_nonzero(self) -> impl Iterator<Item = (u32, u64)> {
        let dense = self
            .dense
            .into_iter()
            .enumerate()
            .map(|(id, n)| (id as u32, n));
        dense.chain(self.sparse).filter(|&(_, n)| n > 0)
    }
}

fn from_counts(trace: &Trace, vcpu: Option<u32>) -> Result<Counts> {
    let mut counts = Counts::default();
    for row in trace.block_counts()? {
        if vcpu.is_none_or(|v| v == row.vcpu) {
            counts.add(row.block_id, row.execs);
        }
    }
    Ok(counts)
}

fn from_events(trace: &Trace, vcpu: Option<u32>) -> Result<Counts> {
    // The partition says which vCPU a part belongs to, so other vCPUs'
    // parts are never opened.
    let parts: Vec<PartPath> = trace
        .parts(Table::Blocks)?
        .into_iter()
        .filter(|p| vcpu.is_none_or(|v| p.vcpu == Some(v)))
        .collect();
    let distinct = trace.manifest().distinct_blocks;
    let blocks = Blocks::open(&parts)?;
    let progress = Progress::new(blocks.rows(), "block events");
    let counts = blocks.scan(
        None,
        || Counts::with_ids(distinct),
        |acc, run| {
            acc.add_all(run.ids);
            progress.add(run.ids.len() as u64);
        },
        Counts::merge,
    )?;
    Ok(counts)
}

impl Counts {
    /// How many ids the vector holds: the trace's blocks (an id beyond,
    /// which only a damaged file has, is counted on the side).
    pub fn ids_upto(&self) -> usize {
        self.dense.len()
    }

    /// Executions of ids `0..n` as a vector, and how many distinct ids at
    /// or beyond `n` executed.
    pub fn split_at(self, n: usize) -> (Vec<u64>, u64) {
        let mut execs = vec![0u64; n];
        let mut beyond = 0;
        for (id, e) in self.into_nonzero() {
            match execs.get_mut(id as usize) {
                Some(x) => *x = e,
                None => beyond += 1,
            }
        }
        (execs, beyond)
    }
}
