//! `qtrace info` on synthetic traces.

mod common;

use common::{stdout_of, total_execs, Sample, Spec, BLOCKS};
use qtrace_format::Table;
use serde_json::Value;

fn bytes_on_disk(t: &Sample, table: Table) -> u64 {
    t.parts(table)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn table_says_what_the_trace_holds() {
    let t = Sample::new(Spec::default());
    let out = stdout_of(["info", t.path()]);
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"))
    };
    assert_eq!(field("status"), "complete");
    assert_eq!(field("target"), "x86_64 (linux-user)");
    assert_eq!(field("qemu"), "10.0.2");
    assert_eq!(field("command"), "qemu-x86_64 /bin/prog 'two words'");
    assert_eq!(field("distinct blocks"), "5");
    assert!(field("options").starts_with("out="), "{out}");

    let row = |first: &str| -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|w| w.first().map(String::as_str) == Some(first))
            .unwrap_or_else(|| panic!("no row {first} in\n{out}"))
    };
    assert_eq!(
        row("vcpu"),
        [
            "vcpu",
            "blocks",
            "insns",
            "block_events",
            "parts",
            "syscalls",
            "mem_accesses"
        ]
    );
    assert_eq!(
        row("1")[..2],
        ["1".to_string(), total_execs(Some(1)).to_string()]
    );
    let blocks = row("blocks");
    assert_eq!(blocks[0..1], ["blocks".to_string()]);
    let parts = t.parts(Table::Blocks).len();
    assert!(parts >= 4, "the sample has several parts per vCPU");
    assert_eq!(
        blocks[1..],
        [
            parts.to_string(),
            total_execs(None).to_string(),
            bytes_on_disk(&t, Table::Blocks).to_string()
        ]
    );
    assert_eq!(row("block_dict")[1..3], ["1".to_string(), "5".to_string()]);
}

#[test]
fn json_is_one_object_with_manifest_and_tables() {
    let t = Sample::new(Spec::default());
    let v: Value =
        serde_json::from_str(&stdout_of(["info", t.path(), "--format", "json"])).unwrap();
    assert_eq!(v["target"], "x86_64");
    assert_eq!(v["mode"], "linux-user");
    assert_eq!(v["complete"], true);
    assert_eq!(v["distinct_blocks"], 5);
    assert_eq!(v["command_line"][2], "two words");
    assert_eq!(v["vcpus"].as_array().unwrap().len(), 2);
    assert_eq!(v["vcpus"][0]["blocks"], total_execs(Some(0)));
    for table in Table::ALL {
        let s = &v["tables"][table.name()];
        assert_eq!(s["parts"], t.parts(table).len() as u64, "{table:?}");
        assert_eq!(s["bytes"], bytes_on_disk(&t, table), "{table:?}");
    }
    assert_eq!(v["tables"]["blocks"]["rows"], total_execs(None));
    assert_eq!(v["tables"]["block_dict"]["rows"], 5);
    let count_rows = BLOCKS
        .iter()
        .flat_map(|b| b.execs)
        .filter(|&n| n > 0)
        .count();
    assert_eq!(v["tables"]["block_counts"]["rows"], count_rows as u64);
}

#[test]
fn says_plainly_when_the_recording_did_not_finish() {
    let t = Sample::new(Spec {
        counts: false,
        complete: false,
    });
    let out = stdout_of(["info", t.path()]);
    assert!(
        out.contains("incomplete: recording did not finish"),
        "{out}"
    );
    let v: Value =
        serde_json::from_str(&stdout_of(["info", t.path(), "--format", "json"])).unwrap();
    assert_eq!(v["complete"], false);
    assert_eq!(v["ended_at"], Value::Null);
    assert_eq!(v["tables"]["block_counts"]["parts"], 0);
}
