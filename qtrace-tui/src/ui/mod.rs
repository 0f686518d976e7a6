//! Drawing: reads the [`App`] and draws it, never changes it. Every view
//! fits 80x24 and gives a wider terminal to the columns that need it
//! (symbols, disassembly).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Tabs, Wrap,
};
use ratatui::Frame;

use crate::app::{bucket_range, App, Slot, SortBy, View};
use crate::data::{HotBlock, BUCKETS};

mod diff;
mod memory;

/// Where the first row of a view's list is on screen (tabs, border,
/// header), for mouse clicks.
pub const LIST_TOP: u16 = 3;

/// The screen's rows: tabs, the view, the status line.
fn screen_areas(screen: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(screen)
}

/// The timeline view's parts: heat map, sparkline, blocks at the cursor.
fn timeline_areas(body: Rect) -> [Rect; 3] {
    Layout::vertical([
        Constraint::Min(6),
        Constraint::Length(4),
        Constraint::Length(if body.height > 30 { 12 } else { 6 }),
    ])
    .areas(body)
}

/// Width of the heat map's row labels.
const LABEL: u16 = 15;

/// The heat map's columns in a map of this size.
fn heat_columns(map: Rect) -> usize {
    usize::from(map.width.saturating_sub(2 + LABEL)).clamp(1, BUCKETS)
}

/// The timeline bucket under a click at (`col`, `row`) of the screen, if
/// the click is on the heat map.
pub fn timeline_bucket_at(screen: Rect, col: u16, row: u16) -> Option<usize> {
    let [map, _, _] = timeline_areas(screen_areas(screen)[1]);
    let left = map.x + 1 + LABEL;
    let cols = heat_columns(map);
    let inside_rows = row > map.y && row + 1 < map.y + map.height;
    if !inside_rows || col < left || usize::from(col - left) >= cols {
        return None;
    }
    // The first bucket drawn in that column (see `timeline`).
    let c = usize::from(col - left);
    Some((c * BUCKETS).div_ceil(cols).min(BUCKETS - 1))
}

pub fn draw(f: &mut Frame, app: &App) {
    let [tabs, body, status] = screen_areas(f.area());
    draw_tabs(f, app, tabs);
    match app.view {
        View::Overview => overview(f, app, body),
        View::Hot => hot(f, app, body),
        View::Timeline => timeline(f, app, body),
        View::Syscalls => syscalls(f, app, body),
        View::Memory => memory::draw(f, app, body),
        View::Diff => diff::draw(f, app, body),
    }
    draw_status(f, app, status);
    if app.help {
        help(f, app);
    }
}

fn draw_tabs(f: &mut Frame, app: &App, area: Rect) {
    let titles: Vec<String> = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{} {}", i + 1, v.title()))
        .collect();
    let selected = View::ALL.iter().position(|&v| v == app.view).unwrap_or(0);
    let tabs = Tabs::new(titles)
        .select(selected)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .divider("|");
    f.render_widget(tabs, area);
}

fn draw_status(f: &mut Frame, app: &App, area: Rect) {
    let hint = if app.searching {
        "type to filter · Enter keep · Esc clear".to_string()
    } else {
        "? help · Tab views · / filter · q quit".to_string()
    };
    let loading = [
        matches!(app.summary, Slot::Loading),
        matches!(app.timeline, Slot::Loading),
        matches!(app.syscalls, Slot::Loading),
        matches!(app.pages, Slot::Loading),
        matches!(app.accesses, Slot::Loading),
        matches!(app.window, Slot::Loading),
        matches!(app.diff, Slot::Loading),
    ]
    .iter()
    .any(|&l| l);
    let mut spans = vec![Span::styled(hint, Style::new().add_modifier(Modifier::DIM))];
    if loading {
        spans.push(Span::raw("  loading…"));
    }
    if !app.status.is_empty() {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            app.status.clone(),
            Style::new().fg(Color::Yellow),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A bordered block titled with the view and what it shows.
pub(super) fn frame(title: String) -> Block<'static> {
    Block::default().borders(Borders::ALL).title(title)
}

/// What a view shows while its data is not there.
pub(super) fn placeholder<T>(f: &mut Frame, slot: &Slot<T>, area: Rect, title: &str) -> bool {
    let text = match slot {
        Slot::Ready(_) => return false,
        Slot::Idle | Slot::Loading => "loading…".to_string(),
        Slot::Failed(e) => format!("cannot show this: {e}"),
    };
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(frame(title.to_string())),
        area,
    );
    true
}

