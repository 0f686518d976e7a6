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
    /// `qtrace diff --first`'s reports, one per vCPU.
    pub divergences: Vec<Divergence>,
}

/// Where one vCPU's two executions part (`qtrace diff --first`).
#[derive(Clone, Debug, Default)]
pub struct Divergence {
    pub vcpu: u64,
    /// The first block that differs, or none when the runs are the same.
    pub seq: Option<u64>,
    /// `blocks differ`, `A ends`, `B ends` or `same`.
    pub how: String,
    pub tid_a: Option<u64>,
    pub tid_b: Option<u64>,
    pub events_a: u64,
    pub events_b: u64,
    /// The last blocks both runs executed, oldest first.
    pub common: Vec<Common>,
    /// The first block of each side at the point (none: its stream ends).
    pub a: Option<Step>,
    pub b: Option<Step>,
    /// What explains it, as the command prints it.
    pub explanation: Vec<String>,
}

/// A block both runs executed at the same point.
#[derive(Clone, Debug, Default)]
pub struct Common {
    pub seq: u64,
    pub addr_a: Option<u64>,
    pub addr_b: Option<u64>,
    pub symbol: String,
}

/// One side's first block after the runs part, with its disassembly.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub seq: u64,
    pub addr: Option<u64>,
    pub symbol: String,
    pub place: String,
    /// Address and disassembly of each instruction.
    pub insns: Vec<(u64, String)>,
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
    for r in items(&counts) {
        let status = r["status"].as_str().unwrap_or_default().to_string();
        let addr = |k: &str| hex(&r[k]);
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
    let first: Value = serde_json::from_slice(&diff(&["--first", "--format", "json"])?)
        .context("qtrace diff --first printed no JSON")?;
    c.divergences = items(&first).map(divergence).collect();
    Ok(c)
}

/// A JSON array's items (none when it is not an array).
fn items(v: &Value) -> std::slice::Iter<'_, Value> {
    v.as_array().map(Vec::as_slice).unwrap_or_default().iter()
}

fn hex(v: &Value) -> Option<u64> {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn step(v: &Value) -> Option<Step> {
    v.is_object().then(|| Step {
        seq: v["seq"].as_u64().unwrap_or(0),
        addr: hex(&v["address"]),
        symbol: text(&v["symbol"]),
        place: text(&v["place"]),
        insns: items(&v["insns"])
            .map(|i| (hex(&i["addr"]).unwrap_or(0), text(&i["disas"])))
            .collect(),
    })
}

fn divergence(v: &Value) -> Divergence {
    Divergence {
        vcpu: v["vcpu"].as_u64().unwrap_or(0),
        seq: v["seq"].as_u64(),
        how: text(&v["how"]),
        tid_a: v["tid_a"].as_u64(),
        tid_b: v["tid_b"].as_u64(),
        events_a: v["events_a"].as_u64().unwrap_or(0),
        events_b: v["events_b"].as_u64().unwrap_or(0),
        common: items(&v["common"])
            .map(|c| {
                let addr_a = hex(&c["address"]);
                Common {
                    seq: c["seq"].as_u64().unwrap_or(0),
                    addr_a,
                    // Absent when both runs have the block at one address.
                    addr_b: hex(&c["address_b"]).or(addr_a),
                    symbol: text(&c["symbol"]),
                }
            })
            .collect(),
        a: step(&v["a"]),
        b: step(&v["b"]),
        explanation: items(&v["explanation"]).map(text).collect(),
    }
}
