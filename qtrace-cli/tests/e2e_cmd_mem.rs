//! `qtrace mem hot|at|last-write` on real recordings (QEMU running the
//! recorder on the `memvalues` and `memcounter` samples), each answer held
//! to the same question asked of the same files in DuckDB, row for row;
//! the traces' access totals held to QEMU's own `libmem`; and row-group
//! skipping shown to skip (the `--stats` line) without changing answers.

mod common;
mod e2e_support;

use std::path::Path;

use e2e_support::*;
use serde_json::Value;

/// DuckDB's answers, one line per row, in the terms qtrace's rows are put
/// in here, each answer ended by a line `==`. Arguments: TRACE, then
/// questions separated by `--`, each QUESTION ARGS...
///
/// - `hot PAGE_SIZE KIND`: per page (`addr // PAGE_SIZE`): start, loads,
///   stores, bytes; ranked by accesses, then address. KIND: all, loads, stores.
/// - `range START END`: accesses, loads, stores, bytes and distinct pages
///   (of 4096 bytes) of the accesses starting in START..END.
/// - `at START END KIND [VCPU [TID]]`: every access touching START..END
///   (of VCPU, of thread TID, unless -1), by vcpu, seq.
/// - `last START END VCPU BLOCK_SEQ|-1 SEQ|-1`: the last store touching
///   START..END on VCPU before the block execution (or access) given.
const ORACLE: &str = r#"
import duckdb, sys
t = sys.argv[1]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute(f"""
    CREATE VIEW mem AS SELECT * FROM read_parquet('{t}/mem/*/*.parquet', hive_partitioning = true);
    CREATE VIEW blocks AS SELECT * FROM read_parquet('{t}/blocks/*/*.parquet', hive_partitioning = true);
    CREATE VIEW dict AS SELECT * FROM read_parquet('{t}/block_dict/*.parquet');
""")
kinds = {"all": "true", "loads": "NOT store", "stores": "store"}
ACCESS = """
    SELECT m.vcpu, m.seq, m.tid, m.block_seq, d.insns[m.insn + 1].addr, d.insns[m.insn + 1].disas,
           m.addr, m.size, m.store, m.value, m.value_hi, m.inexact
    FROM mem m
    JOIN blocks b ON b.vcpu = m.vcpu AND b.seq = m.block_seq
    JOIN dict d ON d.block_id = b.block_id
"""
def access(r):
    vcpu, seq, tid, bseq, iaddr, disas, addr, size, store, value, hi, inexact = r
    v = "-" if value is None else format((hi or 0) << 64 | value, "x")
    op = "store" if store else "load"
    return f"{vcpu} {seq} {tid} {bseq} {iaddr:x} {disas} | {addr:x} {size} {op} {v} {str(inexact).lower()}"
def answer(question, args):
    if question == "hot":
        ps, kind = int(args[0]), kinds[args[1]]
        rows = con.execute(f"""
            SELECT addr // {ps} AS page, count(*) FILTER (NOT store), count(*) FILTER (store), sum(size)
            FROM mem WHERE {kind} GROUP BY page ORDER BY count(*) DESC, page""").fetchall()
        for page, loads, stores, nbytes in rows:
            print(f"{page * ps:x} {loads} {stores} {nbytes}")
    elif question == "range":
        lo, hi = int(args[0]), int(args[1])
        (n, loads, stores, nbytes, pages), = con.execute(f"""
            SELECT count(*), count(*) FILTER (NOT store), count(*) FILTER (store),
                   coalesce(sum(size), 0), count(DISTINCT addr // 4096)
            FROM mem WHERE addr >= {lo} AND addr < {hi}""").fetchall()
        print(n, loads, stores, nbytes, pages)
    elif question == "at":
        lo, hi, kind = int(args[0]), int(args[1]), kinds[args[2]]
        if len(args) > 3 and int(args[3]) >= 0:
            kind += f" AND m.vcpu = {args[3]}"
        if len(args) > 4 and int(args[4]) >= 0:
            kind += f" AND m.tid = {args[4]}"
        for r in con.execute(ACCESS + f"""
                WHERE m.addr < {hi} AND m.addr + m.size > {lo} AND {kind}
                ORDER BY m.vcpu, m.seq""").fetchall():
            print(access(r))
    elif question == "last":
        lo, hi, vcpu, bseq, seq = (int(a) for a in args)
        before = "true"
        if bseq >= 0:
            before = f"m.block_seq < {bseq}"
        if seq >= 0:
            before = f"m.seq < {seq}"
        for r in con.execute(ACCESS + f"""
                WHERE m.store AND m.vcpu = {vcpu} AND m.addr < {hi} AND m.addr + m.size > {lo} AND {before}
                ORDER BY m.seq DESC LIMIT 1""").fetchall():
            print(access(r))
