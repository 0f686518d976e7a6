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

#[test]
fn says_how_the_run_ended_what_was_dropped_and_forked() {
    let t = Sample::new(Spec::default());
    let field = |out: &str, key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {key} in\n{out}"))
    };
    let out = stdout_of(["info", t.path()]);
    assert_eq!(
        field(&out, "how it ended"),
        "exited with status 0, thread 1000"
    );
    assert_eq!(field(&out, "pid"), "1000");
    let listed: usize = Table::ALL.iter().map(|&tb| t.parts(tb).len()).sum();
    assert_eq!(field(&out, "parts listed"), listed.to_string());
    assert_eq!(field(&out, "dropped rows"), "0");

    let mut m = qtrace_format::Manifest::read(&t.root).unwrap();
    m.end = Some(qtrace_format::manifest::RunEnd {
        how: "signal".into(),
        signal: Some(2),
        signal_name: Some("SIGINT".into()),
        ..Default::default()
    });
    m.dropped.push(qtrace_format::manifest::Dropped {
        table: "blocks".into(),
        vcpu: 1,
        rows: 7,
        ranges: vec![(3, 7)],
    });
    m.children.push(qtrace_format::manifest::ChildProcess {
        pid: 1001,
        path: "processes/pid=1001".into(),
        vcpu: 0,
        tid: 1000,
        block_seq: 12,
    });
    m.errors.push("blocks vCPU 1: write failed".into());
    m.write(&t.root).unwrap();
    let out = stdout_of(["info", t.path()]);
    assert_eq!(field(&out, "how it ended"), "killed by SIGINT");
    assert_eq!(field(&out, "dropped rows"), "7 (blocks vCPU 1: 7)");
    assert_eq!(
        field(&out, "recorder error:"),
        "blocks vCPU 1: write failed"
    );
    let child = out
        .lines()
        .find(|l| l.ends_with("processes/pid=1001"))
        .unwrap_or_else(|| panic!("no child in\n{out}"));
    let words: Vec<&str> = child.split_whitespace().collect();
    assert_eq!(words[..4], ["1001", "0", "1000", "12"]);
    assert!(
        words[4].ends_with("run.parquet/processes/pid=1001"),
        "{child}"
    );

    let v: Value =
        serde_json::from_str(&stdout_of(["info", t.path(), "--format", "json"])).unwrap();
    assert_eq!(v["end"]["signal_name"], "SIGINT");
    assert_eq!(v["parts_listed"], listed as u64);
    assert_eq!(v["dropped"][0]["rows"], 7);
    assert_eq!(v["children"][0]["pid"], 1001);
    assert_eq!(v["errors"][0], "blocks vCPU 1: write failed");
}
