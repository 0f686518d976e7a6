//! Rendering, driven by key events: the state a sequence of keys leaves,
//! drawn into ratatui's `TestBackend` and compared with snapshots
//! (`tests/snapshots/`; `cargo insta review` after a deliberate change).

use std::collections::HashMap;
use std::sync::Arc;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use qtrace_format::manifest::{RunEnd, ThreadTotals};
use qtrace_format::{BlockInfo, InsnInfo, Manifest, VcpuTotals};
use qtrace_tui::app::{App, Loaded, MemFocus, Request};
use qtrace_tui::data::{
    Access, Accesses, Call, HotBlock, HotPage, Summary, Timeline, BANDS, BUCKETS,
};
use qtrace_tui::diff::{Common, Comparison, DiffRow, Divergence, Step};
use qtrace_tui::{input, ui};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn block(id: u32, pc: u64, symbol: &str, insns: &[&str]) -> BlockInfo {
    BlockInfo {
        id,
        pc,
        size: 4 * insns.len() as u32,
        code: vec![0x90; 4 * insns.len()],
        symbol: Some(symbol.into()),
        insns: insns
            .iter()
            .enumerate()
            .map(|(i, d)| InsnInfo {
                addr: pc + 4 * i as u64,
                bytes: vec![0x90; 4],
                disas: d.to_string(),
                symbol: Some(symbol.into()),
            })
            .collect(),
    }
}

/// A small trace's summary: three blocks, one thread.
fn summary() -> Arc<Summary> {
    let dict = [
        block(
            0,
            0x401000,
            "main",
            &["mov $1, %eax", "add %eax, %ebx", "jmp 0x401100"],
        ),
        block(
            1,
            0x401100,
            "work",
            &["inc %ecx", "cmp $9, %ecx", "jne 0x401100"],
        ),
        block(2, 0x401200, "_start", &["call 0x401000"]),
    ];
    let execs = [10u64, 5000, 1];
    let hot: Vec<HotBlock> = [1usize, 0, 2]
        .iter()
        .map(|&i| HotBlock {
            id: dict[i].id,
            pc: dict[i].pc,
            execs: execs[i],
            n_insns: dict[i].insns.len() as u32,
            symbol: dict[i].symbol.clone().unwrap_or_default(),
            module: "hotloop".into(),
        })
        .collect();
    let manifest = Manifest {
        command_line: vec!["samples/build/x86_64/hotloop".into(), "3".into()],
        target: "x86_64".into(),
        mode: "linux-user".into(),
        pid: 4242,
        complete: true,
        distinct_blocks: 3,
        started_at: "2026-11-25T20:00:00Z".into(),
        recorder_version: "0.1.0".into(),
        end: Some(RunEnd {
            how: "exit".into(),
            exit_code: Some(0),
            ..RunEnd::default()
        }),
        vcpus: vec![VcpuTotals {
            vcpu: 0,
            blocks: 5011,
            insns: 15034,
            block_events: 5011,
            syscalls: 2,
            ..VcpuTotals::default()
        }],
        threads: vec![ThreadTotals {
            tid: 4242,
            vcpu: 0,
            first_seq: 0,
            block_events: 5011,
        }],
        ..Manifest::default()
    };
    Arc::new(Summary {
        manifest,
        hot,
        dict: dict
            .into_iter()
            .map(|b| (b.id, b))
            .collect::<HashMap<_, _>>(),
        exact: true,
    })
}

fn timeline() -> Timeline {
    let mut heat = vec![vec![0u64; BUCKETS]; 3];
    for (t, col) in heat[1].iter_mut().enumerate() {
        *col = if (20..100).contains(&t) { 60 } else { 0 };
    }
    heat[0][0] = 1;
    heat[2][110] = 3;
    assert!(heat.len() <= BANDS);
    Timeline {
        vcpu: 0,
        seqs: 0..5011,
        insns: (0..BUCKETS as u64)
            .map(|t| if (20..100).contains(&t) { 120 } else { 5 })
            .collect(),
        heat,
        band_pc: vec![0x401000, 0x401100, 0x401200],
        module_heat: vec![(0..BUCKETS as u64).map(|t| 60 + t % 2).collect()],
        modules: vec!["hotloop".into()],
    }
}

