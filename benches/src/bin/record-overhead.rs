//! Recording overhead of qtrace against plain QEMU and QEMU's own plugins.
//!
//! The workload is `xz -1 -T1 -c INPUT > /dev/null` (the host's
//! `/usr/bin/xz`) under `qemu-x86_64` from `$QTRACE_QEMU_DIR`, INPUT a 12 MiB
//! tar of Perl modules, the `perl` executable and C headers, made
//! reproducibly once and cached as `$QTRACE_CACHE/bench/input-12m.tar` (see
//! `qtrace_benches::INPUT_SOURCES`). The configurations:
//!
//! | name            | QEMU plugin                                        |
//! |-----------------|----------------------------------------------------|
//! | `plain`         | none: the baseline                                 |
//! | `qtrace-blocks` | the recorder (`$QTRACE_RECORDER`, by default `target/release/libqtrace_recorder.so`), `out=` a fresh directory |
//! | `qtrace-regs-64` | the recorder, also reading `rax`, `rbx` and `rsp` at every 64th block (`regs_at=blocks,regs_every=64`) |
//! | `qtrace-regs-1` | the same at every block; only with `--only` |
//! | `libbb-inline`  | `libbb.so,inline=on`: inline block and insn counts |
//! | `libbb-cb`      | `libbb.so`: the same counts through callbacks      |
//! | `libhotblocks`  | `libhotblocks.so,inline=on`: per-block counters    |
//!
//! After one untimed warm-up round, every configuration runs once per round,
//! interleaved, for `--runs` rounds, each with an empty environment, stdin
//! and stdout on `/dev/null`. Each run measures the wall time (spawn to
//! reaped) and the peak RSS of the QEMU process (`ru_maxrss` from `wait4`);
//! a recording also its size on disk and its block events (from the
//! manifest, which must say `complete`). The report gives, per
//! configuration, the median and minimum wall time, the ratio of medians to
//! `plain`, the median peak RSS and its excess over `plain`, and for
//! `qtrace-blocks` the bytes per block event and the targets: at most 1.6x
//! plain, 0.5 byte per block event and 64 MiB above plain.
//!
//! ```text
//! cargo build --release -p qtrace-recorder
//! cargo run --release -p qtrace-benches --bin record-overhead -- --runs 5
//! cargo run --release -p qtrace-benches --bin record-overhead -- \
//!     --only plain,qtrace-blocks --runs 1 --input-mb 2 --json /tmp/overhead.json
//! ```
//!
//! A missing plugin (the recorder not built yet, say) skips its
//! configuration with a note; a failed run aborts the benchmark with QEMU's
//! stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use serde::Serialize;

use qtrace_benches::{
    cache_dir, ensure_input, median, min, qemu_dir, recorder_path, run_measured, trace_stats,
    Measured, TraceStats,
};

/// Targets of `qtrace-blocks`.
const MAX_RATIO: f64 = 1.6;
const MAX_BYTES_PER_EVENT: f64 = 0.5;
const MAX_EXTRA_RSS_MIB: f64 = 64.0;

const XZ: &str = "/usr/bin/xz";
const BASELINE: &str = "plain";

#[derive(Parser)]
#[command(about = "Recording overhead of qtrace against plain QEMU and QEMU's own plugins")]
struct Args {
    /// Timed rounds; each runs every configuration once.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Size of the input tar that xz compresses, in MiB.
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u64).range(1..))]
    input_mb: u64,
    /// Comma-separated configurations to run (plain, the baseline, always
    /// runs): plain, qtrace-blocks, qtrace-regs-64, libbb-inline, libbb-cb,
    /// libhotblocks; and, only when named here, qtrace-regs-1 (the
    /// registers at every block, much slower).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Write every measurement and the summary to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit with status 1 when qtrace-blocks misses a target.
    #[arg(long)]
    check: bool,
}

/// How a configuration loads its plugin.
#[derive(Clone, Copy)]
enum Plugin {
    None,
    /// The recorder, with these options besides `out`.
    Recorder {
        options: &'static str,
    },
    /// A plugin of the QEMU build, `plugins/<lib>`, with these options.
    Qemu {
        lib: &'static str,
        options: &'static str,
    },
}

const CONFIGS: &[(&str, Plugin)] = &[
    (BASELINE, Plugin::None),
    ("qtrace-blocks", Plugin::Recorder { options: "" }),
    (
        "qtrace-regs-64",
        Plugin::Recorder {
            options: "regs=rax+rbx+rsp,regs_at=blocks,regs_every=64",
        },
    ),
    (
        "qtrace-regs-1",
        Plugin::Recorder {
            options: "regs=rax+rbx+rsp,regs_at=blocks",
        },
    ),
    (
        "libbb-inline",
        Plugin::Qemu {
            lib: "libbb.so",
            options: "inline=on",
        },
    ),
    (
        "libbb-cb",
        Plugin::Qemu {
            lib: "libbb.so",
            options: "",
        },
    ),
    (
        "libhotblocks",
        Plugin::Qemu {
            lib: "libhotblocks.so",
            options: "inline=on",
        },
    ),
];

