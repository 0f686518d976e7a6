//! The `modules` table and offline symbols, on real programs under the real
//! QEMU: our dynamically linked sample and its shared library, Debian's `xz`
//! with `liblzma`, a static sample, and the aarch64 build of the sample run
//! with QEMU's `-L` sysroot.
//!
//! Every expectation comes from outside the recorder: paths and build ids
//! from `readelf`, symbols from `nm`, the library's load address from the
//! guest itself (the sample prints where `qthot_mix` is), mapping and
//! unmapping from the `syscalls` table.

mod common;
mod e2e_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2e_support::*;
use serde_json::Value;

/// The trace's modules and block addresses, read with DuckDB, as JSON:
/// `{"modules": [...], "blocks": [[pc, symbol], ...]}`.
const DUMP: &str = r#"
import duckdb, json, sys
t = sys.argv[1]
cols = ["module_id", "kind", "path", "guest_path", "build_id", "base", "size", "bias",
        "text_start", "text_end", "entry", "loaded_vcpu", "loaded_block_seq",
        "unloaded_vcpu", "unloaded_block_seq"]
mods = duckdb.sql(f"SELECT {', '.join(cols)} FROM '{t}/modules/*.parquet' ORDER BY module_id").fetchall()
blocks = duckdb.sql(f"SELECT pc, symbol FROM '{t}/block_dict/*.parquet' ORDER BY pc").fetchall()
print(json.dumps({"modules": [dict(zip(cols, m)) for m in mods], "blocks": blocks}))
"#;

struct Dump {
    modules: Vec<Value>,
    /// Every translated block: (pc, QEMU's symbol).
    blocks: Vec<(u64, Option<String>)>,
}

fn dump(trace: &Path) -> Dump {
    let v: Value = serde_json::from_str(&run_python(DUMP, trace)).unwrap();
    Dump {
        modules: v["modules"].as_array().unwrap().clone(),
        blocks: v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| (b[0].as_u64().unwrap(), b[1].as_str().map(str::to_string)))
            .collect(),
    }
}

fn num(m: &Value, key: &str) -> u64 {
    m[key].as_u64().unwrap_or_else(|| panic!("{key} of {m}"))
}

/// The module whose file is `path` (compared after resolving links).
fn module_of<'a>(d: &'a Dump, path: &Path) -> &'a Value {
    let want = std::fs::canonicalize(path).unwrap();
    let found: Vec<&Value> = d
        .modules
        .iter()
        .filter(|m| Path::new(m["path"].as_str().unwrap()) == want)
        .collect();
    assert_eq!(found.len(), 1, "{} in {:#?}", want.display(), d.modules);
    found[0]
}

fn tool(name: &str, args: &[&str], file: &Path) -> String {
    let out = Command::new(name).args(args).arg(file).output().unwrap();
    assert!(out.status.success(), "{name} {args:?} {}", file.display());
    String::from_utf8(out.stdout).unwrap()
}

/// The GNU build id `readelf -n` prints for a file.
fn readelf_build_id(file: &Path) -> String {
    tool("readelf", &["-n", "-W"], file)
        .lines()
        .find_map(|l| Some(l.split("Build ID: ").nth(1)?.trim()))
        .unwrap_or_else(|| panic!("no build id in {}", file.display()))
        .to_string()
}

/// The interpreter `readelf -l` names.
fn readelf_interp(file: &Path) -> String {
    tool("readelf", &["-l", "-W"], file)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("[Requesting program interpreter: ")?
                .strip_suffix(']')
        })
        .unwrap()
        .to_string()
}

/// `nm -S --defined-only` of a file (`-D`: its dynamic symbols only):
/// name -> (value, size) of its functions; size 0 where nm gives none.
fn nm_functions(file: &Path, dynamic: bool) -> BTreeMap<String, (u64, u64)> {
    let mut args = vec!["-S", "--defined-only"];
    if dynamic {
        args.push("-D");
    }
    tool("nm", &args, file)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let hex = |s: &str| u64::from_str_radix(s, 16).ok();
            let (value, size, kind, name) = match f[..] {
                [v, s, k, n] => (hex(v)?, hex(s)?, k, n),
                [v, k, n] => (hex(v)?, 0, k, n),
                _ => return None,
            };
            // Dynamic symbols carry their version (`lzma_code@@XZ_5.0`).
            let name = name.split('@').next().unwrap_or(name);
            matches!(kind, "t" | "T" | "i" | "W").then(|| (name.to_string(), (value, size)))
        })
        .collect()
}

