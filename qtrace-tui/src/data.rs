//! What the views show, read from a trace. Nothing here knows the
//! terminal: each loader returns plain data, and runs on a background
//! thread (see `loader.rs`) so the interface never waits for it.
//!
//! The first screen needs only the manifest and the per-block counts the
//! recorder writes at exit, which is why a trace of 10^9 events opens at
//! once; the timeline and the memory heat map scan whole tables and come
//! later.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use anyhow::Result;
use arrow_array::{Array, BooleanArray, UInt64Array};
use qtrace_format::block_stream::Blocks;
use qtrace_format::reader::{scan_where, u64_range};
use qtrace_format::schema::{self, col};
use qtrace_format::symbols::Resolver;
use qtrace_format::{scan, BlockInfo, Manifest, Module, Table, Trace};

/// A block with how often it ran.
#[derive(Clone, Debug)]
pub struct HotBlock {
    pub id: u32,
    pub pc: u64,
    pub execs: u64,
    pub n_insns: u32,
    pub symbol: String,
    pub module: String,
}

impl HotBlock {
    pub fn insns(&self) -> u64 {
        self.execs * u64::from(self.n_insns)
    }
}

/// What opens at once: the manifest, the hot blocks and the dictionary.
pub struct Summary {
    pub manifest: Manifest,
    /// Every block that executed, most executed first.
    pub hot: Vec<HotBlock>,
    /// The dictionary, by block id, for disassembly.
    pub dict: HashMap<u32, BlockInfo>,
    /// Whether the counts come from the recorder's counters (else from
    /// counting `blocks`: an unfinished trace).
    pub exact: bool,
}

