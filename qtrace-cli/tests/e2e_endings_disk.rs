//! Writing cannot keep up, and the guest must not notice:
//!
//! - the trace's disk fills up: recording stops, what was sealed stays
//!   readable and listed, the failure is said once on stderr and kept in the
//!   manifest, and the guest runs on to its normal end. Needs root, to mount
//!   a small tmpfs; skipped otherwise.
//! - `backpressure=drop` with writers too slow: whole buffers are dropped,
//!   and the manifest says exactly which `seq` ranges are missing.

mod common;
mod e2e_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e_support::*;

/// A tmpfs mounted for the test, unmounted when dropped, even by a panic.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir);
        let done = Spawned::start(cmd).finish(30);
        assert!(done.status.success(), "mount: {}", done.stderr);
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for lazy in [false, true] {
            let mut cmd = Command::new("umount");
            if lazy {
                cmd.arg("-l");
            }
            cmd.arg(&self.0);
            if Spawned::start(cmd).finish(30).status.success() {
                return;
            }
        }
    }
}

#[test]
fn a_full_disk_stops_recording_but_not_the_guest() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let prog = sample("x86_64", "hotloop")
        .expect("samples not built: run make -C samples")
        .display()
        .to_string();
    // About 9 MB of trace with every memory value.
    let argv = [prog.as_str(), "12"];

    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let _tmpfs = Tmpfs::mount(&mnt, "4m");
    let trace = mnt.join("run.parquet");
    let log = dir.path().join("plugin.log");
    let cmd = record_command(&trace, &argv, &["mem=values"], &[], &log);
    let done = Spawned::start(cmd).finish(180);

    let native = native_run(&argv);
    assert_eq!(done.shell_code(), native.shell_code(), "{}", done.stderr);
    assert_eq!(done.stdout, native.stdout, "recorded, native");

    let m = manifest(&trace);
    assert_eq!(m["complete"], false, "{}", done.stderr);
    let errors = m["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("No space left on device")),
        "manifest errors: {errors:?}, end: {}; stderr:\n{}",
        m["end"],
        done.stderr
    );
    assert_end(&trace, "exit", Some(0));
    assert_verifies(&trace);
    assert_parts_sound(&trace);

    // One line says what failed, and on which file; the closing summary may
    // repeat it.
    let failures: Vec<&str> = done
        .stderr
        .lines()
        .filter(|l| l.contains("No space left on device"))
        .filter(|l| !l.starts_with("qtrace: trace in "))
        .collect();
    assert_eq!(failures.len(), 1, "stderr:\n{}", done.stderr);
    assert!(
        failures[0].contains(&trace.display().to_string()),
        "the failure names the file: {}",
        failures[0]
    );
}

/// The runs of consecutive `seq` in the sealed `blocks`: first, rows.
const SEQ_RUNS: &str = r#"
import duckdb, sys
for first, rows in duckdb.sql(f"""SELECT min(seq), count(*) FROM (
        SELECT seq, seq - row_number() OVER (ORDER BY seq) AS run
        FROM read_parquet('{sys.argv[1]}/blocks/vcpu=0/*.parquet')) GROUP BY run ORDER BY 1""").fetchall():
    print(first, rows)
"#;

/// Each row a sealed `blocks` row of the trace, with its pc, is the same
/// block at the same `seq` as in the reference run: (rows, rows found in the
/// reference, rows with the same pc).
const SAME_BLOCKS: &str = r#"
import duckdb, sys
def blocks(t):
    return f"""(SELECT b.seq, d.pc FROM read_parquet('{t}/blocks/vcpu=0/*.parquet') b
        JOIN read_parquet('{t}/block_dict/*.parquet') d USING (block_id))"""
print(*duckdb.sql(f"""SELECT count(*), count(r.pc), count(*) FILTER (WHERE a.pc = r.pc)
    FROM {blocks(sys.argv[1])} a LEFT JOIN {blocks(sys.argv[2])} r USING (seq)""").fetchall()[0])
"#;

#[test]
fn dropped_buffers_are_counted_where_they_were() {
    let prog = sample("x86_64", "hotloop")
        .expect("samples not built: run make -C samples")
        .display()
        .to_string();
    let argv = [prog.as_str(), "3"];
    // Slow writers (zstd 19) and little memory for them: buffers are dropped.
    let options = [
        "mem=values",
        "backpressure=drop",
        "max_memory=1M",
        "zstd=19",
    ];
    let mut rec = Recording::start(&argv, &options, &["bb,inline=on"]);
    let (done, printed) = rec.finish(120);
    let native = native_run(&argv);
    assert_eq!(done.shell_code(), native.shell_code(), "{}", done.stderr);
    assert_eq!(done.stdout, native.stdout, "recorded, native");
    let trace = &rec.trace;
    assert_end(trace, "exit", Some(0));
    assert_verifies(trace);
    assert_parts_sound(trace);

    // Sealed runs of seq and dropped ones tile 0..blocks, the count libbb gives.
    let m = manifest(trace);
    let (bb, _) = parse_bb(&printed);
    let blocks = bb[&0].0;
    let mut runs: Vec<(u64, u64)> = run_python_within(SEQ_RUNS, &[trace], 120)
        .lines()
        .map(|l| {
            let (first, rows) = l.split_once(' ').unwrap();
            (first.parse().unwrap(), rows.parse().unwrap())
        })
        .collect();
    let sealed: u64 = runs.iter().map(|r| r.1).sum();
    let dropped = m["dropped"].as_array().unwrap();
    for d in dropped {
        let ranges: Vec<(u64, u64)> = serde_json::from_value(d["ranges"].clone()).unwrap();
        let rows: u64 = ranges.iter().map(|r| r.1).sum();
        assert_eq!(
            d["rows"].as_u64(),
            Some(rows),
            "dropped rows and ranges: {d}"
        );
        if d["table"] == "blocks" {
            assert_eq!(d["vcpu"], 0, "{d}");
            runs.extend(ranges);
        }
    }
    assert!(!dropped.is_empty(), "the writers kept up: nothing dropped");
    runs.sort();
    let mut next = 0;
    for (first, rows) in &runs {
        assert_eq!(*first, next, "seq runs, sealed and dropped: {runs:?}");
        next += rows;
    }
    assert_eq!(
        next, blocks,
        "sealed {sealed} and dropped blocks against libbb's"
    );

    // And the sealed blocks are where they were: the same pcs at the same
    // seq as in a run that drops nothing.
    let mut reference = Recording::start(&argv, &[], &[]);
    let (done, _) = reference.finish(120);
    assert!(done.status.success(), "{}", done.stderr);
    let same = run_python_within(SAME_BLOCKS, &[trace, &reference.trace], 120);
    let same: Vec<u64> = same
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        same, [sealed; 3],
        "sealed rows, found in the reference, same pc"
    );
}
