//! The Diff view's data, from `qtrace diff` itself (the program beside
//! this one), so that the interface shows exactly what the command line
//! says: blocks matched across the traces by module, offset and code, with
//! their counts, and the first divergence with its context and what
//! explains it.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cli;

/// A block whose executions differ between the traces.
#[derive(Clone, Debug)]
pub struct DiffRow {
    /// `only-a`, `only-b` or `changed`.
    pub status: String,
    pub symbol: String,
    pub module: String,
    /// Its address in A, else in B.
    pub pc: u64,
    pub execs_a: u64,
    pub execs_b: u64,
}

impl DiffRow {
    pub fn change(&self) -> i128 {
        i128::from(self.execs_b) - i128::from(self.execs_a)
    }
}

/// The comparison of two traces.
#[derive(Clone, Debug, Default)]
pub struct Comparison {
    /// Blocks whose counts differ, the largest change first.
    pub rows: Vec<DiffRow>,
    pub only_a: usize,
    pub only_b: usize,
    /// `qtrace diff --first`'s report, line by line.
    pub divergence: Vec<String>,
}

/// Runs `qtrace diff` on the two traces, twice (counts, then `--first`).
pub fn compare(a: &Path, b: &Path) -> Result<Comparison> {
    let diff = |more: &[&str]| {
        let mut args = vec![OsStr::new("diff"), a.as_os_str(), b.as_os_str()];
        args.extend(more.iter().map(OsStr::new));
        cli::qtrace(&args)
    };
    let counts: Value = serde_json::from_slice(&diff(&["--format", "json", "-n", "0"])?)
        .context("qtrace diff printed no JSON")?;
    let mut c = Comparison::default();
    for r in counts.as_array().map(Vec::as_slice).unwrap_or_default() {
        let status = r["status"].as_str().unwrap_or_default().to_string();
        let addr = |k: &str| {
            r[k].as_str()
                .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        };
        match status.as_str() {
            "only-a" => c.only_a += 1,
            "only-b" => c.only_b += 1,
            _ => {}
        }
        c.rows.push(DiffRow {
            symbol: r["symbol"].as_str().unwrap_or_default().to_string(),
            module: r["module"].as_str().unwrap_or_default().to_string(),
            pc: addr("address_a").or_else(|| addr("address_b")).unwrap_or(0),
            execs_a: r["execs_a"].as_u64().unwrap_or(0),
            execs_b: r["execs_b"].as_u64().unwrap_or(0),
            status,
        });
    }
    let first = diff(&["--first"])?;
    c.divergence = String::from_utf8_lossy(&first)
        .lines()
        .map(str::to_string)
        .collect();
    Ok(c)
}
