//! Where things are in a trace directory.
//!
//! ```text
//! run.parquet/
//!   manifest.json                          what was recorded, how it ended
//!   blocks/vcpu=0/part-000000.parquet      one sub-directory per table,
//!   blocks/vcpu=0/part-000001.parquet      hive partitions per vCPU
//!   block_dict/part-000000.parquet
//!   block_counts/part-000000.parquet
//! ```
//!
//! A part being written is hidden (`.part-000001.parquet.inprogress`) and
//! renamed when sealed, so that readers (DuckDB, pyarrow, qtrace) only ever
//! see complete Parquet files, even while recording.

use std::path::{Path, PathBuf};

use crate::schema::Table;
use crate::{Error, Result};

pub const MANIFEST: &str = "manifest.json";
const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".parquet";
const IN_PROGRESS_SUFFIX: &str = ".inprogress";

/// The directory of one table, or of one vCPU's partition of it.
pub fn partition_dir(root: &Path, table: Table, vcpu: Option<u32>) -> PathBuf {
    let dir = root.join(table.name());
    match vcpu {
        Some(v) => dir.join(format!("vcpu={v}")),
        None => dir,
    }
}

/// The sealed name of part `index`.
pub fn part_name(index: u32) -> String {
    format!("{PART_PREFIX}{index:06}{PART_SUFFIX}")
}

/// The hidden name a part has while it is written.
pub fn in_progress_name(index: u32) -> String {
    format!(".{}{IN_PROGRESS_SUFFIX}", part_name(index))
}

/// Where the manifest says part `index` of a table partition is:
/// `blocks/vcpu=3/part-000001.parquet`, relative to the trace's root.
pub fn part_rel_path(table: Table, vcpu: Option<u32>, index: u32) -> String {
    match vcpu {
        Some(v) => format!("{}/vcpu={v}/{}", table.name(), part_name(index)),
        None => format!("{}/{}", table.name(), part_name(index)),
    }
}

/// A sealed part file of a table.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartPath {
    pub vcpu: Option<u32>,
    pub index: u32,
    pub path: PathBuf,
}

/// The sealed parts of `table`, ordered by vCPU and part index. A table that
/// does not exist has no parts.
pub fn list_parts(root: &Path, table: Table) -> Result<Vec<PartPath>> {
    list_files(root, table, sealed_index)
}

/// The hidden files of parts that were being written
/// (`.part-NNNNNN.parquet.inprogress`) when the trace was read: sealed, they
/// would be part `index`. Ordered like [`list_parts`].
pub fn list_in_progress(root: &Path, table: Table) -> Result<Vec<PartPath>> {
    list_files(root, table, in_progress_index)
}

/// The index of a sealed part's file name; only names that [`part_name`]
/// gives count (`part-1.parquet` is not part 1).
fn sealed_index(name: &str) -> Option<u32> {
    let index = name
        .strip_prefix(PART_PREFIX)?
        .strip_suffix(PART_SUFFIX)?
        .parse()
        .ok()?;
    (part_name(index) == name).then_some(index)
}

fn in_progress_index(name: &str) -> Option<u32> {
    sealed_index(name.strip_prefix('.')?.strip_suffix(IN_PROGRESS_SUFFIX)?)
}

fn list_files(
    root: &Path,
    table: Table,
    index_of: fn(&str) -> Option<u32>,
) -> Result<Vec<PartPath>> {
    let dir = partition_dir(root, table, None);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut parts = Vec::new();
    if table.per_vcpu() {
        for entry in read_dir(&dir)? {
            let name = entry.file_name();
            let Some(vcpu) = name
                .to_str()
                .and_then(|n| n.strip_prefix("vcpu="))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            collect_parts(&entry.path(), Some(vcpu), index_of, &mut parts)?;
        }
    } else {
        collect_parts(&dir, None, index_of, &mut parts)?;
    }
    parts.sort();
    Ok(parts)
}

fn collect_parts(
    dir: &Path,
    vcpu: Option<u32>,
    index_of: fn(&str) -> Option<u32>,
    out: &mut Vec<PartPath>,
) -> Result<()> {
    for entry in read_dir(dir)? {
        let name = entry.file_name();
        let Some(index) = name.to_str().and_then(index_of) else {
            continue;
        };
        out.push(PartPath {
            vcpu,
            index,
            path: entry.path(),
        });
    }
    Ok(())
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .and_then(|it| it.collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_sealed_parts_in_order() {
        let root = tempfile::tempdir().unwrap();
        for (vcpu, index) in [(1, 0), (0, 1), (0, 0)] {
            let dir = partition_dir(root.path(), Table::Blocks, Some(vcpu));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(part_name(index)), b"").unwrap();
            std::fs::write(dir.join(in_progress_name(index + 1)), b"").unwrap();
        }
        let got: Vec<_> = list_parts(root.path(), Table::Blocks)
            .unwrap()
            .into_iter()
            .map(|p| (p.vcpu, p.index))
            .collect();
        assert_eq!(got, vec![(Some(0), 0), (Some(0), 1), (Some(1), 0)]);
        assert!(list_parts(root.path(), Table::BlockDict)
            .unwrap()
            .is_empty());
        let hidden: Vec<_> = list_in_progress(root.path(), Table::Blocks)
            .unwrap()
            .into_iter()
            .map(|p| (p.vcpu, p.index))
            .collect();
        assert_eq!(hidden, vec![(Some(0), 1), (Some(0), 2), (Some(1), 1)]);
        assert_eq!(
            part_rel_path(Table::Blocks, Some(3), 1),
            "blocks/vcpu=3/part-000001.parquet"
        );
        assert_eq!(
            part_rel_path(Table::Modules, None, 0),
            "modules/part-000000.parquet"
        );
    }
}
