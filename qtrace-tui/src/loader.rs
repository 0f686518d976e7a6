//! The background thread that reads traces, so that the interface never
//! waits: it takes [`Request`]s over a channel, one at a time, and sends
//! each result back as a [`Loaded`] (scans inside a load still use every
//! core). Loads that run `qtrace` itself get a thread each.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use qtrace_format::block_stream::Blocks;
use qtrace_format::{Table, Trace};

use crate::app::{Loaded, Request};
use crate::data::{self, HotBlock, Summary};
use crate::diff;

/// The most accesses to a page or an address listed.
pub const ACCESSES: usize = 10_000;

/// The traces the interface shows.
pub struct Traces {
    pub a: Trace,
    pub b: Option<Trace>,
}

/// Runs loads until the interface hangs up.
pub fn serve(traces: Arc<Traces>, requests: Receiver<Request>, results: Sender<Loaded>) {
    let mut summary: Option<Arc<Summary>> = None;
    for request in requests {
        let loaded = match request {
            Request::Summary => {
                let r = data::summary(&traces.a)
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"));
                // Shared with the interface: the loads that need the
                // dictionary use it too.
                summary = r.as_ref().ok().cloned();
                Loaded::Summary(r)
            }
            // These two run `qtrace` itself: on a thread of their own, so
            // that they need not wait behind a scan.
            Request::Syscalls => {
                on_own_thread(&traces, &results, |t| {
                    Loaded::Syscalls(data::syscalls(&t.a).map_err(|e| format!("{e:#}")))
                });
                continue;
            }
            Request::Timeline { vcpu, seqs } => Loaded::Timeline(match &summary {
                Some(s) => data::timeline(&traces.a, s, vcpu, seqs).map_err(|e| format!("{e:#}")),
                None => Err("the trace's summary did not load".into()),
            }),
            Request::WindowBlocks { vcpu, seqs } => Loaded::WindowBlocks(match &summary {
                Some(s) => window_blocks(&traces.a, s, vcpu, seqs).map_err(|e| format!("{e:#}")),
                None => Err("the trace's summary did not load".into()),
            }),
            Request::HotPages => {
                Loaded::HotPages(data::hot_pages(&traces.a).map_err(|e| format!("{e:#}")))
            }
            Request::PageAccesses { page } => Loaded::PageAccesses(
                data::accesses(&traces.a, page..page + data::PAGE, ACCESSES)
                    .map_err(|e| format!("{e:#}")),
            ),
            Request::AddrAccesses { addrs } => Loaded::AddrAccesses(
                addrs.clone(),
                data::accesses(&traces.a, addrs, ACCESSES).map_err(|e| format!("{e:#}")),
            ),
            Request::Diff => {
                on_own_thread(&traces, &results, |t| {
                    Loaded::Diff(compare(t).map_err(|e| format!("{e:#}")))
                });
                continue;
            }
        };
        if results.send(loaded).is_err() {
            return;
        }
    }
}

/// Runs `load` on a thread of its own and sends its result back.
fn on_own_thread(
    traces: &Arc<Traces>,
    results: &Sender<Loaded>,
    load: impl FnOnce(&Traces) -> Loaded + Send + 'static,
) {
    let (traces, results) = (traces.clone(), results.clone());
    std::thread::spawn(move || {
        let _ = results.send(load(&traces));
    });
}

/// The blocks executed in a window of the timeline, most executed first.
fn window_blocks(
    trace: &Trace,
    s: &Summary,
    vcpu: u32,
    seqs: std::ops::Range<u64>,
) -> anyhow::Result<Vec<HotBlock>> {
    let parts: Vec<_> = trace
        .parts(Table::Blocks)?
        .into_iter()
        .filter(|p| p.vcpu == Some(vcpu))
        .collect();
    let counts = Blocks::open(&parts)?.scan(
        Some(seqs),
        HashMap::new,
        |acc: &mut HashMap<u32, u64>, run| {
            for &id in run.ids {
                *acc.entry(id).or_default() += 1;
            }
        },
        |mut a, b| {
            for (id, n) in b {
                *a.entry(id).or_default() += n;
            }
            a
        },
    )?;
    let by_id: HashMap<u32, &HotBlock> = s.hot.iter().map(|h| (h.id, h)).collect();
    let mut rows: Vec<HotBlock> = counts
        .into_iter()
        .filter_map(|(id, n)| {
            by_id.get(&id).map(|h| HotBlock {
                execs: n,
                ..(*h).clone()
            })
        })
        .collect();
    rows.sort_by(|a, b| b.execs.cmp(&a.execs).then(a.pc.cmp(&b.pc)));
    Ok(rows)
}

fn compare(traces: &Traces) -> anyhow::Result<diff::Comparison> {
    let Some(b) = &traces.b else {
        anyhow::bail!("one trace: give two to compare them");
    };
    diff::compare(traces.a.root(), b.root())
}