fn overview(f: &mut Frame, app: &App, area: Rect) {
    if placeholder(f, &app.summary, area, &app.trace_name) {
        return;
    }
    let Some(s) = app.summary.ready() else { return };
    let m = &s.manifest;
    let [top, threads, spark] = Layout::vertical([
        Constraint::Length(9),
        Constraint::Min(3),
        Constraint::Length(5),
    ])
    .areas(area);
    let total: u64 = m.vcpus.iter().map(|v| v.block_events).sum();
    let insns: u64 = m.vcpus.iter().map(|v| v.insns).sum();
    let mem: u64 = m.vcpus.iter().map(|v| v.mem_accesses).sum();
    let calls: u64 = m.vcpus.iter().map(|v| v.syscalls).sum();
    let lines = vec![
        Line::from(format!(
            "program   {}",
            guest_command(&m.command_line).join(" ")
        )),
        Line::from(format!(
            "target    {} ({}), pid {}",
            m.target, m.mode, m.pid
        )),
        Line::from(format!(
            "ended     {}{}",
            m.ending(),
            if m.complete { "" } else { " · incomplete" }
        )),
        Line::from(format!(
            "blocks    {} events, {} distinct, {} instructions",
            group(total),
            group(m.distinct_blocks),
            group(insns)
        )),
        Line::from(format!(
            "syscalls  {}    memory accesses {}",
            group(calls),
            group(mem)
        )),
        Line::from(format!(
            "counts    {}",
            if s.exact {
                "exact (the recorder's counters)"
            } else {
                "counted from the block events"
            }
        )),
        Line::from(format!(
            "recorded  {} by qtrace {}",
            m.started_at, m.recorder_version
        )),
    ];
    f.render_widget(
        Paragraph::new(lines).block(frame(app.trace_name.clone())),
        top,
    );

    let rows: Vec<Row> = m
        .threads
        .iter()
        .map(|t| {
            let share = if total == 0 {
                0.0
            } else {
                t.block_events as f64 / total as f64
            };
            Row::new(vec![
                Cell::from(t.tid.to_string()),
                Cell::from(t.vcpu.to_string()),
                Cell::from(group(t.block_events)),
                Cell::from(format!("{:5.1}%", share * 100.0)),
                Cell::from(bar(share, 20)),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(16),
            Constraint::Length(7),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["tid", "vcpu", "block events", "share", ""]).style(bold()))
    .block(frame("Threads".into()));
    f.render_widget(table, threads);

    let title = match app.timeline.ready() {
        Some(t) => format!("Instructions over time, vCPU {} (3: timeline)", t.vcpu),
        None => "Instructions over time (loading…)".into(),
    };
    let data: Vec<u64> = app
        .timeline
        .ready()
        .map(|t| t.insns.clone())
        .unwrap_or_default();
    f.render_widget(Sparkline::default().data(&data).block(frame(title)), spark);
}

fn hot(f: &mut Frame, app: &App, area: Rect) {
    if placeholder(f, &app.summary, area, "Hot blocks") {
        return;
    }
    let rows = app.hot_rows();
    let wide = area.width >= 120;
    let (list_area, disas_area) = if wide {
        let [l, r] = Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
            .areas(area);
        (l, r)
    } else {
        let [l, r] = Layout::vertical([Constraint::Min(6), Constraint::Length(8)]).areas(area);
        (l, r)
    };
    let total: u64 = app
        .summary
        .ready()
        .map_or(0, |s| s.hot.iter().map(|h| h.execs).sum());
    let title = format!(
        "Hot blocks by {} · {} of {}{}",
        match app.sort {
            SortBy::Execs => "executions",
            SortBy::Insns => "instructions",
        },
        rows.len(),
        app.summary.ready().map_or(0, |s| s.hot.len()),
        filter_note(&app.hot.filter, app.searching)
    );
    block_table(f, &rows, app.hot.selected, total, list_area, title);
    let selected = rows.get(app.hot.selected);
    let mut lines = Vec::new();
    if let (Some(h), Some(s)) = (selected, app.summary.ready()) {
        lines.push(Line::styled(
            format!("{:#x} {} {}", h.pc, h.symbol, h.module),
            bold(),
        ));
        if let Some(b) = s.dict.get(&h.id) {
            for i in &b.insns {
                lines.push(Line::from(format!("{:#x}  {}", i.addr, i.disas)));
            }
        }
    }
    f.render_widget(
        Paragraph::new(lines).block(frame("Disassembly".into())),
        disas_area,
    );
}

/// A table of blocks: rank, executions, share, address, symbol, module.
fn block_table(
    f: &mut Frame,
    rows: &[&HotBlock],
    selected: usize,
    total: u64,
    area: Rect,
    title: String,
) {
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let share = if total == 0 {
                0.0
            } else {
                h.execs as f64 / total as f64
            };
            Row::new(vec![
                Cell::from((i + 1).to_string()),
                Cell::from(group(h.execs)),
                Cell::from(group(h.insns())),
                Cell::from(format!("{:5.2}%", share * 100.0)),
                Cell::from(format!("{:#x}", h.pc)),
                Cell::from(h.symbol.clone()),
                Cell::from(h.module.clone()),
            ])
        })
        .collect();
    let table = Table::new(
        body,
        [
            Constraint::Length(5),
            Constraint::Length(13),
            Constraint::Length(13),
            Constraint::Length(7),
            Constraint::Length(14),
            Constraint::Min(10),
            Constraint::Length(14),
        ],
    )
    .header(
        Row::new(vec![
            "#", "execs", "insns", "share", "address", "symbol", "module",
        ])
        .style(bold()),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(frame(title));
    let mut state = TableState::default().with_selected(Some(selected));
    f.render_stateful_widget(table, area, &mut state);
}

fn timeline(f: &mut Frame, app: &App, area: Rect) {
    if placeholder(f, &app.timeline, area, "Timeline") {
        return;
    }
    let Some(t) = app.timeline.ready() else {
        return;
    };
    let [map, spark, below] = timeline_areas(area);
    let cursor = bucket_range(&t.seqs, app.tl_cursor);
    let title = format!(
        "Timeline vCPU {} · seq {}..{} · cursor {}..{} · ←→ +/- m Enter",
        t.vcpu, t.seqs.start, t.seqs.end, cursor.start, cursor.end
    );
    // Rows: address bands, or modules (`m`).
    let (heat, labels): (&[Vec<u64>], Vec<String>) = if app.tl_by_module {
        let names = t
            .modules
            .iter()
            .map(|m| m.chars().take(14).collect())
            .collect();
        (&t.module_heat, names)
    } else {
        (
            &t.heat,
            t.band_pc.iter().map(|pc| format!("{pc:#x}")).collect(),
        )
    };
    let cols = heat_columns(map);
    let max = heat.iter().flatten().copied().max().unwrap_or(0).max(1);
    let cursor_col = app.tl_cursor * cols / BUCKETS;
    let rows_shown = map.height.saturating_sub(2) as usize;
    let bands = heat.len();
    let mut lines = Vec::new();
    // The top row is the highest address, as on a memory map.
    for r in 0..rows_shown.min(bands) {
        let band = bands - 1 - r * bands / rows_shown.min(bands).max(1);
        let mut spans = vec![Span::raw(format!("{:>14} ", labels[band]))];
        for c in 0..cols {
            let from = c * BUCKETS / cols;
            let to = ((c + 1) * BUCKETS / cols).max(from + 1);
            let n: u64 = heat[band][from..to].iter().sum();
            let level = shade(n, max * (to - from) as u64);
            let mut style = Style::new().fg(heat_colour(level));
            if c == cursor_col {
                style = style.add_modifier(Modifier::REVERSED);
            }
            spans.push(Span::styled(SHADES[level].to_string(), style));
        }
        lines.push(Line::from(spans));
    }
    f.render_widget(Paragraph::new(lines).block(frame(title)), map);
    // The same columns as the heat map above, under the same labels.
    let mut per_column = vec![0; usize::from(LABEL)];
    per_column.extend(resample(&t.insns, cols));
    f.render_widget(
        Sparkline::default()
            .data(&per_column)
            .block(frame("Instructions per column".into())),
        spark,
    );
    match &app.window {
        Slot::Ready(blocks) => {
            let rows: Vec<&HotBlock> = blocks.iter().collect();
            let total = rows.iter().map(|h| h.execs).sum();
            block_table(
                f,
                &rows,
                0,
                total,
                below,
                "Blocks at the cursor (Enter)".into(),
            );
        }
        Slot::Idle => f.render_widget(
            Paragraph::new("Enter lists the blocks executed in the cursor's column.")
                .block(frame("Blocks at the cursor".into())),
            below,
        ),
        other => {
            placeholder(f, other, below, "Blocks at the cursor (Enter)");
        }
    }
}

/// `values` averaged into `width` columns (each column the mean of the
/// values that fall in it), so that a sparkline shows the whole range, not
/// its start.
fn resample(values: &[u64], width: usize) -> Vec<u64> {
    if width == 0 || values.is_empty() {
        return Vec::new();
    }
    let cols = width.min(values.len());
    (0..cols)
        .map(|c| {
            let from = c * values.len() / cols;
            let to = ((c + 1) * values.len() / cols).max(from + 1);
            values[from..to].iter().sum::<u64>() / (to - from) as u64
        })
        .collect()
}

pub(super) const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

/// 0..=4: how hot `n` is against `max`, on a log scale (a loop runs
/// millions of times more than the code around it).
pub(super) fn shade(n: u64, max: u64) -> usize {
    if n == 0 {
        return 0;
    }
    let f = (n as f64).ln_1p() / (max as f64).ln_1p().max(1e-9);
    1 + ((f * 3.999) as usize).min(3)
}

pub(super) fn heat_colour(level: usize) -> Color {
    [
        Color::Reset,
        Color::Blue,
        Color::Cyan,
        Color::Yellow,
        Color::Red,
    ][level]
}

fn syscalls(f: &mut Frame, app: &App, area: Rect) {
    if placeholder(f, &app.syscalls, area, "Syscalls") {
        return;
    }
    let rows = app.call_rows();
    let body: Vec<Row> = rows
        .iter()
        .map(|c| {
            let style = if c.failed {
                Style::new().fg(Color::Red)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(c.tid.to_string()),
                Cell::from(c.block_seq.to_string()),
                Cell::from(c.call.clone()).style(style),
            ])
        })
        .collect();
    let title = format!(
        "Syscalls · {} of {} · Enter: to the timeline{}",
        rows.len(),
        app.syscalls.ready().map_or(0, Vec::len),
        filter_note(&app.calls.filter, app.searching)
    );
    let table = Table::new(
        body,
        [
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Min(20),
        ],
    )
    .header(Row::new(vec!["tid", "block_seq", "call"]).style(bold()))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(frame(title));
    // The selected call whole, wrapped: a table row is cut at its width.
    let [list, whole] = Layout::vertical([Constraint::Min(3), Constraint::Length(4)]).areas(area);
    let mut state = TableState::default().with_selected(Some(app.calls.selected));
    f.render_stateful_widget(table, list, &mut state);
    let selected = rows.get(app.calls.selected).map_or(String::new(), |c| {
        format!(
            "vCPU {} · thread {} · block {} · {}",
            c.vcpu, c.tid, c.block_seq, c.call
        )
    });
    f.render_widget(
        Paragraph::new(selected)
            .wrap(Wrap { trim: false })
            .block(frame("Selected".into())),
        whole,
    );
}

