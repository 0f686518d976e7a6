//! Start and stop triggers (`start=`, `stop=`, `windows=`): a windowed trace
//! holds exactly the runs of the full trace's block events between the
//! trigger points, each window at the run of `seq` the manifest gives, with
//! counters that agree with the events. The expected runs are worked out
//! from a full recording of the same program, independently of the
//! recorder's own logic.

mod common;
mod e2e_support;

use std::collections::BTreeMap;

use arrow_array::{Int64Array, UInt32Array, UInt64Array};
use e2e_support::*;
use qtrace_format::schema::{self, col};
use qtrace_format::{scan, Manifest, Table, Trace};

/// One block execution, as comparable across traces (ids are not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Event {
    pc: u64,
    size: u32,
    n_insns: u32,
}

impl Event {
    /// The address after the block: where a call that ends it returns.
    fn end(&self) -> u64 {
        self.pc + u64::from(self.size)
    }
}

/// A recorded trace, read back.
struct Rec {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    manifest: Manifest,
    /// vCPU -> its block events in `seq` order (checked to be 0, 1, 2...).
    events: BTreeMap<u32, Vec<Event>>,
    /// vCPU -> its system calls: (block_seq, num), in `seq` order.
    syscalls: BTreeMap<u32, Vec<(u64, i64)>>,
    /// pc -> symbol of the trace's blocks.
    symbols: BTreeMap<u64, String>,
}

fn rec(arch: &str, sample: &str, options: &[&str]) -> Rec {
    let prog = common::sample(arch, sample).display().to_string();
    let (dir, root) = record(&[&prog], options);
    read(dir, root)
}

fn read(dir: tempfile::TempDir, root: std::path::PathBuf) -> Rec {
    let trace = Trace::open(&root).unwrap();
    let manifest = trace.manifest().clone();
    assert!(manifest.complete, "incomplete trace: {manifest:?}");
    let dict: BTreeMap<u32, _> = trace
        .block_dict()
        .unwrap()
        .into_iter()
        .map(|b| (b.id, b))
        .collect();
    let rows = scan(
        &trace.parts(Table::Blocks).unwrap(),
        &[col::SEQ, col::BLOCK_ID],
        Vec::new,
        |mut acc, batch, part| {
            let seq: &UInt64Array = schema::column(batch, col::SEQ)?;
            let id: &UInt32Array = schema::column(batch, col::BLOCK_ID)?;
            for i in 0..batch.num_rows() {
                acc.push((part.vcpu.unwrap(), seq.value(i), id.value(i)));
            }
            Ok(acc)
        },
        |mut a, b| {
            a.extend(b);
            a
        },
    )
    .unwrap();
    let mut rows = rows;
    rows.sort_unstable();
    let mut events: BTreeMap<u32, Vec<Event>> = BTreeMap::new();
    for (vcpu, seq, id) in rows {
        let list = events.entry(vcpu).or_default();
        assert_eq!(seq, list.len() as u64, "vCPU {vcpu}: seq has a gap");
        let b = &dict[&id];
        list.push(Event {
            pc: b.pc,
            size: b.size,
            n_insns: b.insns.len() as u32,
        });
    }
    let mut calls = scan(
        &trace.parts(Table::Syscalls).unwrap(),
        &[col::SEQ, col::BLOCK_SEQ, col::NUM],
        Vec::new,
        |mut acc, batch, part| {
            let seq: &UInt64Array = schema::column(batch, col::SEQ)?;
            let block_seq: &UInt64Array = schema::column(batch, col::BLOCK_SEQ)?;
            let num: &Int64Array = schema::column(batch, col::NUM)?;
            for i in 0..batch.num_rows() {
                acc.push((
                    part.vcpu.unwrap(),
                    seq.value(i),
                    block_seq.value(i),
                    num.value(i),
                ));
            }
            Ok(acc)
        },
        |mut a, b| {
            a.extend(b);
            a
        },
    )
    .unwrap();
    calls.sort_unstable();
    let mut syscalls: BTreeMap<u32, Vec<(u64, i64)>> = BTreeMap::new();
    for (vcpu, _, block_seq, num) in calls {
        syscalls.entry(vcpu).or_default().push((block_seq, num));
    }
    let symbols = dict
        .values()
        .filter_map(|b| Some((b.pc, b.symbol.clone()?)))
        .collect();
    Rec {
        _dir: dir,
        root,
        manifest,
        events,
        syscalls,
        symbols,
    }
}

