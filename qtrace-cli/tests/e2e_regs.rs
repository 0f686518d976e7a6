//! Registers read at each system call's entry (`regs=`) hold what the
//! architecture's syscall ABI puts there: the number and the arguments that
//! QEMU reports to the syscall callback (and `libsyscall` prints; see
//! e2e_syscalls).

mod common;
mod e2e_support;

use e2e_support::*;

/// For each call and selected register: "seq name reg value expected".
const REGS_VS_ARGS: &str = r#"
import duckdb, sys
t, num_reg, *arg_regs = sys.argv[1:]
rows = duckdb.sql(f"""
    SELECT s.vcpu, s.seq, s.num, s.arg0, s.arg1, s.arg2, s.arg3, s.arg4, s.arg5, r.reg, r.value
    FROM read_parquet('{t}/syscalls/*/*.parquet', hive_partitioning = true) s
    JOIN read_parquet('{t}/regs/*/*.parquet', hive_partitioning = true) r
      ON r.vcpu = s.vcpu AND r.syscall_seq = s.seq
    ORDER BY ALL""").fetchall()
for vcpu, seq, num, *rest in rows:
    args, reg, value = rest[:6], rest[6], rest[7]
    expected = num % (1 << 64) if reg == num_reg else args[arg_regs.index(reg)]
    print(vcpu, seq, reg, value, expected)
"#;

fn check(arch: &str, num_reg: &str, arg_regs: &[&str]) {
    let Some(prog) = sample(arch, "hotloop") else {
        assert_ne!(arch, "x86_64", "samples not built: make -C samples");
        return;
    };
    let mut regs = vec![num_reg];
    regs.extend_from_slice(arg_regs);
    let option = format!("regs={}", regs.join("+"));
    let (_dir, trace) = record(&[&prog.display().to_string()], &[&option]);
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(REGS_VS_ARGS)
        .arg(&trace)
        .arg(num_reg)
        .args(arg_regs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let calls = manifest(&trace)["vcpus"][0]["syscalls"].as_u64().unwrap();
    assert!(calls > 5, "{arch}: {calls} calls");
    assert_eq!(
        text.lines().count() as u64,
        calls * regs.len() as u64,
        "{arch}: one row per call and register"
    );
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[3], f[4], "{arch}: {line}");
    }
}

#[test]
fn x86_64_syscall_registers_hold_the_arguments() {
    check("x86_64", "rax", &["rdi", "rsi", "rdx", "r10", "r8", "r9"]);
}

#[test]
fn aarch64_syscall_registers_hold_the_arguments() {
    check("aarch64", "x8", &["x0", "x1", "x2", "x3", "x4", "x5"]);
}

#[test]
fn riscv64_syscall_registers_hold_the_arguments() {
    check("riscv64", "a7", &["a0", "a1", "a2", "a3", "a4", "a5"]);
}
