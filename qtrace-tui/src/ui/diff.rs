//! The Diff view: the count changes of blocks matched across the two
//! traces, and the first divergence with A and B side by side.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::{bold, frame, group, placeholder};
use crate::app::App;
use crate::diff::{Comparison, Divergence, Step};

/// A's colour and B's, wherever the two sides are shown.
const A: Color = Color::Red;
const B: Color = Color::Green;

pub fn draw(f: &mut Frame, app: &App, area: Rect) {
    let Some(other) = &app.other_name else {
        f.render_widget(
            Paragraph::new("Give two traces to compare them: qtrace-tui A B")
                .block(frame("Diff".into())),
            area,
        );
        return;
    };
    if placeholder(f, &app.diff, area, "Diff") {
        return;
    }
    let Some(d) = app.diff.ready() else { return };
    let first = d.divergences.get(app.diff_vcpu);
    if app.diff_full {
        divergence(f, app, other, first, area);
        return;
    }
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    counts(f, app, other, d, top);
    divergence(f, app, other, first, bottom);
}

fn counts(f: &mut Frame, app: &App, other: &str, d: &Comparison, area: Rect) {
    let body: Vec<Row> = d
        .rows
        .iter()
        .map(|r| {
            let change = r.change();
            let style = Style::new().fg(if change > 0 { B } else { A });
            Row::new(vec![
                Cell::from(r.status.clone()),
                Cell::from(format!("{change:+}")).style(style),
                Cell::from(group(r.execs_a)),
                Cell::from(group(r.execs_b)),
                Cell::from(format!("{:#x}", r.pc)),
                Cell::from(r.symbol.clone()),
                Cell::from(r.module.clone()),
            ])
        })
        .collect();
    let title = format!(
        "A {} · B {} · only in A {} · only in B {} · changed {}",
        app.trace_name,
        other,
        d.only_a,
        d.only_b,
        d.rows.len() - d.only_a - d.only_b
    );
    let table = Table::new(
        body,
        [
            Constraint::Length(8),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(11),
            Constraint::Length(14),
            Constraint::Min(8),
            Constraint::Length(12),
        ],
    )
    .header(
        Row::new(vec![
            "status", "change", "execs A", "execs B", "address", "symbol", "module",
        ])
        .style(bold()),
    )
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .block(frame(title));
    let mut state = TableState::default().with_selected(Some(app.diff_list.selected));
    f.render_stateful_widget(table, area, &mut state);
}

/// The first divergence of one vCPU: a headline, A's and B's context in
/// two columns, and what explains it below.
fn divergence(f: &mut Frame, app: &App, other: &str, d: Option<&Divergence>, area: Rect) {
    let n = app.diff.ready().map_or(0, |c| c.divergences.len());
    let Some(d) = d else {
        f.render_widget(
            Paragraph::new("qtrace diff --first reported nothing")
                .block(frame("First divergence".into())),
            area,
        );
        return;
    };
    let mut title = format!("First divergence · vCPU {}", d.vcpu);
    if n > 1 {
        title.push_str(&format!(" ({} of {n}, v: next)", app.diff_vcpu + 1));
    }
    title.push_str(if app.diff_full {
        " · f: counts"
    } else {
        " · f: full height"
    });
    let outer = frame(title);
    let inner = outer.inner(area);
    f.render_widget(outer, area);
    let Some(seq) = d.seq else {
        f.render_widget(
            Paragraph::new(format!(
                "no divergence: the same {} blocks in A and B",
                group(d.events_a)
            )),
            inner,
        );
        return;
    };
    let tid = |t: Option<u64>| t.map_or("-".to_string(), |t| t.to_string());
    let headline = Line::from(vec![
        Span::styled(format!("the runs part at seq {seq}"), bold()),
        Span::raw(format!(
            " ({}; thread {} in A, {} in B; A has {} blocks, B {})",
            d.how,
            tid(d.tid_a),
            tid(d.tid_b),
            group(d.events_a),
            group(d.events_b)
        )),
    ]);
    // The explanation takes what it needs, up to a third of the height.
    let why = (d.explanation.len() as u16 + 2)
        .min(inner.height / 3)
        .max(3);
    let [head, sides, explained] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(why),
    ])
    .areas(inner);
    f.render_widget(Paragraph::new(headline), head);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(sides);
    // The first block of each side and up to three of its instructions
    // come first; the latest common blocks fill what is left, as many on
    // both sides so that their rows line up.
    let insns = |s: &Option<Step>| s.as_ref().map_or(0, |s| s.insns.len().min(3));
    let reserved = 1 + insns(&d.a).max(insns(&d.b));
    let shown = usize::from(sides.height.saturating_sub(2)).saturating_sub(reserved);
    for (rect, name, colour, first, is_a) in [
        (left, app.trace_name.as_str(), A, &d.a, true),
        (right, other, B, &d.b, false),
    ] {
        let lines = side(d, first.as_ref(), colour, is_a, shown);
        let label = if is_a { "A" } else { "B" };
        f.render_widget(
            Paragraph::new(lines).block(frame(format!("{label} {name}"))),
            rect,
        );
    }
    let lines: Vec<Line> = d
        .explanation
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(frame("explained by".into())),
        explained,
    );
}

/// One side's column: the last common blocks at this side's addresses
/// (dimmed), then its first block after the point with its disassembly.
/// Only the latest `shown` common blocks are listed.
fn side<'a>(
    d: &'a Divergence,
    first: Option<&'a Step>,
    colour: Color,
    is_a: bool,
    shown: usize,
) -> Vec<Line<'a>> {
    let dim = Style::new().add_modifier(Modifier::DIM);
    let shown = shown.min(d.common.len());
    let mut lines: Vec<Line> = d.common[d.common.len() - shown..]
        .iter()
        .map(|c| {
            let addr = if is_a { c.addr_a } else { c.addr_b };
            Line::styled(
                format!(
                    "{:>9} {} {}",
                    c.seq,
                    addr.map_or("-".to_string(), |a| format!("{a:#x}")),
                    c.symbol
                ),
                dim,
            )
        })
        .collect();
    let Some(s) = first else {
        lines.push(Line::styled(
            "  (its stream ends here)",
            Style::new().fg(colour),
        ));
        return lines;
    };
    lines.push(Line::styled(
        format!(
            "{:>9} {} {} {}",
            s.seq,
            s.addr.map_or("-".to_string(), |a| format!("{a:#x}")),
            s.symbol,
            s.place
        ),
        Style::new().fg(colour).add_modifier(Modifier::BOLD),
    ));
    lines.extend(s.insns.iter().map(|(addr, disas)| {
        Line::from(vec![
            Span::styled(format!("    {addr:#x}  "), dim),
            Span::styled(disas.as_str(), Style::new().fg(colour)),
        ])
    }));
    lines
}