/// Reads the manifest, the counts and the dictionary.
pub fn summary(trace: &Trace) -> Result<Summary> {
    let manifest = trace.manifest().clone();
    let mut execs: HashMap<u32, u64> = HashMap::new();
    let counts = trace.block_counts()?;
    let exact = !counts.is_empty();
    if exact {
        for c in counts {
            *execs.entry(c.block_id).or_default() += c.execs;
        }
    } else {
        let blocks = Blocks::open(&trace.parts(Table::Blocks)?)?;
        execs = blocks.scan(
            None,
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
    }
    let dict: HashMap<u32, BlockInfo> =
        trace.block_dict()?.into_iter().map(|b| (b.id, b)).collect();
    let modules = trace.modules()?;
    let mut names = Names::new(modules);
    let mut hot: Vec<HotBlock> = execs
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .map(|(id, n)| {
            let b = dict.get(&id);
            let pc = b.map_or(0, |b| b.pc);
            HotBlock {
                id,
                pc,
                execs: n,
                n_insns: b.map_or(0, |b| b.insns.len() as u32),
                symbol: b
                    .and_then(|b| b.symbol.clone())
                    .or_else(|| names.symbol(pc))
                    .unwrap_or_default(),
                module: names.module(pc),
            }
        })
        .collect();
    hot.sort_by(|a, b| b.execs.cmp(&a.execs).then(a.pc.cmp(&b.pc)));
    Ok(Summary {
        manifest,
        hot,
        dict,
        exact,
    })
}

/// Names of addresses: the module that holds one and its symbol, resolved
/// offline through the trace's modules.
pub struct Names {
    resolver: Resolver,
    modules: Vec<Module>,
}

impl Names {
    pub fn new(modules: Vec<Module>) -> Names {
        Names {
            resolver: Resolver::new(modules.clone()),
            modules,
        }
    }

    pub fn symbol(&mut self, pc: u64) -> Option<String> {
        self.resolver.symbol(pc)
    }

    /// The file name of the module holding `pc`, or empty.
    pub fn module(&self, pc: u64) -> String {
        self.modules
            .iter()
            .find(|m| m.contains(pc))
            .map(|m| {
                Path::new(&m.path)
                    .file_name()
                    .map_or(m.path.clone(), |n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_default()
    }
}

/// One system call, as the Syscalls view lists it.
#[derive(Clone, Debug)]
pub struct Call {
    pub vcpu: u32,
    pub seq: u64,
    pub tid: u32,
    pub block_seq: u64,
    pub name: String,
    /// strace-like: `openat(AT_FDCWD, 0x..., O_RDONLY) = 3`.
    pub call: String,
    pub failed: bool,
}

/// Every system call, in order per vCPU, rendered by `qtrace syscalls`.
pub fn syscalls(trace: &Trace) -> Result<Vec<Call>> {
    let out = crate::cli::qtrace(&[
        std::ffi::OsStr::new("syscalls"),
        trace.root().as_os_str(),
        std::ffi::OsStr::new("--format"),
        std::ffi::OsStr::new("jsonl"),
    ])?;
    let text = String::from_utf8_lossy(&out);
    text.lines()
        .map(|line| {
            let r: serde_json::Value = serde_json::from_str(line)?;
            let n = |k: &str| r[k].as_u64().unwrap_or(0);
            Ok(Call {
                vcpu: n("vcpu") as u32,
                seq: n("seq"),
                tid: n("tid") as u32,
                block_seq: n("block_seq"),
                name: r["name"]
                    .as_str()
                    .map_or_else(|| format!("syscall_{}", r["num"]), str::to_string),
                call: r["call"].as_str().unwrap_or_default().to_string(),
                failed: !r["errno"].is_null(),
            })
        })
        .collect()
}

/// Execution over time of one vCPU: its `seq` cut into equal buckets,
/// with the instructions run in each, and two heat maps of where against
/// when: by address (the executed blocks ranked by address, cut into
/// bands of equal counts) and by module.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    pub vcpu: u32,
    /// The `seq` range shown.
    pub seqs: std::ops::Range<u64>,
    /// Instructions per time bucket.
    pub insns: Vec<u64>,
    /// `heat[band][bucket]`: block executions.
    pub heat: Vec<Vec<u64>>,
    /// The lowest address of each band.
    pub band_pc: Vec<u64>,
    /// `module_heat[m][bucket]`: block executions in module `m`.
    pub module_heat: Vec<Vec<u64>>,
    /// Each module's name, in order of address (the last, `other`, takes
    /// what no band is left for).
    pub modules: Vec<String>,
}

/// Time buckets of a timeline.
pub const BUCKETS: usize = 120;
/// Address bands of a timeline's heat map.
pub const BANDS: usize = 24;

/// Scans `blocks` of `vcpu` over `seqs` (the whole stream when `None`) and
/// builds its timeline. Only the row groups that overlap are read.
pub fn timeline(
    trace: &Trace,
    summary: &Summary,
    vcpu: u32,
    seqs: Option<std::ops::Range<u64>>,
) -> Result<Timeline> {
    let parts: Vec<_> = trace
        .parts(Table::Blocks)?
        .into_iter()
        .filter(|p| p.vcpu == Some(vcpu))
        .collect();
    let blocks = Blocks::open(&parts)?;
    let full = blocks
        .groups()
        .iter()
        .filter_map(|g| g.seqs.clone())
        .fold(None::<std::ops::Range<u64>>, |acc, s| match acc {
            None => Some(s),
            Some(a) => Some(a.start.min(s.start)..a.end.max(s.end)),
        })
        .unwrap_or(0..0);
    let seqs = seqs.unwrap_or(full);
    let span = (seqs.end - seqs.start).max(1);
    // Bands: executed blocks in address order, cut into equal counts.
    let mut by_pc: Vec<(u64, u32)> = summary.hot.iter().map(|h| (h.pc, h.id)).collect();
    by_pc.sort_unstable();
    let per_band = by_pc.len().div_ceil(BANDS).max(1);
    let max_id = summary.dict.keys().copied().max().unwrap_or(0) as usize;
    let mut band_of = vec![u8::MAX; max_id + 1];
    let mut band_pc = Vec::new();
    for (i, &(pc, id)) in by_pc.iter().enumerate() {
        if i % per_band == 0 {
            band_pc.push(pc);
        }
        band_of[id as usize] = (i / per_band) as u8;
    }
    // Modules: in order of their lowest executed block, at most BANDS.
    let mut first_pc: HashMap<&str, u64> = HashMap::new();
    for h in &summary.hot {
        let e = first_pc.entry(h.module.as_str()).or_insert(h.pc);
        *e = (*e).min(h.pc);
    }
    let mut modules: Vec<(&str, u64)> = first_pc.into_iter().collect();
    modules.sort_by_key(|&(name, pc)| (pc, name));
    if modules.len() > BANDS {
        modules.truncate(BANDS - 1);
        modules.push(("other", u64::MAX));
    }
    let module_index: HashMap<&str, u8> = modules
        .iter()
        .enumerate()
        .map(|(i, &(m, _))| (m, i as u8))
        .collect();
    let mut module_of = vec![u8::MAX; max_id + 1];
    for h in &summary.hot {
        module_of[h.id as usize] = module_index
            .get(h.module.as_str())
            .copied()
            .unwrap_or((modules.len() - 1) as u8);
    }
    let insns_of: Vec<u32> = (0..=max_id as u32)
        .map(|id| summary.dict.get(&id).map_or(0, |b| b.insns.len() as u32))
        .collect();
    let bands = band_pc.len();
    let n_modules = modules.len();
    let empty = || {
        (
            vec![0u64; BUCKETS],
            vec![vec![0u64; BUCKETS]; bands],
            vec![vec![0u64; BUCKETS]; n_modules],
        )
    };
    let (insns, heat, module_heat) = blocks.scan(
        Some(seqs.clone()),
        empty,
        |(insns, heat, module_heat), run| {
            for (i, &id) in run.ids.iter().enumerate() {
                let t = ((run.first_seq + i as u64 - seqs.start) as u128 * BUCKETS as u128
                    / span as u128) as usize;
                let t = t.min(BUCKETS - 1);
                let id = id as usize;
                insns[t] += u64::from(insns_of.get(id).copied().unwrap_or(0));
                if let Some(&b) = band_of.get(id) {
                    if (b as usize) < bands {
                        heat[b as usize][t] += 1;
                    }
                }
                if let Some(&m) = module_of.get(id) {
                    if (m as usize) < n_modules {
                        module_heat[m as usize][t] += 1;
                    }
                }
            }
        },
        |(mut ia, mut ha, mut ma), (ib, hb, mb)| {
            for (a, b) in ia.iter_mut().zip(ib) {
                *a += b;
            }
            for (ra, rb) in ha
                .iter_mut()
                .chain(ma.iter_mut())
                .zip(hb.into_iter().chain(mb))
            {
                for (a, b) in ra.iter_mut().zip(rb) {
                    *a += b;
                }
            }
            (ia, ha, ma)
        },
    )?;
    Ok(Timeline {
        vcpu,
        seqs,
        insns,
        heat,
        band_pc,
        module_heat,
        modules: modules
            .into_iter()
            .map(|(m, _)| {
                if m.is_empty() {
                    "(no module)".to_string()
                } else {
                    m.to_string()
                }
            })
            .collect(),
    })
}

/// A page of guest memory and how often it was accessed.
#[derive(Clone, Debug)]
pub struct HotPage {
    pub page: u64,
    pub loads: u64,
    pub stores: u64,
}

/// Page size of the Memory view.
pub const PAGE: u64 = 4096;

/// Accesses per page, most accessed first; empty without a `mem` table.
pub fn hot_pages(trace: &Trace) -> Result<Vec<HotPage>> {
    let parts = trace.parts(Table::Mem)?;
    let pages = scan(
        &parts,
        &[col::ADDR, col::STORE],
        HashMap::new,
        |mut acc: HashMap<u64, (u64, u64)>, batch, _| {
            let addr: &UInt64Array = schema::column(batch, col::ADDR)?;
            let store: &BooleanArray = schema::column(batch, col::STORE)?;
            for (a, s) in addr.values().iter().zip(store.values().iter()) {
                let e = acc.entry(a / PAGE).or_default();
                if s {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
            Ok(acc)
        },
        |mut a, b| {
            for (p, (l, s)) in b {
                let e = a.entry(p).or_default();
                e.0 += l;
                e.1 += s;
            }
            a
        },
    )?;
    let mut pages: Vec<HotPage> = pages
        .into_iter()
        .map(|(page, (loads, stores))| HotPage {
            page: page * PAGE,
            loads,
            stores,
        })
        .collect();
    pages.sort_by(|a, b| {
        (b.loads + b.stores)
            .cmp(&(a.loads + a.stores))
            .then(a.page.cmp(&b.page))
    });
    Ok(pages)
}

/// One access to the page or address the Memory view shows.
#[derive(Clone, Debug)]
pub struct Access {
    pub vcpu: u32,
    pub seq: u64,
    pub block_seq: u64,
    pub addr: u64,
    pub size: u8,
    pub store: bool,
    pub value: Option<u64>,
}

/// The accesses that touch a range: the first ones, how many there are,
/// and their values over the whole run.
#[derive(Clone, Debug, Default)]
pub struct Accesses {
    /// The first `limit`, in order per vCPU.
    pub rows: Vec<Access>,
    /// All of them, and how many of them are stores.
    pub total: u64,
    pub stores: u64,
    /// `(seq, value, store)`: the smallest and largest value of loads and
    /// of stores in each of [`POINT_BUCKETS`] stretches of time, so that a
    /// chart of millions of accesses is drawn from a thousand points.
    pub points: Vec<(u64, u64, bool)>,
}

/// Stretches of time the values of an address are summarised over.
pub const POINT_BUCKETS: u64 = 512;

/// Per (stretch, store): the (seq, value) of the smallest and largest value.
type Extremes = HashMap<(u64, bool), ((u64, u64), (u64, u64))>;

/// Every access that touches `addrs` (see [`Accesses`]). Row groups whose
/// `addr` statistics lie outside are skipped unread.
pub fn accesses(trace: &Trace, addrs: Range<u64>, limit: usize) -> Result<Accesses> {
    let parts = trace.parts(Table::Mem)?;
    let longest = trace.manifest().vcpus.iter().map(|v| v.mem_accesses).max();
    let width = (longest.unwrap_or(0) / POINT_BUCKETS).max(1);
    // An access of up to 16 bytes may start before the range.
    let lo = addrs.start.saturating_sub(15);
    let (mut found, extremes) = scan_where(
        &parts,
        &[
            col::SEQ,
            col::BLOCK_SEQ,
            col::ADDR,
            col::SIZE,
            col::STORE,
            col::VALUE,
        ],
        |_, rg| u64_range(rg, col::ADDR).is_none_or(|(min, max)| max >= lo && min < addrs.end),
        || (Accesses::default(), Extremes::new()),
        |(mut acc, mut ext), batch, part| {
            let seq: &UInt64Array = schema::column(batch, col::SEQ)?;
            let block_seq: &UInt64Array = schema::column(batch, col::BLOCK_SEQ)?;
            let addr: &UInt64Array = schema::column(batch, col::ADDR)?;
            let size: &arrow_array::UInt8Array = schema::column(batch, col::SIZE)?;
            let store: &BooleanArray = schema::column(batch, col::STORE)?;
            let value: &UInt64Array = schema::column(batch, col::VALUE)?;
            for i in 0..batch.num_rows() {
                let a = addr.value(i);
                if a >= addrs.end || a + u64::from(size.value(i)) <= addrs.start {
                    continue;
                }
                let (sq, st) = (seq.value(i), store.value(i));
                acc.total += 1;
                acc.stores += u64::from(st);
                let v = (!value.is_null(i)).then(|| value.value(i));
                if let Some(v) = v {
                    let e = ext.entry((sq / width, st)).or_insert(((sq, v), (sq, v)));
                    if v < e.0 .1 {
                        e.0 = (sq, v);
                    }
                    if v > e.1 .1 {
                        e.1 = (sq, v);
                    }
                }
                // A task's rows are one vCPU's, in order: past `limit`,
                // none can be among the first `limit` of all.
                if acc.rows.len() < limit {
                    acc.rows.push(Access {
                        vcpu: part.vcpu.unwrap_or(0),
                        seq: sq,
                        block_seq: block_seq.value(i),
                        addr: a,
                        size: size.value(i),
                        store: st,
                        value: v,
                    });
                }
            }
            Ok((acc, ext))
        },
        |(mut a, mut ea), (b, eb)| {
            a.total += b.total;
            a.stores += b.stores;
            a.rows.extend(b.rows);
            if a.rows.len() > 2 * limit {
                a.rows.sort_by_key(|a| (a.vcpu, a.seq));
                a.rows.truncate(limit);
            }
            for (k, (lo, hi)) in eb {
                let e = ea.entry(k).or_insert((lo, hi));
                if lo.1 < e.0 .1 {
                    e.0 = lo;
                }
                if hi.1 > e.1 .1 {
                    e.1 = hi;
                }
            }
            (a, ea)
        },
    )?;
    found.rows.sort_by_key(|a| (a.vcpu, a.seq));
    found.rows.truncate(limit);
    let mut points: Vec<(u64, u64, bool)> = extremes
        .into_iter()
        .flat_map(|((_, st), (lo, hi))| [(lo.0, lo.1, st), (hi.0, hi.1, st)])
        .collect();
    points.sort_unstable();
    points.dedup();
    found.points = points;
    Ok(found)
}