/// Configurations that run only when `--only` names them.
const OPT_IN: &[&str] = &["qtrace-regs-1"];

/// A configuration ready to run.
struct Config {
    name: &'static str,
    /// The plugin library, or none for plain QEMU.
    plugin: Option<PathBuf>,
    options: &'static str,
    records: bool,
}

impl Config {
    /// QEMU's arguments, with `out` as the recorder's output.
    fn qemu_args(&self, input: &Path, out: Option<&Path>) -> Result<Vec<String>> {
        let mut args = Vec::new();
        if let Some(lib) = &self.plugin {
            let mut spec = path_str(lib)?.to_string();
            if !self.options.is_empty() {
                spec.push(',');
                spec.push_str(self.options);
            }
            if let Some(out) = out {
                spec.push_str(",out=");
                spec.push_str(path_str(out)?);
            }
            args.push("-plugin".to_string());
            args.push(spec);
        }
        args.extend([XZ, "-1", "-T1", "-c"].map(String::from));
        args.push(path_str(input)?.to_string());
        Ok(args)
    }

    fn describe(&self) -> String {
        match &self.plugin {
            None => "no plugin".to_string(),
            Some(lib) if self.options.is_empty() => lib.display().to_string(),
            Some(lib) => format!("{},{}", lib.display(), self.options),
        }
    }
}

/// QEMU splits `-plugin` on commas, so a path must have none.
fn path_str(path: &Path) -> Result<&str> {
    let s = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    ensure!(
        !s.contains(','),
        "{s} contains a comma, which QEMU's -plugin option cannot take"
    );
    Ok(s)
}

#[derive(Serialize)]
struct Run {
    config: &'static str,
    /// 1-based round.
    run: u32,
    wall_s: f64,
    max_rss_kib: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<TraceStats>,
}

#[derive(Serialize)]
struct Summary {
    config: &'static str,
    runs: usize,
    wall_median_s: f64,
    wall_min_s: f64,
    /// Median wall time over plain's median wall time.
    ratio_to_plain: f64,
    rss_median_kib: f64,
    rss_over_plain_kib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_bytes_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_events_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_block_event_median: Option<f64>,
}

#[derive(Serialize)]
struct Target {
    what: &'static str,
    value: f64,
    limit: f64,
    pass: bool,
}

#[derive(Serialize)]
struct Skipped {
    config: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    benchmark: &'static str,
    qemu: &'a Path,
    workload: Vec<String>,
    input_bytes: u64,
    runs: u32,
    warmup_rounds: u32,
    host_cpus: usize,
    configs: Vec<ConfigJson>,
    skipped: &'a [Skipped],
    measurements: &'a [Run],
    summary: &'a [Summary],
    targets: &'a [Target],
}

#[derive(Serialize)]
struct ConfigJson {
    name: &'static str,
    plugin: String,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("record-overhead: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let args = Args::parse();
    let cache = cache_dir()?;
    let qemu_dir = qemu_dir(&cache);
    let qemu = qemu_dir.join("bin/qemu-x86_64");
    ensure!(
        qemu.is_file(),
        "no QEMU at {} (run scripts/provision-qemu.sh, or set QTRACE_QEMU_DIR)",
        qemu.display()
    );
    ensure!(Path::new(XZ).is_file(), "no {XZ} on this machine");

    let (configs, skipped) = select_configs(&args, &qemu_dir)?;
    for s in &skipped {
        eprintln!("skipping {}: {}", s.config, s.reason);
    }

    let input = ensure_input(&cache, args.input_mb)?;
    let input_bytes = std::fs::metadata(&input)?.len();
    let scratch = cache.join("bench/tmp");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;

    let host_cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "record-overhead: {} {XZ} -1 -T1 -c {} ({:.1} MiB)",
        qemu.display(),
        input.display(),
        mib(input_bytes)
    );
    println!(
        "{} rounds after 1 warm-up round, configurations interleaved, {host_cpus} host CPUs",
        args.runs
    );
    for c in &configs {
        println!("  {:<14} {}", c.name, c.describe());
    }
    println!();

