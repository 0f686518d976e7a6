//! Recording overhead of qtrace against plain QEMU and QEMU's own plugins.
//!
//! The workload is `xz -1 -T1 -c INPUT > /dev/null` (the host's
//! `/usr/bin/xz`) under `qemu-x86_64` from `$QTRACE_QEMU_DIR`, INPUT a 12 MiB
//! tar of Perl modules, the `perl` executable and C headers, made
//! reproducibly once and cached as `$QTRACE_CACHE/bench/input-12m.tar` (see
//! `qtrace_benches::INPUT_SOURCES`). The configurations (`qtrace-*` load the
//! recorder, `$QTRACE_RECORDER`, by default
//! `target/release/libqtrace_recorder.so`, with `out=` a fresh directory; the
//! others load a plugin of the QEMU build, `$QTRACE_QEMU_DIR/plugins/`):
//!
//! | name            | QEMU plugin                                                  |
//! |-----------------|--------------------------------------------------------------|
//! | `plain`         | none: the baseline                                           |
//! | `qtrace-blocks` | the recorder with its defaults: blocks and system calls     |
//! | `qtrace-mem`    | the recorder, `mem=values`: also every memory access and its value |
//! | `qtrace-all`    | the recorder, `mem=values,syscall_data=4096,regs=rax+...+rip`: also up to 4 KiB of each read/write-like system call's data and the 16 general registers and `rip` at each system call's entry |
//! | `qtrace-regs-64` | the recorder, also reading `rax`, `rbx` and `rsp` at every 64th block (`regs_at=blocks,regs_every=64`) |
//! | `qtrace-regs-1` | the same at every block; only when named in `--only` |
//! | `qtrace-closed` | the recorder, `start=addr:0x10`: a window that never opens (a check at translation only) |
//! | `qtrace-closed-icount` | the recorder, `start=icount:1000000000000000`: a window that never opens (an inline counter and a conditional callback per block) |
//! | `libempty`      | `libempty.so`: a plugin that registers nothing but translation |
//! | `libbb-inline`  | `libbb.so,inline=on`: inline block and insn counts           |
//! | `libbb-cb`      | `libbb.so`: the same counts through callbacks                |
//! | `libhotblocks`  | `libhotblocks.so,inline=on`: per-block counters              |
//! | `libmem-inline` | `libmem.so,inline=true`: memory accesses counted inline      |
//! | `libmem-cb`     | `libmem.so,inline=false,callback=true`: counted through a callback per access |
//! | `execlog`       | `libexeclog.so` with `-d plugin -D FILE`: a text line per instruction, written to a file in the scratch directory |
//!
//! Every configuration but `qtrace-regs-1` and `execlog` runs by default. `execlog` costs 700 to
//! 1500 times plain QEMU and writes about 59 bytes per instruction (12 GB and
//! 7 minutes for a 1 MiB input; 12 MiB would need some 140 GB), so it runs
//! only when named in `--only`, with a small input: `--only
//! qtrace-all,execlog --input-mb 1 --runs 1`. It is left out of the warm-up
//! round, and refuses to start when the scratch directory has less than 80
//! bytes free per instruction; its log is sized and deleted at once.
//!
//! After one untimed warm-up round, every configuration runs once per round,
//! interleaved, for `--runs` rounds, each with an empty environment, stdin
//! and stdout on `/dev/null`. Each run measures the wall time (spawn to
//! reaped) and the peak RSS of the QEMU process (`ru_maxrss` from `wait4`);
//! a recording also its size on disk, and from its manifest (which must say
//! `complete`) its block events, instructions, memory accesses and system
//! calls; `execlog` the size of its log. The instructions of an `execlog` run
//! are those of a recording in the same round (identical: the guest runs
//! with the same empty environment), or, when no recording is configured, of
//! one untimed run of QEMU's `libinsn.so,inline=on`.
//!
//! The report gives, per configuration, the median and minimum wall time,
//! the ratio of medians to `plain`, the median peak RSS and its excess over
//! `plain`; per recording the bytes on disk per block event and per
//! instruction, and with `mem=` the bytes per memory access, of the `mem/`
//! table (the target) and of the whole trace; with `execlog`, its ratio and
//! bytes per instruction beside those of `qtrace-all`. Then the targets,
//! each PASS or MISS, of the configurations that ran:
//!
//! | configuration   | target                                               |
//! |-----------------|------------------------------------------------------|
//! | `qtrace-blocks` | at most 1.6x plain, 0.5 byte per block event, 64 MiB of RSS above plain |
//! | `qtrace-mem`    | at most 7x plain, 3 bytes per memory access in `mem/` |
//! | `qtrace-all`    | at most 8x plain, 3 bytes per memory access in `mem/` |
//!
//! ```text
//! cargo build --release -p qtrace-recorder
//! cargo run --release -p qtrace-benches --bin record-overhead -- --runs 5
//! cargo run --release -p qtrace-benches --bin record-overhead -- \
//!     --only plain,qtrace-blocks --runs 1 --input-mb 2 --json /tmp/overhead.json
//! cargo run --release -p qtrace-benches --bin record-overhead -- \
//!     --only qtrace-all,execlog --runs 1 --input-mb 1
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
    cache_dir, ensure_input, free_bytes, libinsn_total, median, min, qemu_dir, recorder_path,
    run_measured, trace_stats, Measured, TraceStats,
};

