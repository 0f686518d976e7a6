//! `qtrace verify` and `--skip-corrupt` on real recordings (hotloop under the
//! real QEMU, several parts per table), damaged in the ways disks and killed
//! runs damage traces: truncated parts, flipped bits, deleted parts, parts
//! never sealed, parts sealed after the manifest's last rewrite. Verify must
//! name each, readers must fail with one line naming the file or go on
//! without it, and nothing may panic.
//!
//! Needs QEMU (`make setup`) and the samples (`make -C samples`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{one_error_line, qtrace};
use qtrace_format::layout::list_parts;
use qtrace_format::{verify, Manifest, Table};
use serde_json::Value;

/// A recording of hotloop with blocks sealed every 200000 rows and the
/// system calls, made once per test binary; each test damages a copy.
fn recording() -> &'static Path {
    static TRACE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, root) = TRACE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run.parquet");
        common::recorder();
        let out = qtrace(["record", "--clean-env", "-O", "part_rows=200000", "-o"])
            .arg(&root)
            .arg("--")
            .arg(common::sample("x86_64", "hotloop"))
            .arg("1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "record: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_recorder_listed_every_part(&root);
        (tmp, root)
    });
    root
}

/// The recorder lists every part it sealed, with what `verify` holds
/// against the file.
fn assert_recorder_listed_every_part(root: &Path) {
    let m = Manifest::read(root).unwrap();
    for table in Table::ALL {
        for p in list_parts(root, table).unwrap() {
            let on_disk = verify::part_entry(root, table, p.vcpu, p.index).unwrap();
            let listed = m.parts.iter().find(|e| e.path == on_disk.path);
            assert_eq!(listed, Some(&on_disk), "{}", on_disk.path);
        }
    }
}

/// A copy of the recording to damage.
struct Copy {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Copy {
    fn new() -> Copy {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("run.parquet");
        copy_dir(recording(), &root);
        Copy { _tmp: tmp, root }
    }

