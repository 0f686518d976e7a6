//! The `regs` table (`regs=`, `regs_at=`, `regs_every=`), checked against
//! what is known for certain of the registers at the points they are read:
//!
//! - at a system call's entry, the registers of the architecture's syscall
//!   ABI hold the number and the arguments that QEMU reports to the syscall
//!   callback (and `libsyscall` prints; see e2e_syscalls), and the pc is the
//!   end of the block that made the call (its last instruction makes it);
//! - at a block's entry, the pc is the block's address in `block_dict`, and
//!   at the entry of `collatz` in the `hotloop` sample, the first argument
//!   register holds n, which runs 1, 2, 3, ... call after call.
//!
//! Every check reconstructs the values first, as the format's README
//! shows (`last_value(... IGNORE NULLS)` per thread), and checks the null
//! rule both ways where the true value is known: null exactly where the
//! value equals the thread's previous row's.

mod common;
mod e2e_support;

use std::path::Path;

use e2e_support::*;

/// Reconstructs every register of `cols` at every row of `regs` (view `f`,
/// with the row's block and system call), as the format's README shows.
/// `known(c, want)` checks register `c` at every row against its true
/// value, the SQL expression `want`, and the null rule both ways; it prints
/// a "BAD ..." line per wrong row (up to 20) and "checked N".
const RECONSTRUCT: &str = r#"
import duckdb, sys
t, cols = sys.argv[1], sys.argv[2].split(",")
full = ", ".join(f"{c} IS NULL AS {c}_null, last_value({c} IGNORE NULLS) OVER w AS {c}" for c in cols)
duckdb.sql(f"""
    CREATE VIEW f AS
    WITH r AS (
        SELECT vcpu, tid, seq, block_seq, syscall_seq, row_number() OVER w = 1 AS first, {full}
        FROM read_parquet('{t}/regs/*/*.parquet', hive_partitioning = true)
        WINDOW w AS (PARTITION BY tid ORDER BY seq))
    SELECT r.*, d.pc AS block_pc, d.pc + d.size AS block_end, d.symbol,
           s.num, s.arg0, s.arg1, s.arg2, s.arg3, s.arg4, s.arg5
    FROM r
    JOIN read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true) b
      ON b.vcpu = r.vcpu AND b.seq = r.block_seq
    JOIN read_parquet('{t}/block_dict/*.parquet') d USING (block_id)
    LEFT JOIN read_parquet('{t}/syscalls/*/*.parquet', hive_partitioning = true) s
      ON s.vcpu = r.vcpu AND s.seq = r.syscall_seq""")

def one(q):
    return duckdb.sql(q).fetchall()[0][0]

def known(c, want):
    duckdb.sql(f"""
        CREATE OR REPLACE TABLE k AS
        SELECT vcpu, seq, block_seq, syscall_seq, {c} AS got, {want} AS want, {c}_null AS is_null,
               NOT first AND coalesce(lag({want}) OVER (PARTITION BY tid ORDER BY seq) = {want}, false)
                 AS should_be_null
        FROM f""")
    for row in duckdb.sql("""
            SELECT * FROM k WHERE got IS DISTINCT FROM want OR is_null <> should_be_null
            ORDER BY vcpu, seq LIMIT 20""").fetchall():
        print("BAD", c, *row)
    print("checked", one("SELECT count(*) FROM k WHERE want IS NOT NULL"))
"#;

/// Runs the reconstruction and `then` on trace `t` for registers `cols`;
/// returns stdout.
fn check_with(t: &Path, cols: &[&str], then: &str) -> String {
    let script = format!("{RECONSTRUCT}\n{then}");
    run_python_with(&script, t, &[&cols.join(",")])
}

/// The sum of the "checked N" lines of `text`.
fn checked(text: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("checked ")?.trim().parse::<u64>().ok())
        .sum()
}

