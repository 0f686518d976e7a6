//! Small synthetic traces, written with `qtrace_format`'s own writer, whose
//! every count is known, and helpers to run `qtrace` on them; and what
//! `qtrace record` needs to run for real: QEMU, the recorder plugin built
//! beside `qtrace`, and the sample guest programs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use qtrace_format::manifest::{RunEnd, ThreadTotals};
use qtrace_format::schema::{block_counts_batch, BlockDictBuilder};
use qtrace_format::writer::{write_table, PartLimits, PartWriter};
use qtrace_format::{BlockCount, BlockInfo, InsnInfo, Manifest, Table, VcpuTotals};

/// A block of the sample trace: id, pc, symbol, number of instructions, and
/// executions on vCPU 0 and vCPU 1. `pc == 0` marks a block left out of
/// `block_dict`.
pub struct Block {
    pub id: u32,
    pub pc: u64,
    pub symbol: Option<&'static str>,
    pub n_insns: u32,
    pub execs: [u64; 2],
}

/// Block 5 ties with block 0 on executions (20) at a lower address, so it
/// must be listed first; block 4 is missing from `block_dict`.
pub const BLOCKS: [Block; 6] = [
    Block {
        id: 0,
        pc: 0x401000,
        symbol: Some("main"),
        n_insns: 3,
        execs: [10, 10],
    },
    Block {
        id: 1,
        pc: 0x401010,
        symbol: Some("loop"),
        n_insns: 2,
        execs: [100, 5],
    },
    Block {
        id: 2,
        pc: 0x402000,
        symbol: None,
        n_insns: 5,
        execs: [30, 50],
    },
    Block {
        id: 3,
        pc: 0x400800,
        symbol: Some("_start"),
        n_insns: 1,
        execs: [1, 0],
    },
    Block {
        id: 4,
        pc: 0,
        symbol: None,
        n_insns: 0,
        execs: [2, 0],
    },
    Block {
        id: 5,
        pc: 0x300000,
        symbol: Some("early, \"quoted\""),
        n_insns: 1,
        execs: [20, 0],
    },
];

pub fn total_execs(vcpu: Option<usize>) -> u64 {
    BLOCKS
        .iter()
        .map(|b| match vcpu {
            Some(v) => b.execs[v],
            None => b.execs.iter().sum(),
        })
        .sum()
}

/// What to put in a sample trace.
#[derive(Clone, Copy)]
pub struct Spec {
    /// Write `block_counts`, as a finished recording does.
    pub counts: bool,
    /// What the manifest says about how the recording ended.
    pub complete: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            counts: true,
            complete: true,
        }
    }
}

/// A trace in a temporary directory, removed when dropped.
pub struct Sample {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
}

impl Sample {
    pub fn new(spec: Spec) -> Sample {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run.parquet");
        write_trace(&root, spec);
        Sample { _tmp: tmp, root }
    }

    /// The trace as a string argument.
    pub fn path(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// Sealed parts of a table.
    pub fn parts(&self, table: Table) -> Vec<PathBuf> {
        qtrace_format::layout::list_parts(&self.root, table)
            .unwrap()
            .into_iter()
            .map(|p| p.path)
            .collect()
    }
}

fn insns(b: &Block) -> Vec<InsnInfo> {
    (0..b.n_insns)
        .map(|k| InsnInfo {
            addr: b.pc + 2 * u64::from(k),
            bytes: vec![0x90, k as u8],
            disas: format!("insn{k} of {}", b.id),
            symbol: b.symbol.map(str::to_string),
        })
        .collect()
}

fn write_trace(root: &Path, spec: Spec) {
    std::fs::create_dir_all(root).unwrap();

    let mut dict = BlockDictBuilder::default();
    for b in BLOCKS.iter().filter(|b| b.pc != 0) {
        let insns = insns(b);
        dict.append(&BlockInfo {
            id: b.id,
            pc: b.pc,
            size: 2 * b.n_insns,
            code: insns.iter().flat_map(|i| i.bytes.clone()).collect(),
            symbol: b.symbol.map(str::to_string),
            insns,
        });
    }
    let dict_part = write_table(root, Table::BlockDict, 0, &dict.finish(), 1).unwrap();

    let mut manifest = Manifest::new();
    manifest.target = "x86_64".into();
    manifest.mode = "linux-user".into();
    manifest.qemu_version = Some("10.0.2".into());
    manifest.recorder_version = "0.1.0".into();
    manifest.command_line = vec!["qemu-x86_64".into(), "/bin/prog".into(), "two words".into()];
    manifest
        .options
        .insert("out".into(), root.display().to_string());
    manifest.distinct_blocks = BLOCKS.iter().filter(|b| b.pc != 0).count() as u64;
    manifest.pid = 1000;
    // The manifest lists every sealed part, as the recorder's does.
    manifest.add_part(dict_part);

    let mut counts = Vec::new();
    for vcpu in 0..2u32 {
        // Interleave the blocks, as a loop would, and write them in small
        // batches so that each vCPU gets several parts to scan in parallel.
        let mut remaining: Vec<u64> = BLOCKS.iter().map(|b| b.execs[vcpu as usize]).collect();
        let mut ids = Vec::new();
        while remaining.iter().any(|&n| n > 0) {
            for (b, n) in BLOCKS.iter().zip(remaining.iter_mut()) {
                if *n > 0 {
                    ids.push(b.id);
                    *n -= 1;
                }
            }
        }
        let limits = PartLimits {
            max_rows: 40,
            max_age: Duration::from_secs(3600),
        };
        let mut w = PartWriter::new(root, Table::Blocks, Some(vcpu), 1, limits);
        for (k, chunk) in ids.chunks(40).enumerate() {
            w.write_blocks((k * 40) as u64, 1000 + vcpu, chunk).unwrap();
        }
        w.seal().unwrap();
        for part in w.take_sealed() {
            manifest.add_part(part);
        }
        manifest.threads.push(ThreadTotals {
            tid: 1000 + vcpu,
            vcpu,
            first_seq: 0,
            block_events: ids.len() as u64,
        });

        let execs: u64 = BLOCKS.iter().map(|b| b.execs[vcpu as usize]).sum();
        let insns: u64 = BLOCKS
            .iter()
            .map(|b| b.execs[vcpu as usize] * u64::from(b.n_insns))
            .sum();
        manifest.vcpus.push(VcpuTotals {
            vcpu,
            blocks: execs,
            insns,
            block_events: ids.len() as u64,
            parts: w.sealed_parts(),
            mem_accesses: 0,
            syscalls: 0,
            regs_rows: 0,
        });
        for b in BLOCKS.iter().filter(|b| b.execs[vcpu as usize] > 0) {
            counts.push(BlockCount {
                vcpu,
                block_id: b.id,
                execs: b.execs[vcpu as usize],
            });
        }
    }
    if spec.counts {
        let part = write_table(root, Table::BlockCounts, 0, &block_counts_batch(&counts), 1);
        manifest.add_part(part.unwrap());
    }
    if spec.complete {
        manifest.complete = true;
        manifest.end = Some(RunEnd {
            how: "exit".into(),
            exit_code: Some(0),
            tid: Some(1000),
            ..Default::default()
        });
        manifest.ended_at = Some(qtrace_format::manifest::now_rfc3339());
    }
    manifest.write(root).unwrap();
}

/// `qtrace` with the given arguments.
pub fn qtrace<I, S>(args: I) -> assert_cmd::Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_qtrace"));
    cmd.args(args);
    cmd
}

