//! Back-pressure: what a vCPU has handed to the writers and they have not
//! written is capped (`max_memory=`). By default the vCPU waits and nothing
//! is lost, however small the cap (`backpressure=drop` is tested in
//! `e2e_endings_disk`).

mod common;
mod e2e_support;

use e2e_support::*;

/// A guest whose memory accesses come faster than one writer encodes them.
fn argv() -> Vec<String> {
    let prog = common::sample("x86_64", "hotloop");
    vec![prog.display().to_string(), "12".into()]
}

#[test]
fn wait_mode_loses_nothing_under_a_small_cap() {
    let argv = argv();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let options = ["mem=values", "max_memory=1M", "buffer=65536"];
    let ((_dir, trace), printed) = record_beside(&argv, &options, &["bb", "mem,inline=true"]);
    let m = manifest(&trace);
    assert_eq!(m["complete"], true, "{}", m["errors"]);
    assert!(m["dropped"].as_array().unwrap().is_empty());
    let (per_vcpu, _) = parse_bb(&printed);
    for (vcpu, (blocks, _, events)) in manifest_totals(&trace) {
        assert_eq!(events, blocks, "vCPU {vcpu}");
        assert_eq!(blocks, per_vcpu[&vcpu].0, "vCPU {vcpu} against libbb");
    }
    let mem: u64 = vcpu_fields(&trace, &["mem_accesses"])
        .iter()
        .map(|f| f[0])
        .sum();
    assert_eq!(mem, libmem_count(&printed));
}