    eprintln!("warm-up round");
    for c in &configs {
        let (m, trace) = run_config(c, &qemu, &input, &scratch)?;
        eprintln!("  {:<14} {}", c.name, progress(&m, trace.as_ref()));
    }
    let mut runs = Vec::new();
    for round in 1..=args.runs {
        eprintln!("round {round}/{}", args.runs);
        for c in &configs {
            let (m, trace) = run_config(c, &qemu, &input, &scratch)?;
            eprintln!("  {:<14} {}", c.name, progress(&m, trace.as_ref()));
            runs.push(Run {
                config: c.name,
                run: round,
                wall_s: m.wall.as_secs_f64(),
                max_rss_kib: m.max_rss_kib,
                trace,
            });
        }
    }
    eprintln!();

    let summary = summarise(&configs, &runs)?;
    let targets = targets(&summary);
    print_report(&summary, &targets, &skipped);

    if let Some(path) = &args.json {
        let report = JsonReport {
            benchmark: "record-overhead",
            qemu: &qemu,
            workload: configs[0].qemu_args(&input, None)?,
            input_bytes,
            runs: args.runs,
            warmup_rounds: 1,
            host_cpus,
            configs: configs
                .iter()
                .map(|c| ConfigJson {
                    name: c.name,
                    plugin: c.describe(),
                })
                .collect(),
            skipped: &skipped,
            measurements: &runs,
            summary: &summary,
            targets: &targets,
        };
        let mut text = serde_json::to_vec_pretty(&report)?;
        text.push(b'\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nmeasurements written to {}", path.display());
    }

    if args.check && targets.iter().any(|t| !t.pass) {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The configurations asked for, plain first, and those skipped for want
/// of their plugin.
fn select_configs(args: &Args, qemu_dir: &Path) -> Result<(Vec<Config>, Vec<Skipped>)> {
    if let Some(only) = &args.only {
        for name in only {
            ensure!(
                CONFIGS.iter().any(|(n, _)| n == name),
                "unknown configuration {name:?}; known: {}",
                CONFIGS
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let mut configs = Vec::new();
    let mut skipped = Vec::new();
    for &(name, plugin) in CONFIGS {
        let wanted = match &args.only {
            None => !OPT_IN.contains(&name),
            Some(only) => name == BASELINE || only.iter().any(|n| n == name),
        };
        if !wanted {
            continue;
        }
        let (lib, options, records) = match plugin {
            Plugin::None => (None, "", false),
            Plugin::Recorder { options } => {
                let lib = recorder_path();
                if !lib.is_file() {
                    skipped.push(Skipped {
                        config: name,
                        reason: format!(
                            "no recorder at {} (build it with `cargo build --release -p \
                             qtrace-recorder`, or set QTRACE_RECORDER)",
                            lib.display()
                        ),
                    });
                    continue;
                }
                (Some(lib), options, true)
            }
            Plugin::Qemu { lib, options } => {
                let lib = qemu_dir.join("plugins").join(lib);
                if !lib.is_file() {
                    skipped.push(Skipped {
                        config: name,
                        reason: format!("no QEMU plugin at {}", lib.display()),
                    });
                    continue;
                }
                (Some(lib), options, false)
            }
        };
        configs.push(Config {
            name,
            plugin: lib,
            options,
            records,
        });
    }
    Ok((configs, skipped))
}

/// Runs `config` once. A recording goes to a fresh directory under
/// `scratch`, which is sized, checked and deleted before returning.
fn run_config(
    config: &Config,
    qemu: &Path,
    input: &Path,
    scratch: &Path,
) -> Result<(Measured, Option<TraceStats>)> {
    let context = || format!("configuration {}", config.name);
    if !config.records {
        let args = config.qemu_args(input, None)?;
        let m = run_measured(qemu, &args, scratch).with_context(context)?;
        return Ok((m, None));
    }
    let dir = tempfile::Builder::new()
        .prefix("record-")
        .tempdir_in(scratch)
        .with_context(|| format!("cannot create a directory in {}", scratch.display()))?;
    let out = dir.path().join("trace.parquet");
    let args = config.qemu_args(input, Some(&out))?;
    let measured = run_measured(qemu, &args, scratch).and_then(|m| Ok((m, trace_stats(&out)?)));
    let (m, stats) = match measured {
        Ok(ok) => ok,
        Err(e) => {
            // Left for a post-mortem.
            let kept = dir.keep();
            return Err(e.context(format!(
                "configuration {} (what it recorded is kept in {})",
                config.name,
                kept.display()
            )));
        }
    };
    dir.close()
        .with_context(|| format!("cannot delete the trace in {}", scratch.display()))?;
    Ok((m, Some(stats)))
}

fn progress(m: &Measured, trace: Option<&TraceStats>) -> String {
    let mut s = format!(
        "{:8.3} s  {:7.1} MiB",
        m.wall.as_secs_f64(),
        m.max_rss_kib as f64 / 1024.0
    );
    if let Some(t) = trace {
        s.push_str(&format!(
            "  {} block events, {:.1} MiB on disk",
            t.block_events,
            mib(t.bytes)
        ));
        if t.block_events != t.blocks {
            s.push_str(&format!(" (blocks counted inline: {})", t.blocks));
        }
    }
    s
}

fn summarise(configs: &[Config], runs: &[Run]) -> Result<Vec<Summary>> {
    let of = |name: &'static str| runs.iter().filter(move |r| r.config == name);
    let walls = |name: &'static str| of(name).map(|r| r.wall_s).collect::<Vec<_>>();
    let rss = |name: &'static str| of(name).map(|r| r.max_rss_kib as f64).collect::<Vec<_>>();
    let plain_wall = median(&walls(BASELINE));
    let plain_rss = median(&rss(BASELINE));

    let mut summary = Vec::new();
    for c in configs {
        let wall = walls(c.name);
        let rss_median = median(&rss(c.name));
        let traces: Vec<&TraceStats> = of(c.name).filter_map(|r| r.trace.as_ref()).collect();
        let (trace_bytes, block_events, per_event) = if c.records {
            let mut per_event = Vec::new();
            for t in &traces {
                if t.block_events == 0 {
                    bail!("{}: the recording holds no block events", c.name);
                }
                per_event.push(t.bytes as f64 / t.block_events as f64);
            }
            let bytes: Vec<f64> = traces.iter().map(|t| t.bytes as f64).collect();
            let events: Vec<f64> = traces.iter().map(|t| t.block_events as f64).collect();
            (
                Some(median(&bytes)),
                Some(median(&events)),
                Some(median(&per_event)),
            )
        } else {
            (None, None, None)
        };
        summary.push(Summary {
            config: c.name,
            runs: wall.len(),
            wall_median_s: median(&wall),
            wall_min_s: min(&wall),
            ratio_to_plain: median(&wall) / plain_wall,
            rss_median_kib: rss_median,
            rss_over_plain_kib: rss_median - plain_rss,
            trace_bytes_median: trace_bytes,
            block_events_median: block_events,
            bytes_per_block_event_median: per_event,
        });
    }
    Ok(summary)
}

/// The issue's targets, for `qtrace-blocks` if it ran.
fn targets(summary: &[Summary]) -> Vec<Target> {
    let Some(q) = summary.iter().find(|s| s.config == "qtrace-blocks") else {
        return Vec::new();
    };
    let target = |what, value: f64, limit| Target {
        what,
        value,
        limit,
        pass: value <= limit,
    };
    vec![
        target("wall time / plain", q.ratio_to_plain, MAX_RATIO),
        target(
            "bytes per block event",
            q.bytes_per_block_event_median.unwrap_or(f64::NAN),
            MAX_BYTES_PER_EVENT,
        ),
        target(
            "peak RSS over plain, MiB",
            q.rss_over_plain_kib / 1024.0,
            MAX_EXTRA_RSS_MIB,
        ),
    ]
}

fn print_report(summary: &[Summary], targets: &[Target], skipped: &[Skipped]) {
    println!(
        "{:<14} {:>4} {:>10} {:>10} {:>8} {:>11} {:>11}",
        "config", "runs", "median s", "min s", "ratio", "RSS MiB", "vs plain"
    );
    for s in summary {
        println!(
            "{:<14} {:>4} {:>10.3} {:>10.3} {:>7.2}x {:>11.1} {:>+11.1}",
            s.config,
            s.runs,
            s.wall_median_s,
            s.wall_min_s,
            s.ratio_to_plain,
            s.rss_median_kib / 1024.0,
            s.rss_over_plain_kib / 1024.0,
        );
    }
    for s in skipped {
        println!("{:<14} skipped: {}", s.config, s.reason);
    }
    for s in summary {
        if let (Some(bytes), Some(events), Some(per_event)) = (
            s.trace_bytes_median,
            s.block_events_median,
            s.bytes_per_block_event_median,
        ) {
            println!(
                "\n{}: {events:.0} block events, {bytes:.0} bytes ({:.2} MiB) on disk, \
                 {per_event:.3} bytes per block event (medians)",
                s.config,
                bytes / (1024.0 * 1024.0),
            );
        }
    }
    if !targets.is_empty() {
        println!("\ntargets of qtrace-blocks:");
        for t in targets {
            println!(
                "  {:<26} {:>9.3} <= {:<6} {}",
                t.what,
                t.value,
                t.limit,
                if t.pass { "PASS" } else { "MISS" }
            );
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
