//! QEMU killed with SIGKILL at random moments: nothing runs at the end, so
//! the trace is whatever was sealed before. It must be readable as it is:
//! every part the manifest lists is there and intact, the sealed blocks are
//! exactly the start of what a complete run of the same deterministic guest
//! executes (none lost in the middle, none made up), and little is lost:
//! parts are sealed at least every second, so what the guest did a couple of
//! seconds before the kill is in the trace.

mod common;
mod e2e_support;

use std::path::Path;
use std::time::Duration;

use e2e_support::*;
use serde_json::Value;

/// Rounds of work, each a line "round K" and a sleep: a few seconds of a
/// guest whose progress shows on stdout as it goes.
const ROUNDS: usize = 14;
const SLOW: [&str; 3] = ["slow", "14", "400"];
const KILLS: usize = 10;
/// Events at least this long before the kill must be sealed (and listed).
const MAX_LOSS: Duration = Duration::from_millis(2500);

/// Per trace after the first (the complete run): its sealed blocks on disk
/// (listed or not), whether their `seq` runs from 0 without a gap, how many
/// have no pc in `block_dict`, and where the pcs first differ from the
/// complete run's.
const PREFIX: &str = r#"
import duckdb, glob, json, sys
import numpy as np
def blocks(t):
    parts = glob.glob(f"{t}/blocks/vcpu=0/part-*.parquet")
    if not parts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64), 0
    dicts = glob.glob(f"{t}/block_dict/part-*.parquet")
    dict_sql = f"read_parquet({dicts})" if dicts else "(SELECT 0::UINTEGER AS block_id, NULL::UBIGINT AS pc WHERE false)"
    r = duckdb.sql(f"""SELECT b.seq, coalesce(d.pc, 0) AS pc, d.pc IS NULL AS missing
        FROM read_parquet({parts}) b LEFT JOIN {dict_sql} d USING (block_id)
        ORDER BY b.seq""").fetchnumpy()
    return r["seq"], r["pc"], int(r["missing"].sum())
_, full, _ = blocks(sys.argv[1])
for t in sys.argv[2:]:
    seq, pc, missing = blocks(t)
    n = len(seq)
    diff = np.flatnonzero(pc != full[:n]) if n <= len(full) else [len(full)]
    print(json.dumps({"rows": n, "seq_from_zero": bool((seq == np.arange(n)).all()),
        "no_pc": missing, "full_rows": len(full),
        "first_difference": int(diff[0]) if len(diff) else None}))
"#;

/// `seq` in `blocks` of the block that made each `write` system call:
/// the guest's rounds, in order.
const WRITES: &str = r#"
import duckdb, sys
for (s,) in duckdb.sql(f"""SELECT block_seq FROM read_parquet('{sys.argv[1]}/syscalls/vcpu=0/*.parquet')
        WHERE name = 'write' ORDER BY seq""").fetchall():
    print(s)
"#;

/// One killed run: how long after the start it was killed, the lines the
/// guest had printed (with when), and whether qtrace ran it.
struct Killed {
    _dir: tempfile::TempDir,
    trace: std::path::PathBuf,
    at: Duration,
    lines: Vec<(Duration, String)>,
    through_qtrace: bool,
}

/// Starts the guest, kills QEMU `delay` after the start. Through `qtrace
/// record`, or QEMU with the recorder alone (nothing then can touch the
/// trace after the kill).
fn kill_after(argv: &[&str], delay: Duration, through_qtrace: bool) -> Killed {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.parquet");
    let log = dir.path().join("plugin.log");
    let cmd = if through_qtrace {
        record_command(&trace, argv, &[], &[], &log)
    } else {
        qemu_recording("x86_64", &trace, argv, &[], &log)
    };
    let mut run = Spawned::start(cmd);
    let qemu = if through_qtrace {
        run.only_child()
    } else {
        run.pid()
    };
    std::thread::sleep(delay.saturating_sub(run.started.elapsed()));
    send_signal(qemu, libc::SIGKILL);
    let at = run.started.elapsed();
    let done = run.finish(60);
    assert_eq!(
        done.shell_code(),
        128 + libc::SIGKILL,
        "killed at {at:?}, through qtrace: {through_qtrace}: {}",
        done.stderr
    );
    Killed {
        _dir: dir,
        trace,
        at,
        lines: done.lines,
        through_qtrace,
    }
}