asked = sys.argv[2:]
while asked:
    end = asked.index("--") if "--" in asked else len(asked)
    answer(asked[0], asked[1:end])
    print("==")
    asked = asked[end + 1:]
"#;

/// Runs `qtrace ARGS --format json`; returns its rows and its stderr.
fn qtrace_json(args: &[&str]) -> (Vec<Value>, String) {
    let out = qtrace()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "qtrace {args:?}: {stderr}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    (rows.as_array().unwrap().clone(), stderr)
}

/// DuckDB's answers to `questions` (each a question and its arguments),
/// asked in one session.
fn ask(trace: &Path, questions: &[Vec<String>]) -> Vec<Vec<String>> {
    let args: Vec<&str> = questions
        .iter()
        .flat_map(|q| q.iter().map(String::as_str).chain(["--"]))
        .collect();
    let text = run_python_with(ORACLE, trace, &args);
    let mut answers: Vec<Vec<String>> = text
        .split_terminator("==\n")
        .map(|a| a.lines().map(String::from).collect())
        .collect();
    answers.resize(questions.len(), Vec::new());
    answers
}

fn question(words: &[&dyn ToString]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// qtrace's answers, queued with the question for DuckDB that must give
/// the same lines; [`Oracle::check`] asks them all at once (DuckDB's start
/// and the views' setup are most of a small question's time).
struct Oracle<'a> {
    trace: &'a Path,
    queued: Vec<(String, Vec<String>, Vec<String>)>,
}

impl<'a> Oracle<'a> {
    fn new(trace: &'a Path) -> Self {
        Oracle {
            trace,
            queued: Vec::new(),
        }
    }

    fn expect(&mut self, what: String, question: Vec<String>, ours: Vec<String>) {
        self.queued.push((what, question, ours));
    }

    fn check(self) {
        let questions: Vec<Vec<String>> = self.queued.iter().map(|q| q.1.clone()).collect();
        let answers = ask(self.trace, &questions);
        for ((what, _, ours), theirs) in self.queued.iter().zip(&answers) {
            assert_eq!(ours, theirs, "{what}");
        }
    }
}

fn hex(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not hex: {v}"));
    u64::from_str_radix(s.strip_prefix("0x").unwrap(), 16).unwrap()
}

/// A `mem at`/`last-write` row in the oracle's terms.
fn access_line(r: &Value) -> String {
    let value = match &r["value"] {
        Value::Null => "-".to_string(),
        v => v.as_str().unwrap().strip_prefix("0x").unwrap().to_string(),
    };
    format!(
        "{} {} {} {} {:x} {} | {:x} {} {} {value} {}",
        r["vcpu"],
        r["seq"],
        r["tid"],
        r["block_seq"],
        hex(&r["insn_addr"]),
        r["disas"].as_str().unwrap(),
        hex(&r["addr"]),
        r["size"],
        r["op"].as_str().unwrap(),
        r["inexact"],
    )
}

