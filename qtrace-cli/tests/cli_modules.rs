//! `qtrace info` and `qtrace top-blocks` on synthetic traces with a
//! `modules` table whose files are missing, not files, or whose table is
//! itself damaged: the listing stands, the symbol stays unknown, and stderr
//! says why.

mod common;

use common::{one_error_line, qtrace, stdout_of, Sample, Spec};
use qtrace_format::schema::{modules_batch, Module, ModuleKind, Segment, TracePoint};
use qtrace_format::writer::write_table;
use qtrace_format::Table;
use serde_json::Value;

/// Block 2 of the sample trace (at 0x402000) has no symbol from QEMU; both
/// modules claim it (as when a range is reused), with files that cannot
/// give one.
fn modules() -> Vec<Module> {
    let module = |id: u32, path: &str, base: u64| Module {
        id,
        kind: ModuleKind::Mmap,
        path: path.into(),
        guest_path: Some(format!("guest{path}")),
        build_id: Some("0123abcd".into()),
        base,
        size: 0x1000,
        bias: Some(base),
        text: Some((base, base + 0x800)),
        entry: None,
        segments: vec![Segment {
            addr: base,
            size: 0x1000,
            file_offset: 0,
            prot: 5,
        }],
        loaded: Some(TracePoint {
            vcpu: 1,
            block_seq: 17,
        }),
        unloaded: None,
    };
    vec![
        module(0, "/nonexistent/libgone.so", 0x402000),
        module(1, "/dev/zero", 0x401800),
    ]
}

fn sample_with_modules() -> Sample {
    let t = Sample::new(Spec::default());
    write_table(&t.root, Table::Modules, 0, &modules_batch(&modules()), 1).unwrap();
    t
}

fn top_blocks_json(t: &Sample) -> (Vec<Value>, String) {
    let out = qtrace(["top-blocks", t.path(), "--format", "json"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success()
        .get_output()
        .clone();
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn missing_and_device_files_leave_symbols_unknown() {
    let t = sample_with_modules();
    let (rows, stderr) = top_blocks_json(&t);
    let block = |id: u64| rows.iter().find(|r| r["block_id"] == id).unwrap();
    assert_eq!(block(2)["symbol"], Value::Null);
    // QEMU's symbols stay as they are.
    assert_eq!(block(1)["symbol"], "loop");
    assert!(
        stderr.contains("note: ") && stderr.contains("/nonexistent/libgone.so"),
        "{stderr}"
    );
    // A device is not read (it would never end).
    assert!(stderr.contains("/dev/zero: not a regular file"), "{stderr}");
}

#[test]
fn info_lists_the_modules() {
    let t = sample_with_modules();
    let out = stdout_of(["info", t.path()]);
    let line = out
        .lines()
        .find(|l| l.contains("/nonexistent/libgone.so"))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "0",
            "mmap",
            "0x402000",
            "0x403000",
            "1:17",
            "-",
            "0123abcd",
            "/nonexistent/libgone.so"
        ]
    );
    let v: Value =
        serde_json::from_str(&stdout_of(["info", t.path(), "--format", "json"])).unwrap();
    let m = &v["modules"];
    assert_eq!(m.as_array().unwrap().len(), 2, "{m}");
    assert_eq!(m[1]["path"], "/dev/zero");
    assert_eq!(m[0]["base"], "0x402000");
    assert_eq!(m[0]["loaded"]["block_seq"], 17);
    assert_eq!(m[0]["unloaded"], Value::Null);
    assert_eq!(v["tables"]["modules"]["rows"], 2);
}

#[test]
fn a_damaged_modules_table_costs_only_the_symbols() {
    let t = sample_with_modules();
    let part = t.parts(Table::Modules).pop().unwrap();
    std::fs::write(&part, b"PAR1 not a parquet file PAR1").unwrap();
    let (rows, stderr) = top_blocks_json(&t);
    assert_eq!(rows.len(), 6);
    assert!(
        stderr.contains("note: no symbols from the modules table"),
        "{stderr}"
    );
    // info reads the table and says which file is damaged.
    one_error_line(["info", t.path()], part.to_str().unwrap());
}

#[test]
fn traces_without_modules_say_nothing_about_them() {
    let t = Sample::new(Spec::default());
    let (_, stderr) = top_blocks_json(&t);
    assert!(stderr.is_empty(), "{stderr}");
    let out = stdout_of(["info", t.path()]);
    assert!(!out.contains("module "), "{out}");
}
