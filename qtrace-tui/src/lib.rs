//! qtrace-tui: browse a trace (or compare two) in the terminal.
//!
//! The parts, as in gitui: [`app`] holds the state and turns actions into
//! new state, knowing nothing of the terminal; [`input`] turns keys and
//! clicks into actions; [`ui`] draws the state and changes nothing;
//! [`loader`] reads the traces on a background thread and reports over a
//! channel, so the interface never freezes; [`data`] and [`diff`] are
//! what the loader computes, with [`cli`] running `qtrace` itself for
//! what the command line already answers (diff, syscalls).

pub mod app;
pub mod cli;
pub mod data;
pub mod diff;
pub mod input;
pub mod loader;
pub mod ui;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use qtrace_format::Trace;

use app::{App, Request, View};
use loader::Traces;

/// Opens the traces (so that a bad path fails before the screen is taken)
/// and runs the interface until the user quits.
pub fn run(a: &Path, b: Option<&Path>) -> Result<()> {
    let traces = Arc::new(Traces {
        a: Trace::open(a)?,
        b: b.map(Trace::open).transpose()?,
    });
    let (app, first) = App::new(display_name(a), b.map(display_name));
    let (req_tx, req_rx) = mpsc::channel::<Request>();
    let (res_tx, res_rx) = mpsc::channel();
    let loader = Arc::clone(&traces);
    std::thread::Builder::new()
        .name("qtrace-tui-loader".into())
        .spawn(move || loader::serve(loader, req_rx, res_tx))
        .context("cannot start the loader thread")?;
    for r in first {
        let _ = req_tx.send(r);
    }
    // ratatui::init takes the screen and installs a panic hook that gives
    // it back before the panic is printed.
    let mut terminal = ratatui::init();
    let _ = execute!(std::io::stdout(), EnableMouseCapture);
    let result = event_loop(&mut terminal, app, &req_tx, &res_rx);
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut app: App,
    requests: &mpsc::Sender<Request>,
    results: &mpsc::Receiver<app::Loaded>,
) -> Result<()> {
    while !app.quit {
        terminal.draw(|f| ui::draw(f, &app))?;
        // Wake for input or, every 50 ms, for what the loader finished.
        if event::poll(Duration::from_millis(50))? {
            let ev = event::read()?;
            let size = terminal.size()?;
            let screen = ratatui::layout::Rect::new(0, 0, size.width, size.height);
            let on_map = (app.view == View::Timeline)
                .then(|| input::timeline_click(&ev, screen))
                .flatten();
            let action = on_map.or_else(|| input::action(&ev, app.searching, ui::LIST_TOP));
            if let Some(action) = action {
                for r in app.handle(action) {
                    let _ = requests.send(r);
                }
            }
        }
        while let Ok(loaded) = results.try_recv() {
            for r in app.loaded(loaded) {
                let _ = requests.send(r);
            }
        }
    }
    Ok(())
}

/// A trace's name as shown: its directory's last component.
fn display_name(p: &Path) -> String {
    let p: PathBuf = p.components().collect();
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