/// `skipped` of a `--stats` line.
fn skipped(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("skipped by their statistics"))
        .unwrap_or_else(|| panic!("no stats line in {stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "skipped").unwrap();
    words[at - 1].parse().unwrap()
}

/// Queues `mem at SPAN` (all, stores or loads) against DuckDB; returns
/// how many accesses qtrace found.
fn expect_at(o: &mut Oracle, span: &str, (lo, hi): (u64, u64), kind: &str) -> usize {
    let mut args = vec!["mem", "at", o.trace.to_str().unwrap(), span];
    match kind {
        "loads" => args.push("--loads"),
        "stores" => args.push("--stores"),
        _ => {}
    }
    let (rows, _) = qtrace_json(&args);
    let ours: Vec<String> = rows.iter().map(access_line).collect();
    let n = ours.len();
    o.expect(
        format!("mem at {span} ({kind})"),
        question(&[&"at", &lo, &hi, &kind]),
        ours,
    );
    n
}

/// Queues `last-write SPAN --before POINT` against DuckDB, checks the
/// bytes it says the store left in the span; returns qtrace's row.
fn expect_last_write(
    o: &mut Oracle,
    span: &str,
    (lo, hi): (u64, u64),
    point: Option<&str>,
) -> Option<Value> {
    let mut args = vec!["mem", "last-write", o.trace.to_str().unwrap(), span];
    let (mut bseq, mut seq) = ("-1".to_string(), "-1".to_string());
    if let Some(p) = point {
        args.extend(["--before", p]);
        match p.strip_prefix("seq=") {
            Some(n) => seq = n.to_string(),
            None => bseq = p.to_string(),
        }
    }
    let (rows, _) = qtrace_json(&args);
    let ours: Vec<String> = rows.iter().map(access_line).collect();
    o.expect(
        format!("mem last-write {span} --before {point:?}"),
        question(&[&"last", &lo, &hi, &0, &bseq, &seq]),
        ours,
    );
    let row = rows.into_iter().next()?;
    // The bytes it reports are the stored value's bytes that fall in the
    // span, in address order (little-endian guests).
    let (addr, size) = (hex(&row["addr"]), row["size"].as_u64().unwrap());
    let value = u128::from_str_radix(&row["value"].as_str().unwrap()[2..], 16).unwrap();
    let from = addr.max(lo);
    let to = (addr + size).min(hi);
    let bytes: String = (from..to)
        .map(|a| format!("{:02x}", value.to_le_bytes()[(a - addr) as usize]))
        .collect();
    assert_eq!(hex(&row["wrote_from"]), from);
    assert_eq!(row["wrote_len"].as_u64().unwrap(), to - from);
    assert_eq!(row["bytes"].as_str().unwrap(), bytes, "{row}");
    Some(row)
}

/// Queues `mem hot` (every page, ranked) against DuckDB; checks that `-n`
/// lists the head of the same ranking.
fn expect_hot(o: &mut Oracle, page_size: u64, kind: &str) {
    let trace = o.trace.to_str().unwrap();
    let ps = page_size.to_string();
    let mut args = vec!["mem", "hot", trace, "--page-size", &ps];
    match kind {
        "loads" => args.push("--loads"),
        "stores" => args.push("--stores"),
        _ => {}
    }
    let (top, _) = qtrace_json(&[&args[..], &["-n", "3"]].concat());
    let (rows, _) = qtrace_json(&[&args[..], &["-n", "0"]].concat());
    assert!(!rows.is_empty());
    assert_eq!(top[..], rows[..top.len().min(3)]);
    let ours: Vec<String> = rows
        .iter()
        .map(|r| {
            let (l, s) = (r["loads"].as_u64().unwrap(), r["stores"].as_u64().unwrap());
            assert_eq!(r["accesses"].as_u64().unwrap(), l + s);
            format!("{:x} {l} {s} {}", hex(&r["start"]), r["bytes"])
        })
        .collect();
    o.expect(
        format!("mem hot --page-size {page_size} ({kind})"),
        question(&[&"hot", &page_size, &kind]),
        ours,
    );
}

/// Regions: every accessed page in exactly one, each region's totals what
/// DuckDB counts in its range, and the sample's global named after the
/// program at its offset from the program's base.
fn expect_regions(o: &mut Oracle, prog: &Path, global: u64) {
    let trace = o.trace.to_str().unwrap();
    let (rows, _) = qtrace_json(&["mem", "hot", trace, "--regions", "-n", "0"]);
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for r in &rows {
        let (lo, hi) = (hex(&r["start"]), hex(&r["end"]));
        spans.push((lo, hi));
        let ours = format!(
            "{} {} {} {} {}",
            r["accesses"], r["loads"], r["stores"], r["bytes"], r["pages"]
        );
        o.expect(
            format!("region {r}"),
            question(&[&"range", &lo, &hi]),
            vec![ours],
        );
    }
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "regions overlap"
    );
    // Together they hold every access (and page: pages are 4096 bytes).
    let sum = |k: &str| -> u64 { rows.iter().map(|r| r[k].as_u64().unwrap()).sum() };
    let all = format!(
        "{} {} {} {} {}",
        sum("accesses"),
        sum("loads"),
        sum("stores"),
        sum("bytes"),
        sum("pages")
    );
    o.expect(
        "regions together".into(),
        question(&[&"range", &0, &u64::MAX]),
        vec![all],
    );
    let name = prog.file_name().unwrap().to_str().unwrap();
    let base = module_base(o.trace, name);
    let region = rows
        .iter()
        .find(|r| hex(&r["start"]) <= global && global < hex(&r["end"]))
        .expect("a region holds the global");
    assert_eq!(
        region["place"].as_str().unwrap(),
        format!("{name}+{:#x}", hex(&region["start"]) - base)
    );
}