impl Rec {
    /// vCPU 0's events (the samples here are single-threaded).
    fn ev(&self) -> &[Event] {
        self.events.get(&0).map_or(&[], Vec::as_slice)
    }

    /// A function's entry: the lowest block address in it.
    fn entry(&self, symbol: &str) -> u64 {
        *self
            .symbols
            .iter()
            .find(|(_, s)| *s == symbol)
            .unwrap_or_else(|| panic!("no block in {symbol}"))
            .0
    }

    /// Each window's events on vCPU 0, at the run of `seq` the manifest gives.
    fn windows(&self) -> Vec<Vec<Event>> {
        self.manifest
            .windows
            .iter()
            .map(|w| {
                let r = w.vcpus.iter().find(|r| r.vcpu == 0);
                r.map_or(Vec::new(), |r| {
                    let first = r.first_seq as usize;
                    self.ev()[first..first + r.block_events as usize].to_vec()
                })
            })
            .collect()
    }

    /// What holds in every windowed trace: the windows' runs of `seq` follow
    /// each other on every vCPU and cover all its events (nothing is recorded
    /// outside a window), and the counters agree with the events.
    fn check_consistent(&self) {
        for (&vcpu, events) in &self.events {
            let mut next = 0;
            for w in &self.manifest.windows {
                for r in w.vcpus.iter().filter(|r| r.vcpu == vcpu) {
                    assert_eq!(r.first_seq, next, "window {} on vCPU {vcpu}", w.index);
                    next += r.block_events;
                }
            }
            assert_eq!(
                next,
                events.len() as u64,
                "vCPU {vcpu}: events outside windows"
            );
        }
        for v in &self.manifest.vcpus {
            assert_eq!(v.blocks, v.block_events, "vCPU {}", v.vcpu);
        }
        let counts = top_blocks(&self.root, &["-n", "0", "--source", "counts"]);
        let events = top_blocks(&self.root, &["-n", "0", "--source", "events"]);
        assert_eq!(counts, events);
    }
}

