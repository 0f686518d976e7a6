//! The manifest while recording. Writers add each part as they seal it; the
//! file is rewritten atomically (temporary file, then rename) at most every
//! [`WRITE_EVERY`] while parts come in, and at once when asked (checkpoints,
//! the end). A run killed with SIGKILL leaves a manifest that lists what
//! was sealed up to its last rewrite, with `end` null.

use crate::lock;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use qtrace_format::manifest::{now_rfc3339, Dropped, PartEntry};
use qtrace_format::Manifest;

/// Least time between two rewrites prompted by sealed parts.
pub const WRITE_EVERY: Duration = Duration::from_millis(500);

pub struct Ledger {
    root: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    manifest: Manifest,
    /// Changed since the last rewrite.
    dirty: bool,
    last_write: Option<Instant>,
}

impl Ledger {
    pub fn new(root: &Path, manifest: Manifest) -> Ledger {
        Ledger {
            root: root.to_path_buf(),
            inner: Mutex::new(Inner {
                manifest,
                dirty: true,
                last_write: None,
            }),
        }
    }

    /// Lists sealed parts (written at the next rewrite).
    pub fn add_parts(&self, parts: Vec<PartEntry>) {
        if parts.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        for p in parts {
            inner.manifest.add_part(p);
        }
        inner.dirty = true;
    }

    /// Forgets a part whose file was removed.
    pub fn remove_part(&self, path: &str) {
        let mut inner = lock(&self.inner);
        inner.manifest.parts.retain(|p| p.path != path);
        inner.dirty = true;
    }

    /// Counts rows of `table` on `vcpu` dropped from `first_seq` on.
    pub fn add_dropped(&self, table: &str, vcpu: u32, first_seq: u64, rows: u64) {
        if rows == 0 {
            return;
        }
        let mut inner = lock(&self.inner);
        let dropped = &mut inner.manifest.dropped;
        let at = match dropped
            .iter()
            .position(|d| d.table == table && d.vcpu == vcpu)
        {
            Some(i) => i,
            None => {
                dropped.push(Dropped {
                    table: table.to_string(),
                    vcpu,
                    ..Default::default()
                });
                dropped.len() - 1
            }
        };
        let d = &mut dropped[at];
        d.rows += rows;
        match d.ranges.last_mut() {
            Some((first, n)) if *first + *n == first_seq => *n += rows,
            _ => d.ranges.push((first_seq, rows)),
        }
        inner.dirty = true;
    }

    /// Changes the manifest (written at the next rewrite).
    pub fn update<R>(&self, f: impl FnOnce(&mut Manifest) -> R) -> R {
        let mut inner = lock(&self.inner);
        inner.dirty = true;
        f(&mut inner.manifest)
    }

    /// Rewrites the file if something changed and the last rewrite is old
    /// enough. A failure is returned, not said: the caller stops the
    /// recording with it, which says it once (a full disk fails the parts
    /// next, and one line is enough).
    pub fn tick(&self) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        let due = inner.last_write.is_none_or(|t| t.elapsed() >= WRITE_EVERY);
        if inner.dirty && due {
            self.write(&mut inner)
        } else {
            Ok(())
        }
    }

    /// Rewrites the file now; the caller says a failure, or knows it was
    /// said (a write failure stops the recording with one line).
    pub fn write_now(&self) -> Result<(), String> {
        let mut inner = lock(&self.inner);
        self.write(&mut inner)
    }

    fn write(&self, inner: &mut Inner) -> Result<(), String> {
        inner.manifest.updated_at = Some(now_rfc3339());
        inner.last_write = Some(Instant::now());
        match inner.manifest.write(&self.root) {
            Ok(()) => {
                inner.dirty = false;
                Ok(())
            }
            Err(e) => Err(format!("cannot rewrite the manifest: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parts_merges_drops_and_rewrites_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path(), Manifest::new());
        ledger.write_now().unwrap();
        let part = |i: u32| PartEntry {
            path: format!("blocks/vcpu=0/part-{i:06}.parquet"),
            rows: 10,
            ..Default::default()
        };
        ledger.add_parts(vec![part(0)]);
        ledger.add_parts(vec![part(1)]);
        ledger.add_dropped("blocks", 0, 100, 5);
        ledger.add_dropped("blocks", 0, 105, 5);
        ledger.add_dropped("blocks", 0, 200, 1);
        ledger.write_now().unwrap();
        let m = Manifest::read(dir.path()).unwrap();
        assert_eq!(m.parts.len(), 2);
        assert_eq!(m.dropped[0].rows, 11);
        assert_eq!(m.dropped[0].ranges, vec![(100, 10), (200, 1)]);
        ledger.remove_part(&part(1).path);
        ledger.write_now().unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap().parts.len(), 1);
        assert!(!dir.path().join(".manifest.json.tmp").exists());
    }
}
