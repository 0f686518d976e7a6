//! How fast `qtrace` answers questions about a trace, against DuckDB
//! reading the same Parquet files with the equivalent SQL, in the same run.
//!
//! The traces: `xz -1 -T1 -c INPUT` (the host's `/usr/bin/xz`) recorded by
//! `qtrace record` with its defaults (blocks and system calls), INPUT the
//! benchmark tar of `--input-mb` MiB (36 by default: more than 10^9 block
//! events). Trace `a` compresses INPUT, trace `b` the same bytes with one
//! byte changed at 80%, so the two runs are the same until xz reads that
//! byte. Both are recorded once into `$QTRACE_CACHE/bench/query-traces/`
//! (with address-space randomisation off and an empty environment, so that
//! the two runs place their code alike) and kept while they stay complete;
//! `--rerecord` makes them again.
//!
//! The questions, each answered by both and the answers compared (a
//! benchmark whose two sides disagree fails):
//!
//! | name        | qtrace                                   | DuckDB                                      |
//! |-------------|------------------------------------------|---------------------------------------------|
//! | `top`       | `top-blocks --source events -n 20`       | `GROUP BY block_id` over `a/blocks`, top 20 (ties by `pc`) |
//! | `cov-diff`  | `coverage a b --op diff --source events --as addrs` | distinct executed blocks of `a` (`pc`, `code`) `EXCEPT` those of `b` |
//! | `diverge`   | `diff a b --first`                       | the least `seq` where the blocks of `a` and `b` (a hash of `pc` and `code`) differ, the two paired row by row with a positional join |
//! | `syscalls`  | `syscalls -c`                            | `GROUP BY name` over `a/syscalls`           |
//!
//! Every question is timed `--runs` times (median): `qtrace` as a whole
//! process on 2 threads and on 1 (`RAYON_NUM_THREADS`); DuckDB, with
//! `threads` set to 2, twice: its CLI (PyPI's `duckdb-cli`) as a whole
//! process, as `qtrace` is timed, and its Python client (PyPI's `duckdb`,
//! newer) inside one Python process, timing only the query (start-up not
//! counted). Both DuckDB answers are checked against qtrace's. The report
//! gives each time, the block events per second, the ratios DuckDB / qtrace
//! (the target, at least 2, is judged against the CLI: like for like) and qtrace's
//! speed-up from 1 to 2 threads (target: at least 1.7 on the questions that
//! scan `blocks`; the system-call summary reads a few thousand rows, and its
//! time is the process's start).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use qtrace_benches::{cache_dir, ensure_input, median, qemu_dir};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "qtrace's queries against DuckDB on the same trace files")]
struct Args {
    /// Timed runs of each question and side.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// MiB of benchmark input for xz.
    #[arg(long, default_value_t = 36, value_parser = clap::value_parser!(u64).range(1..))]
    input_mb: u64,
    /// Only these questions (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Record the traces again even if complete ones are cached.
    #[arg(long)]
    rerecord: bool,
    /// Accept traces of fewer than 10^9 block events (for a quick look).
    #[arg(long)]
    small: bool,
}

/// One question, asked of both.
struct Question {
    name: &'static str,
    /// `qtrace` arguments; `{a}` and `{b}` stand for the traces.
    qtrace: &'static [&'static str],
    sql: &'static str,
    /// Whether it scans `blocks` (the 1 -> 2 thread target applies).
    scans_blocks: bool,
}