/// Runs of `ev` that start at each event at `entry` and end at the first
/// later event at the address the call returns to (after the block that
/// made the call), followed by every call nested at the same return address
/// returning first. `nth`: a window opens at the nth entry since the last
/// window closed. Worked out by counting calls, not by stack pointers.
fn call_windows(ev: &[Event], entry: u64, nth: usize, max: usize) -> (Vec<Vec<Event>>, bool) {
    let mut windows = Vec::new();
    let mut naive_differs = false;
    let (mut i, mut hits) = (1, 0);
    while i < ev.len() && windows.len() < max {
        if ev[i].pc != entry {
            i += 1;
            continue;
        }
        hits += 1;
        if hits < nth {
            i += 1;
            continue;
        }
        let ret = ev[i - 1].end();
        let mut depth = 0;
        let mut k = i + 1;
        let mut naive = None;
        loop {
            if ev[k].pc == entry && ev[k - 1].end() == ret {
                depth += 1;
            } else if ev[k].pc == ret {
                naive.get_or_insert(k);
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            k += 1;
        }
        naive_differs |= naive != Some(k);
        windows.push(ev[i..=k].to_vec());
        hits = 0;
        i = k + 1;
    }
    (windows, naive_differs)
}

#[test]
fn every_call_of_a_function_from_its_entry_to_its_return() {
    for arch in ["x86_64", "aarch64", "riscv64"] {
        let full = rec(arch, "calls", &[]);
        let step = full.entry("step");
        let (want, _) = call_windows(full.ev(), step, 1, usize::MAX);
        assert_eq!(want.len(), 6, "{arch}: step() is called once per round");

        let w = rec(
            arch,
            "calls",
            &["start=sym:step", "stop=ret", "windows=all"],
        );
        w.check_consistent();
        assert_eq!(w.windows(), want, "{arch}");
        for (win, events) in w.manifest.windows.iter().zip(&want) {
            assert_eq!(win.start.trigger, "sym:step");
            assert_eq!(win.start.pc, Some(step));
            assert_eq!(win.stop.trigger, "ret");
            assert_eq!(win.stop.pc, Some(events.last().unwrap().pc));
            assert_eq!((win.start.vcpu, win.stop.vcpu), (Some(0), Some(0)));
        }

        // windows=N: the first N calls only.
        let w2 = rec(arch, "calls", &["start=sym:step", "stop=ret", "windows=2"]);
        w2.check_consistent();
        assert_eq!(w2.windows(), want[..2], "{arch}");
    }

    // A position-independent, dynamically linked program: functions are
    // found where QEMU loaded it.
    let full = rec("x86_64", "calls-pie", &[]);
    let step = full.entry("step");
    assert!(step > 0x1_0000_0000, "{step:#x}: not moved");
    let (want, _) = call_windows(full.ev(), step, 1, usize::MAX);
    let w = rec(
        "x86_64",
        "calls-pie",
        &["start=sym:step", "stop=ret", "windows=all"],
    );
    w.check_consistent();
    assert_eq!((w.windows(), want.len()), (want, 6));

    // @K: from the 3rd entry to the 2nd entry after it, both blocks included.
    let full = rec("x86_64", "calls", &[]);
    let ev = full.ev();
    let step = full.entry("step");
    let entries: Vec<usize> = (0..ev.len()).filter(|&i| ev[i].pc == step).collect();
    let w = rec("x86_64", "calls", &["start=sym:step@3", "stop=sym:step@2"]);
    w.check_consistent();
    assert_eq!(w.windows(), vec![ev[entries[2]..=entries[4]].to_vec()]);
}

#[test]
fn a_return_address_reached_by_a_nested_call_does_not_close_the_window() {
    // ping() -> pong() -> ping() ...: from its 2nd entry on, every ping()
    // returns to the same address in pong(), the inner ones first.
    let full = rec("x86_64", "calls", &[]);
    let ping = full.entry("ping");
    let (want, naive_differs) = call_windows(full.ev(), ping, 2, usize::MAX);
    assert!(
        naive_differs,
        "no window where the first arrival at the return address is a nested call's"
    );
    let w = rec(
        "x86_64",
        "calls",
        &["start=sym:ping@2", "stop=ret", "windows=all"],
    );
    w.check_consistent();
    assert_eq!(w.windows(), want);
    assert!(w
        .manifest
        .windows
        .iter()
        .all(|w| w.start.trigger == "sym:ping@2"));
}

/// Instructions executed before each event.
fn cumulative(ev: &[Event]) -> Vec<u64> {
    ev.iter()
        .scan(0u64, |sum, e| {
            let before = *sum;
            *sum += u64::from(e.n_insns);
            Some(before)
        })
        .collect()
}

#[test]
fn icount_opens_at_the_first_block_that_starts_at_or_after_n_instructions() {
    let full = rec("x86_64", "hotloop", &[]);
    let ev = full.ev();
    let before = cumulative(ev);
    // n inside a block (not at its start), to tell the rule apart.
    let first_at = |n: u64| before.partition_point(|&c| c < n);
    let n = (1_000_000..).find(|&n| before[first_at(n)] > n).unwrap();
    let m = 10_000u64;
    // The window's first block: the first to start once n instructions ran.
    let b = first_at(n);
    // Its last: the first during which the window's m-th instruction runs.
    let c = (b..ev.len())
        .find(|&c| before[c] + u64::from(ev[c].n_insns) - before[b] >= m)
        .unwrap();
    // (A system call made by block b - 1 would be recorded though the block
    // is not: see the format's documentation. None here.)
    assert!(full.syscalls[&0].iter().all(|c| c.0 != b as u64 - 1));

    let w = rec(
        "x86_64",
        "hotloop",
        &[&format!("start=icount:{n}"), &format!("stop=icount:{m}")],
    );
    w.check_consistent();
    assert_eq!(w.windows(), vec![ev[b..=c].to_vec()]);
    let win = &w.manifest.windows[0];
    assert_eq!(
        (win.start.trigger.as_str(), win.stop.trigger.as_str()),
        (format!("icount:{n}").as_str(), "icount:10000")
    );

    // Without a stop, the window lasts to the end; the guest's write is in it.
    let w = rec("x86_64", "hotloop", &[&format!("start=icount:{n}")]);
    w.check_consistent();
    assert_eq!(w.windows(), vec![ev[b..].to_vec()]);
    assert_eq!(w.manifest.windows[0].stop.trigger, "exit");
    let full_calls = &full.syscalls[&0];
    let first_call = full_calls.iter().position(|c| c.0 >= b as u64).unwrap();
    let got: Vec<(u64, i64)> = w.syscalls[&0].clone();
    let want: Vec<(u64, i64)> = full_calls[first_call..]
        .iter()
        .map(|&(s, num)| (s - b as u64, num))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn a_system_call_opens_a_window_after_it_and_closes_one_after_its_block() {
    const WRITE: i64 = 1; // x86_64
    let full = rec("x86_64", "calls", &[]);
    let ev = full.ev();
    let writes: Vec<(usize, u64)> = full.syscalls[&0]
        .iter()
        .enumerate()
        .filter(|(_, c)| c.1 == WRITE)
        .map(|(i, c)| (i, c.0))
        .collect();
    assert_eq!(writes.len(), 6);
    let ((third, s3), (fourth, s4)) = (writes[2], writes[3]);
    // From the block after the 3rd write to the block that made the 4th.
    let want = ev[s3 as usize + 1..=s4 as usize].to_vec();

    for syscalls in ["on", "off"] {
        let w = rec(
            "x86_64",
            "calls",
            &[
                "start=syscall:write@3",
                "stop=syscall:1",
                &format!("syscalls={syscalls}"),
            ],
        );
        w.check_consistent();
        assert_eq!(w.windows(), vec![want.clone()], "syscalls={syscalls}");
        let win = &w.manifest.windows[0];
        assert_eq!(
            (win.start.trigger.as_str(), win.stop.trigger.as_str()),
            ("syscall:write@3", "syscall:1")
        );
        if syscalls == "off" {
            assert!(w.syscalls.is_empty());
            continue;
        }
        // The calls from the 3rd write to the 4th, the 3rd's `block_seq`
        // being the window's first block (the one after it).
        let got = &w.syscalls[&0];
        let full_calls = &full.syscalls[&0][third..=fourth];
        assert_eq!(
            got.iter().map(|c| c.1).collect::<Vec<_>>(),
            full_calls.iter().map(|c| c.1).collect::<Vec<_>>()
        );
        assert_eq!(got[0].0, 0);
        for (g, f) in got.iter().zip(full_calls).skip(1) {
            assert_eq!(g.0, f.0 - (s3 + 1));
        }
    }
}

#[test]
fn an_address_in_the_middle_of_a_block_opens_with_that_block() {
    let full = rec("x86_64", "hotloop", &[]);
    let ev = full.ev();
    // The second instruction of collatz's loop: not a block's start.
    let collatz = full.entry("collatz");
    let trace = Trace::open(&full.root).unwrap();
    let target = trace
        .block_dict()
        .unwrap()
        .iter()
        .filter(|b| b.symbol.as_deref() == Some("collatz") && b.insns.len() >= 3)
        .map(|b| b.insns[1].addr)
        .min()
        .unwrap();
    let holds = |e: &Event| (e.pc..e.end()).contains(&target) && e.pc != target;
    // From the 5th block that runs `target`, to the next entry of collatz.
    let i = ev
        .iter()
        .enumerate()
        .filter(|(_, e)| holds(e))
        .nth(4)
        .unwrap()
        .0;
    let k = (i + 1..ev.len()).find(|&k| ev[k].pc == collatz).unwrap();

    let w = rec(
        "x86_64",
        "hotloop",
        &[&format!("start=addr:{target:#x}@5"), "stop=sym:collatz"],
    );
    w.check_consistent();
    assert_eq!(w.windows(), vec![ev[i..=k].to_vec()]);
    assert_eq!(w.manifest.windows[0].start.pc, Some(target));
    assert_eq!(w.manifest.windows[0].stop.pc, Some(collatz));
}

#[test]
fn a_window_that_never_opens_records_nothing() {
    let w = rec("x86_64", "hotloop", &["start=addr:0x10"]);
    assert!(w.events.is_empty());
    assert!(w.manifest.windows.is_empty());
    assert!(w.syscalls.is_empty());
    assert!(top_blocks(&w.root, &["-n", "0", "--source", "counts"]).is_empty());
}

#[test]
fn windows_are_global_across_threads_and_the_trace_stays_consistent() {
    let w = rec(
        "x86_64",
        "threads",
        &["start=sym:work", "stop=ret", "windows=all"],
    );
    w.check_consistent();
    // Each of the 9 threads' work() opened a window, unless another thread's
    // window was open then: at least one window, each closed by a return.
    let n = w.manifest.windows.len();
    assert!((1..=9).contains(&n), "{n} windows");
    for win in &w.manifest.windows {
        assert_eq!(win.start.trigger, "sym:work");
        assert_eq!(win.stop.trigger, "ret");
        // The thread that opened it closed it.
        assert_eq!(win.start.tid, win.stop.tid);
        assert!(!win.vcpus.is_empty());
    }
}

#[test]
fn info_lists_the_windows() {
    let w = rec(
        "x86_64",
        "calls",
        &["start=sym:step", "stop=ret", "windows=2"],
    );
    let out = qtrace().arg("info").arg(&w.root).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let step = w.entry("step");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("sym:step (vcpu 0, {step:#x})")))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for (row, win) in rows.iter().zip(&w.manifest.windows) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let r = &win.vcpus[0];
        assert_eq!(cells[0], win.index.to_string());
        assert_eq!(
            cells[cells.len() - 3..],
            ["0", &r.first_seq.to_string(), &r.block_events.to_string()]
        );
    }
    let out = qtrace()
        .arg("info")
        .arg(&w.root)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["windows"].as_array().unwrap().len(), 2);
    assert_eq!(json["windows"][1]["stop"]["trigger"], "ret");
}

