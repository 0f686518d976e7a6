//! The recorder inside a real QEMU on real programs, checked against QEMU's
//! own plugins run the same way (`env -i`, same arguments): every count must
//! agree exactly.
//!
//! - block executions, per vCPU and in total, equal `libbb`'s;
//! - instructions equal `libinsn`'s;
//! - every block `libhotblocks` lists has exactly its execution count;
//! - the events written (`blocks` table) agree with the inline counters.
//!
//! The oracles run in the same QEMU process as the recorder (see
//! `record_beside` for why), and for statically linked samples also on
//! their own, in a separate QEMU, where the counts must be the same again.
//!
//! A multi-threaded guest's counts vary from run to run (scheduling decides
//! which thread waits and which vCPU index it gets), so it is compared with
//! the oracles in the same process only.

mod common;
mod e2e_support;

use e2e_support::*;

const ORACLES: [&str; 3] = ["bb,inline=on", "insn", "hotblocks,inline=on"];

/// Oracles in the same process, and for a static guest in separate runs too.
fn assert_matches_oracles(arch: &str, argv: &[&str], static_guest: bool) {
    let ((_dir, trace), printed) = record_beside(argv, &[], &ORACLES);
    assert_self_consistent(&trace);
    assert_matches(&trace, &printed, argv);
    if static_guest {
        let separate: String = ORACLES.iter().map(|p| oracle(arch, p, argv)).collect();
        assert_matches(&trace, &separate, argv);
    }
}

fn assert_matches(trace: &std::path::Path, oracles: &str, argv: &[&str]) {
    let ours = manifest_totals(trace);

    let (bb_per_vcpu, (bb_total, bb_insns)) = parse_bb(oracles);
    let our_vcpus: Vec<u64> = ours.keys().copied().collect();
    let bb_vcpus: Vec<u64> = bb_per_vcpu.keys().copied().collect();
    assert_eq!(our_vcpus, bb_vcpus, "vCPUs that ran, {argv:?}");
    for (vcpu, &(blocks, insns)) in &bb_per_vcpu {
        let (our_blocks, our_insns, our_events) = ours[vcpu];
        assert_eq!(our_blocks, blocks, "blocks of vCPU {vcpu}, {argv:?}");
        assert_eq!(our_insns, insns, "insns of vCPU {vcpu}, {argv:?}");
        assert_eq!(our_events, blocks, "block events of vCPU {vcpu}, {argv:?}");
    }
    assert_eq!(ours.values().map(|t| t.0).sum::<u64>(), bb_total);
    assert_eq!(ours.values().map(|t| t.1).sum::<u64>(), bb_insns);

    let insns = parse_insn_total(oracles);
    assert_eq!(
        ours.values().map(|t| t.1).sum::<u64>(),
        insns,
        "libinsn, {argv:?}"
    );

    let hot = parse_hotblocks(oracles);
    assert!(hot.len() >= 10, "libhotblocks listed {} blocks", hot.len());
    let by_pc = execs_by_pc(trace);
    for (pc, n_insns, execs) in hot {
        assert_eq!(
            by_pc.get(&(pc, n_insns)),
            Some(&execs),
            "executions of the block at {pc:#x} ({n_insns} insns), {argv:?}"
        );
    }
}

/// The events written agree with the inline counters, per vCPU and per block.
fn assert_self_consistent(trace: &std::path::Path) {
    let totals = manifest_totals(trace);
    for (vcpu, (blocks, _, events)) in &totals {
        assert_eq!(blocks, events, "vCPU {vcpu}: counters and events");
        let v = vcpu.to_string();
        let from_counts = top_blocks(trace, &["-n", "0", "--source", "counts", "--vcpu", &v]);
        let from_events = top_blocks(trace, &["-n", "0", "--source", "events", "--vcpu", &v]);
        assert_eq!(from_counts, from_events, "vCPU {vcpu}: counts and events");
    }
    let from_counts = top_blocks(trace, &["-n", "0", "--source", "counts"]);
    let from_events = top_blocks(trace, &["-n", "0", "--source", "events"]);
    assert_eq!(from_counts, from_events, "counts and events");
}

/// Guest threads: each gets its vCPU, every vCPU's stream is complete and
/// agrees with the oracles, vCPU by vCPU.
fn assert_threads_recorded(argv: &[&str]) {
    let ((_dir, trace), printed) = record_beside(argv, &[], &ORACLES);
    let totals = manifest_totals(&trace);
    assert!(totals.len() >= 3, "vCPUs: {totals:?}");
    assert_self_consistent(&trace);
    assert_matches(&trace, &printed, argv);
}

fn sample_argv(arch: &str, name: &str) -> Option<String> {
    let p = sample(arch, name);
    if p.is_none() && arch == "x86_64" {
        panic!("samples not built: run make -C samples");
    }
    p.map(|p| p.display().to_string())
}

#[test]
fn x86_64_sample_matches_qemu_plugins() {
    let prog = sample_argv("x86_64", "hotloop").unwrap();
    assert_matches_oracles("x86_64", &[&prog], true);
}

#[test]
fn x86_64_threads_are_recorded_per_vcpu() {
    let prog = sample_argv("x86_64", "threads").unwrap();
    assert_threads_recorded(&[&prog]);
}

#[test]
fn aarch64_sample_matches_qemu_plugins() {
    let prog = sample_argv("aarch64", "hotloop").expect("aarch64 samples not built");
    assert_matches_oracles("aarch64", &[&prog, "2"], true);
}

#[test]
fn aarch64_threads_are_recorded_per_vcpu() {
    let prog = sample_argv("aarch64", "threads").expect("aarch64 samples not built");
    assert_threads_recorded(&[&prog]);
}

#[test]
fn riscv64_sample_matches_qemu_plugins() {
    let Some(prog) = sample_argv("riscv64", "hotloop") else {
        eprintln!("skipped: no riscv64 cross compiler, so no riscv64 sample");
        return;
    };
    assert_matches_oracles("riscv64", &[&prog], true);
}

/// A real Debian binary, dynamically linked, doing real work: `xz` compressing
/// a generated file.
#[test]
fn debian_xz_matches_qemu_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    let mut text = String::new();
    let mut x: u64 = 88172645463325252;
    for i in 0..6000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        text.push_str(&format!("line {i}: value {} word{}\n", x % 1000, x % 37));
    }
    std::fs::write(&input, text).unwrap();
    let input = input.display().to_string();
    assert_matches_oracles("x86_64", &["/usr/bin/xz", "-1", "-T1", "-c", &input], false);
}

/// The manifest says which QEMU ran the guest, as `qemu-ARCH --version` does.
#[test]
fn manifest_names_the_qemu_it_ran_in() {
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = sample_argv(arch, "hotloop") else {
            continue;
        };
        let (_dir, trace) = record(&[&prog], &[]);
        let out = std::process::Command::new(common::qemu(arch))
            .arg("--version")
            .output()
            .unwrap();
        let first = String::from_utf8(out.stdout).unwrap();
        let version = first
            .split_whitespace()
            .nth(2)
            .expect("qemu-ARCH version X.Y.Z");
        let m = manifest(&trace);
        assert_eq!(m["qemu_version"], version, "{arch}");
        assert_eq!(m["target"], arch);
        assert_eq!(m["mode"], "linux-user");
    }
}
