//! `qtrace mem hot`: the most accessed pages of a trace, or with
//! `--regions` the most accessed runs of adjacent pages, each placed in the
//! guest's address space where the trace can say so honestly: a module
//! (`libc.so.6+0x1000`, from the `modules` table), `[heap]` (between the
//! lowest and highest program break that `brk` returned, from `syscalls`)
//! or `[anon]` (an anonymous `mmap`). Anything else (the main stack, which
//! QEMU maps before the guest runs) is left unnamed.
//!
//! One parallel scan decodes `addr`, `size` and `store` only; each task
//! counts into a map of its own, by page, and the maps are merged, so
//! memory grows with distinct pages, not accesses. An access counts for
//! the page of its first byte.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Result};
use arrow_array::{Array, BooleanArray, Int64Array, StringArray, UInt64Array, UInt8Array};
use qtrace_format::schema::{self, col};
use qtrace_format::{scan, Module, Table, Trace};
use serde_json::Value;

use super::mem_parts;
use crate::output::Format;
use crate::places::module_name;
use crate::reading::ReadArgs;
use crate::rows::{self, Rows};

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// Bytes per page.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    page_size: u64,
    /// How many pages (or regions) to list; 0 lists them all.
    #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20)]
    limit: usize,
    /// Count loads only.
    #[arg(long, conflicts_with = "stores")]
    loads: bool,
    /// Count stores only.
    #[arg(long)]
    stores: bool,
    /// Only this vCPU's accesses.
    #[arg(long, value_name = "V")]
    vcpu: Option<u32>,
    /// Merge adjacent accessed pages of the same module (or heap, or
    /// anonymous mapping, or unnamed memory) into regions, and rank those.
    #[arg(long)]
    regions: bool,
    /// How to print: aligned columns, CSV, a JSON array or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Accesses to one page (or region).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    loads: u64,
    stores: u64,
    bytes: u64,
}

impl Counts {
    fn accesses(&self) -> u64 {
        self.loads + self.stores
    }

    fn add(&mut self, o: &Counts) {
        self.loads += o.loads;
        self.stores += o.stores;
        self.bytes += o.bytes;
    }
}

pub fn run(args: Args, read: &ReadArgs) -> Result<()> {
    if args.page_size == 0 {
        bail!("--page-size 0: a page must hold at least one byte");
    }
    let trace = read.open(&args.dir)?;
    let parts = mem_parts(&trace, &args.dir, args.vcpu)?;
    let pages = count_pages(&parts, args.page_size, !args.stores, !args.loads)?;
    let total: u64 = pages.values().map(Counts::accesses).sum();
    let owners = Owners::load(&trace)?;

    // (start, end, pages, counts), ranked by accesses, then address.
    let mut ranked: Vec<(u64, u64, u64, Counts)> = if args.regions {
        regions(&pages, args.page_size, &owners)
    } else {
        pages
            .iter()
            .map(|(&p, c)| {
                let start = p * args.page_size;
                (start, start.saturating_add(args.page_size), 1, *c)
            })
            .collect()
    };
    ranked.sort_by(|a, b| b.3.accesses().cmp(&a.3.accesses()).then(a.0.cmp(&b.0)));
    if args.limit > 0 {
        ranked.truncate(args.limit);
    }

    let mut columns = vec![rows::num("rank"), rows::text("start")];
    if args.regions {
        columns.extend([rows::text("end"), rows::num("pages")]);
    }
    columns.extend([
        rows::num("accesses"),
        rows::num("loads"),
        rows::num("stores"),
        rows::num("bytes"),
        rows::num("share"),
        rows::text("place"),
    ]);
    let mut out = Rows::stdout(args.format, &columns)?;
    for (i, (start, end, n, c)) in ranked.iter().enumerate() {
        let mut cells: Vec<Value> = vec![(i + 1).into(), rows::hex(*start)];
        if args.regions {
            cells.extend([rows::hex(*end), (*n).into()]);
        }
        let share = if total == 0 {
            0.0
        } else {
            c.accesses() as f64 * 100.0 / total as f64
        };
        cells.extend([
            c.accesses().into(),
            c.loads.into(),
            c.stores.into(),
            c.bytes.into(),
            // Percent of the accesses counted, to two decimals.
            ((share * 100.0).round() / 100.0).into(),
            owners.label(*start).into(),
        ]);
        out.push(cells)?;
    }
    out.finish()?;
    Ok(())
}

