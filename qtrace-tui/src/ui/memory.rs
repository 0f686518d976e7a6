//! The Memory view: hot pages as a heat column; a page's accesses in
//! order; one address's accesses with its values over time, as a chart.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, GraphType, Paragraph, Row, Table, TableState, Wrap,
};
use ratatui::Frame;

use super::{bold, frame, group, heat_colour, placeholder, shade, SHADES};
use crate::app::{App, ListState, MemFocus, Slot};
use crate::data::{Access, Accesses};

const LOADS: Color = Color::Cyan;
const STORES: Color = Color::Yellow;

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    if placeholder(f, &app.pages, area, "Memory") {
        return;
    }
    let Some(pages) = app.pages.ready() else {
        return;
    };
    if pages.is_empty() {
        f.render_widget(
            Paragraph::new("This trace has no memory accesses: record with -O mem=values.")
                .block(frame("Memory".into())),
            area,
        );
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let max = pages
        .iter()
        .map(|p| p.loads + p.stores)
        .max()
        .unwrap_or(1)
        .max(1);
    let body: Vec<Row> = pages
        .iter()
        .map(|p| {
            let n = p.loads + p.stores;
            let level = shade(n, max);
            Row::new(vec![
                Cell::from(format!("{:#x}", p.page)),
                Cell::from(compact(p.loads)),
                Cell::from(compact(p.stores)),
                Cell::from(SHADES[level].to_string().repeat(4))
                    .style(Style::new().fg(heat_colour(level))),
            ])
        })
        .collect();
    let title = if app.searching {
        format!("Follow address: /{}", app.page_list.filter)
    } else {
        format!("Hot pages ({}) · Enter: accesses", pages.len())
    };
    let table = Table::new(
        body,
        [
            Constraint::Length(14),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(4),
        ],
    )
    .header(Row::new(vec!["page", "loads", "stores", "heat"]).style(bold()))
    .row_highlight_style(highlight(app.mem_focus == MemFocus::Pages))
    .block(frame(title));
    let mut state = TableState::default().with_selected(Some(app.page_list.selected));
    f.render_stateful_widget(table, left, &mut state);

    if app.mem_focus == MemFocus::Address {
        address(f, app, right);
        return;
    }
    match &app.accesses {
        Slot::Ready(a) => {
            let title = format!("Accesses in order ({}) · Enter: follow", counted(a));
            let focused = app.mem_focus == MemFocus::Page;
            accesses(f, &a.rows, &app.access_list, focused, title, right);
        }
        Slot::Idle => f.render_widget(
            Paragraph::new(
                "Enter on a page lists its accesses with their values; \
                 Enter on an access follows its address. / types an address to follow.",
            )
            .wrap(Wrap { trim: true })
            .block(frame("Accesses".into())),
            right,
        ),
        other => {
            placeholder(f, other, right, "Accesses");
        }
    }
}

/// A count in at most 7 characters: 999,999, then 1.0M to 999.9M, then G.
fn compact(n: u64) -> String {
    match n {
        0..1_000_000 => group(n),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// The selected row: reversed when its list has the keys, else underlined.
fn highlight(focused: bool) -> Style {
    Style::new().add_modifier(if focused {
        Modifier::REVERSED
    } else {
        Modifier::UNDERLINED
    })
}

/// How many accesses, and how many of them are listed when not all.
fn counted(a: &Accesses) -> String {
    if a.rows.len() as u64 == a.total {
        group(a.total)
    } else {
        format!("first {} of {}", group(a.rows.len() as u64), group(a.total))
    }
}

fn accesses(
    f: &mut Frame,
    rows: &[Access],
    list: &ListState,
    focused: bool,
    title: String,
    area: Rect,
) {
    let body: Vec<Row> = rows
        .iter()
        .map(|a| {
            let (op, colour) = if a.store { ("W", STORES) } else { ("R", LOADS) };
            Row::new(vec![
                Cell::from(format!("{}:{}", a.vcpu, a.seq)),
                Cell::from(format!("{:#x}", a.addr)),
                Cell::from(format!("{op}{}", a.size)).style(Style::new().fg(colour)),
                Cell::from(a.value.map_or("-".to_string(), |v| format!("{v:#x}"))),
            ])
        })
        .collect();
    let table = Table::new(
        body,
        [
            Constraint::Length(12),
            Constraint::Length(14),
            Constraint::Length(3),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["vcpu:seq", "address", "op", "value"]).style(bold()))
    .row_highlight_style(highlight(focused))
    .block(frame(title));
    let mut state = TableState::default().with_selected(Some(list.selected));
    f.render_stateful_widget(table, area, &mut state);
}

/// One address: its values over the whole run (loads and stores apart),
/// and its first accesses in order.
fn address(f: &mut Frame, app: &App, area: Rect) {
    let addr = app.followed.unwrap_or(0);
    let name = format!("{addr:#x}");
    if placeholder(f, &app.addr_accesses, area, &name) {
        return;
    }
    let Some(found) = app.addr_accesses.ready() else {
        return;
    };
    if found.total == 0 {
        f.render_widget(
            Paragraph::new(format!("No access touches {name}. Esc: back"))
                .wrap(Wrap { trim: true })
                .block(frame(name)),
            area,
        );
        return;
    }
    let [chart_area, list_area] =
        Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(area);
    let point = |&(seq, value, _): &(u64, u64, bool)| (seq as f64, value as f64);
    let loads: Vec<(f64, f64)> = found.points.iter().filter(|p| !p.2).map(point).collect();
    let stores: Vec<(f64, f64)> = found.points.iter().filter(|p| p.2).map(point).collect();
    let seqs = found.points.iter().map(|p| p.0);
    let (first, last) = (seqs.clone().min().unwrap_or(0), seqs.max().unwrap_or(0));
    let values = found.points.iter().map(|p| p.1);
    let (lo, hi) = (values.clone().min().unwrap_or(0), values.max().unwrap_or(0));
    let dataset = |points, colour| {
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Scatter)
            .style(Style::new().fg(colour))
            .data(points)
    };
    // The legend is the title, in the points' colours.
    let title = Line::from(vec![
        Span::raw(format!("{name}: ")),
        Span::styled(
            format!("loads {}", group(found.total - found.stores)),
            Style::new().fg(LOADS),
        ),
        Span::raw(" · "),
        Span::styled(
            format!("stores {}", group(found.stores)),
            Style::new().fg(STORES),
        ),
        Span::raw(" by seq"),
    ]);
    let pad = |a: u64, b: u64| {
        if a == b {
            [a as f64 - 1.0, b as f64 + 1.0]
        } else {
            [a as f64, b as f64]
        }
    };
    let chart = Chart::new(vec![dataset(&loads, LOADS), dataset(&stores, STORES)])
        .block(Block::default().borders(Borders::ALL).title(title))
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds(pad(first, last))
                .labels([Line::from(first.to_string()), Line::from(last.to_string())]),
        )
        .y_axis(Axis::default().bounds(pad(lo, hi)).labels([
            Line::from(format!("{lo:#x}")),
            Line::from(format!("{hi:#x}")),
        ]));
    f.render_widget(chart, chart_area);
    let title = format!("{} accesses · Esc: back", counted(found));
    accesses(f, &found.rows, &app.addr_list, true, title, list_area);
}
