//! `qtrace verify`: checks a trace against its manifest and says what a run
//! cut short left. The checks are `qtrace_format::verify`'s; this module
//! prints the report and turns it into the exit status (0: everything
//! listed verified; 1: it did not, or the path is not a trace).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use qtrace_format::verify::{self, PartReport, Report, Status};
use serde_json::json;

use crate::info::end_text;
use crate::output::{self, Align, TextTable};

#[derive(clap::Args)]
pub struct Args {
    /// The trace directory (as written by `qtrace record -o`).
    dir: PathBuf,
    /// How to print: `table` for reading, `json` for one JSON object that
    /// lists every part.
    #[arg(long, value_enum, default_value_t = VerifyFormat::Table)]
    format: VerifyFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum VerifyFormat {
    Table,
    Json,
}

pub fn run(args: Args) -> Result<u8> {
    let report = verify::verify(&args.dir)?;
    let mut out = output::stdout();
    match args.format {
        VerifyFormat::Table => {
            writeln!(out, "trace     {}", args.dir.display())?;
            write_report(&mut out, &report)?;
            writeln!(out)?;
            writeln!(out, "{}", verdict(&report))?;
        }
        VerifyFormat::Json => output::write_json(&mut out, &to_json(&report))?,
    }
    out.flush()?;
    Ok(if report.ok() { 0 } else { 1 })
}

/// The last line: `OK: ...` or `FAILED: ...`, with the counts of every kind.
fn verdict(r: &Report) -> String {
    let counts = counts(r);
    let text = counts
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    if r.ok() {
        format!("OK: {text}")
    } else {
        format!("FAILED: {text}")
    }
}

/// Parts of each status, unsealed files and problems, children included.
fn counts(r: &Report) -> Vec<(&'static str, usize)> {
    fn problems(r: &Report) -> usize {
        r.problems.len() + r.children.iter().map(problems).sum::<usize>()
    }
    fn unsealed(r: &Report) -> usize {
        r.unsealed.len() + r.children.iter().map(unsealed).sum::<usize>()
    }
    vec![
        ("ok", r.count(Status::Ok)),
        ("missing", r.count(Status::Missing)),
        ("corrupt", r.count(Status::Corrupt)),
        ("unlisted", r.count(Status::Unlisted)),
        ("unsealed", unsealed(r)),
        ("other problems", problems(r)),
    ]
}

fn write_report(w: &mut impl Write, r: &Report) -> Result<()> {
    let m_status = if r.complete {
        "complete"
    } else {
        "incomplete: recording did not finish"
    };
    writeln!(w, "recording {m_status}")?;
    writeln!(w, "ended     {}", end_text(r.end.as_ref(), r.complete))?;
    if r.pid != 0 {
        match r.parent_pid {
            Some(p) => writeln!(w, "pid       {} (forked from {p})", r.pid)?,
            None => writeln!(w, "pid       {}", r.pid)?,
        }
    }
    if r.dropped_rows > 0 {
        writeln!(w, "dropped   {} rows (on purpose, listed)", r.dropped_rows)?;
    }
    for e in &r.recorder_errors {
        writeln!(w, "recorder error: {e}")?;
    }

    writeln!(w)?;
    write_parts(w, &r.parts)?;

    if !r.unsealed.is_empty() {
        writeln!(w)?;
        writeln!(
            w,
            "unsealed (being written when the run stopped; their rows are lost):"
        )?;
        let mut t = TextTable::new(&[
            ("file", Align::Left),
            ("bytes", Align::Right),
            ("from seq", Align::Right),
        ]);
        for u in &r.unsealed {
            t.push(vec![
                u.path.clone(),
                u.bytes.to_string(),
                u.from_seq
                    .map_or_else(|| "-".to_string(), |s| s.to_string()),
            ]);
        }
        t.write(w)?;
    }
    if !r.problems.is_empty() {
        writeln!(w)?;
        writeln!(w, "problems:")?;
        for p in &r.problems {
            writeln!(w, "  {}: {}", p.kind, p.what)?;
        }
    }
    if !r.notes.is_empty() {
        writeln!(w)?;
        writeln!(w, "notes:")?;
        for n in &r.notes {
            writeln!(w, "  {n}")?;
        }
    }
    for child in &r.children {
        writeln!(w)?;
        writeln!(
            w,
            "child     {} ({})",
            child.path,
            if child.ok() { "verified" } else { "FAILED" }
        )?;
        write_report(w, child)?;
    }
    Ok(())
}

/// Parts that verified, one line per partition; every other part on a line
/// of its own, with why.
fn write_parts(w: &mut impl Write, parts: &[PartReport]) -> Result<()> {
    let mut t = TextTable::new(&[
        ("status", Align::Left),
        ("part", Align::Left),
        ("rows", Align::Right),
        ("seq", Align::Left),
        ("bytes", Align::Right),
    ]);
    let mut i = 0;
    while i < parts.len() {
        let p = &parts[i];
        // A run of parts of the same partition and status that verified.
        let mut j = i + 1;
        if matches!(p.status, Status::Ok | Status::Unlisted) {
            while j < parts.len()
                && parts[j].status == p.status
                && parts[j].table == p.table
                && parts[j].vcpu == p.vcpu
            {
                j += 1;
            }
        }
        let group = &parts[i..j];
        let name = if group.len() == 1 {
            p.path.clone()
        } else {
            let dir = p.path.rsplit_once('/').map_or("", |(d, _)| d);
            format!(
                "{dir}/ ({} parts, {}..{})",
                group.len(),
                p.index,
                group[group.len() - 1].index
            )
        };
        let sum = |f: fn(&PartReport) -> Option<u64>| {
            group
                .iter()
                .try_fold(0u64, |a, p| f(p).map(|n| a.saturating_add(n)))
                .map_or_else(|| "-".to_string(), |n| n.to_string())
        };
        let seq = match (p.first_seq, group[group.len() - 1].last_seq) {
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "-".to_string(),
        };
        let status = match p.status {
            Status::Ok => "ok",
            Status::Missing => "MISSING",
            Status::Corrupt => "CORRUPT",
            Status::Unlisted => "unlisted",
        };
        let details = match (&p.why, p.status) {
            (Some(why), _) => vec![format!("    {why}")],
            (None, Status::Unlisted) => {
                vec!["    sealed after the manifest's last rewrite; readable".to_string()]
            }
            _ => Vec::new(),
        };
        t.push_with_details(
            vec![
                status.to_string(),
                name,
                sum(|p| p.rows),
                seq,
                sum(|p| p.bytes),
            ],
            details,
        );
        i = j;
    }
    if parts.is_empty() {
        writeln!(w, "no parts")?;
    } else {
        t.write(w)?;
    }
    Ok(())
}

fn to_json(r: &Report) -> serde_json::Value {
    let counts: serde_json::Map<String, serde_json::Value> = counts(r)
        .into_iter()
        .map(|(k, n)| (k.replace(' ', "_"), json!(n)))
        .collect();
    json!({
        "ok": r.ok(),
        "counts": counts,
        "report": r,
    })
}