/// Runs `qtrace` expecting success; returns stdout.
pub fn stdout_of<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = qtrace(args).assert().success().get_output().clone();
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `qtrace` expecting failure with exactly one line on stderr that
/// starts with `error:` and contains `needle`; returns that line.
pub fn one_error_line<I, S>(args: I, needle: &str) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = qtrace(args)
        .timeout(Duration::from_secs(60))
        .assert()
        .failure()
        .get_output()
        .clone();
    assert_eq!(out.status.code(), Some(1), "exit status {:?}", out.status);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    lines[0].to_string()
}

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `qtrace` under test.
pub fn qtrace_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_qtrace"))
}

/// Where QEMU is installed, by the rules of `scripts/env.sh` (and of
/// `qtrace record`).
pub fn qemu_dir() -> PathBuf {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("QTRACE_QEMU_DIR") {
        return PathBuf::from(dir);
    }
    let cache = match set("QTRACE_CACHE") {
        Some(cache) => PathBuf::from(cache),
        None => PathBuf::from(set("HOME").expect("HOME is not set")).join(".cache/qtrace"),
    };
    cache.join("qemu-10.0.2")
}

/// The real QEMU for `arch`; fails the test, saying how to get it, when it
/// is not installed.
pub fn qemu(arch: &str) -> PathBuf {
    let bin = qemu_dir().join("bin").join(format!("qemu-{arch}"));
    assert!(
        bin.is_file(),
        "{} is missing: run `make setup` (or scripts/setup.sh), or point \
         QTRACE_QEMU_DIR at a QEMU 10 built with plugin support",
        bin.display()
    );
    bin
}

/// A sample guest program built by `make -C samples`; fails the test, saying
/// so, when it has not been built.
pub fn sample(arch: &str, name: &str) -> PathBuf {
    let path = repo_root().join("samples/build").join(arch).join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make -C samples` first",
        path.display()
    );
    path
}

/// The recorder plugin beside the `qtrace` under test, where `qtrace record`
/// looks for it. Cargo does not build a cdylib for another package's tests,
/// so the first call builds it, once per test binary, with the profile the
/// tests were built with (which also keeps it up to date with its sources).
/// Fails the test if it cannot be built.
pub fn recorder() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(build_recorder)
        .clone()
        .unwrap_or_else(|why| panic!("{why}"))
}

fn build_recorder() -> Result<PathBuf, String> {
    let exe = qtrace_exe();
    let profile_dir = exe.parent().unwrap();
    let recorder = profile_dir.join("libqtrace_recorder.so");
    let target_dir = profile_dir.parent().unwrap();
    // `target/debug` is the dev and test profiles' directory; any other
    // directory is named after its profile (`release`, `bench-release`...).
    let profile = profile_dir.file_name().unwrap().to_str().unwrap();
    let flags = match profile {
        "debug" => vec![],
        "release" => vec!["--release".to_string()],
        other => vec!["--profile".to_string(), other.to_string()],
    };
    let cargo = std::env::var_os("CARGO")
        .or_else(|| option_env!("CARGO").map(Into::into))
        .unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        // The whole workspace, as `make` builds it: built alone, the
        // recorder would get other features of shared dependencies and be
        // compiled again.
        .arg("--workspace")
        .arg("--target-dir")
        .arg(target_dir);
    cmd.args(&flags);
    let by_hand = format!(
        "build it first with `cargo build --workspace{}`, so that {} exists",
        flags.iter().map(|f| format!(" {f}")).collect::<String>(),
        recorder.display()
    );
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}; {by_hand}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        return Err(format!(
            "building the recorder failed ({}):\n{}\n{by_hand}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !recorder.is_file() {
        return Err(format!("the recorder build left no plugin; {by_hand}"));
    }
    Ok(recorder)
}