const QUESTIONS: &[Question] = &[
    Question {
        name: "top",
        qtrace: &["top-blocks", "{a}", "--source", "events", "-n", "20", "--format", "json"],
        sql: "SELECT c.block_id, c.execs FROM (
                  SELECT block_id, count(*) AS execs FROM read_parquet('{a}/blocks/*/*.parquet')
                  GROUP BY block_id) c
              JOIN read_parquet('{a}/block_dict/*.parquet') d USING (block_id)
              ORDER BY c.execs DESC, d.pc LIMIT 20",
        scans_blocks: true,
    },
    Question {
        name: "cov-diff",
        qtrace: &["coverage", "{a}", "{b}", "--op", "diff", "--source", "events", "--as", "addrs"],
        sql: "WITH ea AS (SELECT DISTINCT block_id FROM read_parquet('{a}/blocks/*/*.parquet')),
                   eb AS (SELECT DISTINCT block_id FROM read_parquet('{b}/blocks/*/*.parquet'))
              SELECT DISTINCT pc FROM (
                  SELECT d.pc, d.code FROM ea JOIN read_parquet('{a}/block_dict/*.parquet') d USING (block_id)
                  EXCEPT
                  SELECT d.pc, d.code FROM eb JOIN read_parquet('{b}/block_dict/*.parquet') d USING (block_id))
              ORDER BY pc",
        scans_blocks: true,
    },
    Question {
        name: "diverge",
        qtrace: &["diff", "{a}", "{b}", "--first", "--format", "json"],
        // Joining the two billion-row tables on `seq` runs out of memory
        // (DuckDB was killed at 13 GB); the positional join, DuckDB's own
        // way to pair two ordered tables row by row, is its best plan.
        sql: "WITH ka AS (SELECT list(hash(pc, code) ORDER BY block_id) AS k
                          FROM read_parquet('{a}/block_dict/*.parquet')),
                   kb AS (SELECT list(hash(pc, code) ORDER BY block_id) AS k
                          FROM read_parquet('{b}/block_dict/*.parquet')),
                   a AS (SELECT seq, (SELECT k FROM ka)[block_id + 1] AS k
                         FROM read_parquet('{a}/blocks/*/*.parquet')),
                   b AS (SELECT seq, (SELECT k FROM kb)[block_id + 1] AS k
                         FROM read_parquet('{b}/blocks/*/*.parquet'))
              SELECT min(a.seq) FROM a POSITIONAL JOIN b WHERE a.k IS DISTINCT FROM b.k",
        scans_blocks: true,
    },
    Question {
        name: "syscalls",
        qtrace: &["syscalls", "{a}", "-c", "--format", "json"],
        sql: "SELECT name, count(*) AS calls, count(errno) AS errors
              FROM read_parquet('{a}/syscalls/*/*.parquet')
              GROUP BY name ORDER BY calls DESC, name",
        scans_blocks: false,
    },
];

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<bool> {
    let cache = cache_dir()?;
    let qtrace = qtrace_exe();
    ensure!(
        qtrace.is_file(),
        "{} is missing: run `cargo build --release` first",
        qtrace.display()
    );
    let python = cache.join("py/bin/python3");
    ensure!(
        python.is_file(),
        "{} is missing: run `make setup` first",
        python.display()
    );
    let duckdb = cache.join("py/bin/duckdb");
    ensure!(
        duckdb.is_file(),
        "{} (the DuckDB CLI, PyPI's duckdb-cli) is missing: run `make setup` first",
        duckdb.display()
    );
    let (a, b) = traces(&cache, &qtrace, &args)?;
    let events = block_events(&a)?;
    if events < 1_000_000_000 && !args.small {
        bail!(
            "trace {} has {events} block events, fewer than 10^9: use a larger --input-mb",
            a.display()
        );
    }
    println!(
        "traces: {} and {}, {events} block events each (about)",
        a.display(),
        b.display()
    );
    println!(
        "{:<9} {:>10} {:>10} {:>11} {:>10} {:>10} {:>10} {:>9} {:>12}",
        "question",
        "qtrace 2t",
        "qtrace 1t",
        "duckdb cli",
        "vs cli",
        "duckdb py",
        "vs py",
        "1t -> 2t",
        "events/s"
    );
    let mut pass = true;
    for q in QUESTIONS
        .iter()
        .filter(|q| args.only.is_empty() || args.only.iter().any(|o| o == q.name))
    {
        let argv: Vec<String> = q
            .qtrace
            .iter()
            .map(|s| {
                s.replace("{a}", &a.to_string_lossy())
                    .replace("{b}", &b.to_string_lossy())
            })
            .collect();
        let sql = q
            .sql
            .replace("{a}", &a.to_string_lossy())
            .replace("{b}", &b.to_string_lossy());
        let (t2, out) = time_qtrace(&qtrace, &argv, 2, args.runs)?;
        let (t1, _) = time_qtrace(&qtrace, &argv, 1, args.runs)?;
        let (tc, cli_rows) = time_duckdb_cli(&duckdb, &sql, args.runs)?;
        check_same(q.name, &out, &cli_rows)?;
        let (tp, rows) = time_duckdb(&python, &sql, args.runs)?;
        check_same(q.name, &out, &rows)?;
        let ratio = tc / t2;
        let speedup = t1 / t2;
        // Rows read: one trace's for `top`, both traces' for the others,
        // and for `diverge` both up to the divergence only.
        let scanned = match q.name {
            "top" => events,
            "diverge" => {
                2 * json_rows(&out)?
                    .first()
                    .and_then(|r| r["seq"].as_u64())
                    .unwrap_or(0)
            }
            _ => 2 * events,
        };
        println!(
            "{:<9} {:>9.3}s {:>9.3}s {:>10.3}s {:>9.2}x {:>9.3}s {:>9.2}x {:>8.2}x {:>12.3e}",
            q.name,
            t2,
            t1,
            tc,
            ratio,
            tp,
            tp / t2,
            speedup,
            if q.scans_blocks {
                scanned as f64 / t2
            } else {
                f64::NAN
            }
        );
        let ok_ratio = ratio >= 2.0;
        let ok_speedup = !q.scans_blocks || speedup >= 1.7;
        println!(
            "          target: >= 2x DuckDB {}{}",
            verdict(ok_ratio),
            if q.scans_blocks {
                format!(", >= 1.7x from 1 to 2 threads {}", verdict(ok_speedup))
            } else {
                String::new()
            }
        );
        pass &= ok_ratio && ok_speedup;
    }
    Ok(pass)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

fn qtrace_exe() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release/qtrace")
}