#[test]
fn sigkill_at_random_moments_leaves_a_sealed_prefix() {
    let prog = sample("x86_64", "endings")
        .expect("samples not built: run make -C samples")
        .display()
        .to_string();
    let argv: Vec<&str> = std::iter::once(prog.as_str()).chain(SLOW).collect();

    // The complete run, and where in its blocks each round's line was written.
    let mut full = Recording::start(&argv, &[], &[]);
    let (done, _) = full.finish(120);
    let duration = full.run.started.elapsed();
    assert_eq!(done.shell_code(), 0, "{}", done.stderr);
    assert_eq!(done.lines.len(), ROUNDS, "{}", done.stdout);
    assert_eq!(manifest(&full.trace)["complete"], true);
    let writes: Vec<u64> = run_python_within(WRITES, &[&full.trace], 60)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(writes.len(), ROUNDS, "write calls of the complete run");

    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let latest = duration.as_secs_f64() * 0.8;
    let killed: Vec<Killed> = (0..KILLS)
        .map(|k| kill_after(&argv, rng.secs(0.2, latest), k % 2 == 1))
        .collect();

    let mut traces: Vec<&Path> = vec![&full.trace];
    traces.extend(killed.iter().map(|k| k.trace.as_path()));
    let prefixes: Vec<Value> = run_python_within(PREFIX, &traces, 300)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(prefixes.len(), KILLS);

    for (k, p) in killed.iter().zip(&prefixes) {
        let what = format!(
            "killed at {:?} (through qtrace: {})",
            k.at, k.through_qtrace
        );
        let m = manifest(&k.trace);
        assert_eq!(m["complete"], false, "{what}");
        if k.through_qtrace {
            // qtrace saw QEMU die and says so; nothing more.
            assert_eq!(m["end"]["how"], "killed", "{what}: end {}", m["end"]);
            assert_eq!(
                m["end"]["signal"],
                libc::SIGKILL,
                "{what}: end {}",
                m["end"]
            );
        } else {
            assert!(m["end"].is_null(), "{what}: end {}", m["end"]);
        }
        assert_verifies(&k.trace);
        let rows = assert_parts_sound(&k.trace);

        // What is on disk is the start of the complete run.
        assert_eq!(p["seq_from_zero"], true, "{what}: {p}");
        assert_eq!(
            p["no_pc"], 0,
            "{what}: blocks without a block_dict row: {p}"
        );
        assert!(p["first_difference"].is_null(), "{what}: not a prefix: {p}");

        // And what the manifest lists of it reaches to shortly before the kill.
        let listed = rows
            .get(&("blocks".to_string(), Some(0)))
            .copied()
            .unwrap_or(0);
        assert!(
            listed <= p["rows"].as_u64().unwrap(),
            "{what}: {listed} listed, {p}"
        );
        let must = k
            .lines
            .iter()
            .filter(|(seen, _)| *seen + MAX_LOSS <= k.at)
            .count();
        eprintln!(
            "{what}: {listed} blocks listed, {} sealed, {} rounds printed, {must} of them must be sealed",
            p["rows"],
            k.lines.len()
        );
        for (seen, line) in &k.lines {
            let round: usize = line
                .strip_prefix("round ")
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(|| panic!("{what}: stdout line {line:?}"));
            if *seen + MAX_LOSS <= k.at {
                assert!(
                    listed > writes[round],
                    "{what}: round {round}, printed at {seen:?}, is not sealed: its write \
                     is block {} and the listed parts hold {listed} blocks",
                    writes[round]
                );
            }
        }
    }
}