/// Targets of `qtrace-blocks`.
const MAX_BLOCKS_RATIO: f64 = 1.6;
const MAX_BYTES_PER_EVENT: f64 = 0.5;
const MAX_EXTRA_RSS_MIB: f64 = 64.0;
/// Targets of `qtrace-mem` and `qtrace-all`.
const MAX_MEM_RATIO: f64 = 7.0;
const MAX_ALL_RATIO: f64 = 8.0;
const MAX_BYTES_PER_ACCESS: f64 = 3.0;

/// Free bytes per instruction the scratch directory must have before a run
/// that writes a text log (execlog wrote 59 here): QEMU ignores a full
/// disk and would leave a short log, hence a wrong size.
const LOG_RESERVE_PER_INSN: u64 = 80;

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
    /// runs): plain, qtrace-blocks, qtrace-mem, qtrace-all, qtrace-regs-64,
    /// qtrace-regs-1 (only when named), qtrace-closed,
    /// qtrace-closed-icount, libempty, libbb-inline,
    /// libbb-cb, libhotblocks, libmem-inline, libmem-cb, execlog. Without
    /// it, all but execlog. execlog (700x plain or more, about 59 bytes of
    /// log per instruction on disk: 12 GB and minutes at --input-mb 1) runs
    /// only when named here, e.g. `--only qtrace-all,execlog --input-mb 1
    /// --runs 1`.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Write every measurement and the summary to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Exit with status 1 when a configuration that ran misses a target.
    #[arg(long)]
    check: bool,
}

/// How a configuration loads its plugin.
#[derive(Clone, Copy)]
enum Plugin {
    None,
    /// The recorder with these options (besides `out=`); `mem` when they
    /// record memory accesses.
    Recorder {
        options: &'static str,
        mem: bool,
    },
    /// A plugin of the QEMU build, `plugins/<lib>`, with these options.
    Qemu {
        lib: &'static str,
        options: &'static str,
    },
    /// Likewise, its text (`qemu_plugin_outs`) sent to a file by QEMU's
    /// `-d plugin -D FILE`.
    QemuLog {
        lib: &'static str,
        options: &'static str,
    },
}

struct Spec {
    name: &'static str,
    plugin: Plugin,
    /// Runs without `--only`; otherwise only when named there.
    by_default: bool,
}

const fn spec(name: &'static str, plugin: Plugin) -> Spec {
    Spec {
        name,
        plugin,
        by_default: true,
    }
}

const QTRACE_BLOCKS: &str = "qtrace-blocks";
const QTRACE_ALL: &str = "qtrace-all";
const EXECLOG: &str = "execlog";