/// The two traces, recorded unless complete ones are cached.
fn traces(cache: &Path, qtrace: &Path, args: &Args) -> Result<(PathBuf, PathBuf)> {
    let input = ensure_input(cache, args.input_mb)?;
    let dir = cache.join("bench/query-traces");
    // Both inputs under one name, in directories named alike: the two
    // command lines are then the same length, and the runs do not part
    // before xz reads the changed byte.
    let mut bytes = std::fs::read(&input)?;
    let mut inputs = Vec::new();
    for name in ["a", "b"] {
        if name == "b" {
            let at = bytes.len() * 4 / 5;
            bytes[at] ^= 0x55;
        }
        let path = dir.join(format!("input-{name}/input-{}m.tar", args.input_mb));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            std::fs::write(&path, &bytes)?;
        }
        inputs.push(path);
    }
    let mut out = Vec::new();
    for (name, input) in ["a", "b"].into_iter().zip(&inputs) {
        let trace = dir.join(format!("{name}-{}m.parquet", args.input_mb));
        if args.rerecord || !complete(&trace) {
            eprintln!("recording {} (once; cached)", trace.display());
            let status = Command::new("setarch")
                .args([std::env::consts::ARCH, "-R"])
                .arg(qtrace)
                .args(["record", "--force", "-o"])
                .arg(&trace)
                .args(["--", "/usr/bin/xz", "-1", "-T1", "-c"])
                .arg(input)
                .env_clear()
                .env("QTRACE_QEMU_DIR", qemu_dir(cache))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .context("cannot run qtrace record")?;
            ensure!(
                status.success() && complete(&trace),
                "recording {} failed: {status}",
                trace.display()
            );
        }
        out.push(trace);
    }
    let b = out.pop().expect("two traces");
    let a = out.pop().expect("two traces");
    Ok((a, b))
}

fn manifest(trace: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(trace.join("manifest.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn complete(trace: &Path) -> bool {
    manifest(trace).is_some_and(|m| m["complete"] == Value::Bool(true))
}

fn block_events(trace: &Path) -> Result<u64> {
    let m = manifest(trace).context("no manifest")?;
    let vcpus = m["vcpus"].as_array().context("manifest without vcpus")?;
    Ok(vcpus
        .iter()
        .filter_map(|v| v["block_events"].as_u64())
        .sum())
}

/// Median wall time of `qtrace ARGV` on `threads` threads, and its stdout.
fn time_qtrace(qtrace: &Path, argv: &[String], threads: u32, runs: u32) -> Result<(f64, String)> {
    let mut times = Vec::new();
    let mut stdout = String::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new(qtrace)
            .args(argv)
            .env("RAYON_NUM_THREADS", threads.to_string())
            .stdin(Stdio::null())
            .output()
            .context("cannot run qtrace")?;
        times.push(start.elapsed().as_secs_f64());
        ensure!(
            out.status.success(),
            "qtrace {argv:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        stdout = String::from_utf8(out.stdout)?;
    }
    Ok((median(&times), stdout))
}

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys, time
sql, runs = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("SET threads = 2")
times = []
for _ in range(runs):
    start = time.perf_counter()
    rows = con.execute(sql).fetchall()
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "rows": [[str(v) if isinstance(v, bytes) else v for v in r] for r in rows]}))
"#;