/// Accesses per page number (`addr / page_size`), loads and/or stores.
fn count_pages(
    parts: &[qtrace_format::PartPath],
    page_size: u64,
    loads: bool,
    stores: bool,
) -> Result<HashMap<u64, Counts>> {
    let merge = |mut a: HashMap<u64, Counts>, mut b: HashMap<u64, Counts>| {
        if a.len() < b.len() {
            std::mem::swap(&mut a, &mut b);
        }
        for (p, c) in b {
            a.entry(p).or_default().add(&c);
        }
        a
    };
    let pages = scan(
        parts,
        &[col::ADDR, col::SIZE, col::STORE],
        HashMap::new,
        |mut acc: HashMap<u64, Counts>, batch, _| {
            let addr: &UInt64Array = schema::column(batch, col::ADDR)?;
            let size: &UInt8Array = schema::column(batch, col::SIZE)?;
            let store: &BooleanArray = schema::column(batch, col::STORE)?;
            // Accesses come in runs on the same page: count a run, then
            // touch the map once.
            let mut run: Option<(u64, Counts)> = None;
            for i in 0..batch.num_rows() {
                let is_store = store.value(i);
                if !(if is_store { stores } else { loads }) {
                    continue;
                }
                let page = addr.value(i) / page_size;
                if run.as_ref().is_some_and(|(p, _)| *p != page) {
                    let (p, c) = run.take().unwrap_or_default();
                    acc.entry(p).or_default().add(&c);
                }
                let c = &mut run.get_or_insert((page, Counts::default())).1;
                if is_store {
                    c.stores += 1;
                } else {
                    c.loads += 1;
                }
                c.bytes += u64::from(size.value(i));
            }
            if let Some((p, c)) = run {
                acc.entry(p).or_default().add(&c);
            }
            Ok(acc)
        },
        merge,
    )?;
    Ok(pages)
}

/// Runs of adjacent pages with the same owner: (start, end, pages, counts).
fn regions(
    pages: &HashMap<u64, Counts>,
    page_size: u64,
    owners: &Owners,
) -> Vec<(u64, u64, u64, Counts)> {
    let mut sorted: Vec<(u64, Counts)> = pages.iter().map(|(&p, &c)| (p, c)).collect();
    sorted.sort_by_key(|(p, _)| *p);
    let mut out: Vec<(u64, u64, u64, Counts)> = Vec::new();
    let mut last: Option<(u64, Owner)> = None;
    for (p, c) in sorted {
        let start = p * page_size;
        let owner = owners.owner(start);
        let extends = last.is_some_and(|(lp, lo)| lp + 1 == p && lo == owner);
        match out.last_mut() {
            Some(r) if extends => {
                r.1 = start.saturating_add(page_size);
                r.2 += 1;
                r.3.add(&c);
            }
            _ => out.push((start, start.saturating_add(page_size), 1, c)),
        }
        last = Some((p, owner));
    }
    out
}

/// What holds an address, as far as the trace tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    /// Index into [`Owners::modules`].
    Module(usize),
    Heap,
    Anon,
    Unknown,
}

/// The modules, heap and anonymous mappings of a trace.
struct Owners {
    modules: Vec<Module>,
    heap: Option<(u64, u64)>,
    anon: Vec<(u64, u64)>,
}

/// `MAP_ANONYMOUS` on x86_64, aarch64 and riscv64, the guests whose
/// syscalls the recorder names.
const MAP_ANONYMOUS: u64 = 0x20;