#[test]
fn bad_triggers_refuse_the_run_with_one_line_naming_the_option() {
    let prog = common::sample("x86_64", "calls").display().to_string();
    for (opt, needle) in [
        ("start=addr:0xzz", "option `start=addr:0xzz`"),
        ("start=when:1", "expected addr:ADDRESS, sym:PATTERN"),
        ("start=icount:0", "option `start=icount:0`"),
        ("stop=sym:step@0", "@N"),
        ("stop=ret", "option `stop=ret`"),
        ("windows=0", "option `windows=0`"),
        ("start=syscall:wirte", "no system call named `wirte`"),
        // Found only once QEMU has loaded the program.
        ("start=sym:no_such_function", "no function of"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("t.parquet");
        let out = qtrace()
            .args(["record", "-O", opt, "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&prog)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{opt}");
        let err = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = err.lines().filter(|l| l.contains(needle)).collect();
        assert_eq!(ours.len(), 1, "{opt}: {err}");
        assert!(ours[0].starts_with("qtrace: "), "{opt}: {err}");
        assert!(!trace.exists(), "{opt}: a trace was left");
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "{opt}: the guest ran"
        );
    }
}

#[test]
fn the_full_trace_is_unchanged_without_triggers() {
    // Sanity for the oracle: two full recordings agree event by event.
    let a = rec("x86_64", "calls", &[]);
    let b = rec("x86_64", "calls", &[]);
    assert_eq!(a.ev(), b.ev());
    assert!(a.manifest.windows.is_empty());
}