/// Every configuration, in the order of a round. `execlog` comes last: the
/// recordings before it in the round give its instruction count.
const CONFIGS: &[Spec] = &[
    spec(BASELINE, Plugin::None),
    spec(
        QTRACE_BLOCKS,
        Plugin::Recorder {
            options: "",
            mem: false,
        },
    ),
    spec(
        "qtrace-mem",
        Plugin::Recorder {
            options: "mem=values",
            mem: true,
        },
    ),
    spec(
        QTRACE_ALL,
        Plugin::Recorder {
            // The recorder separates the values of one option with `+`:
            // QEMU splits -plugin's argument on commas.
            options: "mem=values,syscall_data=4096,\
                      regs=rax+rbx+rcx+rdx+rsi+rdi+rbp+rsp+r8+r9+r10+r11+r12+r13+r14+r15+rip",
            mem: true,
        },
    ),
    spec(
        "qtrace-regs-64",
        Plugin::Recorder {
            options: "regs=rax+rbx+rsp,regs_at=blocks,regs_every=64",
            mem: false,
        },
    ),
    Spec {
        name: "qtrace-regs-1",
        plugin: Plugin::Recorder {
            options: "regs=rax+rbx+rsp,regs_at=blocks",
            mem: false,
        },
        by_default: false,
    },
    spec(
        "qtrace-closed",
        Plugin::Recorder {
            // A recording window that never opens: a check at translation.
            options: "start=addr:0x10",
            mem: false,
        },
    ),
    spec(
        "qtrace-closed-icount",
        Plugin::Recorder {
            // Waiting for an instruction count that never comes: an inline
            // counter and a conditional callback per block.
            options: "start=icount:1000000000000000",
            mem: false,
        },
    ),
    spec(
        "libempty",
        Plugin::Qemu {
            lib: "libempty.so",
            options: "",
        },
    ),
    spec(
        "libbb-inline",
        Plugin::Qemu {
            lib: "libbb.so",
            options: "inline=on",
        },
    ),
    spec(
        "libbb-cb",
        Plugin::Qemu {
            lib: "libbb.so",
            options: "",
        },
    ),
    spec(
        "libhotblocks",
        Plugin::Qemu {
            lib: "libhotblocks.so",
            options: "inline=on",
        },
    ),
    spec(
        "libmem-inline",
        Plugin::Qemu {
            lib: "libmem.so",
            options: "inline=true",
        },
    ),
    spec(
        "libmem-cb",
        Plugin::Qemu {
            lib: "libmem.so",
            options: "inline=false,callback=true",
        },
    ),
    Spec {
        name: EXECLOG,
        plugin: Plugin::QemuLog {
            lib: "libexeclog.so",
            options: "",
        },
        by_default: false,
    },
];

/// What a run leaves behind to measure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    None,
    /// A trace directory; `mem` when it holds memory accesses.
    Trace {
        mem: bool,
    },
    /// A text log, through `-d plugin -D FILE`.
    Log,
}

/// A configuration ready to run.
struct Config {
    name: &'static str,
    /// The plugin library, or none for plain QEMU.
    plugin: Option<PathBuf>,
    options: &'static str,
    output: Output,
}

impl Config {
    /// QEMU's arguments, with `dest` as the recording's directory or the
    /// log's file.
    fn qemu_args(&self, input: &Path, dest: Option<&Path>) -> Result<Vec<String>> {
        let mut args = Vec::new();
        if let Some(lib) = &self.plugin {
            let mut spec = path_str(lib)?.to_string();
            if !self.options.is_empty() {
                spec.push(',');
                spec.push_str(self.options);
            }
            match (self.output, dest) {
                (Output::Trace { .. }, Some(out)) => {
                    spec.push_str(",out=");
                    spec.push_str(path_str(out)?);
                }
                (Output::Log, Some(log)) => {
                    args.extend(["-d", "plugin", "-D", path_str(log)?].map(String::from));
                }
                _ => {}
            }
            args.push("-plugin".to_string());
            args.push(spec);
        }
        args.extend([XZ, "-1", "-T1", "-c"].map(String::from));
        args.push(path_str(input)?.to_string());
        Ok(args)
    }

