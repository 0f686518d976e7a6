//! The interface for real: `qtrace tui` on a recorded sample, in a
//! pseudo-terminal that tmux provides, driven with keys and read back from
//! the screen.

mod common;
mod e2e_support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e_support::{qtrace_rows, record, sample, symbol, top_blocks};

/// A tmux session running one command, killed when dropped.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(cmd: &str, w: u16, h: u16) -> Tmux {
        // Tests run in parallel: a session each.
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let name = format!("qtrace-tui-test-{}-{n}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                &w.to_string(),
                "-y",
                &h.to_string(),
            ])
            .arg(format!("{cmd}; echo EXITED=$?; sleep 30"))
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs");
        assert!(status.success());
        Tmux { name }
    }

    /// Sends keys one at a time, apart: an Escape followed at once by a
    /// letter would read as Alt and the letter.
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            let status = Command::new("tmux")
                .args(["send-keys", "-t", &self.name, key])
                .status()
                .unwrap();
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`, and returns the screen.
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited for {text:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

fn qtrace_tui(trace: &Path) -> String {
    format!("{} tui {}", common::qtrace_exe().display(), trace.display())
}

#[test]
fn browses_a_recorded_trace_and_quits_cleanly() {
    let Some(hotloop) = sample("x86_64", "hotloop") else {
        panic!("samples not built: run make -C samples");
    };
    let (_dir, trace) = record(&[hotloop.to_str().unwrap(), "2"], &["syscalls=on"]);
    let top = top_blocks(&trace, &["-n", "1"]);
    let top_pc = top[0]["address"].as_str().unwrap().to_string();

    let tmux = Tmux::start(&qtrace_tui(&trace), 100, 30);
    // Overview: the command and how it ended, at once.
    let s = tmux.wait_for("exited with status 0");
    assert!(s.contains("hotloop"), "{s}");
    // Hot blocks: the hottest block first, as top-blocks says.
    tmux.keys(&["2"]);
    let s = tmux.wait_for("Hot blocks by executions");
    let first_row = s
        .lines()
        .filter_map(|l| l.strip_prefix('│'))
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default();
    assert!(
        first_row.contains(&top_pc),
        "top block {top_pc} not first:\n{s}"
    );
    // Filter as you type: a symbol that exists, then one that does not.
    tmux.keys(&["/", "z", "z", "z", "z"]);
    tmux.wait_for("0 of ");
    tmux.keys(&["Escape"]);
    // Syscalls: exit_group is there.
    tmux.keys(&["4"]);
    tmux.wait_for("exit_group");
    // Timeline: a heat map with its cursor.
    tmux.keys(&["3"]);
    tmux.wait_for("Timeline vCPU 0");
    // Help, then quit: the shell gets the terminal back with status 0.
    tmux.keys(&["?"]);
    tmux.wait_for("Help");
    tmux.keys(&["Escape", "q"]);
    let s = tmux.wait_for("EXITED=");
    assert!(s.contains("EXITED=0"), "{s}");
    // The alternate screen is gone: the interface's tabs are not left on it.
    assert!(!s.contains("1 Overview"), "{s}");
}

#[test]
fn a_directory_that_is_not_a_trace_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::qtrace_exe())
        .arg("tui")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not a qtrace trace"), "{err}");
}

#[test]
fn compares_two_runs_side_by_side() {
    let Some(hotloop) = sample("x86_64", "hotloop") else {
        panic!("samples not built: run make -C samples");
    };
    let (_da, a) = record(&[hotloop.to_str().unwrap(), "2"], &[]);
    let (_db, b) = record(&[hotloop.to_str().unwrap(), "3"], &[]);
    let tmux = Tmux::start(&format!("{} {}", qtrace_tui(&a), b.display()), 120, 40);
    tmux.wait_for("1 Overview");
    tmux.keys(&["6"]);
    // The count changes and the first divergence, as `qtrace diff` says.
    let s = tmux.wait_for("the runs part at seq");
    let first = qtrace_rows(&["diff", a.to_str().unwrap(), b.to_str().unwrap(), "--first"]);
    let seq = first[0]["seq"].as_u64().expect("the runs part");
    assert!(
        s.contains(&format!(
            "the runs part at seq {seq} ({}",
            first[0]["how"].as_str().unwrap()
        )),
        "{s}"
    );
    assert!(s.contains("changed"), "{s}");
    // Side by side: each side's first block after the point, in its own
    // column (A left, B right), or the end of its stream.
    for (side, left) in [("a", true), ("b", false)] {
        let shown = match first[0][side]["address"].as_str() {
            Some(addr) => format!("{seq} {addr}"),
            None => "(its stream ends here)".to_string(),
        };
        let row = s
            .lines()
            .find(|l| l.contains(&shown))
            .unwrap_or_else(|| panic!("{shown} not shown:\n{s}"));
        let at = row.find(&shown).unwrap();
        assert_eq!(
            at < row.len() / 2,
            left,
            "{shown} in the wrong column:\n{s}"
        );
    }
    // The explanation the command gives, under both.
    if let Some(why) = first[0]["explanation"][0].as_str() {
        assert!(s.contains(&why[..why.len().min(40)]), "{why}\n{s}");
    }
    tmux.keys(&["q"]);
    assert!(tmux.wait_for("EXITED=").contains("EXITED=0"));
}

#[test]
fn follows_an_address_and_its_values() {
    let Some(prog) = sample("x86_64", "memcounter") else {
        panic!("samples not built: run make -C samples");
    };
    // More stores to the counter than the interface lists (10,000).
    let n = 15_000u64;
    let (_dir, trace) = record(&[prog.to_str().unwrap(), &n.to_string()], &["mem=values"]);
    let counter = symbol(&prog, "counter");
    let at = qtrace_rows(&[
        "mem",
        "at",
        trace.to_str().unwrap(),
        &format!("{counter:#x}"),
    ]);
    assert_eq!(at.len() as u64, n + 1);

    let tmux = Tmux::start(&qtrace_tui(&trace), 100, 30);
    tmux.wait_for("1 Overview");
    tmux.keys(&["5"]);
    tmux.wait_for("Hot pages");
    // `/` and an address: every access to it, as `qtrace mem at` lists them.
    tmux.keys(&["/", &format!("{counter:#x}"), "Enter"]);
    let s = tmux.wait_for("accesses · Esc: back");
    assert!(
        s.contains("first 10,000 of 15,001 accesses · Esc"),
        "{} accesses expected:\n{s}",
        at.len()
    );
    let first_value = at[0]["value"].as_str().unwrap();
    let first_seq = at[0]["seq"].as_u64().unwrap();
    assert!(
        s.lines()
            .any(|l| l.contains(&format!("0:{first_seq} ")) && l.contains(first_value)),
        "first access (seq {first_seq}, {first_value}) not listed:\n{s}"
    );
    // The chart covers the whole run, past the rows listed: its value axis
    // ends at the last store's value, n, and its time axis at the last
    // access's seq.
    let last_seq = at[n as usize]["seq"].as_u64().unwrap();
    assert!(s.contains(&format!("{n:#x}")), "{s}");
    assert!(s.contains(&last_seq.to_string()), "{s}");
    tmux.keys(&["Escape", "q"]);
    assert!(tmux.wait_for("EXITED=").contains("EXITED=0"));
}