/// The `base` of the module whose file is `name`, from the `modules` table.
fn module_base(trace: &Path, name: &str) -> u64 {
    let script = r#"
import duckdb, sys
for (path, base) in duckdb.sql(f"SELECT path, base FROM '{sys.argv[1]}/modules/*.parquet'").fetchall():
    print(path, base)
"#;
    run_python(script, trace)
        .lines()
        .find_map(|l| {
            let (path, base) = l.rsplit_once(' ')?;
            path.ends_with(&format!("/{name}"))
                .then(|| base.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no module {name}"))
}

/// Block executions of the accesses to `addr` that DuckDB sees, in order.
fn access_block_seqs(trace: &Path, addr: u64) -> Vec<u64> {
    ask(trace, &[question(&[&"at", &addr, &(addr + 1), &"all"])])[0]
        .iter()
        .map(|l| l.split(' ').nth(3).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn memvalues_answers_equal_duckdb() {
    for arch in ["x86_64", "aarch64"] {
        let Some(prog) = sample(arch, "memvalues") else {
            continue;
        };
        let argv = [prog.display().to_string()];
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ((_dir, trace), printed) = record_beside(&argv, &["mem=values"], &["mem,inline=true"]);
        let totals: u64 = vcpu_fields(&trace, &["mem_accesses"])
            .iter()
            .map(|f| f[0])
            .sum();
        assert_eq!(
            totals,
            libmem_count(&printed),
            "{arch}: accesses against libmem"
        );
        let mut o = Oracle::new(&trace);

        for (ps, kind) in [
            (4096, "all"),
            (4096, "stores"),
            (4096, "loads"),
            (64, "all"),
        ] {
            expect_hot(&mut o, ps, kind);
        }
        let buf = symbol(&prog, "buf");
        let counter = symbol(&prog, "counter");
        expect_regions(&mut o, &prog, buf);

        // The buffer byte by byte, word by word, whole; the counter; a byte
        // in the middle of a 2-byte store; and the hottest page.
        let (hot, _) = qtrace_json(&["mem", "hot", trace.to_str().unwrap(), "-n", "1"]);
        let hot = hex(&hot[0]["start"]);
        let cases = [
            (format!("{buf:#x}"), (buf, buf + 1)),
            (format!("{}", buf + 3), (buf + 3, buf + 4)),
            (format!("{:#x}+8", buf + 8), (buf + 8, buf + 16)),
            (format!("{buf:#x}..{:#x}", buf + 32), (buf, buf + 32)),
            (format!("{counter:#x}+4"), (counter, counter + 4)),
            (format!("{hot:#x}+4096"), (hot, hot + 4096)),
        ];
        for (span, range) in &cases {
            let n = expect_at(&mut o, span, *range, "all");
            assert!(n > 0, "{arch}: no access at {span}");
            expect_at(&mut o, span, *range, "stores");
            expect_at(&mut o, span, *range, "loads");
        }

        // The sample's pattern: the last write of each width left its value.
        for (span, range, bytes) in [
            (format!("{buf:#x}"), (buf, buf + 1), "11"),
            (format!("{:#x}", buf + 3), (buf + 3, buf + 4), "22"),
            (format!("{:#x}+4", buf + 4), (buf + 4, buf + 8), "33333333"),
            (
                format!("{:#x}+8", buf + 8),
                (buf + 8, buf + 16),
                "4444444444444444",
            ),
            (format!("{:#x}+2", buf + 23), (buf + 23, buf + 25), "5566"),
        ] {
            let row = expect_last_write(&mut o, &span, range, None)
                .unwrap_or_else(|| panic!("{arch}: no store at {span}"));
            assert_eq!(row["bytes"].as_str().unwrap(), bytes, "{arch}: {span}");
        }
        // Before and after each access to the counter, by block and by seq.
        let seqs = access_block_seqs(&trace, counter);
        assert!(!seqs.is_empty());
        let span = format!("{counter:#x}+4");
        let range = (counter, counter + 4);
        for b in seqs
            .iter()
            .flat_map(|&b| [b, b + 1])
            .chain([0, u64::MAX / 2])
        {
            expect_last_write(&mut o, &span, range, Some(&b.to_string()));
        }
        let (at, _) = qtrace_json(&["mem", "at", trace.to_str().unwrap(), &span]);
        for r in &at {
            let seq = r["seq"].as_u64().unwrap();
            for n in [seq, seq + 1] {
                expect_last_write(&mut o, &span, range, Some(&format!("seq={n}")));
            }
        }
        o.check();
    }
}

/// The `memcounter` sample writes a global N times, then fills an N-byte
/// buffer, then reads the global: its row groups hold one or the other, so
/// asking for either skips the others' row groups by their statistics, and
/// the answers stay DuckDB's.
#[test]
fn row_groups_are_skipped_by_their_statistics() {
    let prog = sample("x86_64", "memcounter").expect("make -C samples");
    let n: u64 = 2_200_000;
    let argv = [prog.display().to_string(), n.to_string()];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let ((_dir, trace), printed) = record_beside(&argv, &["mem=values"], &["mem,inline=true"]);
    let totals: u64 = vcpu_fields(&trace, &["mem_accesses"])
        .iter()
        .map(|f| f[0])
        .sum();
    assert_eq!(totals, libmem_count(&printed));
    assert!(totals > 2 * n, "{totals} accesses");
    let t = trace.to_str().unwrap();
    let counter = symbol(&prog, "counter");
    let mut o = Oracle::new(&trace);

    // Every access to the counter: N stores (1..=N), then one load of N.
    let span = format!("{counter:#x}+8");
    let (rows, stderr) = qtrace_json(&["mem", "at", t, &span, "--stats"]);
    assert!(skipped(&stderr) > 0, "{stderr}");
    let ours: Vec<String> = rows.iter().map(access_line).collect();
    o.expect(
        "every access to the counter".into(),
        question(&[&"at", &counter, &(counter + 8), &"all"]),
        ours,
    );
    assert_eq!(rows.len() as u64, n + 1);
    assert_eq!(rows[n as usize]["op"], "load");
    assert_eq!(hex(&rows[n as usize]["value"]), n);
    let values: Vec<u64> = rows[..n as usize]
        .iter()
        .map(|r| hex(&r["value"]))
        .collect();
    assert!(values.iter().zip(1..).all(|(&v, i)| v == i));
    let seqs: Vec<u64> = rows
        .iter()
        .map(|r| r["block_seq"].as_u64().unwrap())
        .collect();
    drop(rows);

    // The buffer: a range in its middle, found through its region.
    let (regions, _) = qtrace_json(&["mem", "hot", t, "--regions", "-n", "0", "--stores"]);
    let buffer = regions
        .iter()
        .find(|r| r["stores"].as_u64().unwrap() >= n && hex(&r["start"]) > counter + 4096)
        .expect("the buffer's region");
    let mid = hex(&buffer["start"]) + n / 2;
    let mid_span = format!("{mid:#x}+64");
    let (_, stderr) = qtrace_json(&["mem", "at", t, &mid_span, "-v"]);
    assert!(skipped(&stderr) > 0, "{stderr}");
    let found = expect_at(&mut o, &mid_span, (mid, mid + 64), "all");
    assert!(found > 0);

    // The counter's last write before a point in the buffer's phase is N,
    // found without reading the buffer's row groups; before the k-th
    // store's block it is k - 1.
    let range = (counter, counter + 8);
    let point = (seqs[n as usize - 1] + 1_000_000).to_string();
    let (rows, stderr) =
        qtrace_json(&["mem", "last-write", t, &span, "--before", &point, "--stats"]);
    assert!(skipped(&stderr) > 0, "{stderr}");
    assert_eq!(hex(&rows[0]["value_at"]), n);
    expect_last_write(&mut o, &span, range, Some(&point));
    for k in [1, 2, n / 3, n - 1, n] {
        let point = seqs[k as usize - 1].to_string();
        let row = expect_last_write(&mut o, &span, range, Some(&point));
        let want = k - 1;
        assert_eq!(
            row.map(|r| hex(&r["value"])),
            (want > 0).then_some(want),
            "k={k}"
        );
    }
    let row = expect_last_write(&mut o, &span, range, None).unwrap();
    assert_eq!(hex(&row["value_at"]), n);

    expect_hot(&mut o, 4096, "all");
    o.check();
}
/// Several vCPUs and threads: accesses come vCPU by vCPU, each in `seq`
/// order, and `--vcpu`, `--tid` and `V:B` points pick theirs.
#[test]
fn threads_answers_equal_duckdb() {
    let prog = sample("x86_64", "threads").expect("make -C samples");
    let (_dir, trace) = record(&[&prog.display().to_string()], &["mem=values"]);
    let t = trace.to_str().unwrap();
    let m = manifest(&trace);
    let threads = m["threads"].as_array().unwrap();
    let on_1: Vec<u64> = threads
        .iter()
        .filter(|th| th["vcpu"] == 1)
        .map(|th| th["tid"].as_u64().unwrap())
        .collect();
    assert!(!on_1.is_empty() && m["vcpus"].as_array().unwrap().len() > 2);
    let mut o = Oracle::new(&trace);
    let everything = "0..0xffffffffffffffff";
    let all = (0, u64::MAX);
    let tid = on_1[on_1.len() - 1].to_string();
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (vec![], question(&[&"at", &all.0, &all.1, &"all"])),
        (
            vec!["--stores"],
            question(&[&"at", &all.0, &all.1, &"stores"]),
        ),
        (
            vec!["--vcpu", "1"],
            question(&[&"at", &all.0, &all.1, &"all", &1]),
        ),
        (
            vec!["--vcpu", "2", "--loads"],
            question(&[&"at", &all.0, &all.1, &"loads", &2]),
        ),
        (
            vec!["--tid", &tid],
            question(&[&"at", &all.0, &all.1, &"all", &-1, &tid]),
        ),
    ];
    for (flags, q) in cases {
        let (rows, _) = qtrace_json(&[&["mem", "at", t, everything][..], &flags].concat());
        assert!(!rows.is_empty(), "{flags:?}");
        let ours = rows.iter().map(access_line).collect();
        o.expect(format!("mem at {everything} {flags:?}"), q, ours);
    }
    // The last store of each vCPU before its middle block, in the hottest
    // page of vCPU 0 and in the whole address space.
    let (hot, _) = qtrace_json(&["mem", "hot", t, "-n", "1", "--vcpu", "0"]);
    let page = hex(&hot[0]["start"]);
    for v in 0..3u64 {
        let blocks = m["vcpus"][v as usize]["blocks"].as_u64().unwrap();
        for (span, (lo, hi)) in [
            (format!("{page:#x}+4096"), (page, page + 4096)),
            (everything.to_string(), all),
        ] {
            let point = format!("{v}:{}", blocks / 2);
            let (rows, _) = qtrace_json(&["mem", "last-write", t, &span, "--before", &point]);
            let ours = rows.iter().map(access_line).collect();
            o.expect(
                format!("last-write {span} --before {point}"),
                question(&[&"last", &lo, &hi, &v, &(blocks / 2), &-1]),
                ours,
            );
        }
    }
    o.check();
}

#[test]
fn errors_are_one_line() {
    let prog = sample("x86_64", "memvalues").expect("make -C samples");
    let (_dir, trace) = record(&[&prog.display().to_string()], &[]);
    let t = trace.to_str().unwrap();
    let line = common::one_error_line(["mem", "hot", t], "-O mem=values");
    assert!(line.contains(t), "{line}");
    common::one_error_line(["mem", "at", t, "0x10"], "-O mem=values");
    common::one_error_line(["mem", "last-write", t, "0x10"], "-O mem=values");
    let (_dir2, with_mem) = record(&[&prog.display().to_string()], &["mem=addr"]);
    let m = with_mem.to_str().unwrap();
    common::one_error_line(["mem", "at", m, "0xzz"], "address `0xzz`");
    common::one_error_line(["mem", "at", m, "12ab"], "address `12ab`");
    common::one_error_line(["mem", "at", m, "0x20..0x10"], "empty");
    common::one_error_line(
        ["mem", "last-write", m, "0x10", "--before", "x:1"],
        "point `x:1`",
    );
    common::one_error_line(["mem", "at", m, "0x10", "--vcpu", "7"], "no vCPU 7");
    common::one_error_line(["mem", "hot", m, "--page-size", "0"], "--page-size");
    common::one_error_line(["mem", "hot", "/nonexistent/trace"], "/nonexistent/trace");
    // With addresses only, accesses are found and values are null.
    let (rows, _) = qtrace_json(&["mem", "at", m, &format!("{:#x}+64", symbol(&prog, "buf"))]);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["value"].is_null()));
}