/// The function nm places at file address `vaddr`: one whose extent holds
/// it, or one of unknown size that starts there.
fn nm_name_at(syms: &BTreeMap<String, (u64, u64)>, vaddr: u64) -> Option<String> {
    let sized = syms
        .iter()
        .find(|(_, &(value, size))| value <= vaddr && vaddr < value + size);
    let exact = || {
        syms.iter()
            .find(|(_, &(value, size))| size == 0 && value == vaddr)
    };
    sized.or_else(exact).map(|(name, _)| name.clone())
}

/// `qtrace top-blocks -n 0 --format json` (with `args`): (pc, symbol).
fn listed(trace: &Path, args: &[&str]) -> Vec<(u64, Option<String>)> {
    let mut all = vec!["-n", "0"];
    all.extend_from_slice(args);
    top_blocks(trace, &all)
        .iter()
        .map(|r| {
            let pc = r["address"].as_str().unwrap().trim_start_matches("0x");
            (
                u64::from_str_radix(pc, 16).unwrap(),
                r["symbol"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Records `argv` as `record` does (`--clean-env`, no address-space
/// randomisation), with `qemu_args` for QEMU; returns the trace and what
/// the guest printed.
fn record_printing(argv: &[&str], qemu_args: &[&str]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("run.parquet");
    let mut cmd = Command::new("setarch");
    cmd.arg(std::env::consts::ARCH)
        .arg("-R")
        .arg(common::qtrace_exe())
        .arg("record")
        .arg("--clean-env")
        .arg("-o")
        .arg(&trace);
    common::recorder();
    for a in qemu_args {
        cmd.arg(format!("--qemu-arg={a}"));
    }
    let out = cmd
        .arg("--")
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "record {argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        dir,
        trace,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Where the guest says `qthot_mix` is (`dynhot` prints it).
fn printed_qthot_mix(printed: &str) -> u64 {
    let at = printed
        .split("qthot_mix at 0x")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {printed:?}"));
    u64::from_str_radix(at.trim(), 16).unwrap()
}

/// Every block lies in the text of a module mapped at the end of the run.
fn blocks_lie_in_module_text(d: &Dump) {
    assert!(!d.blocks.is_empty());
    for &(pc, _) in &d.blocks {
        let holders: Vec<&Value> = d
            .modules
            .iter()
            .filter(|m| m["unloaded_vcpu"].is_null())
            .filter(|m| num(m, "base") <= pc && pc < num(m, "base") + num(m, "size"))
            .collect();
        assert_eq!(holders.len(), 1, "block {pc:#x}: {holders:#?}");
        let m = holders[0];
        assert!(
            num(m, "text_start") <= pc && pc < num(m, "text_end"),
            "block {pc:#x} outside the text of {m}"
        );
    }
}

/// The hottest block's symbol, and the symbols of the blocks in `module`.
fn symbols_in(listed: &[(u64, Option<String>)], module: &Value) -> Vec<(u64, Option<String>)> {
    let (base, size) = (num(module, "base"), num(module, "size"));
    listed
        .iter()
        .filter(|(pc, _)| *pc >= base && *pc < base + size)
        .cloned()
        .collect()
}

fn x86_sample(name: &str) -> PathBuf {
    common::sample("x86_64", name)
}

#[test]
fn dynamic_sample_modules_hold_program_loader_libc_and_library() {
    let prog = x86_sample("dynhot");
    let lib = x86_sample("libqthot.so");
    let (_dir, trace, printed) = record_printing(&[prog.to_str().unwrap()], &[]);
    let d = dump(&trace);

    let main = module_of(&d, &prog);
    assert_eq!(main["kind"], "main");
    assert_eq!(main["guest_path"], prog.to_str().unwrap());
    let interp_name = readelf_interp(&prog);
    let interp = module_of(&d, Path::new(&interp_name));
    assert_eq!(interp["kind"], "interp");
    assert_eq!(interp["guest_path"], interp_name.as_str());
    let library = module_of(&d, &lib);
    assert_eq!(library["kind"], "mmap");
    let libc: Vec<&Value> = d
        .modules
        .iter()
        .filter(|m| m["path"].as_str().unwrap().ends_with("/libc.so.6"))
        .collect();
    assert_eq!(libc.len(), 1, "{:#?}", d.modules);
    for m in [main, interp, library, libc[0]] {
        let path = Path::new(m["path"].as_str().unwrap());
        assert_eq!(m["build_id"], readelf_build_id(path).as_str(), "{m}");
    }
    // QEMU loaded the program and the loader before the guest ran; the
    // guest mapped the rest.
    for m in [main, interp] {
        assert!(m["loaded_vcpu"].is_null(), "{m}");
    }
    for m in [library, libc[0]] {
        assert_eq!(m["loaded_vcpu"], 0, "{m}");
        assert!(m["unloaded_vcpu"].is_null(), "{m}");
    }

    // The guest says where its library's function is: the module's bias
    // puts the file's symbol there.
    let mix = printed_qthot_mix(&printed);
    let file_syms = nm_functions(&lib, false);
    let (mix_value, _) = file_syms["qthot_mix"];
    assert_eq!(num(library, "bias"), mix - mix_value, "{library}");
    // The program's entry is the file's entry moved by the same kind of bias.
    let entry = num(main, "entry");
    assert!(num(main, "text_start") <= entry && entry < num(main, "text_end"));

    blocks_lie_in_module_text(&d);
}

#[test]
fn top_blocks_names_the_library_functions_qemu_does_not_know() {
    let prog = x86_sample("dynhot");
    let lib = x86_sample("libqthot.so");
    let (_dir, trace, printed) = record_printing(&[prog.to_str().unwrap()], &[]);
    let d = dump(&trace);
    let library = module_of(&d, &lib);
    let bias = printed_qthot_mix(&printed) - nm_functions(&lib, false)["qthot_mix"].0;

    // The exported function is in .dynsym; its helper only in .symtab.
    let exported = nm_functions(&lib, true);
    let all = nm_functions(&lib, false);
    assert!(exported.contains_key("qthot_mix"), "{exported:?}");
    assert!(!exported.contains_key("qthot_round"), "{exported:?}");
    assert!(all.contains_key("qthot_round"), "{all:?}");

    // QEMU gives no symbol in the library...
    let in_lib =
        |pc: u64| pc >= num(library, "base") && pc < num(library, "base") + num(library, "size");
    for (pc, symbol) in d.blocks.iter().filter(|(pc, _)| in_lib(*pc)) {
        assert_eq!(symbol, &None, "{pc:#x}");
    }
    // ...top-blocks names each of its blocks as nm places it.
    let listed = listed(&trace, &[]);
    let lib_blocks = symbols_in(&listed, library);
    assert!(lib_blocks.len() >= 4, "{lib_blocks:?}");
    let mut named = BTreeMap::<String, u64>::new();
    for (pc, symbol) in &lib_blocks {
        let vaddr = pc - bias;
        let expected = nm_name_at(&all, vaddr);
        assert_eq!(symbol, &expected, "block {pc:#x} (file address {vaddr:#x})");
        if let Some(s) = symbol {
            *named.entry(s.clone()).or_default() += 1;
        }
    }
    assert!(named.contains_key("qthot_mix"), "{named:?}");
    // The hottest block of the run is the helper's loop.
    assert_eq!(listed[0].1.as_deref(), Some("qthot_round"), "{listed:?}");
    assert!(in_lib(listed[0].0));

    // With --disas, each instruction of the library's blocks has its symbol.
    let rows = top_blocks(&trace, &["-n", "3", "--disas"]);
    for r in &rows {
        for i in r["disas"].as_array().unwrap() {
            assert_eq!(i["symbol"], r["symbol"], "{i}");
        }
    }
}

#[test]
fn stripped_library_symbols_come_from_its_debug_file_and_only_with_its_build_id() {
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("dynhot");
    let lib = dir.path().join("libqthot.so");
    std::fs::copy(x86_sample("dynhot"), &prog).unwrap();
    std::fs::copy(x86_sample("libqthot.so"), &lib).unwrap();
    let debug = dir.path().join("libqthot.so.debug");
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    run(Command::new("objcopy")
        .arg("--only-keep-debug")
        .arg(&lib)
        .arg(&debug));
    run(Command::new("strip").arg("--strip-all").arg(&lib));
    assert!(!nm_functions(&debug, false).is_empty());
    assert!(
        !tool("readelf", &["-S", "-W"], &lib).contains(".symtab"),
        "strip left .symtab"
    );
    assert_eq!(readelf_build_id(&lib), readelf_build_id(&debug));

    // The copy finds its library beside it (RUNPATH $ORIGIN).
    let (_t, trace, _) = record_printing(&[prog.to_str().unwrap()], &[]);
    let hottest = |args: &[&str]| listed(&trace, args)[0].1.clone();
    // Beside the file: PATH.debug.
    assert_eq!(hottest(&[]).as_deref(), Some("qthot_round"));

    // By build id under a debug directory.
    let id = readelf_build_id(&lib);
    let debug_root = tempfile::tempdir().unwrap();
    let by_id = debug_root
        .path()
        .join(".build-id")
        .join(&id[..2])
        .join(format!("{}.debug", &id[2..]));
    std::fs::create_dir_all(by_id.parent().unwrap()).unwrap();
    std::fs::rename(&debug, &by_id).unwrap();
    assert_eq!(hottest(&[]), None, "no debug file where it is looked for");
    let dir_arg = debug_root.path().to_str().unwrap();
    assert_eq!(
        hottest(&["--debug-dir", dir_arg]).as_deref(),
        Some("qthot_round")
    );
    // Without any, .dynsym still names the exported function.
    let names: Vec<Option<String>> = listed(&trace, &[]).into_iter().map(|r| r.1).collect();
    assert!(names.contains(&Some("qthot_mix".into())), "{names:?}");

    // A library rebuilt since (another build id) is not the one that ran.
    let src = common::repo_root().join("samples/src/dynamic/libqthot.c");
    run(Command::new("gcc")
        .args([
            "-O2",
            "-g",
            "-shared",
            "-fPIC",
            "-Wl,--build-id=0x0123456789abcdef",
            "-o",
        ])
        .arg(&lib)
        .arg(&src));
    let out = qtrace()
        .args(["top-blocks", "-n", "0", "--format", "json"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("note: ")
            && stderr.contains(lib.to_str().unwrap())
            && stderr.contains("0123456789abcdef")
            && stderr.contains(&id),
        "{stderr}"
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.iter()
            .all(|r| !r["symbol"].as_str().is_some_and(|s| s.starts_with("qthot"))),
        "symbols from the wrong file"
    );

    // A library gone from disk leaves its blocks unnamed, and says so.
    std::fs::remove_file(&lib).unwrap();
    let out = qtrace()
        .args(["top-blocks", "-n", "5"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("note: "));
}

#[test]
fn mapping_and_unmapping_are_placed_at_their_system_calls() {
    let prog = x86_sample("dynhot");
    let (_dir, trace, _) = record_printing(&[prog.to_str().unwrap()], &[]);
    let d = dump(&trace);
    let calls = run_python(
        r#"
import duckdb, sys
for r in duckdb.sql(f"SELECT block_seq, name, arg0, ret FROM read_parquet('{sys.argv[1]}/syscalls/*/*.parquet') WHERE name IN ('mmap', 'munmap') ORDER BY seq").fetchall():
    print(*r)
"#,
        &trace,
    );
    let calls: Vec<(u64, String, u64, i64)> = calls
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].into(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    let mapped: Vec<&Value> = d.modules.iter().filter(|m| m["kind"] == "mmap").collect();
    assert!(mapped.len() >= 3, "{mapped:#?}");
    for m in &mapped {
        // Its first mapping is an mmap made by that block that returned its base.
        let at = num(m, "loaded_block_seq");
        assert!(
            calls
                .iter()
                .any(|c| c.0 == at && c.1 == "mmap" && c.3 as u64 == num(m, "base")),
            "{m} not mapped by an mmap at {at}: {calls:?}"
        );
    }
    // The loader reads /etc/ld.so.cache through a mapping it drops.
    let cache = mapped
        .iter()
        .find(|m| m["path"] == "/etc/ld.so.cache")
        .expect("ld.so.cache mapped");
    let gone = num(cache, "unloaded_block_seq");
    assert!(gone > num(cache, "loaded_block_seq"));
    assert!(
        calls
            .iter()
            .any(|c| c.0 == gone && c.1 == "munmap" && c.2 == num(cache, "base") && c.3 == 0),
        "{cache}: {calls:?}"
    );
}

#[test]
fn static_program_is_its_own_only_file() {
    let prog = x86_sample("hotloop");
    let (_dir, trace, _) = record_printing(&[prog.to_str().unwrap()], &[]);
    let d = dump(&trace);
    let kinds: Vec<&str> = d
        .modules
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["main", "vdso"], "{:#?}", d.modules);
    let main = module_of(&d, &prog);
    assert_eq!(main["build_id"], readelf_build_id(&prog).as_str());
    assert_eq!(main["bias"], 0, "not position-independent");
    // Its entry and text as the ELF file says (readelf -h, nm).
    let header = tool("readelf", &["-h", "-W"], &prog);
    let entry = header
        .lines()
        .find_map(|l| l.trim().strip_prefix("Entry point address:"))
        .unwrap()
        .trim()
        .trim_start_matches("0x");
    assert_eq!(num(main, "entry"), u64::from_str_radix(entry, 16).unwrap());
    let (start, _) = nm_functions(&prog, false)["_start"];
    assert!(num(main, "text_start") <= start && start < num(main, "text_end"));
    blocks_lie_in_module_text(&d);
}

#[test]
fn modules_follow_without_the_syscalls_table_and_not_with_modules_off() {
    let prog = x86_sample("dynhot");
    let argv = [prog.to_str().unwrap()];
    let (_d1, trace) = record(&argv, &["syscalls=off"]);
    assert!(!trace.join("syscalls").exists());
    let d = dump(&trace);
    module_of(&d, &x86_sample("libqthot.so"));
    let (_d2, trace) = record(&argv, &["modules=off"]);
    assert!(!trace.join("modules").exists());
    assert!(trace.join("syscalls").exists());
}

#[test]
fn xz_blocks_in_liblzma_are_named_from_its_dynamic_symbols() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    // Text that compresses, made here: no fixture file.
    let text: String = (0..20_000)
        .map(|i| format!("line {i} of {}\n", i * 7919 % 1000))
        .collect();
    std::fs::write(&input, text).unwrap();
    let (_t, trace, _) = record_printing(
        &["/usr/bin/xz", "-1", "-T1", "-k", input.to_str().unwrap()],
        &[],
    );
    let d = dump(&trace);
    let lzma: Vec<&Value> = d
        .modules
        .iter()
        .filter(|m| {
            Path::new(m["path"].as_str().unwrap())
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("liblzma.so"))
        })
        .collect();
    assert_eq!(lzma.len(), 1, "{:#?}", d.modules);
    let lzma = lzma[0];
    let path = PathBuf::from(lzma["path"].as_str().unwrap());
    assert_eq!(lzma["build_id"], readelf_build_id(&path).as_str());
    let main = module_of(&d, Path::new("/usr/bin/xz"));
    assert_eq!(
        main["build_id"],
        readelf_build_id(Path::new("/usr/bin/xz")).as_str()
    );
    blocks_lie_in_module_text(&d);

    // Debian strips liblzma: only its exported functions have names, and
    // each named block lies in the function nm -D gives that name.
    let exported = nm_functions(&path, true);
    let bias = num(lzma, "bias");
    let mut named = Vec::new();
    for (pc, symbol) in symbols_in(&listed(&trace, &[]), lzma) {
        let Some(symbol) = symbol else { continue };
        assert_eq!(
            nm_name_at(&exported, pc - bias).as_deref(),
            Some(symbol.as_str()),
            "block {pc:#x}"
        );
        named.push(symbol);
    }
    assert!(named.iter().any(|n| n.starts_with("lzma_")), "{named:?}");
}

#[test]
fn aarch64_sample_under_a_sysroot() {
    let Some(prog) = sample("aarch64", "dynhot") else {
        return;
    };
    let sysroot = Path::new("/usr/aarch64-linux-gnu");
    if !sysroot.is_dir() {
        return;
    }
    let (_dir, trace, _) =
        record_printing(&[prog.to_str().unwrap()], &["-L", "/usr/aarch64-linux-gnu"]);
    let d = dump(&trace);
    let interp_name = readelf_interp(&prog);
    let interp = module_of(&d, &sysroot.join(interp_name.trim_start_matches('/')));
    assert_eq!(interp["kind"], "interp");
    let lib = module_of(&d, &prog.with_file_name("libqthot.so"));
    for m in [interp, lib, module_of(&d, &prog)] {
        let path = Path::new(m["path"].as_str().unwrap());
        assert_eq!(m["build_id"], readelf_build_id(path).as_str(), "{m}");
    }
    blocks_lie_in_module_text(&d);
    assert_eq!(listed(&trace, &[])[0].1.as_deref(), Some("qthot_round"));
}

#[test]
fn dlclose_unloads_and_a_reload_is_a_module_of_its_own() {
    let prog = x86_sample("dynload");
    let lib = x86_sample("libqthot.so");
    let (_dir, trace, printed) = record_printing(&[prog.to_str().unwrap()], &[]);
    let d = dump(&trace);
    let want = std::fs::canonicalize(&lib).unwrap();
    let loads: Vec<&Value> = d
        .modules
        .iter()
        .filter(|m| Path::new(m["path"].as_str().unwrap()) == want)
        .collect();
    assert_eq!(loads.len(), 2, "{:#?}", d.modules);
    // Where the guest says each load put qthot_mix.
    let (mix_value, _) = nm_functions(&lib, false)["qthot_mix"];
    let printed: Vec<u64> = printed
        .lines()
        .filter_map(|l| l.split(" at 0x").nth(1)?.split(' ').next())
        .map(|a| u64::from_str_radix(a, 16).unwrap())
        .collect();
    assert_eq!(printed.len(), 2, "{printed:?}");
    let munmaps = run_python(
        r#"
import duckdb, sys
for r in duckdb.sql(f"SELECT block_seq, arg0 FROM read_parquet('{sys.argv[1]}/syscalls/*/*.parquet') WHERE name = 'munmap' AND ret = 0 ORDER BY seq").fetchall():
    print(*r)
"#,
        &trace,
    );
    let munmaps: Vec<(u64, u64)> = munmaps
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect();
    for (m, mix) in loads.iter().zip(&printed) {
        assert_eq!(num(m, "bias"), mix - mix_value, "{m}");
        assert_eq!(m["build_id"], readelf_build_id(&lib).as_str());
        // dlclose unmapped it, whole, in one munmap of its base.
        let gone = num(m, "unloaded_block_seq");
        assert!(
            munmaps.contains(&(gone, num(m, "base"))),
            "{m}: {munmaps:?}"
        );
    }
    assert!(num(loads[0], "unloaded_block_seq") < num(loads[1], "loaded_block_seq"));
    // Every block lies in the text of a module, loaded or since unloaded.
    for &(pc, _) in &d.blocks {
        assert!(
            d.modules.iter().any(|m| !m["text_start"].is_null()
                && num(m, "text_start") <= pc
                && pc < num(m, "text_end")),
            "block {pc:#x}"
        );
    }
    // Both loads held the same addresses, and name them alike.
    assert_eq!(listed(&trace, &[])[0].1.as_deref(), Some("qthot_round"));
}