/// The number after `key` on its own line of `text`.
fn count(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

fn no_bad_lines(what: &str, text: &str) {
    let bad: Vec<&str> = text.lines().filter(|l| l.starts_with("BAD")).collect();
    assert!(
        bad.is_empty(),
        "{what}: wrong values (register vcpu seq block_seq syscall_seq got want null should_be_null):\n{}",
        bad.join("\n")
    );
}

/// Per vCPU (block_events, syscalls, regs_rows) from the manifest.
fn vcpu_rows(trace: &Path) -> Vec<(u64, u64, u64)> {
    vcpu_fields(trace, &["block_events", "syscalls", "regs_rows"])
        .into_iter()
        .map(|f| (f[0], f[1], f[2]))
        .collect()
}

/// The ABI of each guest: (pc, syscall number, first six arguments).
fn abi(arch: &str) -> (&'static str, &'static str, [&'static str; 6]) {
    match arch {
        "x86_64" => ("rip", "rax", ["rdi", "rsi", "rdx", "r10", "r8", "r9"]),
        "aarch64" => ("pc", "x8", ["x0", "x1", "x2", "x3", "x4", "x5"]),
        "riscv64" => ("pc", "a7", ["a0", "a1", "a2", "a3", "a4", "a5"]),
        _ => unreachable!(),
    }
}

fn hotloop(arch: &str) -> Option<String> {
    match sample(arch, "hotloop") {
        Some(p) => Some(p.display().to_string()),
        None => {
            assert_ne!(arch, "x86_64", "samples not built: make -C samples");
            None
        }
    }
}

/// Registers at each system call's entry (the default `regs_at`).
fn syscalls(arch: &str) {
    let Some(prog) = hotloop(arch) else { return };
    let (pc, num, args) = abi(arch);
    let mut cols = vec![pc, num];
    cols.extend(args);
    let option = format!("regs={}", cols.join("+"));
    let (_dir, trace) = record(&[&prog], &[&option]);
    let mut checks = format!("known({pc:?}, 'block_end')\nknown({num:?}, 'num::UBIGINT')\n");
    for (i, a) in args.iter().enumerate() {
        checks.push_str(&format!("known({a:?}, 'arg{i}')\n"));
    }
    let text = check_with(&trace, &cols, &checks);
    no_bad_lines(arch, &text);
    let calls: u64 = vcpu_rows(&trace).iter().map(|v| v.1).sum();
    assert!(calls > 5, "{arch}: {calls} calls");
    let rows: u64 = vcpu_rows(&trace).iter().map(|v| v.2).sum();
    assert_eq!(rows, calls, "{arch}: one row per call");
    assert_eq!(checked(&text), calls * cols.len() as u64);
}

#[test]
fn x86_64_syscall_registers_hold_the_arguments() {
    syscalls("x86_64");
}

#[test]
fn aarch64_syscall_registers_hold_the_arguments() {
    syscalls("aarch64");
}

#[test]
fn riscv64_syscall_registers_hold_the_arguments() {
    syscalls("riscv64");
}

/// Registers at every block's entry and at every system call's entry.
fn blocks_and_syscalls(arch: &str) {
    let Some(prog) = hotloop(arch) else { return };
    let (pc, _, args) = abi(arch);
    let arg = args[0];
    let option = format!("regs={pc}+{arg}");
    let (_dir, trace) = record(&[&prog], &[&option, "regs_at=both"]);
    // The entry of collatz is its block at the lowest address.
    let checks = format!(
        r#"
known({pc:?}, "CASE WHEN syscall_seq IS NULL THEN block_pc ELSE block_end END")
entry = one("SELECT min(block_pc) FROM f WHERE symbol = 'collatz'")
duckdb.sql(f"""
    CREATE TABLE n AS
    SELECT {arg} AS n, row_number() OVER (ORDER BY vcpu, seq) AS k
    FROM f WHERE block_pc = {{entry}} AND syscall_seq IS NULL""")
print("collatz_calls", one("SELECT count(*) FROM n"))
print("collatz_wrong", one("SELECT count(*) FROM n WHERE n IS DISTINCT FROM k"))
print("rows", one("SELECT count(*) FROM f"))
"#
    );
    let text = check_with(&trace, &[pc, arg], &checks);
    no_bad_lines(arch, &text);
    let (events, calls, rows) = vcpu_rows(&trace)[0];
    assert_eq!(rows, events + calls, "{arch}: one row per block and call");
    assert_eq!(count(&text, "rows"), rows);
    assert_eq!(checked(&text), rows, "{arch}: every pc checked");
    assert_eq!(count(&text, "collatz_calls"), 19999, "{arch}");
    assert_eq!(count(&text, "collatz_wrong"), 0, "{arch}");
}

#[test]
fn x86_64_block_entry_registers_hold_the_block_address_and_arguments() {
    blocks_and_syscalls("x86_64");
}

#[test]
fn aarch64_block_entry_registers_hold_the_block_address_and_arguments() {
    blocks_and_syscalls("aarch64");
}

#[test]
fn riscv64_block_entry_registers_hold_the_block_address_and_arguments() {
    blocks_and_syscalls("riscv64");
}

/// With `regs_every=N`, each vCPU reads at its N-th, 2N-th, ... block: on a
/// guest whose threads reuse vCPU indices, the count goes on across them.
#[test]
fn every_nth_block_of_each_vcpu() {
    const N: u64 = 7;
    let Some(prog) = sample("x86_64", "threads") else {
        panic!("samples not built: make -C samples");
    };
    let every = format!("regs_every={N}");
    let (_dir, trace) = record(
        &[&prog.display().to_string()],
        &["regs=rip+rsp+rdi", "regs_at=blocks", &every],
    );
    let m = manifest(&trace);
    let names: Vec<&str> = m["regs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rdi", "rsp", "rip"], "the guest's register order");
    let vcpus = vcpu_rows(&trace);
    assert!(vcpus.len() > 1, "{vcpus:?}");
    let checks = format!(
        r#"
known("rip", "block_pc")
for v, n in duckdb.sql("SELECT vcpu, count(*) FROM f GROUP BY vcpu").fetchall():
    print("vcpu", v, n)
print("off_rule", one("SELECT count(*) FROM f WHERE block_seq % {N} <> {N} - 1"))
print("first_incomplete", one("SELECT count(*) FROM f WHERE first AND (rsp_null OR rdi_null OR rip_null)"))
print("threads", one("SELECT count(*) FROM f WHERE first"))
print("tid_differs", one(f"""
    SELECT count(*) FROM read_parquet('{{t}}/regs/*/*.parquet', hive_partitioning = true) r
    JOIN read_parquet('{{t}}/blocks/*/*.parquet', hive_partitioning = true) b
      ON b.vcpu = r.vcpu AND b.seq = r.block_seq
    WHERE r.tid <> b.tid"""))
"#
    );
    let text = check_with(&trace, &names, &checks);
    no_bad_lines("threads", &text);
    for (vcpu, (events, _, rows)) in vcpus.iter().enumerate() {
        assert_eq!(*rows, events / N, "vcpu {vcpu}: {events} blocks");
        assert_eq!(count(&text, &format!("vcpu {vcpu}")), *rows);
    }
    assert_eq!(checked(&text), vcpus.iter().map(|v| v.2).sum::<u64>());
    assert_eq!(count(&text, "off_rule"), 0);
    assert_eq!(count(&text, "first_incomplete"), 0);
    assert_eq!(count(&text, "tid_differs"), 0);
    let threads = m["threads"].as_array().unwrap().len() as u64;
    assert_eq!(
        count(&text, "threads"),
        threads,
        "a full first row per thread"
    );
}

/// Where the true values are not known: every value stored differs from the
/// thread's previous one, every thread's first row has all, and the column
/// types follow the sizes in the manifest (wider than 8 bytes: binary).
#[test]
fn every_register_stored_only_when_it_changed() {
    for (arch, regs) in [
        ("x86_64", "*"),
        ("aarch64", "x*+sp+pc+cpsr+z0+z1+p0+fpsr+fpcr"),
    ] {
        let Some(prog) = hotloop(arch) else { continue };
        let (_dir, trace) = record(
            &[&prog],
            &[&format!("regs={regs}"), "regs_at=both", "regs_every=64"],
        );
        let m = manifest(&trace);
        let specs: Vec<(String, u64)> = m["regs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let name = r["name"].as_str().unwrap().to_string();
                (name, r["size"].as_u64().unwrap())
            })
            .collect();
        assert!(specs.iter().any(|s| s.1 > 8), "{arch}: no wide register");
        let cols: Vec<&str> = specs.iter().map(|s| s.0.as_str()).collect();
        let checks = r#"
import pyarrow.parquet as pq
schema = pq.read_schema(f"{t}/regs/vcpu=0/part-000000.parquet")
duckdb.sql("CREATE TABLE g AS SELECT * FROM f")
for c in cols:
    print("type", c, schema.field(c).type)
    first_without, unchanged = duckdb.sql(f"""
        SELECT count(*) FILTER (WHERE first AND {c}_null),
               count(*) FILTER (WHERE NOT first AND NOT {c}_null AND {c} = prev)
        FROM (SELECT *, lag({c}) OVER (PARTITION BY tid ORDER BY seq) AS prev FROM g)""").fetchall()[0]
    if first_without or unchanged:
        print("BAD", c, "first rows without it:", first_without, "stored unchanged:", unchanged)
print("rows", one("SELECT count(*) FROM g"))
"#;
        let text = check_with(&trace, &cols, checks);
        no_bad_lines(arch, &text);
        for (name, size) in &specs {
            let want = if *size <= 8 {
                "uint64".to_string()
            } else {
                format!("fixed_size_binary[{size}]")
            };
            assert!(
                text.contains(&format!("type {name} {want}\n")),
                "{arch}: {name} is not {want}:\n{text}"
            );
        }
        let (events, calls, rows) = vcpu_rows(&trace)[0];
        assert_eq!(rows, events / 64 + calls, "{arch}");
        assert_eq!(count(&text, "rows"), rows);
    }
}

