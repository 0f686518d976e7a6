//! What the user sees while a long scan runs, and whether output gets
//! colour.
//!
//! A progress bar appears on stderr only when stderr is a terminal, and
//! only once the work has taken a second: quick commands stay quiet, and
//! nothing reaches a pipe or a log. Colour follows the usual rules: never
//! when `NO_COLOR` is set (<https://no-color.org>), `TERM` is `dumb`, or
//! stdout is not a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before its bar is shown.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Progress of a scan over a known number of rows. Cheap to share between
/// rayon's threads: [`Progress::add`] is an atomic increment, and the bar
/// redraws at most a few times a second.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// Whether the bar may be shown at all (stderr is a terminal).
    wanted: bool,
    shown: AtomicBool,
}

impl Progress {
    /// A bar for `total` units of `what` (`"blocks"`), hidden until
    /// [`SHOW_AFTER`] has passed.
    pub fn new(total: u64, what: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(&format!(
            "{{spinner}} {{bar:30}} {{human_pos}}/{{human_len}} {what} ({{per_sec}}, {{eta}} left)"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress {
            bar,
            started: Instant::now(),
            wanted: std::io::stderr().is_terminal(),
            shown: AtomicBool::new(false),
        }
    }

    /// `n` more units done.
    pub fn add(&self, n: u64) {
        self.bar.inc(n);
        if self.wanted
            && !self.shown.load(Ordering::Relaxed)
            && self.started.elapsed() >= SHOW_AFTER
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

impl Drop for Progress {
    /// The bar goes away with the work, leaving the terminal clean.
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Whether stdout gets colour.
pub fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        && std::io::stdout().is_terminal()
}

/// `text` in bold when `on`.
pub fn bold(text: &str, on: bool) -> String {
    if on {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bold_only_when_asked() {
        assert_eq!(bold("x", false), "x");
        assert_eq!(bold("x", true), "\x1b[1mx\x1b[0m");
    }

    #[test]
    fn counts_without_a_terminal() {
        let p = Progress::new(10, "blocks");
        p.add(4);
        p.add(6);
        assert_eq!(p.bar.position(), 10);
        assert!(!p.shown.load(Ordering::Relaxed));
    }
}