    fn path(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// The sealed parts of a table, relative to the root.
    fn parts(&self, table: Table) -> Vec<String> {
        list_parts(&self.root, table)
            .unwrap()
            .into_iter()
            .map(|p| rel(&self.root, &p.path))
            .collect()
    }
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What a finished `qtrace` run gave.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = qtrace(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert!(
        !run.stderr.contains("panicked") && !run.stdout.contains("panicked"),
        "{args:?} panicked:\n{}",
        run.stderr
    );
    run
}

/// `qtrace verify --format json`: exit status and report.
fn verify_json(t: &Copy) -> (i32, Value) {
    let r = run(&["verify", "--format", "json", t.path()]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    (r.code, v)
}

/// The report's entry for a part.
fn part_status(report: &Value, path: &str) -> (String, String) {
    let p = report["report"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {report:#}"));
    (
        p["status"].as_str().unwrap().to_string(),
        p["why"].as_str().unwrap_or("").to_string(),
    )
}

fn count(report: &Value, key: &str) -> u64 {
    report["counts"][key].as_u64().unwrap()
}

/// Block executions counted from the `blocks` events.
fn event_total(args: &[&str]) -> (u64, Run) {
    let mut all = vec![
        "top-blocks",
        "--source",
        "events",
        "-n",
        "0",
        "--format",
        "json",
    ];
    all.extend_from_slice(args);
    let r = run(&all);
    assert_eq!(r.code, 0, "{all:?}: {}", r.stderr);
    let rows: Value = serde_json::from_str(&r.stdout).unwrap();
    let total = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["execs"].as_u64().unwrap())
        .sum();
    (total, r)
}

/// A damaged listed part: verify says which and why, `info` and
/// `top-blocks` fail with one line naming it, and with `--skip-corrupt` go
/// on with one warning naming it.
fn check_damaged(t: &Copy, part: &str, why: &str) {
    let (code, report) = verify_json(t);
    assert_eq!(code, 1, "{report:#}");
    let (status, reason) = part_status(&report, part);
    assert_eq!(status, "corrupt", "{part}: {reason}");
    assert!(reason.contains(why), "{part}: {reason}");
    assert_eq!(count(&report, "corrupt"), 1, "{report:#}");
    let table = run(&["verify", t.path()]);
    assert_eq!(table.code, 1);
    assert!(table.stdout.contains(part), "{}", table.stdout);
    assert!(table.stdout.lines().last().unwrap().starts_with("FAILED: "));

    let file = t.root.join(part);
    let file = file.to_str().unwrap();
    one_error_line(["info", t.path()], file);
    let reads_it = part.starts_with("blocks/") || part.starts_with("block_dict/");
    if reads_it {
        one_error_line(["top-blocks", t.path(), "--source", "events"], file);
    }
    for args in [
        vec!["info", t.path(), "--skip-corrupt"],
        vec![
            "--skip-corrupt",
            "top-blocks",
            t.path(),
            "--source",
            "events",
        ],
    ] {
        let r = run(&args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        let warnings: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .collect();
        if args[0] == "info" || reads_it {
            assert_eq!(warnings.len(), 1, "{args:?}: {}", r.stderr);
            assert!(
                warnings[0].starts_with(&format!("warning: skipping {file} (")),
                "{}",
                warnings[0]
            );
        }
    }
}

#[test]
fn a_fresh_recording_verifies_with_no_problems() {
    let t = Copy::new();
    let (code, report) = verify_json(&t);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["ok"], true);
    let parts: usize = Table::ALL.iter().map(|&tb| t.parts(tb).len()).sum();
    assert!(t.parts(Table::Blocks).len() >= 4, "several parts of blocks");
    assert_eq!(count(&report, "ok"), parts as u64, "{report:#}");
    for k in [
        "missing",
        "corrupt",
        "unlisted",
        "unsealed",
        "other_problems",
    ] {
        assert_eq!(count(&report, k), 0, "{k}: {report:#}");
    }
    let r = run(&["verify", t.path()]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout.lines().last().unwrap(),
        format!("OK: {parts} ok, 0 missing, 0 corrupt, 0 unlisted, 0 unsealed, 0 other problems")
    );
    // The parts' rows add up to the manifest's totals, seq from 0 on.
    let rows: u64 = report["report"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["table"] == "blocks")
        .map(|p| p["rows"].as_u64().unwrap())
        .sum();
    let m = Manifest::read(&t.root).unwrap();
    assert_eq!(rows, m.vcpus[0].block_events);
    assert_eq!(event_total(&[t.path()]).0, m.vcpus[0].blocks);
}

#[test]
fn truncated_parts_are_corrupt() {
    let t0 = Copy::new();
    let blocks = t0.parts(Table::Blocks);
    let part = blocks[blocks.len() / 2].clone();
    let len = std::fs::metadata(t0.root.join(&part)).unwrap().len();
    for cut in [len - 1, len - 8, len / 2, 4, 0] {
        let t = Copy::new();
        let file = t.root.join(&part);
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, &bytes[..cut as usize]).unwrap();
        check_damaged(&t, &part, &format!("{cut} bytes, the manifest says {len}"));
        // Without it, the events of the others are still counted.
        let (total, _) = event_total(&["--skip-corrupt", t.path()]);
        let full = event_total(&[t0.path()]).0;
        let lost = verify::part_entry(&t0.root, Table::Blocks, Some(0), blocks.len() as u32 / 2)
            .unwrap()
            .rows;
        assert_eq!(total, full - lost);
    }
}

/// A small seeded generator, so that a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn flipped_bits_are_corrupt() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let t0 = Copy::new();
    let mut targets = Vec::new();
    for table in [
        Table::Blocks,
        Table::Blocks,
        Table::BlockDict,
        Table::BlockCounts,
        Table::Syscalls,
        Table::Modules,
    ] {
        let parts = t0.parts(table);
        assert!(!parts.is_empty(), "{} has parts", table.name());
        targets.push(parts[rng.below(parts.len() as u64) as usize].clone());
    }
    for part in targets {
        let t = Copy::new();
        let file = t.root.join(&part);
        let mut bytes = std::fs::read(&file).unwrap();
        let at = rng.below(bytes.len() as u64) as usize;
        let bit = rng.below(8);
        bytes[at] ^= 1 << bit;
        std::fs::write(&file, &bytes).unwrap();
        eprintln!("{part}: bit {bit} of byte {at}");
        check_damaged(&t, &part, "does not match the manifest's");
    }
}

#[test]
fn a_deleted_part_is_missing() {
    let t = Copy::new();
    let part = t.parts(Table::Blocks)[1].clone();
    std::fs::remove_file(t.root.join(&part)).unwrap();
    let (code, report) = verify_json(&t);
    assert_eq!(code, 1);
    assert_eq!(part_status(&report, &part).0, "missing");
    assert_eq!(count(&report, "missing"), 1);
    let r = run(&["verify", t.path()]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("MISSING ") && l.contains(&part)),
        "{}",
        r.stdout
    );
    // The rows it held are the part's problem, not another one.
    let verdict = "1 missing, 0 corrupt, 0 unlisted, 0 unsealed, 0 other problems\n";
    assert!(r.stdout.ends_with(verdict), "{}", r.stdout);
    let file = t.root.join(&part);
    let line = one_error_line(["info", t.path()], file.to_str().unwrap());
    assert!(
        line.ends_with("listed in the manifest but missing"),
        "{line}"
    );
    let r = run(&["info", "--skip-corrupt", t.path()]);
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("listed in the manifest but missing"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_part_never_sealed_is_reported_unsealed() {
    let t = Copy::new();
    let hidden = "blocks/vcpu=0/.part-000099.parquet.inprogress";
    std::fs::write(t.root.join(hidden), vec![7u8; 1234]).unwrap();
    let (code, report) = verify_json(&t);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(count(&report, "unsealed"), 1);
    let u = &report["report"]["unsealed"][0];
    assert_eq!(u["path"], hidden);
    assert_eq!(u["bytes"], 1234);
    let m = Manifest::read(&t.root).unwrap();
    assert_eq!(
        u["from_seq"], m.vcpus[0].block_events,
        "after the sealed parts"
    );
    let r = run(&["verify", t.path()]);
    assert!(r.stdout.contains("unsealed (being written"), "{}", r.stdout);
    assert!(r.stdout.contains(hidden), "{}", r.stdout);
    // Readers never see it.
    run(&["info", t.path()]);
}

#[test]
fn a_part_sealed_after_the_last_rewrite_is_unlisted_and_read() {
    let t = Copy::new();
    let last = t.parts(Table::Blocks).pop().unwrap();
    // The run killed after it sealed the last part, before it rewrote the
    // manifest (and before it could say how it ended).
    let mut m = Manifest::read(&t.root).unwrap();
    m.parts.retain(|p| p.path != last);
    m.complete = false;
    m.end = None;
    m.write(&t.root).unwrap();
    let (code, report) = verify_json(&t);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(part_status(&report, &last).0, "unlisted");
    assert_eq!(count(&report, "unlisted"), 1);
    let r = run(&["verify", t.path()]);
    assert!(r.stdout.contains("never finished"), "{}", r.stdout);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("unlisted ") && l.contains(&last)),
        "{}",
        r.stdout
    );
    // Readers count its rows.
    assert_eq!(event_total(&[t.path()]).0, m.vcpus[0].blocks);
}

#[test]
fn a_killed_run_says_how_far_its_threads_go() {
    let t = Copy::new();
    let mut blocks = t.parts(Table::Blocks);
    let last = blocks.pop().unwrap();
    // Killed while the last part was being written: it never got its name.
    let hidden = last.replace("part-", ".part-") + ".inprogress";
    std::fs::rename(t.root.join(&last), t.root.join(&hidden)).unwrap();
    let mut m = Manifest::read(&t.root).unwrap();
    m.parts.retain(|p| p.path != last);
    m.complete = false;
    m.end = None;
    m.write(&t.root).unwrap();
    let r = run(&["verify", t.path()]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("the run never finished; sealed parts hold up to seq"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(&hidden), "{}", r.stdout);
}

#[test]
fn child_traces_are_verified_too() {
    let t = Copy::new();
    let child = t.root.join("processes/pid=4242");
    copy_dir(recording(), &child);
    let r = run(&["verify", t.path()]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("child     processes/pid=4242 (verified)"),
        "{}",
        r.stdout
    );
    let part = "processes/pid=4242/".to_string() + &t.parts(Table::Blocks)[0];
    std::fs::write(t.root.join(&part), b"damaged").unwrap();
    let (code, report) = verify_json(&t);
    assert_eq!(code, 1);
    assert_eq!(count(&report, "corrupt"), 1);
    let r = run(&["verify", t.path()]);
    assert!(r.stdout.contains(&part), "{}", r.stdout);
}

#[test]
fn what_is_not_a_trace_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let line = one_error_line(["verify", dir], dir);
    assert!(line.contains("no manifest.json"), "{line}");
    let missing = tmp.path().join("nothing");
    one_error_line(["verify", missing.to_str().unwrap()], "nothing");

    let t = Copy::new();
    for garbage in [
        "{ not json",
        "",
        "{\"format\": \"other\"}",
        "[1, 2]",
        "\u{0}\u{ff}",
    ] {
        std::fs::write(t.root.join("manifest.json"), garbage).unwrap();
        for cmd in ["verify", "info", "top-blocks"] {
            one_error_line([cmd, t.path()], "manifest.json");
        }
    }
    std::fs::remove_file(t.root.join("manifest.json")).unwrap();
    for cmd in ["verify", "info", "top-blocks"] {
        let line = one_error_line([cmd, t.path()], t.path());
        assert!(line.contains("no manifest.json"), "{line}");
    }
}