/// A wrong register option stops QEMU at load with one line that names it.
#[test]
fn bad_register_options_are_refused_at_load() {
    for (options, said) in [
        (
            &["regs=rax", "regs_at=sometimes"][..],
            "option `regs_at=sometimes`: expected syscalls, blocks or both",
        ),
        (
            &["regs=rax", "regs_at=blocks", "regs_every=0"],
            "option `regs_every=0`: expected an integer in 1..4294967295",
        ),
        (
            &["regs=rax", "regs_every=64"],
            "option `regs_every=64` samples blocks: it needs `regs_at=blocks` or `regs_at=both`",
        ),
        (
            &["regs_at=both"],
            "option `regs_at=both` needs `regs=` (the registers to read)",
        ),
        (
            &["regs=rax", "syscalls=off"],
            "option `regs_at=syscalls` reads registers at system calls",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let trace = dir.path().join("run.parquet");
        let mut cmd = qtrace();
        cmd.arg("record").arg("-o").arg(&trace);
        for o in options {
            cmd.arg("-O").arg(o);
        }
        let out = cmd.arg("--").arg("/bin/true").output().unwrap();
        assert!(!out.status.success(), "{options:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("qtrace: option"))
            .collect();
        assert_eq!(ours.len(), 1, "{options:?}:\n{stderr}");
        assert!(ours[0].contains(said), "{said:?} not in {stderr}");
        assert!(!trace.exists(), "{options:?}: a trace was written");
    }
}
