//! What the fuzz targets run. A small real trace (`seed-trace/`, made by
//! `scripts/fuzz-corpus.sh` from a recording of a sample) is copied once into
//! a scratch directory; each input then becomes its `manifest.json`, or one
//! of its part files, and the trace is read through the functions the
//! command line reads with (`info`, `top-blocks`, `--skip-corrupt`,
//! `verify`). Whatever the input, nothing may panic but inside the reader's
//! guard, which turns it into an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use qtrace_format::layout::{part_rel_path, MANIFEST};
use qtrace_format::manifest::PartEntry;
use qtrace_format::reader::part_size;
use qtrace_format::schema::col;
use qtrace_format::writer::file_checksum;
use qtrace_format::{scan, verify, Manifest, Table, Trace};

/// The seed trace's files, by path relative to its root.
struct Seed {
    files: HashMap<String, Vec<u8>>,
    manifest: Manifest,
}

fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        // libFuzzer's panic hook aborts on every panic, even one the reader
        // catches and turns into an error: let those through quietly.
        qtrace_format::reader::quiet_contained_panics();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seed-trace");
        let mut files = HashMap::new();
        collect(&dir, &dir, &mut files);
        assert!(
            files.contains_key(MANIFEST),
            "{} has no trace: run scripts/fuzz-corpus.sh",
            dir.display()
        );
        let manifest = Manifest::read(&dir).expect("the seed trace's manifest reads");
        Seed { files, manifest }
    })
}

fn collect(root: &Path, dir: &Path, out: &mut HashMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// A directory of its own for each target, made once per process, holding
/// a copy of the seed trace (`with_seed`) or nothing.
fn scratch(target: &str, with_seed: bool) -> &'static Path {
    static DIRS: OnceLock<Mutex<HashMap<String, &'static Path>>> = OnceLock::new();
    let seed = seed();
    let mut dirs = DIRS.get_or_init(Default::default).lock().unwrap();
    dirs.entry(target.to_string()).or_insert_with(|| {
        let dir = std::env::temp_dir().join(format!(
            "qtrace-fuzz-{target}-{}/run.parquet",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (rel, bytes) in seed.files.iter().filter(|_| with_seed) {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        Box::leak(PathBuf::into_boxed_path(dir))
    })
}

fn scratch_dir(target: &str) -> &'static Path {
    scratch(target, false)
}

/// The seed trace with `data` as its manifest.
pub fn manifest(data: &[u8]) {
    let root = scratch("manifest", true);
    std::fs::write(root.join(MANIFEST), data).unwrap();
    read_everything(root);
}

/// A trace of one part file, `data[2..]`, as part 0 (of vCPU 0) of table
/// `data[0]`, listed in the manifest with its size and checksum when
/// `data[1]` is odd (the reader then decodes it), unlisted otherwise. The
/// manifest is the seed trace's, less its other parts.
pub fn part(data: &[u8]) {
    let [table, flags, bytes @ ..] = data else {
        return;
    };
    let table = Table::ALL[usize::from(*table) % Table::ALL.len()];
    let vcpu = table.per_vcpu().then_some(0);
    let rel = part_rel_path(table, vcpu, 0);
    let root = scratch_dir("part");
    let path = root.join(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    let mut m = seed().manifest.clone();
    m.parts.clear();
    if flags & 1 == 1 {
        m.add_part(PartEntry {
            path: rel.clone(),
            table: table.name().to_string(),
            vcpu,
            index: 0,
            rows: 0,
            first_seq: None,
            last_seq: None,
            bytes: bytes.len() as u64,
            xxh3: file_checksum(bytes),
        });
    }
    // Not Manifest::write, which syncs the file to disk: a hundred times
    // slower than everything else an input costs.
    std::fs::write(root.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
    read_everything(root);
    std::fs::remove_file(&path).unwrap();
}

/// Reads the trace as `qtrace info` and `top-blocks` do (with
/// `--skip-corrupt`, which checks every part and decodes the good ones;
/// strictly, which stops at the first bad one), and as `verify` does.
fn read_everything(root: &Path) {
    if let Ok(trace) = Trace::open(root) {
        for table in Table::ALL {
            let _ = trace.parts(table);
        }
    }
    let Ok(trace) = Trace::open(root) else {
        let _ = verify::verify(root);
        return;
    };
    let trace = trace.skip_corrupt(|s| {
        let _ = s.to_string();
    });
    for table in Table::ALL {
        if let Ok(parts) = trace.parts(table) {
            for p in &parts {
                let _ = part_size(p);
            }
        }
    }
    let _ = trace.block_dict();
    let _ = trace.block_counts();
    let _ = trace.modules();
    if let Ok(parts) = trace.parts(Table::Blocks) {
        let _ = scan(
            &parts,
            &[col::BLOCK_ID],
            || 0u64,
            |n, batch, _| Ok(n + batch.num_rows() as u64),
            |a, b| a + b,
        );
    }
    if let Ok(report) = verify::verify(root) {
        let _ = report.ok();
    }
}