fn help(f: &mut Frame, app: &App) {
    let mut lines = vec![
        Line::styled(format!("{} — keys", app.view.title()), bold()),
        Line::from("Tab / Shift-Tab, 1-6   switch view"),
        Line::from("j k, ↑ ↓, PgUp PgDn   move;  g G  first, last"),
        Line::from("/  filter as you type (Enter keeps, Esc clears)"),
        Line::from("?  this help (Esc closes);  q  quit"),
        Line::from(""),
    ];
    let specific: &[&str] = match app.view {
        View::Overview => &[
            "What was recorded, how the run ended, threads,",
            "and instructions over time.",
        ],
        View::Hot => &[
            "s  sort by executions / instructions",
            "The selected block's disassembly is shown beside it.",
        ],
        View::Timeline => &[
            "h l, ← →  move the cursor in time",
            "+ / -  zoom in around the cursor / back out",
            "m  rows by module / by address band",
            "v  the next vCPU",
            "Enter  the blocks executed at the cursor",
        ],
        View::Syscalls => &[
            "Enter  jump to the call's moment on the timeline",
            "/  filter by name",
        ],
        View::Memory => &[
            "Enter  a page's accesses, with values; on an access,",
            "       every access to its address, values over time",
            "/  type an address to follow;  Esc  back",
        ],
        View::Diff => &[
            "Blocks matched by module, offset and code, the",
            "largest count changes first; below, where the runs",
            "part: A left, B right, and what explains it.",
            "f  the divergence at full height;  v  next vCPU",
        ],
    };
    lines.extend(specific.iter().map(|s| Line::from(*s)));
    let area = centered(f.area(), 64, lines.len() as u16 + 2);
    f.render_widget(Clear, area);
    f.render_widget(Paragraph::new(lines).block(frame("Help".into())), area);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

/// The guest's own command line: QEMU's, without QEMU and its options.
fn guest_command(argv: &[String]) -> &[String] {
    let is_qemu = argv
        .first()
        .and_then(|a| a.rsplit('/').next())
        .is_some_and(|a| a.starts_with("qemu-"));
    if !is_qemu {
        return argv;
    }
    // The options of qemu-user that take a value.
    const WITH_VALUE: [&str; 14] = [
        "-d", "-D", "-L", "-E", "-U", "-0", "-cpu", "-B", "-R", "-s", "-p", "-plugin", "-g",
        "-seed",
    ];
    let mut i = 1;
    while let Some(a) = argv.get(i).filter(|a| a.starts_with('-')) {
        i += if WITH_VALUE.contains(&a.as_str()) {
            2
        } else {
            1
        };
    }
    &argv[i.min(argv.len())..]
}

fn filter_note(filter: &str, typing: bool) -> String {
    match (filter.is_empty(), typing) {
        (true, false) => String::new(),
        _ => format!(" · /{filter}{}", if typing { "▏" } else { "" }),
    }
}

pub(super) fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// A share as a bar of `width` cells.
fn bar(share: f64, width: usize) -> String {
    let n = (share * width as f64).round() as usize;
    "█".repeat(n.min(width))
}

/// 1234567 as `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_command_without_qemu() {
        let argv: Vec<String> = [
            "/q/bin/qemu-x86_64",
            "-plugin",
            "/r.so,out=x",
            "-d",
            "plugin",
            "/bin/ls",
            "-l",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(guest_command(&argv), &argv[5..]);
        assert_eq!(guest_command(&argv[5..]), &argv[5..]);
    }

    #[test]
    fn a_click_on_the_heat_map_is_the_bucket_drawn_there() {
        for (w, h) in [(80, 24), (100, 30), (250, 60)] {
            let screen = Rect::new(0, 0, w, h);
            let [map, _, _] = timeline_areas(screen_areas(screen)[1]);
            let cols = heat_columns(map);
            let row = map.y + 2;
            for col in 0..w {
                match timeline_bucket_at(screen, col, row) {
                    // The column the cursor is drawn in for that bucket.
                    Some(b) => assert_eq!(b * cols / BUCKETS, usize::from(col - map.x - 1 - LABEL)),
                    None => {
                        assert!(col < map.x + 1 + LABEL || usize::from(col - 1 - LABEL) >= cols)
                    }
                }
            }
            // Not on the border, the tabs or the sparkline.
            assert_eq!(timeline_bucket_at(screen, 40, map.y), None);
            assert_eq!(timeline_bucket_at(screen, 40, 0), None);
            assert_eq!(timeline_bucket_at(screen, 40, map.y + map.height), None);
        }
    }

    #[test]
    fn groups_digits() {
        assert_eq!(group(0), "0");
        assert_eq!(group(1234567), "1,234,567");
        assert_eq!(group(999), "999");
    }

    #[test]
    fn resampling_keeps_the_total_and_the_whole_range() {
        let v: Vec<u64> = (1..=120).collect();
        let r = resample(&v, 78);
        assert_eq!(r.len(), 78);
        assert_eq!((r[0], r[77]), (1, 119));
        assert_eq!(resample(&v[..10], 78), v[..10].to_vec());
    }

    #[test]
    fn shades_on_a_log_scale() {
        assert_eq!(shade(0, 100), 0);
        assert_eq!(shade(100, 100), 4);
        assert!(shade(1, 1_000_000) >= 1);
    }
}