/// Median wall time of the DuckDB CLI running the query (a whole process,
/// as `qtrace` is timed), and its rows.
fn time_duckdb_cli(duckdb: &Path, sql: &str, runs: u32) -> Result<(f64, Vec<Vec<Value>>)> {
    let script = format!("SET threads = 2; {sql}");
    let mut times = Vec::new();
    let mut stdout = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = Command::new(duckdb)
            .args(["-csv", "-noheader", "-c", &script])
            .stdin(Stdio::null())
            .output()
            .context("cannot run the DuckDB CLI")?;
        times.push(start.elapsed().as_secs_f64());
        ensure!(
            out.status.success(),
            "DuckDB CLI: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        stdout = out.stdout;
    }
    // Numbers as numbers, the rest as text: as the Python client gives them.
    let cell = |f: &str| match f.parse::<u64>() {
        Ok(n) => Value::from(n),
        Err(_) => Value::from(f.trim_matches('"')),
    };
    let rows = String::from_utf8(stdout)?
        .lines()
        .map(|l| l.split(',').map(cell).collect())
        .collect();
    Ok((median(&times), rows))
}

/// Median time of the query inside DuckDB, and its rows.
fn time_duckdb(python: &Path, sql: &str, runs: u32) -> Result<(f64, Vec<Vec<Value>>)> {
    let out = Command::new(python)
        .args(["-c", DUCKDB_SCRIPT, sql, &runs.to_string()])
        .stdin(Stdio::null())
        .output()
        .context("cannot run DuckDB")?;
    ensure!(
        out.status.success(),
        "DuckDB: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let times: Vec<f64> = v["times"]
        .as_array()
        .context("times")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let rows = v["rows"]
        .as_array()
        .context("rows")?
        .iter()
        .map(|r| r.as_array().cloned().unwrap_or_default())
        .collect();
    Ok((median(&times), rows))
}

/// Both sides must give the same answer.
fn check_same(name: &str, qtrace: &str, duck: &[Vec<Value>]) -> Result<()> {
    let num = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(parse_u64));
    let ours: Vec<Vec<u64>> = match name {
        "top" => json_rows(qtrace)?
            .iter()
            .map(|r| {
                vec![
                    r["block_id"].as_u64().unwrap_or(u64::MAX),
                    r["execs"].as_u64().unwrap_or(0),
                ]
            })
            .collect(),
        "cov-diff" => qtrace
            .lines()
            .filter_map(parse_u64)
            .map(|pc| vec![pc])
            .collect(),
        "diverge" => json_rows(qtrace)?
            .iter()
            .filter_map(|r| r["seq"].as_u64())
            .map(|s| vec![s])
            .collect(),
        // Ties in the number of calls come in either order: compare
        // (name, calls, errors) as sets.
        "syscalls" => {
            let line = |n: &Value, c: &Value, e: &Value| format!("{n} {c} {e}");
            let mut ours: Vec<String> = json_rows(qtrace)?
                .iter()
                .map(|r| line(&r["syscall"], &r["calls"], &r["errors"]))
                .collect();
            let mut theirs: Vec<String> = duck.iter().map(|r| line(&r[0], &r[1], &r[2])).collect();
            ours.sort();
            theirs.sort();
            ensure!(
                ours == theirs,
                "syscalls: qtrace and DuckDB disagree:\n  qtrace {ours:?}\n  duckdb {theirs:?}"
            );
            return Ok(());
        }
        _ => bail!("unknown question {name}"),
    };
    let theirs: Vec<Vec<u64>> = match name {
        "syscalls" => duck
            .iter()
            .map(|r| r[1..].iter().filter_map(num).collect())
            .collect(),
        _ => duck
            .iter()
            .map(|r| r.iter().filter_map(num).collect())
            .collect(),
    };
    ensure!(
        ours == theirs,
        "{name}: qtrace and DuckDB disagree:\n  qtrace {ours:?}\n  duckdb {theirs:?}"
    );
    Ok(())
}

fn json_rows(text: &str) -> Result<Vec<Value>> {
    let v: Value = serde_json::from_str(text).context("qtrace printed no JSON")?;
    Ok(match v {
        Value::Array(rows) => rows,
        Value::Object(mut o) => match o.remove("rows").or_else(|| o.remove("divergences")) {
            Some(Value::Array(rows)) => rows,
            _ => vec![Value::Object(o)],
        },
        _ => Vec::new(),
    })
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}
