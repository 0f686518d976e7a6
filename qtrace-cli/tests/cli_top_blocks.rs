//! `qtrace top-blocks` on synthetic traces whose counts are known.

mod common;

use common::{one_error_line, stdout_of, total_execs, Sample, Spec, BLOCKS};
use serde_json::Value;

fn csv_rows(out: &str) -> Vec<Vec<String>> {
    // The sample's only quoted field is block 5's symbol; a split on commas
    // outside quotes is all these tests need.
    out.lines()
        .map(|line| {
            let mut fields = vec![String::new()];
            let mut quoted = false;
            let mut chars = line.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '"' if quoted && chars.peek() == Some(&'"') => {
                        chars.next();
                        fields.last_mut().unwrap().push('"');
                    }
                    '"' => quoted = !quoted,
                    ',' if !quoted => fields.push(String::new()),
                    c => fields.last_mut().unwrap().push(c),
                }
            }
            fields
        })
        .collect()
}

fn json_of(args: &[&str]) -> Vec<Value> {
    let out = stdout_of(args);
    match serde_json::from_str(&out).unwrap() {
        Value::Array(rows) => rows,
        other => panic!("not an array: {other}"),
    }
}

fn ids(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| r["block_id"].as_u64().unwrap())
        .collect()
}

#[test]
fn csv_lists_every_block_with_exact_values() {
    let t = Sample::new(Spec::default());
    let out = stdout_of(["top-blocks", t.path(), "--format", "csv", "-n", "0"]);
    let rows = csv_rows(&out);
    assert_eq!(
        rows[0],
        ["rank", "address", "symbol", "execs", "insns", "share", "n_insns", "block_id"]
    );
    let total = total_execs(None) as f64;
    let expect = |rank: &str, addr: &str, sym: &str, execs: u64, n: Option<u64>, id: &str| {
        vec![
            rank.to_string(),
            addr.to_string(),
            sym.to_string(),
            execs.to_string(),
            n.map(|n| (execs * n).to_string()).unwrap_or_default(),
            format!("{:.4}", execs as f64 * 100.0 / total),
            n.map(|n| n.to_string()).unwrap_or_default(),
            id.to_string(),
        ]
    };
    assert_eq!(
        rows[1..],
        [
            expect("1", "0x401010", "loop", 105, Some(2), "1"),
            expect("2", "0x402000", "", 80, Some(5), "2"),
            // A tie on executions goes to the lower address.
            expect("3", "0x300000", "early, \"quoted\"", 20, Some(1), "5"),
            expect("4", "0x401000", "main", 20, Some(3), "0"),
            // Missing from block_dict: listed, with no address.
            expect("5", "", "", 2, None, "4"),
            expect("6", "0x400800", "_start", 1, Some(1), "3"),
        ]
    );
}

#[test]
fn counts_and_events_sources_agree() {
    let t = Sample::new(Spec::default());
    for extra in [
        &[][..],
        &["--vcpu", "0"],
        &["--vcpu", "1"],
        &["--by", "insns"],
    ] {
        let run = |source: &str| {
            let mut args = vec!["top-blocks", t.path(), "--format", "csv", "-n", "0"];
            args.extend(["--source", source]);
            args.extend(extra);
            stdout_of(args)
        };
        let counts = run("counts");
        assert_eq!(counts, run("events"), "with {extra:?}");
        assert_eq!(counts, run("auto"), "with {extra:?}");
    }
}

#[test]
fn auto_counts_events_when_the_recording_did_not_finish() {
    let finished = Sample::new(Spec::default());
    let cut = Sample::new(Spec {
        counts: false,
        complete: false,
    });
    let args = |t: &Sample| {
        vec![
            "top-blocks".to_string(),
            t.path().into(),
            "--format".into(),
            "json".into(),
        ]
    };
    let a = stdout_of(args(&finished));
    let b = stdout_of(args(&cut));
    assert_eq!(a, b);
    // Asking for counters that were never written gives an empty listing.
    let rows = json_of(&[
        "top-blocks",
        cut.path(),
        "--format",
        "json",
        "--source",
        "counts",
    ]);
    assert!(rows.is_empty());
}

#[test]
fn table_has_a_header_and_aligned_rows() {
    let t = Sample::new(Spec::default());
    let out = stdout_of(["top-blocks", t.path(), "-n", "0"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + BLOCKS.len(), "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["rank", "address", "symbol", "execs", "insns", "share", "n_insns", "block_id"]
    );
    let first: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        first,
        ["1", "0x401010", "loop", "105", "210", "46.05%", "2", "1"]
    );
    assert!(lines.iter().any(|l| l.contains("block 4")), "{out}");
    // Right-aligned numbers end in the same column as their header.
    let end = lines[0].find("execs").unwrap() + "execs".len();
    for line in &lines[1..] {
        assert!(line.as_bytes()[end - 1].is_ascii_digit(), "{line}");
        assert_eq!(line.as_bytes()[end], b' ', "{line}");
    }
}