impl Owners {
    fn load(trace: &Trace) -> Result<Owners> {
        let modules = trace.modules()?;
        let parts = trace.parts(Table::Syscalls)?;
        let (arg1, arg3) = (col::ARGS[1], col::ARGS[3]);
        // (lowest, highest break returned by brk), anonymous mappings.
        type Found = (Option<(u64, u64)>, Vec<(u64, u64)>);
        let (heap, anon) = scan(
            &parts,
            &[col::NAME, arg1, arg3, col::RET],
            Found::default,
            |(mut heap, mut anon): Found, batch, _| {
                let name: &StringArray = schema::column(batch, col::NAME)?;
                let len: &UInt64Array = schema::column(batch, arg1)?;
                let flags: &UInt64Array = schema::column(batch, arg3)?;
                let ret: &Int64Array = schema::column(batch, col::RET)?;
                for i in 0..batch.num_rows() {
                    // A call that failed or never returned mapped nothing.
                    if name.is_null(i) || ret.is_null(i) || (-4095..0).contains(&ret.value(i)) {
                        continue;
                    }
                    let r = ret.value(i) as u64;
                    match name.value(i) {
                        "brk" => {
                            heap = Some(heap.map_or((r, r), |(lo, hi)| (lo.min(r), hi.max(r))))
                        }
                        "mmap" if flags.value(i) & MAP_ANONYMOUS != 0 => {
                            anon.push((r, r.saturating_add(len.value(i))));
                        }
                        _ => {}
                    }
                }
                Ok((heap, anon))
            },
            |(h1, mut a1), (h2, a2)| {
                let heap = match (h1, h2) {
                    (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1))),
                    (a, b) => a.or(b),
                };
                a1.extend(a2);
                (heap, a1)
            },
        )?;
        Ok(Owners {
            modules,
            heap: heap.filter(|(lo, hi)| lo < hi),
            anon,
        })
    }

    /// A module's segments first (its pages as mapped), then its span; the
    /// heap; anonymous mappings.
    fn owner(&self, addr: u64) -> Owner {
        let in_segment = |m: &Module| {
            m.segments
                .iter()
                .any(|s| addr >= s.addr && addr - s.addr < s.size)
        };
        if let Some(i) = self.modules.iter().position(in_segment) {
            return Owner::Module(i);
        }
        if let Some(i) = self.modules.iter().position(|m| m.contains(addr)) {
            return Owner::Module(i);
        }
        if self.heap.is_some_and(|(lo, hi)| lo <= addr && addr < hi) {
            return Owner::Heap;
        }
        if self.anon.iter().any(|&(lo, hi)| lo <= addr && addr < hi) {
            return Owner::Anon;
        }
        Owner::Unknown
    }

    /// `libc.so.6+0x1000` (offset from the module's base), `[heap]`,
    /// `[anon]`, or null.
    fn label(&self, addr: u64) -> Option<String> {
        match self.owner(addr) {
            Owner::Module(i) => {
                let m = &self.modules[i];
                Some(format!("{}+{:#x}", module_name(m), addr - m.base))
            }
            Owner::Heap => Some("[heap]".into()),
            Owner::Anon => Some("[anon]".into()),
            Owner::Unknown => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qtrace_format::schema::Segment;
    use qtrace_format::ModuleKind;

    fn owners() -> Owners {
        let module = Module {
            id: 0,
            kind: ModuleKind::Main,
            path: "/bin/prog".into(),
            guest_path: None,
            build_id: None,
            base: 0x40_0000,
            size: 0x3000,
            bias: Some(0),
            text: Some((0x40_1000, 0x40_2000)),
            entry: None,
            segments: vec![Segment {
                addr: 0x40_0000,
                size: 0x2000,
                file_offset: 0,
                prot: 5,
            }],
            loaded: None,
            unloaded: None,
        };
        Owners {
            modules: vec![module],
            heap: Some((0x40_3000, 0x40_5000)),
            anon: vec![(0x7000_0000, 0x7000_2000)],
        }
    }

    #[test]
    fn labels_say_only_what_the_trace_knows() {
        let o = owners();
        assert_eq!(o.label(0x40_1234).as_deref(), Some("prog+0x1234"));
        // Past the segments but inside the module's span (its .bss).
        assert_eq!(o.label(0x40_2000).as_deref(), Some("prog+0x2000"));
        assert_eq!(o.label(0x40_4fff).as_deref(), Some("[heap]"));
        assert_eq!(o.label(0x7000_1000).as_deref(), Some("[anon]"));
        assert_eq!(o.label(0x7fff_0000), None);
    }

    #[test]
    fn regions_join_adjacent_pages_of_one_owner() {
        let c = |n| Counts {
            loads: n,
            stores: 1,
            bytes: 8,
        };
        // Pages 0x400..0x404 (module, module, module, heap, heap), a gap,
        // then two anonymous pages.
        let pages: HashMap<u64, Counts> = [0x400, 0x401, 0x402, 0x403, 0x404, 0x70000, 0x70001]
            .into_iter()
            .map(|p| (p, c(p % 3)))
            .collect();
        let mut got = regions(&pages, 4096, &owners());
        got.sort_by_key(|r| r.0);
        let spans: Vec<(u64, u64, u64)> = got.iter().map(|r| (r.0, r.1, r.2)).collect();
        assert_eq!(
            spans,
            vec![
                (0x40_0000, 0x40_3000, 3),
                (0x40_3000, 0x40_5000, 2),
                (0x7000_0000, 0x7000_2000, 2),
            ]
        );
        let total: u64 = got.iter().map(|r| r.3.accesses()).sum();
        assert_eq!(total, pages.values().map(Counts::accesses).sum::<u64>());
    }
}