    fn describe(&self) -> String {
        let Some(lib) = &self.plugin else {
            return "no plugin".to_string();
        };
        let mut s = lib.display().to_string();
        if !self.options.is_empty() {
            s.push(',');
            s.push_str(self.options);
        }
        if self.output == Output::Log {
            s.push_str(" (-d plugin -D FILE)");
        }
        s
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
    /// Size of the text log (execlog).
    #[serde(skip_serializing_if = "Option::is_none")]
    log_bytes: Option<u64>,
    /// Instructions of a logging run, and the configuration that counted
    /// them (a recording of the same round, or `libinsn` once).
    #[serde(skip_serializing_if = "Option::is_none")]
    insns: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    insns_from: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Summary {
    config: &'static str,
    runs: usize,
    wall_median_s: f64,
    wall_min_s: f64,
    /// Median wall time over plain's median wall time.
    ratio_to_plain: f64,
    rss_median_kib: f64,
    rss_over_plain_kib: f64,
    /// Bytes of the recording, or of the text log.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_bytes_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_events_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_block_event_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    insns_median: Option<f64>,
    /// Bytes of the recording, or of the text log, per instruction.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_insn_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syscalls_median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_accesses_median: Option<f64>,
    /// Bytes of the `mem/` table per memory access.
    #[serde(skip_serializing_if = "Option::is_none")]
    mem_bytes_per_access_median: Option<f64>,
    /// Bytes of the whole recording per memory access.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_bytes_per_access_median: Option<f64>,
}

#[derive(Serialize)]
struct Target {
    config: &'static str,
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

/// Where QEMU, its plugins, the input and the scratch space are.
struct Setup {
    qemu: PathBuf,
    qemu_dir: PathBuf,
    input: PathBuf,
    scratch: PathBuf,
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
    let setup = Setup {
        qemu,
        qemu_dir,
        input,
        scratch,
    };

    let host_cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "record-overhead: {} {XZ} -1 -T1 -c {} ({:.1} MiB)",
        setup.qemu.display(),
        setup.input.display(),
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

    let runs = run_rounds(&configs, &setup, args.runs)?;
    eprintln!();

    let summary = summarise(&configs, &runs)?;
    let targets = targets(&summary);
    print_report(&summary, &targets, &skipped);

    if let Some(path) = &args.json {
        let report = JsonReport {
            benchmark: "record-overhead",
            qemu: &setup.qemu,
            workload: configs[0].qemu_args(&setup.input, None)?,
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
                CONFIGS.iter().any(|s| s.name == name),
                "unknown configuration {name:?}; known: {}",
                CONFIGS
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let mut configs = Vec::new();
    let mut skipped = Vec::new();
    for spec in CONFIGS {
        let name = spec.name;
        if !wanted(spec, args.only.as_deref()) {
            continue;
        }
        let (lib, options, output) = match spec.plugin {
            Plugin::None => (None, "", Output::None),
            Plugin::Recorder { options, mem } => {
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
                (Some(lib), options, Output::Trace { mem })
            }
            Plugin::Qemu { lib, options } | Plugin::QemuLog { lib, options } => {
                let lib = qemu_dir.join("plugins").join(lib);
                if !lib.is_file() {
                    skipped.push(Skipped {
                        config: name,
                        reason: format!("no QEMU plugin at {}", lib.display()),
                    });
                    continue;
                }
                let output = match spec.plugin {
                    Plugin::QemuLog { .. } => Output::Log,
                    _ => Output::None,
                };
                (Some(lib), options, output)
            }
        };
        configs.push(Config {
            name,
            plugin: lib,
            options,
            output,
        });
    }
    Ok((configs, skipped))
}

/// Whether `spec` runs, given `--only` (plain always does).
fn wanted(spec: &Spec, only: Option<&[String]>) -> bool {
    match only {
        None => spec.by_default,
        Some(only) => spec.name == BASELINE || only.iter().any(|n| n == spec.name),
    }
}

/// The untimed warm-up round, then `rounds` timed rounds. A logging
/// configuration (execlog) sits out the warm-up, and takes its instruction
/// count from a recording of its round, or else from one untimed run of
/// `libinsn`.
fn run_rounds(configs: &[Config], setup: &Setup, rounds: u32) -> Result<Vec<Run>> {
    let logs = configs.iter().any(|c| c.output == Output::Log);
    // The latest instruction count, to size the disk a log needs.
    let mut known_insns = None;

    eprintln!("warm-up round");
    for c in configs.iter().filter(|c| c.output != Output::Log) {
        let done = run_config(c, setup, known_insns)?;
        eprintln!("  {:<14} {}", c.name, progress(&done));
        if let Some(t) = &done.trace {
            known_insns = Some(t.insns);
        }
    }
    let mut counted = None;
    if logs && known_insns.is_none() {
        counted = count_insns(setup)?;
        match counted {
            Some(n) => eprintln!("  {:<14} {n} instructions (untimed count)", "libinsn"),
            None => eprintln!(
                "  no recording and no libinsn.so: the log's bytes per instruction stay unknown"
            ),
        }
        known_insns = counted;
    }

    let mut runs: Vec<Run> = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}");
        let first = runs.len();
        for c in configs {
            let done = run_config(c, setup, known_insns)?;
            eprintln!("  {:<14} {}", c.name, progress(&done));
            if let Some(t) = done.trace.as_ref().filter(|t| t.insns > 0) {
                known_insns = Some(t.insns);
            }
            runs.push(Run {
                config: c.name,
                run: round,
                wall_s: done.measured.wall.as_secs_f64(),
                max_rss_kib: done.measured.max_rss_kib,
                trace: done.trace,
                log_bytes: done.log_bytes,
                insns: None,
                insns_from: None,
            });
        }
        let recorded = runs[first..]
            .iter()
            .find_map(|r| Some((r.trace.as_ref().filter(|t| t.insns > 0)?.insns, r.config)));
        let insns = recorded.or(counted.map(|n| (n, "libinsn")));
        for r in runs[first..].iter_mut().filter(|r| r.log_bytes.is_some()) {
            r.insns = insns.map(|(n, _)| n);
            r.insns_from = insns.map(|(_, from)| from);
        }
    }
    Ok(runs)
}

/// What one run measured and left behind.
struct Done {
    measured: Measured,
    trace: Option<TraceStats>,
    log_bytes: Option<u64>,
}

/// Runs `config` once. A recording goes to a fresh directory under the
/// scratch directory, which is sized, checked and deleted before returning;
/// a log goes to a fresh file there, sized and deleted likewise, after
/// checking that the disk has room for `insns` instructions of it.
fn run_config(config: &Config, setup: &Setup, insns: Option<u64>) -> Result<Done> {
    let context = || format!("configuration {}", config.name);
    let scratch = &setup.scratch;
    let dir = match config.output {
        Output::None => None,
        Output::Trace { .. } | Output::Log => Some(
            tempfile::Builder::new()
                .prefix(&format!("{}-", config.name))
                .tempdir_in(scratch)
                .with_context(|| format!("cannot create a directory in {}", scratch.display()))?,
        ),
    };
    let Some(dir) = dir else {
        let args = config.qemu_args(&setup.input, None)?;
        let measured = run_measured(&setup.qemu, &args, scratch).with_context(context)?;
        return Ok(Done {
            measured,
            trace: None,
            log_bytes: None,
        });
    };

    if config.output == Output::Log {
        if let Some(insns) = insns {
            let need = insns.saturating_mul(LOG_RESERVE_PER_INSN);
            let free = free_bytes(scratch)?;
            ensure!(
                free >= need,
                "{}: its log of {insns} instructions needs up to {:.1} GiB ({LOG_RESERVE_PER_INSN} \
                 bytes each) and {} has {:.1} GiB free: try a smaller --input-mb",
                config.name,
                gib(need),
                scratch.display(),
                gib(free)
            );
        }
        // Deleted with `dir` on every path: a log can take gigabytes.
        let log = dir.path().join("log.txt");
        let args = config.qemu_args(&setup.input, Some(&log))?;
        let measured = run_measured(&setup.qemu, &args, scratch).with_context(context)?;
        let bytes = std::fs::metadata(&log)
            .with_context(|| format!("{}: QEMU wrote no {}", config.name, log.display()))?
            .len();
        ensure!(bytes > 0, "{}: the log is empty", config.name);
        dir.close()
            .with_context(|| format!("cannot delete the log in {}", scratch.display()))?;
        return Ok(Done {
            measured,
            trace: None,
            log_bytes: Some(bytes),
        });
    }

    let out = dir.path().join("trace.parquet");
    let args = config.qemu_args(&setup.input, Some(&out))?;
    let measured =
        run_measured(&setup.qemu, &args, scratch).and_then(|m| Ok((m, trace_stats(&out)?)));
    let (measured, stats) = match measured {
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
    Ok(Done {
        measured,
        trace: Some(stats),
        log_bytes: None,
    })
}

/// Counts the workload's instructions with one untimed run of QEMU's
/// `libinsn.so,inline=on`; none when the plugin is missing.
fn count_insns(setup: &Setup) -> Result<Option<u64>> {
    let lib = setup.qemu_dir.join("plugins/libinsn.so");
    if !lib.is_file() {
        return Ok(None);
    }
    let config = Config {
        name: "libinsn",
        plugin: Some(lib),
        options: "inline=on",
        output: Output::Log,
    };
    let log = tempfile::NamedTempFile::new_in(&setup.scratch)
        .with_context(|| format!("cannot create a file in {}", setup.scratch.display()))?;
    let args = config.qemu_args(&setup.input, Some(log.path()))?;
    run_measured(&setup.qemu, &args, &setup.scratch).context("counting instructions")?;
    let text = std::fs::read_to_string(log.path())
        .with_context(|| format!("cannot read {}", log.path().display()))?;
    let total = libinsn_total(&text)
        .with_context(|| format!("libinsn printed no `total insns:` line but {text:?}"))?;
    Ok(Some(total))
}

fn progress(done: &Done) -> String {
    let m = &done.measured;
    let mut s = format!(
        "{:8.3} s  {:7.1} MiB",
        m.wall.as_secs_f64(),
        m.max_rss_kib as f64 / 1024.0
    );
    if let Some(t) = &done.trace {
        s.push_str(&format!("  {} block events", t.block_events));
        if t.mem_accesses > 0 {
            s.push_str(&format!(", {} memory accesses", t.mem_accesses));
        }
        s.push_str(&format!(", {:.1} MiB on disk", mib(t.bytes)));
        if t.block_events != t.blocks {
            s.push_str(&format!(" (blocks counted inline: {})", t.blocks));
        }
    }
    if let Some(bytes) = done.log_bytes {
        s.push_str(&format!("  {:.1} MiB of log", mib(bytes)));
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
        let mut s = Summary {
            config: c.name,
            runs: wall.len(),
            wall_median_s: median(&wall),
            wall_min_s: min(&wall),
            ratio_to_plain: median(&wall) / plain_wall,
            rss_median_kib: rss_median,
            rss_over_plain_kib: rss_median - plain_rss,
            ..Default::default()
        };
        match c.output {
            Output::None => {}
            Output::Trace { mem } => {
                let traces: Vec<&TraceStats> =
                    of(c.name).filter_map(|r| r.trace.as_ref()).collect();
                if c.options.starts_with("start=") && traces.iter().all(|t| t.block_events == 0) {
                    // A recording window that never opened: nothing to size.
                    summary.push(s);
                    continue;
                }
                if let Some(t) = traces.iter().find(|t| t.block_events == 0 || t.insns == 0) {
                    bail!(
                        "{}: the recording holds {} block events and {} instructions",
                        c.name,
                        t.block_events,
                        t.insns
                    );
                }
                let med = |f: &dyn Fn(&TraceStats) -> f64| {
                    Some(median(&traces.iter().map(|t| f(t)).collect::<Vec<_>>()))
                };
                s.trace_bytes_median = med(&|t| t.bytes as f64);
                s.block_events_median = med(&|t| t.block_events as f64);
                s.bytes_per_block_event_median = med(&|t| t.bytes as f64 / t.block_events as f64);
                s.insns_median = med(&|t| t.insns as f64);
                s.bytes_per_insn_median = med(&|t| t.bytes as f64 / t.insns as f64);
                s.syscalls_median = med(&|t| t.syscalls as f64);
                if mem {
                    if traces.iter().any(|t| t.mem_accesses == 0) {
                        bail!("{}: the recording holds no memory accesses", c.name);
                    }
                    s.mem_accesses_median = med(&|t| t.mem_accesses as f64);
                    s.mem_bytes_per_access_median =
                        med(&|t| t.mem_bytes as f64 / t.mem_accesses as f64);
                    s.trace_bytes_per_access_median =
                        med(&|t| t.bytes as f64 / t.mem_accesses as f64);
                }
            }
            Output::Log => {
                let bytes: Vec<f64> = of(c.name)
                    .filter_map(|r| r.log_bytes)
                    .map(|b| b as f64)
                    .collect();
                s.trace_bytes_median = Some(median(&bytes));
                let counted: Vec<(f64, f64)> = of(c.name)
                    .filter_map(|r| Some((r.log_bytes? as f64, r.insns? as f64)))
                    .collect();
                if !counted.is_empty() {
                    let insns: Vec<f64> = counted.iter().map(|&(_, n)| n).collect();
                    let per: Vec<f64> = counted.iter().map(|&(b, n)| b / n).collect();
                    s.insns_median = Some(median(&insns));
                    s.bytes_per_insn_median = Some(median(&per));
                }
            }
        }
        summary.push(s);
    }
    Ok(summary)
}

/// The issue's targets, for each configuration that has some and ran.
fn targets(summary: &[Summary]) -> Vec<Target> {
    let mut targets = Vec::new();
    for s in summary {
        let mut target = |what, value: f64, limit| {
            targets.push(Target {
                config: s.config,
                what,
                value,
                limit,
                pass: value <= limit,
            })
        };
        let per_access = s.mem_bytes_per_access_median.unwrap_or(f64::NAN);
        match s.config {
            QTRACE_BLOCKS => {
                target("wall time / plain", s.ratio_to_plain, MAX_BLOCKS_RATIO);
                target(
                    "bytes per block event",
                    s.bytes_per_block_event_median.unwrap_or(f64::NAN),
                    MAX_BYTES_PER_EVENT,
                );
                target(
                    "peak RSS over plain, MiB",
                    s.rss_over_plain_kib / 1024.0,
                    MAX_EXTRA_RSS_MIB,
                );
            }
            "qtrace-mem" => {
                target("wall time / plain", s.ratio_to_plain, MAX_MEM_RATIO);
                target("mem/ bytes per access", per_access, MAX_BYTES_PER_ACCESS);
            }
            QTRACE_ALL => {
                target("wall time / plain", s.ratio_to_plain, MAX_ALL_RATIO);
                target("mem/ bytes per access", per_access, MAX_BYTES_PER_ACCESS);
            }
            _ => {}
        }
    }
    targets
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
        let (Some(bytes), Some(events), Some(per_event), Some(insns), Some(per_insn)) = (
            s.trace_bytes_median,
            s.block_events_median,
            s.bytes_per_block_event_median,
            s.insns_median,
            s.bytes_per_insn_median,
        ) else {
            continue;
        };
        println!(
            "\n{} (medians): {events:.0} block events, {insns:.0} instructions, {:.0} system calls",
            s.config,
            s.syscalls_median.unwrap_or(0.0),
        );
        println!(
            "  {bytes:.0} bytes ({:.2} MiB) on disk: {per_event:.3} bytes per block event, \
             {per_insn:.3} per instruction",
            bytes / (1024.0 * 1024.0),
        );
        if let (Some(accesses), Some(mem_per), Some(trace_per)) = (
            s.mem_accesses_median,
            s.mem_bytes_per_access_median,
            s.trace_bytes_per_access_median,
        ) {
            println!(
                "  {accesses:.0} memory accesses: {mem_per:.3} bytes each in mem/, \
                 {trace_per:.3} counting the whole trace"
            );
        }
    }
    print_log_comparison(summary);
    if !targets.is_empty() {
        println!("\ntargets:");
        for t in targets {
            println!(
                "  {:<14} {:<26} {:>9.3} <= {:<6} {}",
                t.config,
                t.what,
                t.value,
                t.limit,
                if t.pass { "PASS" } else { "MISS" }
            );
        }
    }
}

/// execlog's ratio and bytes per instruction beside qtrace-all's, when
/// execlog ran.
fn print_log_comparison(summary: &[Summary]) {
    let Some(log) = summary.iter().find(|s| s.config == EXECLOG) else {
        return;
    };
    println!("\nexeclog against qtrace-all (medians; bytes on disk per instruction):");
    println!(
        "  {:<14} {:>9} {:>12} {:>12}",
        "config", "ratio", "bytes/insn", "MiB on disk"
    );
    for name in [QTRACE_ALL, EXECLOG] {
        let Some(s) = summary.iter().find(|s| s.config == name) else {
            println!("  {name:<14} did not run");
            continue;
        };
        let per_insn = match s.bytes_per_insn_median {
            Some(v) => format!("{v:.3}"),
            None => "unknown".to_string(),
        };
        println!(
            "  {:<14} {:>8.2}x {:>12} {:>12.1}",
            s.config,
            s.ratio_to_plain,
            per_insn,
            s.trace_bytes_median.unwrap_or(f64::NAN) / (1024.0 * 1024.0),
        );
    }
    if let (Some(log_per), Some(all_per)) = (
        log.bytes_per_insn_median,
        summary
            .iter()
            .find(|s| s.config == QTRACE_ALL)
            .and_then(|s| s.bytes_per_insn_median),
    ) {
        println!(
            "  execlog writes {:.0} times the bytes of qtrace-all per instruction",
            log_per / all_per
        );
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(only: Option<&[String]>) -> Vec<&'static str> {
        CONFIGS
            .iter()
            .filter(|s| wanted(s, only))
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn execlog_runs_only_when_named() {
        let default = names(None);
        assert!(!default.contains(&EXECLOG) && !default.contains(&"qtrace-regs-1"));
        assert_eq!(default.len(), CONFIGS.len() - 2);
        let only = ["qtrace-all".to_string(), EXECLOG.to_string()];
        assert_eq!(names(Some(&only)), [BASELINE, QTRACE_ALL, EXECLOG]);
    }

    #[test]
    fn execlog_logs_to_a_file_and_the_recorder_to_a_directory() {
        let input = Path::new("/in.tar");
        let execlog = Config {
            name: EXECLOG,
            plugin: Some(PathBuf::from("/q/libexeclog.so")),
            options: "",
            output: Output::Log,
        };
        let args = execlog
            .qemu_args(input, Some(Path::new("/s/log.txt")))
            .unwrap();
        assert_eq!(
            args[..6],
            [
                "-d",
                "plugin",
                "-D",
                "/s/log.txt",
                "-plugin",
                "/q/libexeclog.so"
            ]
        );
        assert_eq!(args[6..], [XZ, "-1", "-T1", "-c", "/in.tar"]);

        let Some(Spec {
            plugin: Plugin::Recorder { options, mem },
            ..
        }) = CONFIGS.iter().find(|s| s.name == QTRACE_ALL)
        else {
            panic!("no qtrace-all");
        };
        assert!(mem);
        let all = Config {
            name: QTRACE_ALL,
            plugin: Some(PathBuf::from("/r.so")),
            options,
            output: Output::Trace { mem: *mem },
        };
        let args = all.qemu_args(input, Some(Path::new("/s/t"))).unwrap();
        let spec: Vec<&str> = args[1].split(',').collect();
        // One -plugin argument: QEMU splits it on commas, the recorder its
        // register list on `+`.
        assert_eq!(args[0], "-plugin");
        assert_eq!(spec[0], "/r.so");
        assert_eq!(spec[spec.len() - 1], "out=/s/t");
        let regs = spec.iter().find_map(|o| o.strip_prefix("regs=")).unwrap();
        assert_eq!(regs.split('+').count(), 17);
        assert!(spec.contains(&"mem=values") && spec.contains(&"syscall_data=4096"));
    }

    #[test]
    fn targets_pass_miss_and_miss_when_unmeasured() {
        let summary = |config, ratio, per_access: Option<f64>| Summary {
            config,
            runs: 1,
            wall_median_s: 1.0,
            wall_min_s: 1.0,
            ratio_to_plain: ratio,
            rss_median_kib: 0.0,
            rss_over_plain_kib: 0.0,
            mem_bytes_per_access_median: per_access,
            ..Default::default()
        };
        let t = targets(&[
            summary(BASELINE, 1.0, None),
            summary("qtrace-mem", 6.9, Some(3.1)),
            summary(QTRACE_ALL, 7.5, None),
            summary(EXECLOG, 700.0, None),
        ]);
        let got: Vec<_> = t.iter().map(|t| (t.config, t.what, t.pass)).collect();
        assert_eq!(
            got,
            [
                ("qtrace-mem", "wall time / plain", true),
                ("qtrace-mem", "mem/ bytes per access", false),
                (QTRACE_ALL, "wall time / plain", true),
                (QTRACE_ALL, "mem/ bytes per access", false),
            ]
        );
    }
}