#[test]
fn json_is_an_array_of_objects() {
    let t = Sample::new(Spec::default());
    let rows = json_of(&["top-blocks", t.path(), "--format", "json", "-n", "2"]);
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r["rank"], 1);
    assert_eq!(r["address"], "0x401010");
    assert_eq!(r["symbol"], "loop");
    assert_eq!(r["execs"], 105);
    assert_eq!(r["insns"], 210);
    assert_eq!(r["n_insns"], 2);
    assert_eq!(r["block_id"], 1);
    let share = r["share"].as_f64().unwrap();
    assert!(
        (share - 105.0 * 100.0 / total_execs(None) as f64).abs() < 1e-3,
        "{share}"
    );
    assert_eq!(rows[1]["symbol"], Value::Null);
    assert!(r.get("disas").is_none());
}

#[test]
fn limit_takes_the_top_n() {
    let t = Sample::new(Spec::default());
    let out = stdout_of(["top-blocks", t.path(), "--format", "csv", "-n", "3"]);
    assert_eq!(out.lines().count(), 4, "{out}");
    let default = stdout_of(["top-blocks", t.path(), "--format", "csv"]);
    assert_eq!(default.lines().count(), 1 + BLOCKS.len());
}

#[test]
fn vcpu_filter_counts_that_vcpu_only() {
    let t = Sample::new(Spec::default());
    for source in ["counts", "events"] {
        let rows = json_of(&[
            "top-blocks",
            t.path(),
            "--format",
            "json",
            "--vcpu",
            "1",
            "--source",
            source,
        ]);
        assert_eq!(ids(&rows), [2, 0, 1], "source {source}");
        let execs: Vec<u64> = rows.iter().map(|r| r["execs"].as_u64().unwrap()).collect();
        assert_eq!(execs, [50, 10, 5]);
        let share: f64 = rows.iter().map(|r| r["share"].as_f64().unwrap()).sum();
        assert!((share - 100.0).abs() < 1e-2, "{share}");
        assert_eq!(total_execs(Some(1)), 65);
    }
    one_error_line(["top-blocks", t.path(), "--vcpu", "7"], "no vCPU 7");
}

#[test]
fn by_insns_ranks_by_executed_instructions() {
    let t = Sample::new(Spec::default());
    let rows = json_of(&[
        "top-blocks",
        t.path(),
        "--format",
        "json",
        "--by",
        "insns",
        "-n",
        "0",
    ]);
    // insns: block 2 400, block 1 210, block 0 60, block 5 20, block 3 1,
    // block 4 unknown (counted as 0).
    assert_eq!(ids(&rows), [2, 1, 0, 5, 3, 4]);
    assert_eq!(rows[0]["insns"], 400);
    assert_eq!(rows[5]["insns"], Value::Null);
    let total = 400.0 + 210.0 + 60.0 + 20.0 + 1.0;
    let share = rows[0]["share"].as_f64().unwrap();
    assert!((share - 400.0 * 100.0 / total).abs() < 1e-3, "{share}");
}

#[test]
fn disas_shows_instructions_in_every_format() {
    let t = Sample::new(Spec::default());

    let table = stdout_of(["top-blocks", t.path(), "--disas", "-n", "2"]);
    let lines: Vec<&str> = table.lines().collect();
    // Header, block 1 and its 2 instructions, block 2 and its 5.
    assert_eq!(lines.len(), 1 + 1 + 2 + 1 + 5, "{table}");
    let insn: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(insn, ["0x401010", "90", "00", "insn0", "of", "1"]);
    assert!(lines[2].starts_with("      "), "indented: {table}");

    let csv = stdout_of([
        "top-blocks",
        t.path(),
        "--disas",
        "--format",
        "csv",
        "-n",
        "1",
    ]);
    let rows = csv_rows(&csv);
    assert_eq!(rows[0].last().unwrap(), "disas");
    assert_eq!(rows[1].last().unwrap(), "insn0 of 1; insn1 of 1");

    let rows = json_of(&[
        "top-blocks",
        t.path(),
        "--disas",
        "--format",
        "json",
        "-n",
        "0",
    ]);
    let disas = rows[0]["disas"].as_array().unwrap();
    assert_eq!(disas.len(), 2);
    assert_eq!(disas[1]["addr"], "0x401012");
    assert_eq!(disas[1]["bytes"], "9001");
    assert_eq!(disas[1]["disas"], "insn1 of 1");
    let missing = rows.iter().find(|r| r["block_id"] == 4).unwrap();
    assert_eq!(missing["disas"], Value::Null);
}