fn calls() -> Vec<Call> {
    vec![
        Call {
            vcpu: 0,
            seq: 0,
            tid: 4242,
            block_seq: 3,
            name: "openat".into(),
            call: "openat(AT_FDCWD, 0x4a0000, O_RDONLY) = -1 ENOENT (No such file or directory)"
                .into(),
            failed: true,
        },
        Call {
            vcpu: 0,
            seq: 1,
            tid: 4242,
            block_seq: 5010,
            name: "exit_group".into(),
            call: "exit_group(0) = ?".into(),
            failed: false,
        },
    ]
}

/// An interface with everything loaded, as the loader would fill it.
fn loaded_app() -> App {
    let (mut app, _) = App::new("run.parquet".into(), None);
    app.loaded(Loaded::Summary(Ok(summary())));
    app.loaded(Loaded::Timeline(Ok(timeline())));
    app.loaded(Loaded::Syscalls(Ok(calls())));
    app.loaded(Loaded::HotPages(Ok(vec![
        HotPage {
            page: 0x4a0000,
            loads: 900,
            stores: 100,
        },
        HotPage {
            page: 0x7ffff000,
            loads: 3,
            stores: 7,
        },
    ])));
    app
}

/// Types `keys` (one event per char; `\n` Enter, `\t` Tab, `\x1b` Esc).
fn press(app: &mut App, keys: &str) -> Vec<Request> {
    let mut requests = Vec::new();
    for c in keys.chars() {
        let code = match c {
            '\n' => KeyCode::Enter,
            '\t' => KeyCode::Tab,
            '\x1b' => KeyCode::Esc,
            c => KeyCode::Char(c),
        };
        let ev = Event::Key(KeyEvent::new(code, KeyModifiers::NONE));
        if let Some(action) = input::action(&ev, app.searching, ui::LIST_TOP) {
            requests.extend(app.handle(action));
        }
    }
    requests
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(f, app)).unwrap();
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..h {
        let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[test]
fn overview_at_80x24() {
    let app = loaded_app();
    insta::assert_snapshot!(screen(&app, 80, 24));
}

#[test]
fn hot_blocks_narrow_and_wide() {
    let mut app = loaded_app();
    press(&mut app, "2");
    insta::assert_snapshot!("hot_80x24", screen(&app, 80, 24));
    press(&mut app, "j");
    insta::assert_snapshot!("hot_140x30_second_selected", screen(&app, 140, 30));
}

#[test]
fn filtering_hot_blocks_as_you_type() {
    let mut app = loaded_app();
    press(&mut app, "2/mai");
    let s = screen(&app, 80, 24);
    assert!(s.contains("1 of 3"), "{s}");
    assert!(s.contains("/mai"), "{s}");
    // Letters are text while typing: `q` does not quit.
    press(&mut app, "q");
    assert!(!app.quit);
    press(&mut app, "\x1b");
    assert!(screen(&app, 80, 24).contains("3 of 3"));
}

#[test]
fn sorting_by_instructions() {
    let mut app = loaded_app();
    press(&mut app, "2s");
    insta::assert_snapshot!(screen(&app, 100, 12));
}

#[test]
fn timeline_heat_map_and_zoom() {
    let mut app = loaded_app();
    press(&mut app, "3");
    insta::assert_snapshot!("timeline_80x24", screen(&app, 80, 24));
    press(&mut app, "m");
    insta::assert_snapshot!("timeline_by_module", screen(&app, 80, 24));
    press(&mut app, "m");
    let requests = press(&mut app, "llll+");
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(matches!(
        &requests[0],
        Request::Timeline { seqs: Some(_), .. }
    ));
    let requests = press(&mut app, "-");
    assert!(matches!(&requests[0], Request::Timeline { seqs: Some(s), .. } if *s == (0..5011)));
}

#[test]
fn syscalls_list_and_jump_to_the_timeline() {
    let mut app = loaded_app();
    press(&mut app, "4");
    insta::assert_snapshot!(screen(&app, 80, 24));
    let requests = press(&mut app, "j\n");
    assert!(
        matches!(&requests[..], [Request::Timeline { vcpu: 0, seqs: Some(s) }] if s.contains(&5010))
    );
    assert_eq!(app.view, qtrace_tui::app::View::Timeline);
}

#[test]
fn memory_pages_and_help() {
    let mut app = loaded_app();
    press(&mut app, "5");
    insta::assert_snapshot!("memory_80x24", screen(&app, 80, 24));
    press(&mut app, "?");
    insta::assert_snapshot!("memory_help", screen(&app, 80, 24));
    press(&mut app, "\x1b");
    assert!(!app.help);
}

#[test]
fn loading_and_failures_are_shown_not_hidden() {
    let (mut app, _) = App::new("run.parquet".into(), None);
    assert!(screen(&app, 80, 24).contains("loading"));
    app.loaded(Loaded::Summary(Err(
        "run.parquet: not a qtrace trace".into()
    )));
    let s = screen(&app, 80, 24);
    assert!(
        s.contains("cannot show this: run.parquet: not a qtrace trace"),
        "{s}"
    );
}

fn access(seq: u64, addr: u64, store: bool, value: u64) -> Access {
    Access {
        vcpu: 0,
        seq,
        block_seq: seq / 3,
        addr,
        size: 4,
        store,
        value: Some(value),
    }
}

/// What the loader finds for these accesses: all listed, every one a point.
fn found(rows: Vec<Access>) -> Accesses {
    Accesses {
        total: rows.len() as u64,
        stores: rows.iter().filter(|a| a.store).count() as u64,
        points: rows
            .iter()
            .map(|a| (a.seq, a.value.unwrap(), a.store))
            .collect(),
        rows,
    }
}

#[test]
fn memory_follows_an_address_over_time() {
    let mut app = loaded_app();
    press(&mut app, "5");
    // Enter on a page asks for its accesses, and the keys move to them.
    let requests = press(&mut app, "\n");
    assert_eq!(requests, vec![Request::PageAccesses { page: 0x4a0000 }]);
    let page: Vec<Access> = (0..12)
        .map(|i| access(i * 10, 0x4a0010 + 4 * (i % 2), i % 3 == 0, i))
        .collect();
    app.loaded(Loaded::PageAccesses(Ok(found(page.clone()))));
    // Enter on the second access follows its address (4 bytes).
    let requests = press(&mut app, "j\n");
    assert_eq!(
        requests,
        vec![Request::AddrAccesses {
            addrs: 0x4a0014..0x4a0018
        }]
    );
    let followed: Vec<Access> = page.into_iter().filter(|a| a.addr == 0x4a0014).collect();
    // A stale answer, for another address, is dropped.
    app.loaded(Loaded::AddrAccesses(0x10..0x14, Ok(found(Vec::new()))));
    app.loaded(Loaded::AddrAccesses(
        0x4a0014..0x4a0018,
        Ok(found(followed)),
    ));
    insta::assert_snapshot!("memory_address_80x24", screen(&app, 80, 24));
    // Esc steps back to the page's accesses, then to the pages.
    press(&mut app, "\x1b");
    assert!(screen(&app, 80, 24).contains("Accesses in order (12)"));
    press(&mut app, "\x1b");
    assert_eq!(app.mem_focus, MemFocus::Pages);
    // `/` takes an address to follow.
    let requests = press(&mut app, "/0x4a0010\n");
    assert_eq!(
        requests,
        vec![Request::AddrAccesses {
            addrs: 0x4a0010..0x4a0011
        }]
    );
    assert!(press(&mut app, "/zz\n").is_empty());
    assert!(app.status.contains("not an address: zz"), "{}", app.status);
}

fn comparison() -> Comparison {
    let step = |seq, addr, symbol: &str, insns: &[(u64, &str)]| Step {
        seq,
        addr: Some(addr),
        symbol: symbol.into(),
        place: format!("branchy+{:#x}", addr - 0x400000),
        insns: insns.iter().map(|(a, d)| (*a, d.to_string())).collect(),
    };
    Comparison {
        rows: vec![
            DiffRow {
                status: "only-a".into(),
                symbol: "path_a".into(),
                module: "branchy".into(),
                pc: 0x401200,
                execs_a: 1,
                execs_b: 0,
            },
            DiffRow {
                status: "only-b".into(),
                symbol: "path_b".into(),
                module: "branchy".into(),
                pc: 0x401300,
                execs_a: 0,
                execs_b: 1,
            },
        ],
        only_a: 1,
        only_b: 1,
        divergences: vec![Divergence {
            vcpu: 0,
            seq: Some(4711),
            how: "blocks differ".into(),
            tid_a: Some(100),
            tid_b: Some(200),
            events_a: 9000,
            events_b: 9001,
            common: (4706..4711)
                .map(|s| Common {
                    seq: s,
                    addr_a: Some(0x401100 + s - 4706),
                    addr_b: Some(0x401100 + s - 4706),
                    symbol: "decide".into(),
                })
                .collect(),
            a: Some(step(
                4711,
                0x401200,
                "path_a",
                &[(0x401200, "mov $1, %eax"), (0x401205, "ret")],
            )),
            b: Some(step(4711, 0x401300, "path_b", &[(0x401300, "mov $2, %eax")])),
            explanation: vec![
                "system call read (A's call 3, B's 3; made at block seq 4000): data differ: A \"a\", B \"b\"".into(),
            ],
        }],
    }
}

#[test]
fn diff_shows_both_sides_of_the_first_divergence() {
    let (mut app, _) = App::new("a.parquet".into(), Some("b.parquet".into()));
    app.loaded(Loaded::Summary(Ok(summary())));
    let requests = press(&mut app, "6");
    assert_eq!(requests, vec![Request::Diff]);
    app.loaded(Loaded::Diff(Ok(comparison())));
    insta::assert_snapshot!("diff_80x24", screen(&app, 80, 24));
    press(&mut app, "f");
    insta::assert_snapshot!("diff_full_120x30", screen(&app, 120, 30));
}

#[test]
fn the_timeline_moves_to_the_next_vcpu() {
    let mut app = loaded_app();
    assert!(press(&mut app, "3v").is_empty());
    assert!(app.status.contains("one vCPU"), "{}", app.status);
    // With a second vCPU, `v` loads its whole timeline, then wraps round.
    let one = summary();
    let mut manifest = one.manifest.clone();
    let mut second = manifest.vcpus[0].clone();
    second.vcpu = 1;
    manifest.vcpus.push(second);
    let two = Summary {
        manifest,
        hot: one.hot.clone(),
        dict: one.dict.clone(),
        exact: true,
    };
    let (mut app, _) = App::new("run.parquet".into(), None);
    app.loaded(Loaded::Summary(Ok(Arc::new(two))));
    app.loaded(Loaded::Timeline(Ok(timeline())));
    assert_eq!(
        press(&mut app, "3v"),
        vec![Request::Timeline {
            vcpu: 1,
            seqs: None
        }]
    );
    assert_eq!(
        press(&mut app, "v"),
        vec![Request::Timeline {
            vcpu: 0,
            seqs: None
        }]
    );
}

#[test]
fn a_click_on_the_timeline_lists_the_blocks_there() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    use ratatui::layout::Rect;
    let mut app = loaded_app();
    press(&mut app, "3");
    let click = |column, row| {
        Event::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    let screen = Rect::new(0, 0, 80, 24);
    // A click on the labels is nothing; one on the map moves the cursor
    // and asks for the blocks of its column.
    assert_eq!(input::timeline_click(&click(3, 5), screen), None);
    let action = input::timeline_click(&click(50, 5), screen).expect("on the map");
    let requests = app.handle(action);
    assert!(app.tl_cursor > 0);
    let seqs = app.cursor_seqs().unwrap();
    assert_eq!(requests, vec![Request::WindowBlocks { vcpu: 0, seqs }]);
}
