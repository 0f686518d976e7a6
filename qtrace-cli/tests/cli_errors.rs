//! Bad input gives one line naming what is wrong, a non-zero exit, and never
//! a panic or a hang.

mod common;

use common::{one_error_line, qtrace, Sample, Spec};
use qtrace_format::Table;

const READERS: [&str; 2] = ["info", "top-blocks"];

#[test]
fn missing_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-trace");
    let missing = missing.to_str().unwrap();
    for cmd in READERS {
        let line = one_error_line([cmd, missing], missing);
        assert_eq!(
            line,
            format!("error: {missing}: No such file or directory (os error 2)")
        );
    }
}

#[test]
fn plain_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("notes.txt");
    std::fs::write(&file, "hello").unwrap();
    let file = file.to_str().unwrap();
    for cmd in READERS {
        let line = one_error_line([cmd, file], file);
        assert!(line.contains("not a qtrace trace"), "{line}");
    }
}

#[test]
fn directory_without_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for cmd in READERS {
        let line = one_error_line([cmd, dir], dir);
        assert!(line.contains("no manifest.json"), "{line}");
    }
}

#[test]
fn garbage_manifest() {
    let t = Sample::new(Spec::default());
    std::fs::write(t.root.join("manifest.json"), "{ not json").unwrap();
    for cmd in READERS {
        one_error_line([cmd, t.path()], "manifest.json");
    }
}

#[test]
fn truncated_part_file() {
    let t = Sample::new(Spec::default());
    let part = t.parts(Table::Blocks)[1].clone();
    let bytes = std::fs::read(&part).unwrap();
    std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
    let name = part.to_str().unwrap();
    one_error_line(["info", t.path()], name);
    one_error_line(["top-blocks", t.path(), "--source", "events"], name);
    // The counters do not depend on the damaged events.
    qtrace(["top-blocks", t.path(), "--source", "counts"])
        .assert()
        .success();
}

#[test]
fn garbage_part_files() {
    for table in [Table::BlockDict, Table::BlockCounts, Table::Blocks] {
        let t = Sample::new(Spec::default());
        let part = t.parts(table)[0].clone();
        std::fs::write(&part, b"PAR1 this is not a parquet file at all PAR1").unwrap();
        let name = part.to_str().unwrap();
        one_error_line(["info", t.path()], name);
        // Each source reads `block_dict` and its own counts table only.
        if table != Table::BlockCounts {
            one_error_line(["top-blocks", t.path(), "--source", "events"], name);
        }
        if table != Table::Blocks {
            one_error_line(["top-blocks", t.path(), "--source", "counts"], name);
        }
    }
}

#[test]
fn corrupt_footer_bytes_never_panic() {
    // Flip bytes throughout the footer of a part: whatever arrow-rs makes of
    // it, the command ends with one line (or, if the flip is harmless, works).
    let t = Sample::new(Spec::default());
    let part = t.parts(Table::BlockDict)[0].clone();
    let good = std::fs::read(&part).unwrap();
    let footer_len =
        u32::from_le_bytes(good[good.len() - 8..good.len() - 4].try_into().unwrap()) as usize;
    let start = good.len() - 8 - footer_len;
    for pos in (start..good.len() - 8).step_by(13) {
        let mut bad = good.clone();
        bad[pos] ^= 0xff;
        std::fs::write(&part, &bad).unwrap();
        for cmd in ["info", "top-blocks"] {
            let out = qtrace([cmd, t.path()])
                .timeout(std::time::Duration::from_secs(60))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{cmd}, byte {pos}: {stderr}");
            if !out.status.success() {
                assert_eq!(out.status.code(), Some(1), "{cmd}, byte {pos}: {stderr}");
                assert_eq!(stderr.lines().count(), 1, "{cmd}, byte {pos}: {stderr}");
            }
        }
    }
}

#[test]
fn usage_errors_exit_2() {
    let t = Sample::new(Spec::default());
    qtrace(["top-blocks", t.path(), "--by", "bogus"])
        .assert()
        .code(2);
    qtrace(["info"]).assert().code(2);
    qtrace(["record"]).assert().code(2);
}

#[test]
fn broken_pipe_is_not_an_error() {
    // A reader that closes at once: `qtrace top-blocks t | true`.
    let t = Sample::new(Spec::default());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qtrace"))
        .args(["top-blocks", t.path(), "-n", "0", "--disas"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
