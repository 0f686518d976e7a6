//! A guest that forks or execs: each process's trace ends where the process
//! does, and no event is written twice or lost.
//!
//! - fork: the child records into `processes/pid=N/` of the parent's trace,
//!   a trace of its own that starts at the fork. QEMU's libbb, naive about
//!   fork, is the oracle: the child inherits its counters, so the child's
//!   report on the forking vCPU is the parent's count at the fork (the
//!   forking block's `seq` + 1) plus the child's own blocks.
//! - exec: the trace ends at the execve, sealed; an execve that fails is one
//!   more system call, and recording goes on.

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::path::Path;

use e2e_support::*;
use serde_json::Value;

fn endings() -> String {
    sample("x86_64", "endings")
        .expect("samples not built: run make -C samples")
        .display()
        .to_string()
}

/// Every check but libbb's on one trace of a process that ended normally.
fn assert_exited(trace: &Path, code: i32) -> PartRows {
    assert_verifies(trace);
    let rows = assert_parts_sound(trace);
    assert_eq!(manifest(trace)["complete"], true, "{}", trace.display());
    assert_end(trace, "exit", Some(code));
    rows
}

/// Facts about a fork, from the parent's and the child's traces.
const FORK_FACTS: &str = r#"
import duckdb, json, sys
parent, child, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
calls = duckdb.sql(f"""
    SELECT vcpu, tid, block_seq, name FROM read_parquet('{parent}/syscalls/*/*.parquet',
        hive_partitioning = true) WHERE ret = {pid} AND name IN ('clone', 'clone3', 'fork', 'vfork')
    """).fetchall()
def pc_at(trace, where):
    return duckdb.sql(f"""
        SELECT b.vcpu, b.seq, d.pc FROM read_parquet('{trace}/blocks/*/*.parquet',
            hive_partitioning = true) b JOIN read_parquet('{trace}/block_dict/*.parquet') d
        USING (block_id) WHERE {where} ORDER BY b.seq LIMIT 1""").fetchall()
after = []
if len(calls) == 1:
    vcpu, _, seq, _ = calls[0]
    after = pc_at(parent, f"b.vcpu = {vcpu} AND b.seq = {seq + 1}")
print(json.dumps({"calls": calls, "parent_after": after, "child_first": pc_at(child, "true")}))
"#;

/// Records a guest that forks once; checks the parent's trace, the child's,
/// and both against libbb.
fn fork_is_recorded_once(argv: &[&str], child_code: i32) {
    let mut rec = Recording::start(argv, &[], &["bb,inline=on"]);
    let (done, printed) = rec.finish(120);
    assert_eq!(done.shell_code(), 0, "{}", done.stderr);
    let native = native_run(argv);
    assert_eq!(done.stdout, native.stdout, "recorded, native");
    assert!(
        done.stdout
            .contains(&format!("child exited {child_code}\n")),
        "{}",
        done.stdout
    );

    let parent = &rec.trace;
    let parent_rows = assert_exited(parent, 0);
    let pm = manifest(parent);
    let children = pm["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "children: {children:?}");
    let entry = &children[0];
    let pid = entry["pid"].as_u64().unwrap();
    assert_eq!(
        entry["path"],
        format!("processes/pid={pid}").as_str(),
        "{entry}"
    );
    let child = parent.join(entry["path"].as_str().unwrap());
    let child_rows = assert_exited(&child, child_code);
    let cm = manifest(&child);
    assert_eq!(cm["pid"].as_u64(), Some(pid), "child's own pid");
    assert_eq!(cm["parent_pid"], pm["pid"], "child's parent_pid");
    assert!(cm["children"].as_array().unwrap().is_empty());

    // The fork in the parent's system calls: the call that returned the
    // child's pid, made where the manifest says.
    let facts: Value = serde_json::from_str(&run_python_within(
        FORK_FACTS,
        &[parent, &child, Path::new(&pid.to_string())],
        120,
    ))
    .unwrap();
    let calls = facts["calls"].as_array().unwrap();
    assert_eq!(
        calls.len(),
        1,
        "fork calls returning {pid} in the parent: {calls:?}"
    );
    let call = &calls[0];
    assert_eq!(
        entry["vcpu"], call[0],
        "vCPU that forked: manifest, syscalls"
    );
    assert_eq!(
        entry["tid"], call[1],
        "thread that forked: manifest, syscalls"
    );
    assert_eq!(
        entry["block_seq"], call[2],
        "block of the fork: manifest, syscalls"
    );
    let fork_vcpu = entry["vcpu"].as_u64().unwrap();
    let block_seq = entry["block_seq"].as_u64().unwrap();

    // The child's blocks are on the vCPU that forked, its counters agree
    // with them, and its first block is where the parent went on from.
    let child_blocks: BTreeMap<Option<u64>, u64> = child_rows
        .iter()
        .filter(|((table, _), _)| table == "blocks")
        .map(|((_, vcpu), rows)| (*vcpu, *rows))
        .collect();
    let own = child_blocks.get(&Some(fork_vcpu)).copied().unwrap_or(0);
    assert_eq!(
        child_blocks.values().sum::<u64>(),
        own,
        "the child's blocks are all on the forking vCPU {fork_vcpu}: {child_blocks:?}"
    );
    for v in cm["vcpus"].as_array().unwrap() {
        assert_eq!(
            v["blocks"], v["block_events"],
            "child's counters and events: {v}"
        );
    }
    let first = &facts["child_first"][0];
    let after = &facts["parent_after"][0];
    assert!(first.is_array() && after.is_array(), "{facts}");
    assert_eq!(
        first[0], after[0],
        "child's first block: vCPU (parent's next: {after})"
    );
    assert_eq!(
        first[2], after[2],
        "child's first block: pc (parent's next: {after})"
    );

    // libbb: the child reports first (its parent waits for it).
    let reports = parse_bb_reports(&printed);
    assert_eq!(reports.len(), 2, "libbb reports:\n{printed}");
    let (child_bb, _) = &reports[0];
    let (parent_bb, _) = &reports[1];
    assert_blocks_match_bb(parent, &parent_rows, parent_bb);
    assert_eq!(
        child_bb.get(&fork_vcpu).map(|c| c.0),
        Some(block_seq + 1 + own),
        "child's libbb on vCPU {fork_vcpu}: the parent's blocks up to the fork \
         ({}) and the child's ({own})",
        block_seq + 1
    );
    for (vcpu, (blocks, _)) in child_bb {
        if *vcpu != fork_vcpu {
            // Other threads' counters, frozen at the fork in the child.
            assert!(
                parent_bb.get(vcpu).is_some_and(|p| p.0 >= *blocks),
                "vCPU {vcpu}: child's inherited {blocks}, parent's {parent_bb:?}"
            );
        }
    }
}

#[test]
fn fork_child_records_its_own_trace_from_the_fork_on() {
    let prog = endings();
    fork_is_recorded_once(&[&prog, "fork", "7"], 7);
}

/// Forked from a second thread while a third one runs: only the forking
/// thread lives on in the child.
#[test]
fn fork_from_a_thread_while_another_runs() {
    let prog = endings();
    fork_is_recorded_once(&[&prog, "fork-threads", "9"], 9);
}

/// The system calls of a trace, in order.
const SYSCALLS: &str = r#"
import duckdb, json, sys
for row in duckdb.sql(f"""SELECT vcpu, seq, block_seq, name, ret, errno
        FROM read_parquet('{sys.argv[1]}/syscalls/*/*.parquet', hive_partitioning = true)
        ORDER BY vcpu, seq""").fetchall():
    print(json.dumps(row))
"#;

fn syscalls(trace: &Path) -> Vec<Value> {
    run_python_within(SYSCALLS, &[trace], 60)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Blocks of the first trace against the first N of the second, by `seq`
/// on vCPU 0: rows of each, and the first `seq` where the pcs differ.
const SAME_START: &str = r#"
import duckdb, json, sys
ours, theirs, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def pcs(t):
    return f"""(SELECT b.seq, d.pc FROM read_parquet('{t}/blocks/vcpu=0/*.parquet') b
        JOIN read_parquet('{t}/block_dict/*.parquet') d USING (block_id))"""
print(json.dumps(duckdb.sql(f"""SELECT count(o.seq), count(t.seq),
        min(coalesce(o.seq, t.seq)) FILTER (WHERE o.pc IS DISTINCT FROM t.pc)
    FROM {pcs(ours)} o FULL JOIN (SELECT * FROM {pcs(theirs)} WHERE seq < {n}) t
    ON o.seq = t.seq""").fetchall()[0]))
"#;

/// A failing execve, with recording going on to a normal exit.
#[test]
fn failed_exec_is_one_more_system_call() {
    let prog = endings();
    let argv = [prog.as_str(), "exec-fail"];
    let mut rec = Recording::start(&argv, &[], &["bb,inline=on"]);
    let (done, printed) = rec.finish(120);
    assert_eq!(done.shell_code(), 0, "{}", done.stderr);
    assert!(done.stdout.contains("execve: ENOENT\n"), "{}", done.stdout);
    assert_eq!(done.stdout, native_run(&argv).stdout, "recorded, native");
    let rows = assert_exited(&rec.trace, 0);
    let (per_vcpu, _) = parse_bb(&printed);
    assert_blocks_match_bb(&rec.trace, &rows, &per_vcpu);
    let execs: Vec<Value> = syscalls(&rec.trace)
        .into_iter()
        .filter(|s| s[3] == "execve")
        .collect();
    assert_eq!(execs.len(), 1, "execve rows: {execs:?}");
    assert_eq!(execs[0][4], -libc::ENOENT, "execve's ret: {execs:?}");
}

/// A successful execve replaces QEMU with the new program (natively, here):
/// the trace ends with the execve, sealed, and holds exactly the blocks a
/// run whose execve fails executes up to the call.
#[test]
fn exec_seals_the_trace_up_to_the_call() {
    let prog = endings();
    let target = sample("x86_64", "hotloop").unwrap().display().to_string();
    let argv = [prog.as_str(), "exec", &target];
    let mut rec = Recording::start(&argv, &[], &[]);
    let (done, _) = rec.finish(120);
    let native = native_run(&argv);
    assert_eq!(done.shell_code(), native.shell_code(), "{}", done.stderr);
    assert_eq!(done.stdout, native.stdout, "recorded, native");
    assert!(done.stdout.contains("primes="), "{}", done.stdout);
    assert_verifies(&rec.trace);
    let rows = assert_parts_sound(&rec.trace);
    assert_eq!(manifest(&rec.trace)["complete"], true);
    assert_end(&rec.trace, "exec", None);
    let calls = syscalls(&rec.trace);
    let last = calls.last().expect("no system calls");
    assert_eq!(last[3], "execve", "last system call: {calls:?}");
    assert!(last[4].is_null(), "execve returned: {last}");

    // The same run but for a missing file of the same name length: its
    // blocks up to its (failed) execve are the exec'd run's blocks.
    let missing = format!("{}_", &target[..target.len() - 1]);
    let failing = [prog.as_str(), "exec", &missing];
    let mut other = Recording::start(&failing, &[], &[]);
    let (done, _) = other.finish(120);
    assert_eq!(done.shell_code(), 0, "{}", done.stderr);
    let execve = syscalls(&other.trace)
        .into_iter()
        .find(|s| s[3] == "execve")
        .expect("no execve in the run that failed to exec");
    let upto = execve[2].as_u64().unwrap() + 1;
    let n = upto.to_string();
    let same: Value = serde_json::from_str(&run_python_within(
        SAME_START,
        &[&rec.trace, &other.trace, Path::new(&n)],
        60,
    ))
    .unwrap();
    let ours = rows[&("blocks".to_string(), Some(0))];
    assert_eq!(same[0], ours, "blocks with a pc, of {ours} sealed: {same}");
    assert_eq!(same[1], upto, "blocks up to the failed execve: {same}");
    assert_eq!(ours, upto, "blocks up to the execve, exec'd and failed");
    assert!(same[2].is_null(), "first seq where the pcs differ: {same}");
}
